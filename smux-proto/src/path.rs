//! Version 2: what the receiver learns of the path, to size the windows it grants.
//!
//! A window wider than the path needs buys no speed: the bytes beyond the bandwidth-delay
//! product wait in a queue (the sender's socket buffer, a router), and every other stream's
//! frames, an interactive request's reply among them, wait behind them. So a stream being read
//! is granted about [`PATH_WINDOWS`] times what it delivers in a round trip, and no more than
//! its share of the receive budget (see `credit.rs`).
//!
//! - **Round-trip time.** When an UPD goes out that lets the peer send beyond what it knew
//!   (`beyond`), the first byte past `beyond` cannot arrive before the UPD reached the peer and
//!   that byte came back: the time between the two is a round trip, plus whatever queued ahead
//!   of either. One such probe is out at a time; the estimate is the smallest sample (queues
//!   only ever add).
//! - **Drains.** A sample taken while a queue is standing is too long, and windows sized on it
//!   keep the queue standing. So now and then ([`FIRST_DRAIN_AFTER`] the first sample, then
//!   every [`DRAIN_EVERY`]) the windows granted are narrowed below the bandwidth-delay product
//!   until a probe sent half a round trip later is answered; that sample replaces the estimate
//!   (so it also follows a path that got longer). A drain costs about a third of the link for
//!   a round trip and a half.
//! - **Delivery rate.** At each grant, the bytes the stream consumed since its previous grant,
//!   over the time between them. Data comes in bursts at the bottleneck's rate, so one grant
//!   interval is enough: a stream held back by its window is granted enough for the whole
//!   link in a round trip.
//!
//! The window never shrinks by more than a sixteenth at a grant (one slow interval, a reader
//! that paused, must not throttle a bulk transfer; a busy stream is granted about eight times
//! per window) nor grows by more than a quarter, and never goes below [`MIN_PATH_WINDOW`]
//! (shared among the busy streams).
//! Until the first sample, a grant is at most [`UNKNOWN_PATH_WINDOW`].

use std::time::{Duration, Instant};

use crate::stream_id::StreamId;

/// Windows granted to a stream being read, in round trips of what it delivers: enough to keep
/// the link busy while UPDs go out every eighth of a window (`window::update_interval`),
/// little enough that the queue they leave is a fraction of a round trip.
pub(crate) const PATH_WINDOWS: f64 = 1.3;

/// The least the streams being read are granted together by path sizing (each gets its share):
/// on loopback, where a round trip is tens of microseconds, a smaller window makes a fast
/// stream wait for every UPD.
pub(crate) const MIN_PATH_WINDOW: u32 = 256 * 1024;

/// The most a stream is granted before the first round-trip sample (twice Go's initial window).
pub(crate) const UNKNOWN_PATH_WINDOW: u32 = 512 * 1024;

/// How often the queue is drained to measure the path afresh (see "Drains" above).
pub(crate) const DRAIN_EVERY: Duration = Duration::from_secs(10);

/// The first drain, this long after the first sample (or ten round trips, if longer): the
/// first samples may have waited behind what new streams sent under Go's fixed initial window,
/// which can be far more than the path holds.
pub(crate) const FIRST_DRAIN_AFTER: Duration = Duration::from_secs(1);

/// During a drain, windows are this share of what the path needs: less than the
/// bandwidth-delay product, so what queued leaves.
const DRAIN_SHARE: f64 = 0.6;

/// A grant widens a window by this factor at most, unless it is less than half what the path
/// needs: a window that jumps lets the peer send the difference at once, and it waits in a
/// queue. (Grants come about eight times per window.)
const MAX_GROWTH: f64 = 1.25;

/// A probe unanswered for this long gives way to a probe on another stream (its stream's
/// writer may have nothing to send).
const PROBE_STALE: Duration = Duration::from_secs(1);

/// Rate samples over less time than this are taken over this time (a burst read at once).
const MIN_INTERVAL: Duration = Duration::from_micros(100);

/// An UPD sent at `sent_at` that let stream `stream` send past `beyond`.
#[derive(Debug, Clone, Copy)]
struct Probe {
    stream: StreamId,
    sent_at: Instant,
    beyond: u64,
}

/// A drain under way: windows are halved; a probe sent after `settled` measures the path.
#[derive(Debug, Clone, Copy)]
struct Drain {
    settled: Instant,
    /// A drain that got no answer by then ends anyway.
    deadline: Instant,
}

/// The session's estimate of the path.
#[derive(Debug, Default)]
pub(crate) struct PathEstimate {
    probe: Option<Probe>,
    /// The least sample since the latest drain ended.
    rtt: Option<Duration>,
    next_drain: Option<Instant>,
    drain: Option<Drain>,
}

impl PathEstimate {
    /// The round-trip time the windows are sized for.
    pub(crate) fn round_trip(&self) -> Option<Duration> {
        self.rtt
    }

    /// An UPD of `stream` went out at `now`, letting the peer send past `beyond` (the limit it
    /// knew before). Starts a probe unless one is out and not stale. (A busy stream sends
    /// several UPDs per round trip: replacing its probe by each would leave none answered.)
    pub(crate) fn update_sent(&mut self, stream: StreamId, beyond: u64, now: Instant) {
        let replace = match self.probe {
            None => true,
            Some(p) => now.saturating_duration_since(p.sent_at) > PROBE_STALE,
        };
        if replace {
            self.probe = Some(Probe {
                stream,
                sent_at: now,
                beyond,
            });
        }
    }

    /// Data of `stream` arrived at `now`; `received` is its byte count since the stream began.
    pub(crate) fn data_received(&mut self, stream: StreamId, received: u64, now: Instant) {
        let Some(probe) = self.probe else {
            return;
        };
        if probe.stream != stream || received <= probe.beyond {
            return;
        }
        self.probe = None;
        self.sample(probe.sent_at, now);
    }

    /// Stream `stream` will receive nothing more: its probe, if any, is dropped.
    pub(crate) fn stream_ended(&mut self, stream: StreamId) {
        if self.probe.is_some_and(|p| p.stream == stream) {
            self.probe = None;
        }
    }

    /// A probe sent at `sent_at` was answered at `now`.
    fn sample(&mut self, sent_at: Instant, now: Instant) {
        let rtt = now.saturating_duration_since(sent_at);
        match (self.drain, self.rtt) {
            (Some(drain), _) if sent_at >= drain.settled => {
                // Measured with the queue drained: the path as it is now, longer or not.
                self.rtt = Some(rtt);
                self.drain = None;
                self.next_drain = Some(now + DRAIN_EVERY);
            }
            (_, Some(least)) => self.rtt = Some(least.min(rtt)),
            (_, None) => {
                self.rtt = Some(rtt);
                self.next_drain = Some(now + FIRST_DRAIN_AFTER.max(10 * rtt));
            }
        }
    }

    /// Starts or ends a drain when due; returns whether one is under way.
    fn draining(&mut self, now: Instant) -> bool {
        if let Some(drain) = self.drain {
            if now < drain.deadline {
                return true;
            }
            self.drain = None;
            self.next_drain = Some(now + DRAIN_EVERY);
        }
        let (Some(due), Some(rtt)) = (self.next_drain, self.rtt) else {
            return false;
        };
        if now < due {
            return false;
        }
        self.next_drain = None;
        self.drain = Some(Drain {
            // Narrower windows reach the peer half a round trip after the next grants (which
            // come every eighth of a window), and the peer sends nothing more until what
            // queued left.
            settled: now + rtt / 2,
            deadline: now + 4 * rtt,
        });
        true
    }

    /// The window for a stream being read that consumed `delivered` bytes in `elapsed` since
    /// its previous grant, at `now`; `base` is the window path sizing chose for it last
    /// (outside drains), `current` its window now, and `sharers` streams hold windows wider
    /// than the floor. Returns the window to grant and the new `base`.
    pub(crate) fn window(
        &mut self,
        delivered: u64,
        elapsed: Duration,
        (base, current): (u32, u32),
        sharers: usize,
        now: Instant,
    ) -> (u32, u32) {
        let Some(rtt) = self.rtt else {
            return (UNKNOWN_PATH_WINDOW, UNKNOWN_PATH_WINDOW);
        };
        let least = f64::from(MIN_PATH_WINDOW) / sharers.max(1) as f64;
        let clamp = |w: f64| w.clamp(least, f64::from(u32::MAX)) as u32;
        let base = f64::from(base);
        if self.draining(now) {
            // Against the window before the drain: the rate measured meanwhile is held down
            // by the drain itself.
            return (clamp(DRAIN_SHARE * base), clamp(base));
        }
        let rate = delivered as f64 / elapsed.max(MIN_INTERVAL).as_secs_f64();
        let sized = PATH_WINDOWS * rate * rtt.as_secs_f64();
        // Far too narrow (a new stream, a path just measured): no time to lose.
        let widen = |from: f64, to: f64| {
            if to > 2.0 * from {
                to
            } else {
                to.min(from * MAX_GROWTH)
            }
        };
        let chosen = widen(base, sized).max(base * 15.0 / 16.0);
        // After a drain, back to `base` a step at a time.
        let granted = widen(f64::from(current), chosen);
        (clamp(granted), clamp(chosen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The origin of the virtual clock.
    fn origin() -> Instant {
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    #[test]
    fn a_probe_is_answered_by_the_first_byte_past_the_old_limit() {
        let t0 = origin();
        let id = StreamId::new(1);
        let mut p = PathEstimate::default();
        assert_eq!(p.round_trip(), None);
        p.update_sent(id, 1000, t0);
        p.data_received(id, 1000, t0 + 5 * MS);
        p.data_received(StreamId::new(3), 5000, t0 + 6 * MS);
        assert_eq!(
            p.round_trip(),
            None,
            "not past the limit, or another stream"
        );
        p.data_received(id, 1001, t0 + 40 * MS);
        assert_eq!(p.round_trip(), Some(40 * MS));
        // Answered: later data is no sample.
        p.data_received(id, 9000, t0 + 90 * MS);
        assert_eq!(p.round_trip(), Some(40 * MS));
    }

    #[test]
    fn a_drain_measures_the_path_afresh() {
        let t0 = origin();
        let id = StreamId::new(1);
        let mut p = PathEstimate::default();
        let probe = |p: &mut PathEstimate, at: Instant, rtt: Duration| {
            p.update_sent(id, 0, at);
            p.data_received(id, 1, at + rtt);
        };
        // The first samples waited behind a queue.
        probe(&mut p, t0, 160 * MS);
        probe(&mut p, t0 + 200 * MS, 170 * MS);
        assert_eq!(p.round_trip(), Some(160 * MS), "queues only add");
        let (full, base) = p.window(1_000_000, 100 * MS, (1, 1), 1, t0 + 400 * MS);
        assert_eq!(
            (full, base),
            (2_080_000, 2_080_000),
            "1.3 x 10 MB/s x 160 ms"
        );
        // The first drain (ten round trips after the first sample, more than a second): the
        // windows are 0.6 of the window before it, whatever the rate meanwhile...
        let drain_at = t0 + 160 * MS + 10 * 160 * MS;
        assert_eq!(
            p.window(1, 100 * MS, (base, base), 1, drain_at),
            (1_248_000, base)
        );
        // ... a probe sent before the drain settled does not end it (its sample counts)...
        probe(&mut p, drain_at + 10 * MS, 120 * MS);
        assert_eq!(p.round_trip(), Some(120 * MS));
        assert_eq!(
            p.window(1, 100 * MS, (base, base), 1, drain_at + 200 * MS),
            (1_248_000, base)
        );
        // ... one sent after it does, and its sample is the estimate, even if longer.
        probe(&mut p, drain_at + 200 * MS, 140 * MS);
        assert_eq!(p.round_trip(), Some(140 * MS));
        let after = drain_at + 400 * MS;
        assert_eq!(
            p.window(1_000_000, 100 * MS, (1, 1), 1, after),
            (1_820_000, 1_820_000)
        );
        // The next drain is DRAIN_EVERY later; one that gets no answer ends at its deadline.
        let next = drain_at + 340 * MS + DRAIN_EVERY;
        assert_eq!(
            p.window(1_000_000, 100 * MS, (1_820_000, 1_820_000), 1, next)
                .0,
            1_092_000
        );
        let late = next + 600 * MS;
        assert_eq!(
            p.window(1_000_000, 100 * MS, (1_820_000, 1_820_000), 1, late)
                .0,
            1_820_000
        );
    }

    #[test]
    fn a_stale_probe_gives_way_to_another_stream() {
        let t0 = origin();
        let (a, b) = (StreamId::new(1), StreamId::new(3));
        let mut p = PathEstimate::default();
        p.update_sent(a, 10, t0);
        p.update_sent(b, 10, t0 + 10 * MS);
        p.data_received(b, 11, t0 + 50 * MS);
        assert_eq!(p.round_trip(), None, "a's probe was still out");
        p.update_sent(b, 20, t0 + 2 * PROBE_STALE);
        p.data_received(b, 21, t0 + 2 * PROBE_STALE + 30 * MS);
        assert_eq!(p.round_trip(), Some(30 * MS));
        p.update_sent(a, 10, t0 + 3 * PROBE_STALE);
        p.stream_ended(a);
        p.update_sent(b, 30, t0 + 3 * PROBE_STALE);
        p.data_received(b, 31, t0 + 3 * PROBE_STALE + 20 * MS);
        assert_eq!(
            p.round_trip(),
            Some(20 * MS),
            "an ended stream's probe is dropped"
        );
    }

    #[test]
    fn windows_follow_the_bandwidth_delay_product() {
        let t0 = origin();
        let id = StreamId::new(1);
        let mut p = PathEstimate::default();
        let now = t0 + 50 * MS;
        assert_eq!(p.window(1 << 20, MS, (1, 1), 1, now).0, UNKNOWN_PATH_WINDOW);
        p.update_sent(id, 0, t0);
        p.data_received(id, 1, t0 + 40 * MS);
        // 12.5 MB/s (100 Mbit/s) over 40 ms: 500 kB in flight, granted 1.3 times that.
        assert_eq!(p.window(125_000, 10 * MS, (1, 1), 1, now).0, 650_000);
        // A slow interval shrinks the window by a sixteenth at most...
        assert_eq!(
            p.window(1000, 10 * MS, (1_600_000, 1_600_000), 1, now).0,
            1_500_000
        );
        // ... and a fast one widens it by a quarter, unless it is less than half the need.
        assert_eq!(
            p.window(125_000, 10 * MS, (400_000, 400_000), 1, now).0,
            500_000
        );
        assert_eq!(
            p.window(125_000, 10 * MS, (300_000, 300_000), 1, now).0,
            650_000
        );
        // Never below the minimum, shared among the busy streams.
        assert_eq!(p.window(10, 10 * MS, (1, 1), 1, now).0, MIN_PATH_WINDOW);
        assert_eq!(p.window(10, 10 * MS, (1, 1), 4, now).0, MIN_PATH_WINDOW / 4);
        // A burst read at once is taken over MIN_INTERVAL, not over no time at all.
        assert!(p.window(64 * 1024, Duration::ZERO, (1, 1), 1, now).0 < u32::MAX);
    }
}
