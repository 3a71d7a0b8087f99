//! The clock and timer a mux uses for keepalive, supplied by the runtime adapter.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// A sleep future, as returned by [`Timer::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a mux gets the time, and how it waits for its next deadline.
///
/// Every mux is built with one. The runtime adapters provide theirs (`smux-tokio` uses
/// `tokio::time`, so paused test time works; `smux-smol` uses [`AsyncIoTimer`]). On another
/// executor, use [`AsyncIoTimer`] (feature `async-io`: async-io's timers work under any
/// executor) or implement this trait with the runtime's own sleep. Without a timer
/// ([`NoTimer`]) the keepalive still runs whenever the mux is polled for another reason, but a
/// mux that is only waiting is not woken to send a NOP or to notice a dead peer.
pub trait Timer: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Instant;

    /// A future that completes at `deadline`, or `None` if this timer cannot sleep.
    fn sleep_until(&self, deadline: Instant) -> Option<Sleep>;

    /// Whether [`sleep_until`](Self::sleep_until) ever gives a sleep. A mux whose timer
    /// cannot sleep turns [`Config::early_reply_hold`](smux_proto::Config::early_reply_hold)
    /// off: nothing would wake it when a hold ends, and a reply could wait for good.
    fn can_sleep(&self) -> bool {
        true
    }
}

/// The system clock and no sleeping: keepalive runs only while something polls the mux.
/// For tests and for drivers that poll on their own schedule; a dead peer goes unnoticed
/// while every task waits, and replies are never held back for a Go peer's sake
/// ([`Config::early_reply_hold`](smux_proto::Config::early_reply_hold) is off).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimer;

impl Timer for NoTimer {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, _deadline: Instant) -> Option<Sleep> {
        None
    }

    fn can_sleep(&self) -> bool {
        false
    }
}

/// The system clock and async-io's timers, which work under any executor (async-io runs its
/// own reactor thread when no task blocks on it). Feature `async-io`.
#[cfg(feature = "async-io")]
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncIoTimer;

#[cfg(feature = "async-io")]
impl Timer for AsyncIoTimer {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Option<Sleep> {
        let timer = async_io::Timer::at(deadline);
        Some(Box::pin(async move {
            timer.await;
        }))
    }
}
