//! smux over KCP, in the packet format of Go's kcp-go, so that a Rust program talks to
//! [kcptun](https://github.com/xtaci/kcptun) (a TCP tunnel: smux over KCP over UDP).
//!
//! - [`KcpStream`] is one KCP session as tokio's `AsyncRead + AsyncWrite`: `smux_tokio::Mux`
//!   runs over it unchanged. [`KcpStream::connect`] is the client side, [`KcpListener`] the
//!   server side (a session per peer address, as kcp-go's listener).
//! - [`tunnel`] is a kcptun client and server built on them, with kcptun's flags; the examples
//!   `kcptun_client` and `kcptun_server` are thin mains over it.
//!
//! KCP itself (windows, acknowledgements, retransmission) is the `kcp` crate's; this crate is
//! the glue: kcp-go's datagram header ([`packet`]), the UDP sockets, KCP's timer, conversation
//! ids, and the byte-stream interface with backpressure.
//!
//! What kcptun must be run with to talk to this crate: `--crypt none` (no cipher; kcp-go's
//! 20-byte nonce and CRC header is kept, as kcptun does with `none`), `--datashard 0
//! --parityshard 0` (no FEC) and `--nocomp` (no snappy stream). The other flags (mode, MTU,
//! windows, smux version and buffers, keepalive) are matched by the same flags here.
//!
//! ```no_run
//! use smux_kcptun::{KcpConfig, KcpStream};
//! use smux_tokio::{Mux, MuxConfig};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn f() -> std::io::Result<()> {
//! // A kcptun server started with: kcptun-server -l 127.0.0.1:29900 -t 127.0.0.1:8080
//! //   --crypt none --datashard 0 --parityshard 0 --nocomp
//! let kcp = KcpStream::connect("127.0.0.1:29900".parse().unwrap(), &KcpConfig::client()).await?;
//! let mux = Mux::client(kcp, MuxConfig::default()).expect("valid config");
//! let mut stream = mux.connect().await?; // the kcptun server dials 127.0.0.1:8080 for it
//! stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod config;
mod error;
mod listener;
pub mod packet;
mod session;
pub mod tunnel;

pub use config::{KcpConfig, Mode};
pub use error::{KcpError, PacketError};
pub use listener::{KcpListener, ACCEPT_BACKLOG, MAX_SESSIONS};
pub use session::KcpStream;

use std::io;
use std::net::SocketAddr;

/// A non-blocking tokio UDP socket bound at `addr`, with `sockbuf` bytes of kernel send and
/// receive buffer (kcptun's `--sockbuf`; the kernel may cap it).
pub(crate) fn udp_socket(addr: SocketAddr, sockbuf: usize) -> io::Result<tokio::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort, as kcptun: it only logs a failure.
    let _ = socket.set_recv_buffer_size(sockbuf);
    let _ = socket.set_send_buffer_size(sockbuf);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}
