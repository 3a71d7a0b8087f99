#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use futures::io::{AsyncRead, AsyncWrite};

#[cfg(unix)]
pub use smux_futures::{limit_unsent, RECOMMENDED_UNSENT_LIMIT};
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
