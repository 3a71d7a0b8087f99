//! The smux stream multiplexer for smol and async-io, wire-compatible with Go's
//! [xtaci/smux](https://github.com/xtaci/smux).
//!
//! smol speaks the `futures::io` traits natively, so the types are those of `smux-futures`;
//! this crate adds the async-io timer, so that keepalive runs while tasks wait. Build a mux with
//! [`client`] or [`server`]:
//!
//! ```no_run
//! use futures::io::{AsyncReadExt, AsyncWriteExt};
//! use smux_smol::MuxConfig;
//!
//! # fn main() -> std::io::Result<()> { smol::block_on(async {
//! let tcp = smol::net::TcpStream::connect("127.0.0.1:7000").await?;
//! let mux = smux_smol::client(tcp, MuxConfig::default()).unwrap();
//! let mut s = mux.connect().await?;
//! s.write_all(b"hello").await?;
//! s.close().await?; // FIN; the response can still be read
//! let mut response = Vec::new();
//! s.read_to_end(&mut response).await?;
//! # Ok(()) }) }
//! ```
//!
//! A mux always has a timer: [`client`] and [`server`] give it [`AsyncIoTimer`];
//! [`Mux::client`] and [`Mux::server`] ask for one, so a mux that never notices a dead peer
//! cannot be built by accident:
//!
//! ```compile_fail
//! # async fn run(tcp: smol::net::TcpStream) {
//! let mux = smux_smol::Mux::client(tcp, smux_smol::MuxConfig::default()); // no timer given
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use futures::io::{AsyncRead, AsyncWrite};

pub use smux_futures::{
    proto, AsyncIoTimer, Incoming, InputPause, Mux, MuxConfig, MuxStream, OwnedReadHalf,
    OwnedWriteHalf, ReuniteError, SessionSnapshot, Side, Stats, StreamId, StreamSnapshot, Version,
};
use smux_proto::ConfigError;

/// The client end of a connection (opens odd stream ids), with the async-io timer.
pub fn client<T>(io: T, config: MuxConfig) -> Result<Mux<T>, ConfigError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    Mux::client(io, config, AsyncIoTimer)
}

/// The server end of a connection (opens even stream ids), with the async-io timer.
pub fn server<T>(io: T, config: MuxConfig) -> Result<Mux<T>, ConfigError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    Mux::server(io, config, AsyncIoTimer)
}
