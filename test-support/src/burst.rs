//! The plan of the burst tests (`smux-tokio/tests/burst.rs`, `smux-smol/tests/burst.rs`):
//! how many streams are opened back to back, the byte each carries, and the progress counters
//! the stall detector watches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Streams opened back to back in one burst.
pub const STREAMS: u64 = 50_000;

/// No progress for this long is a stall.
pub const STALL: Duration = Duration::from_secs(10);

/// The byte the client writes on the stream with id `stream_id`.
pub fn byte_for(stream_id: u32) -> u8 {
    (stream_id >> 1) as u8 ^ 0xa5
}

/// Bursts to run (each with protocol versions 1 and 2): `SMUX_BURST_RUNS`, default 2.
pub fn runs() -> usize {
    std::env::var("SMUX_BURST_RUNS")
        .ok()
        .map(|s| s.parse().expect("SMUX_BURST_RUNS: a count"))
        .unwrap_or(2)
}

/// What a burst has done so far, counted by the tasks that do it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Streams the client opened, wrote and shut down.
    pub opened: AtomicU64,
    /// Streams the server accepted.
    pub accepted: AtomicU64,
    /// Streams read to EOF with exactly their byte.
    pub good: AtomicU64,
    /// Streams read to EOF with anything else.
    pub bad: AtomicU64,
}

impl Progress {
    /// Counts a stream read to its end: `ok` if it held exactly its byte.
    pub fn read(&self, ok: bool) {
        let counter = if ok { &self.good } else { &self.bad };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The sum of every counter: it grows as long as anything moves.
    pub fn total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
            + self.accepted.load(Ordering::Relaxed)
            + self.good.load(Ordering::Relaxed)
            + self.bad.load(Ordering::Relaxed)
    }

    /// Whether every stream has been read to its end.
    pub fn done(&self) -> bool {
        self.good.load(Ordering::Relaxed) + self.bad.load(Ordering::Relaxed) == STREAMS
    }

    /// The counters, for messages.
    pub fn describe(&self) -> String {
        format!(
            "opened {}, accepted {}, read correctly {}, read wrong {}",
            self.opened.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            self.good.load(Ordering::Relaxed),
            self.bad.load(Ordering::Relaxed)
        )
    }

    /// Fails unless every stream was opened, accepted and read with its byte.
    pub fn assert_complete(&self) {
        assert_eq!(self.bad.load(Ordering::Relaxed), 0, "{}", self.describe());
        assert_eq!(self.good.load(Ordering::Relaxed), STREAMS);
        assert_eq!(self.accepted.load(Ordering::Relaxed), STREAMS);
    }
}
