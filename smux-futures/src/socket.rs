//! Tuning of the socket under a mux: a small kernel queue of unsent bytes
//! (`TCP_NOTSENT_LOWAT`), so the mux's fair scheduler, not the kernel's FIFO, decides which
//! stream's bytes go out next.

use std::io;
use std::os::fd::AsFd;

/// The unsent-bytes limit we recommend for [`limit_unsent`]: 16 KiB.
///
/// Why this much: the limit is how far a frame of an interactive stream can queue behind
/// bulk data in the kernel, on top of the bytes already in flight, which no sender can
/// overtake. 16 KiB is about 13 ms of sending at 10 Mbit/s and 1.3 ms at 100 Mbit/s, against
/// the seconds that megabytes of an autotuned send buffer take at those rates. Why not less:
/// Linux wakes the writer when the unsent bytes fall below half the limit, and the writer
/// must refill the queue before the other half is sent, or the link idles; 8 KiB at
/// 100 Mbit/s leaves it more than half a millisecond, ample for a task wake-up. It is also
/// the value HTTP/2 servers use for the same reason (streams of different priority sharing
/// one TCP connection; Cloudflare's "Optimizing HTTP/2 prioritization with BBR and
/// tcp_notsent_lowat", 2018). On much faster links the writer is woken more often (see
/// [`limit_unsent`] for the cost).
pub const RECOMMENDED_UNSENT_LIMIT: u32 = 16 * 1024;

/// Limits the bytes the kernel holds *unsent* in a TCP socket's send buffer to about `bytes`
/// (the socket option `TCP_NOTSENT_LOWAT`): set it on the socket a mux runs over, for
/// example with [`RECOMMENDED_UNSENT_LIMIT`].
///
/// Without it, Linux autotunes a TCP send buffer to megabytes, and a mux whose streams take
/// turns fairly still hands the kernel everything the streams have written: a frame of an
/// interactive stream then waits behind all of it, seconds on a slow link. With a small
/// limit, writes to the socket stop once that much is queued unsent, the bytes wait in the
/// mux instead, and the mux's scheduler puts the interactive frame next. This matters when an
/// interactive stream shares a connection with bulk transfers over a path with real
/// round-trip time and limited bandwidth, most of all with protocol version 1 (no per-stream
/// windows to hold the bulk streams back) and with peers you do not control (a Go peer):
/// it is the one lever on the sending side of this socket. Each side limits only what it
/// sends, so set it on both ends when you own both. The system-wide default for sockets
/// that do not set it is the sysctl `net.ipv4.tcp_notsent_lowat` (unlimited unless changed);
/// `bytes` = 0 returns this socket to that default.
///
/// The cost is more wake-ups of the writing task: the kernel wakes it when the unsent bytes
/// fall below half the limit, so a bulk transfer is written in pieces of a few KiB. On a real
/// path that is negligible; over loopback, where nothing waits for the wire, one stream's
/// throughput may drop a little.
///
/// Works on any socket that implements [`AsFd`]: `std::net::TcpStream`, tokio's
/// `TcpStream`, `async_io::Async<std::net::TcpStream>` and `smol::net::TcpStream`. For TLS,
/// set it on the TCP stream before wrapping it.
///
/// # Errors
///
/// - [`io::ErrorKind::Unsupported`] where this crate cannot set the option: on every
///   platform but Linux and Android (the kernel's send queue is then left as it is). As a
///   tuning hint, portable code can ignore this error.
/// - The operating system's error if the socket refuses the option (for example, it is not a
///   TCP socket).
///
/// # Example
///
/// ```
/// use smux_futures::{limit_unsent, RECOMMENDED_UNSENT_LIMIT};
///
/// # fn main() -> std::io::Result<()> {
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let tcp = std::net::TcpStream::connect(listener.local_addr()?)?;
/// match limit_unsent(&tcp, RECOMMENDED_UNSENT_LIMIT) {
///     Ok(()) => {}
///     // Not Linux: the kernel's send queue stays as it is.
///     Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[doc(alias = "TCP_NOTSENT_LOWAT")]
#[doc(alias = "notsent_lowat")]
#[doc(alias = "set_tcp_notsent_lowat")]
pub fn limit_unsent<S: AsFd>(socket: &S, bytes: u32) -> io::Result<()> {
    set_notsent_lowat(socket, bytes)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_notsent_lowat<S: AsFd>(socket: &S, bytes: u32) -> io::Result<()> {
    socket2::SockRef::from(socket).set_tcp_notsent_lowat(bytes)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_notsent_lowat<S: AsFd>(_socket: &S, _bytes: u32) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TCP_NOTSENT_LOWAT is only set on Linux and Android",
    ))
}

#[cfg(all(test, not(loom), any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[test]
    fn sets_and_reads_back() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        limit_unsent(&tcp, RECOMMENDED_UNSENT_LIMIT).unwrap();
        let got = socket2::SockRef::from(&tcp).tcp_notsent_lowat().unwrap();
        assert_eq!(got, RECOMMENDED_UNSENT_LIMIT);
    }

    #[test]
    fn refused_on_a_socket_that_is_not_tcp() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(limit_unsent(&udp, RECOMMENDED_UNSENT_LIMIT).is_err());
    }
}
