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
//!   of either. One such probe is out at a time; the estimate is the smallest sample of the
//!   last two [`PERIOD`]s (queues only ever add), so it follows a path that changed.
//! - **Delivery rate.** At each grant, the bytes the stream consumed since its previous grant,
//!   over the time between them. Data comes in bursts at the bottleneck's rate, so one grant
//!   interval is enough: a stream held back by its window is granted enough for the whole
//!   link in a round trip.
//!
//! The window never shrinks by more than a sixteenth at a grant (one slow interval, a reader
//! that paused, must not throttle a bulk transfer; a busy stream is granted about eight times
//! per window), and never below [`MIN_PATH_WINDOW`].
//! Until the first sample, a grant is at most [`UNKNOWN_PATH_WINDOW`].

use std::time::{Duration, Instant};

use crate::stream_id::StreamId;

/// Windows granted to a stream being read, in round trips of what it delivers: enough to keep
/// the link busy while UPDs go out every eighth of a window (`window::update_interval`),
/// little enough that the queue they leave is a fraction of a round trip.
pub(crate) const PATH_WINDOWS: f64 = 1.3;

/// The least a stream being read is granted by path sizing: on loopback, where a round trip is
/// tens of microseconds, a smaller window makes a fast stream wait for every UPD.
pub(crate) const MIN_PATH_WINDOW: u32 = 256 * 1024;

/// The most a stream is granted before the first round-trip sample (twice Go's initial window).
pub(crate) const UNKNOWN_PATH_WINDOW: u32 = 512 * 1024;

/// Samples older than two of these no longer count for the round-trip estimate.
pub(crate) const PERIOD: Duration = Duration::from_secs(5);

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

/// The session's estimate of the path.
#[derive(Debug, Default)]
pub(crate) struct PathEstimate {
    probe: Option<Probe>,
    /// Smallest sample of the current period, and when the period began.
    current: Option<(Duration, Instant)>,
    /// Smallest sample of the previous period.
    previous: Option<Duration>,
}

impl PathEstimate {
    /// The round-trip time: the smallest recent sample.
    pub(crate) fn round_trip(&self) -> Option<Duration> {
        match (self.current.map(|(d, _)| d), self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
        self.sample(now.saturating_duration_since(probe.sent_at), now);
    }

    /// Stream `stream` will receive nothing more: its probe, if any, is dropped.
    pub(crate) fn stream_ended(&mut self, stream: StreamId) {
        if self.probe.is_some_and(|p| p.stream == stream) {
            self.probe = None;
        }
    }

    fn sample(&mut self, rtt: Duration, now: Instant) {
        match &mut self.current {
            Some((min, start)) if now.saturating_duration_since(*start) < PERIOD => {
                *min = (*min).min(rtt);
            }
            current => {
                self.previous = current.map(|(d, _)| d);
                *current = Some((rtt, now));
            }
        }
    }

    /// The window for a stream being read that consumed `delivered` bytes in `elapsed` since
    /// its previous grant, whose window is `window` now.
    pub(crate) fn window(&self, delivered: u64, elapsed: Duration, window: u32) -> u32 {
        let Some(rtt) = self.round_trip() else {
            return UNKNOWN_PATH_WINDOW;
        };
        let rate = delivered as f64 / elapsed.max(MIN_INTERVAL).as_secs_f64();
        let sized = PATH_WINDOWS * rate * rtt.as_secs_f64();
        let kept = u64::from(window) * 15 / 16;
        let chosen = (sized.min(f64::from(u32::MAX)) as u64).max(kept);
        chosen.clamp(u64::from(MIN_PATH_WINDOW), u64::from(u32::MAX)) as u32
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
    fn the_estimate_is_the_least_recent_sample_and_old_ones_expire() {
        let t0 = origin();
        let id = StreamId::new(1);
        let mut p = PathEstimate::default();
        let probe = |p: &mut PathEstimate, at: Instant, rtt: Duration| {
            p.update_sent(id, 0, at);
            p.data_received(id, 1, at + rtt);
        };
        probe(&mut p, t0, 40 * MS);
        probe(&mut p, t0 + 100 * MS, 90 * MS);
        assert_eq!(p.round_trip(), Some(40 * MS), "queues only add");
        // A period later, 40 ms is the previous period's and still counts.
        probe(&mut p, t0 + PERIOD + 100 * MS, 80 * MS);
        assert_eq!(p.round_trip(), Some(40 * MS));
        // Two periods later, the path is slower: the estimate follows.
        probe(&mut p, t0 + 2 * PERIOD + 200 * MS, 70 * MS);
        assert_eq!(p.round_trip(), Some(70 * MS));
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
        assert_eq!(p.window(1 << 20, MS, 1 << 20), UNKNOWN_PATH_WINDOW);
        p.update_sent(id, 0, t0);
        p.data_received(id, 1, t0 + 40 * MS);
        // 12.5 MB/s (100 Mbit/s) over 40 ms: 500 kB in flight, granted 1.3 times that.
        let w = p.window(125_000, 10 * MS, 0);
        assert_eq!(w, 650_000);
        // A slow interval shrinks the window by a sixteenth at most.
        assert_eq!(p.window(1000, 10 * MS, 1_600_000), 1_500_000);
        // Never below the minimum.
        assert_eq!(p.window(10, 10 * MS, 0), MIN_PATH_WINDOW);
        // A burst read at once is taken over MIN_INTERVAL, not over no time at all.
        assert!(p.window(64 * 1024, Duration::ZERO, 0) < u32::MAX);
    }
}
