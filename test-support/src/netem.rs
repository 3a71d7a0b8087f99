//! A user-space link emulator: a TCP relay on 127.0.0.1 that makes a loopback connection look
//! like a path with a bottleneck rate, a bounded bottleneck queue and a propagation delay.
//!
//! Clients connect to the [`Relay`]'s address; for each of them the relay connects to the
//! target and forwards the bytes both ways, each direction through its own emulated path (see
//! the `path` module):
//!
//! 1. a reader takes bytes from the incoming socket in chunks of at most 16 KiB, and only while
//!    the bottleneck queue holds fewer than [`LinkSpec::queue`] bytes, so a full queue pushes
//!    back on the sender through TCP flow control (nothing is ever dropped);
//! 2. the queue drains at [`LinkSpec::rate`]: a chunk of `len` bytes finishes leaving it
//!    `len / rate` after the previous one finished (or after it arrived, if the link was
//!    idle), which models serialization;
//! 3. a departed chunk reaches the far side [`LinkSpec::one_way_delay`] later (a delay line,
//!    bounded to `rate * delay + queue` bytes: while it holds that much the queue stops
//!    draining, so a receiver that stops reading pushes back too);
//! 4. a writer hands it to the outgoing socket.
//!
//! End of stream on one side is forwarded (shutdown of the write half) after the bytes queued
//! before it; a read or write error closes both connections at once (with a reset). The two
//! directions of a connection end independently; the pair is dropped when both have ended.
//!
//! The relay's own sockets have `TCP_NODELAY` on and [`LinkSpec::socket_buffer`] as their send
//! and receive buffer sizes, so little hides in them; the endpoints' sockets keep whatever
//! their owners set.
//!
//! ```no_run
//! use std::time::Duration;
//! use smux_test_support::netem::{LinkSpec, Relay};
//!
//! # fn main() -> std::io::Result<()> {
//! let server: std::net::SocketAddr = "127.0.0.1:7000".parse().unwrap();
//! // 40 ms round trip at 100 Mbit/s: connect to relay.addr() instead of the server.
//! let relay = Relay::start(server, LinkSpec::path(Duration::from_millis(40), 100))?;
//! let _client = std::net::TcpStream::connect(relay.addr())?;
//! # Ok(())
//! # }
//! ```

mod path;
mod relay;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use relay::Relay;

/// The emulated path, the same in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSpec {
    /// Propagation delay added in each direction.
    pub one_way_delay: Duration,
    /// Bottleneck rate in bytes per second, each direction (0: no rate limit).
    pub rate: u64,
    /// Bottleneck queue in bytes, each direction (128 KiB in [`LinkSpec::path`]).
    pub queue: usize,
    /// `SO_SNDBUF` and `SO_RCVBUF` of the relay's own sockets (64 KiB in [`LinkSpec::path`];
    /// 0 leaves the system's defaults and their auto-tuning).
    pub socket_buffer: usize,
}

/// The bottleneck queue of [`LinkSpec::path`].
pub const DEFAULT_QUEUE: usize = 128 * 1024;
/// The relay's socket buffers in [`LinkSpec::path`].
pub const DEFAULT_SOCKET_BUFFER: usize = 64 * 1024;
/// The largest chunk the relay reads at once (the granularity of the queue).
pub const CHUNK: usize = 16 * 1024;

impl LinkSpec {
    /// A path of `rtt` round trip (`one_way_delay` = `rtt / 2`) at `mbit` megabits/s
    /// (`rate` = `mbit * 1_000_000 / 8` bytes/s), with a 128 KiB queue and 64 KiB socket
    /// buffers.
    pub fn path(rtt: Duration, mbit: u64) -> LinkSpec {
        LinkSpec {
            one_way_delay: rtt / 2,
            rate: mbit * 1_000_000 / 8,
            queue: DEFAULT_QUEUE,
            socket_buffer: DEFAULT_SOCKET_BUFFER,
        }
    }

    /// How long `len` bytes take to leave the queue at [`rate`](Self::rate).
    pub fn serialization(&self, len: usize) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let nanos = len as u128 * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Bytes the delay line may hold: what the path carries in one delay at full rate, plus
    /// one queue, and never less than a chunk.
    pub fn delay_line_capacity(&self) -> usize {
        let in_flight = u128::from(self.rate) * self.one_way_delay.as_nanos() / 1_000_000_000;
        let in_flight = usize::try_from(in_flight).unwrap_or(usize::MAX / 4);
        in_flight
            .saturating_add(self.queue)
            .clamp(CHUNK, tokio::sync::Semaphore::MAX_PERMITS)
    }
}
