//! The clock and timer a mux uses for keepalive, supplied by the runtime adapter.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// A sleep future, as returned by [`Timer::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a mux gets the time, and how it waits for its next deadline.
///
/// The runtime adapters provide one (`smux-tokio` uses `tokio::time`, so paused test time
/// works; `smux-smol` uses `async-io`). Without a timer ([`NoTimer`]) the keepalive still runs
/// whenever the mux is polled for another reason, but a mux that is only waiting is not woken
/// to send a NOP or to notice a dead peer.
pub trait Timer: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Instant;

    /// A future that completes at `deadline`, or `None` if this timer cannot sleep.
    fn sleep_until(&self, deadline: Instant) -> Option<Sleep>;
}

/// The system clock and no sleeping.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimer;

impl Timer for NoTimer {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, _deadline: Instant) -> Option<Sleep> {
        None
    }
}
