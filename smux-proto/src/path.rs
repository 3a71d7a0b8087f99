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
//!   keep the queue standing. So now and then ([`FIRST_DRAIN_AFTER`] the first sample if
//!   several streams were busy then, then every [`DRAIN_EVERY`]) the windows granted are
//!   narrowed below the bandwidth-delay product, and probes sent half a round trip later
//!   measure the path: the drain ends at a sample no longer than the estimate, or after four
//!   round trips. The least of its samples is the new estimate, unless it is much longer: then
//!   the queue may not have left (windows sized on too long a round trip, narrowed, can still
//!   exceed the path), and a deep drain (to half the share) follows a second later to
//!   confirm it; the estimate follows a path that got longer only then. A drain costs about a
//!   third of the link for a round trip and a half.
//! - **Delivery rate.** The bytes a stream consumed over a round trip or more. A stream held
//!   back by its window delivers about all of it in a round trip, and is granted more: the
//!   window grows by half each round trip while no queue shows.
//! - **New streams.** Until a stream's rate was measured, what came since its previous grant
//!   came in a burst, at the bottleneck's rate: if that rate wants more than twice its window,
//!   the window jumps there (a stream is up to speed in a round trip, on a 200 ms path too).
//! - **The path's rate.** What every stream together delivered over the latest round trip or
//!   more (outside drains). Each busy stream is granted at least what its share of it needs:
//!   streams held back by narrower windows than the others catch up, and a stream left alone
//!   when the others end has the whole path at once (growing by half each round trip, from an
//!   eighth of a 200 ms path, would take a second).
//!
//! The window never shrinks by more than a quarter at a measurement (one slow interval, a
//! reader that paused, must not throttle a bulk transfer) nor grows by more than a quarter at
//! a grant, and never goes below [`MIN_PATH_WINDOW`] (shared among the busy streams).
//! Until the first sample, a grant is at most [`UNKNOWN_PATH_WINDOW`].

use std::time::{Duration, Instant};

use crate::stream_id::StreamId;

/// Windows granted to a stream being read, in round trips of what it delivers, besides the
/// update interval (`window::update_interval`: the peer learns of consumed bytes an UPD late):
/// enough to keep the link busy, little enough that the queue they leave is a fraction of a
/// round trip.
pub(crate) const PATH_WINDOWS: f64 = 1.05;

/// What a window may hold beyond the path's needs, as time at the stream's rate: a queue that
/// short costs an interactive stream little, and on a fast local path (loopback, where the
/// round trip measured at best is tens of microseconds and a busy machine's is often ten times
/// that) it is what keeps a stream at full speed: 4 ms at 3 GB/s is 12 MB (so the budget).
pub(crate) const QUEUE_ALLOWANCE: Duration = Duration::from_millis(4);

/// The least the streams being read are granted together by path sizing (each gets its share):
/// on loopback, where a round trip is tens of microseconds, a smaller window makes a fast
/// stream wait for every UPD.
pub(crate) const MIN_PATH_WINDOW: u32 = 256 * 1024;

/// The most the streams are granted before the first round-trip sample, shared among the busy
/// ones (twice Go's initial window).
pub(crate) const UNKNOWN_PATH_WINDOW: u32 = 512 * 1024;

/// How often the queue is drained to measure the path afresh (see "Drains" above).
pub(crate) const DRAIN_EVERY: Duration = Duration::from_secs(10);

/// The first drain, this long after the first sample if several streams were busy then: the
/// first samples may have waited behind what new streams sent under Go's fixed initial window,
/// which can be far more than the path holds. (Also the time to the next drain while drains
/// keep finding the round trip shorter.)
pub(crate) const FIRST_DRAIN_AFTER: Duration = Duration::from_secs(1);

/// During a drain, windows are this share of what the path needs: less than the
/// bandwidth-delay product, so what queued leaves.
const DRAIN_SHARE: f64 = 0.6;

/// A round trip this much longer than the least (and a tenth) shows a queue on the path.
const QUEUE_SHOWS: Duration = Duration::from_millis(1);

/// A stream that delivered this share of what its window lets through in a round trip uses
/// its window. (One held back by the path, at the window its rate wants, delivers less: 1 in
/// [`PATH_WINDOWS`] and the queue allowance, 0.87 on a 40 ms path.)
const USED: f64 = 0.93;

/// A grant widens a window by this factor at most: a window that jumps lets the peer send the
/// difference at once, and it waits in a queue. (Grants come about sixteen times per window.)
const MAX_GROWTH: f64 = 1.25;

/// Burst rates over less time than this are taken over this time (a burst read at once).
const MIN_INTERVAL: Duration = Duration::from_micros(100);

/// A probe unanswered for this long gives way to a probe on another stream (its stream's
/// writer may have nothing to send).
const PROBE_STALE: Duration = Duration::from_secs(1);

/// An UPD sent at `sent_at` that let stream `stream` send past `beyond`.
#[derive(Debug, Clone, Copy)]
struct Probe {
    stream: StreamId,
    sent_at: Instant,
    beyond: u64,
}

/// A drain under way: windows are narrowed; probes sent after `settled` measure the path.
#[derive(Debug, Clone, Copy)]
struct Drain {
    settled: Instant,
    /// The drain ends by then, the least of its samples the new estimate.
    deadline: Instant,
    /// The least sample of a probe sent after `settled`.
    least: Option<Duration>,
}

/// The session's estimate of the path.
#[derive(Debug, Default)]
pub(crate) struct PathEstimate {
    probe: Option<Probe>,
    /// The least sample since the latest drain ended.
    rtt: Option<Duration>,
    next_drain: Option<Instant>,
    drain: Option<Drain>,
    /// The latest drain found the round trip much shorter than estimated: the queue may have
    /// been standing since the start, and the windows sized on it too. The next drain, soon,
    /// goes deep (half the share) to empty it.
    deep: bool,
    /// The origin of [`stamp`](Self::stamp)s.
    origin: Option<Instant>,
    /// The latest sample.
    latest: Option<Duration>,
    /// Bytes the application consumed of every stream, since the session began.
    consumed: u64,
    /// Where the measurement of the path's rate began: when, and `consumed` then.
    rate_mark: Option<(u32, u64)>,
    /// What the path delivered, over the latest round trip or more outside drains, in bytes
    /// per second: every busy stream is granted at least its share of it.
    rate: f64,
}

impl PathEstimate {
    /// The round-trip time the windows are sized for.
    pub(crate) fn round_trip(&self) -> Option<Duration> {
        self.rtt
    }

    /// The application consumed `n` bytes of some stream.
    pub(crate) fn consumed(&mut self, n: usize) {
        self.consumed += n as u64;
    }

    /// `now` in microseconds since the first call, wrapping (see [`StreamPath`]).
    fn stamp(&mut self, now: Instant) -> u32 {
        let origin = *self.origin.get_or_insert(now);
        now.saturating_duration_since(origin).as_micros() as u32
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
    /// `sharers` streams hold windows wider than the floor.
    pub(crate) fn data_received(
        &mut self,
        stream: StreamId,
        received: u64,
        sharers: usize,
        now: Instant,
    ) {
        let Some(probe) = self.probe else {
            return;
        };
        if probe.stream != stream || received <= probe.beyond {
            return;
        }
        self.probe = None;
        self.sample(probe.sent_at, sharers, now);
    }

    /// Stream `stream` will receive nothing more: its probe, if any, is dropped.
    pub(crate) fn stream_ended(&mut self, stream: StreamId) {
        if self.probe.is_some_and(|p| p.stream == stream) {
            self.probe = None;
        }
    }

    /// A probe sent at `sent_at` was answered at `now`.
    fn sample(&mut self, sent_at: Instant, sharers: usize, now: Instant) {
        let rtt = now.saturating_duration_since(sent_at);
        self.latest = Some(rtt);
        match (self.drain.as_mut(), self.rtt) {
            (Some(drain), Some(before)) if sent_at >= drain.settled => {
                // Measured with less of the queue. A sample as short as the estimate shows
                // the queue gone: the drain ends. A longer one may still have waited behind
                // what did not leave yet, or the path got longer: the drain goes on, and at
                // its deadline the least of its samples is the estimate.
                let least = drain.least.map_or(rtt, |l| l.min(rtt));
                drain.least = Some(least);
                if least <= before {
                    self.end_drain(now);
                }
            }
            (_, Some(least)) => self.rtt = Some(least.min(rtt)),
            (_, None) => {
                // Several streams' initial windows may have queued ahead of the first samples;
                // one stream's is what the path holds in the first round trip anyway.
                self.rtt = Some(rtt);
                let first = if sharers > 1 {
                    FIRST_DRAIN_AFTER
                } else {
                    DRAIN_EVERY
                };
                self.next_drain = Some(now + first);
            }
        }
    }

    /// Ends the drain under way. The least of its samples is the path as it is now, with two
    /// doubts, each settled by another drain soon that goes deep (half the share):
    /// - much shorter than before: the queue may have stood since the start, and the windows
    ///   sized on it keep a part of it standing;
    /// - much longer than before: the path got longer, or the drain did not empty the queue
    ///   (narrowed windows sized on too long a round trip still exceed the path). The
    ///   estimate stays until a deep drain finds it longer too.
    fn end_drain(&mut self, now: Instant) {
        let Some(drain) = self.drain.take() else {
            return;
        };
        let (Some(least), Some(before)) = (drain.least, self.rtt) else {
            self.next_drain = Some(now + DRAIN_EVERY);
            return;
        };
        let much_longer = least > before.mul_f64(1.1) + QUEUE_SHOWS;
        let much_shorter = least < before.mul_f64(0.9);
        let unconfirmed = much_longer && !self.deep;
        if much_longer && self.deep {
            self.rtt = Some(least);
        } else if !much_longer {
            // A little longer is within a path's jitter: the estimate stays (a window that
            // falls short grows while no queue shows).
            self.rtt = Some(least.min(before));
        }
        self.deep = unconfirmed || much_shorter;
        let next = if self.deep {
            FIRST_DRAIN_AFTER
        } else {
            DRAIN_EVERY
        };
        self.next_drain = Some(now + next);
    }

    /// Starts or ends a drain when due; returns whether one is under way.
    fn draining(&mut self, now: Instant) -> bool {
        if let Some(drain) = self.drain {
            if now < drain.deadline {
                return true;
            }
            self.end_drain(now);
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
            // come every sixteenth of a window), and the peer sends nothing more until what
            // queued left.
            settled: now + rtt / 2,
            deadline: now + 4 * rtt,
            least: None,
        });
        true
    }

    /// The window to grant stream `stream` (see [`StreamPath`]), which consumed `consumed`
    /// bytes so far (and `since_grant` of them since its previous grant) and whose window is
    /// `current` now, at `now`; `sharers` streams hold windows wider than the floor.
    pub(crate) fn window(
        &mut self,
        stream: &mut StreamPath,
        (consumed, since_grant): (u64, u64),
        current: u32,
        sharers: usize,
        now: Instant,
    ) -> u32 {
        let stamp = self.stamp(now);
        let since = |then: u32| Duration::from_micros(u64::from(stamp.wrapping_sub(then)));
        let last_grant = stream.last_grant.replace(stamp);
        let mark_here = Some((stamp, consumed as u32));
        let Some(rtt) = self.rtt else {
            stream.mark = mark_here;
            return (UNKNOWN_PATH_WINDOW / sharers.max(1) as u32).max(MIN_PATH_WINDOW / 4);
        };
        let least = f64::from(MIN_PATH_WINDOW) / sharers.max(1) as f64;
        let clamp = |w: f64| w.clamp(least, f64::from(u32::MAX)) as u32;
        let current = f64::from(current);
        let mut base = if stream.base == 0 {
            current
        } else {
            f64::from(stream.base)
        };
        // A window sized for a longer round trip than the path has now (one measured behind a
        // queue) is scaled down at once.
        let rtt_us = rtt.as_micros().min(u128::from(u32::MAX)) as u32;
        if stream.base_rtt > rtt_us {
            base *= f64::from(rtt_us) / f64::from(stream.base_rtt);
        }
        stream.base_rtt = rtt_us;
        if self.draining(now) {
            // Against the window before the drain: the rate measured meanwhile is held down
            // by the drain itself.
            self.rate_mark = None;
            stream.mark = None;
            stream.drained = true;
            stream.base = clamp(base);
            let share = if self.deep {
                DRAIN_SHARE / 2.0
            } else {
                DRAIN_SHARE
            };
            return clamp(share * base);
        }
        if !stream.measured {
            // A new stream (or its first grants after the path was measured): what came since
            // the previous grant came in a burst, at the bottleneck's rate. Far more than the
            // window takes a round trip at that rate: no time to lose.
            let elapsed = last_grant.map_or(rtt, since);
            let burst = since_grant as f64 / elapsed.max(MIN_INTERVAL).as_secs_f64();
            let sized = sized(burst, rtt, base, sharers);
            if sized > 2.0 * base {
                stream.base = clamp(sized);
                // The rate is measured from here, at the new window.
                stream.mark = mark_here;
                return stream.base;
            }
        }
        match stream.mark {
            Some((at, from)) if since(at) >= rtt => {
                // Over a round trip at least. The first measurement after a stream started, or
                // after a drain, may cover time it waited for a window being widened: it only
                // widens.
                let elapsed = since(at).as_secs_f64();
                let rate = f64::from((consumed as u32).wrapping_sub(from)) / elapsed;
                // Nothing queues on the path while the latest round trip is the least: then a
                // window wider than the rate wants costs nothing, and a stream that uses about
                // all its window lets through is held back by it, not by the path: widen it by
                // half each round trip until a queue shows. Once one shows, windows come down
                // to what the rate wants, a quarter per round trip at most (one slow interval,
                // a reader that paused, must not throttle a bulk transfer).
                let queue_free = self
                    .latest
                    .is_some_and(|l| l <= rtt.mul_f64(1.1) + QUEUE_SHOWS);
                let usable =
                    current - f64::from(crate::window::update_interval(current as u32, sharers));
                let wanted = sized(rate, rtt, base, sharers);
                base = if queue_free || stream.drained || !stream.measured {
                    let mut widened = wanted.max(base);
                    if queue_free && rate * rtt.as_secs_f64() >= USED * usable {
                        widened = widened.max(current * 1.5);
                    }
                    widened
                } else {
                    wanted.max(base * 3.0 / 4.0)
                };
                stream.drained = false;
                stream.mark = mark_here;
                stream.measured = true;
            }
            Some(_) => {}
            None => stream.mark = mark_here,
        }
        // Never less than a share of what the path carried: streams held back by narrow
        // windows get as far as the others, and one left alone after the others ended has the
        // whole path at once, not after a round trip of growth per half again.
        let share = sized(
            self.path_rate(stamp, rtt) / sharers.max(1) as f64,
            rtt,
            base,
            sharers,
        );
        base = base.max(share);
        stream.base = clamp(base);
        // After a drain, back to `base` a step at a time.
        clamp(base.min(current * MAX_GROWTH))
    }
}

impl PathEstimate {
    /// What the path delivered over the latest round trip or more (measured from `stamp`
    /// on, when the previous measurement is a round trip old).
    fn path_rate(&mut self, stamp: u32, rtt: Duration) -> f64 {
        match self.rate_mark {
            Some((at, from)) => {
                let elapsed = Duration::from_micros(u64::from(stamp.wrapping_sub(at)));
                if elapsed >= rtt {
                    self.rate = (self.consumed - from) as f64 / elapsed.as_secs_f64();
                    self.rate_mark = Some((stamp, self.consumed));
                }
            }
            None => self.rate_mark = Some((stamp, self.consumed)),
        }
        self.rate
    }
}

/// The window a stream delivering `rate` bytes per second over a path of `rtt` needs, with
/// `window` now: its bandwidth-delay product with a margin of [`PATH_WINDOWS`], the bytes the
/// peer waits for between two UPDs (the update interval), and [`QUEUE_ALLOWANCE`] of delivery.
/// (`sharers` streams are busy.)
fn sized(rate: f64, rtt: Duration, window: f64, sharers: usize) -> f64 {
    let interval = crate::window::update_interval(window.min(f64::from(u32::MAX)) as u32, sharers);
    let time = PATH_WINDOWS * rtt.as_secs_f64() + QUEUE_ALLOWANCE.as_secs_f64();
    rate * time + f64::from(interval)
}

/// What path sizing keeps for one stream. Instants are microseconds since the session's first
/// grant, 32 bits wide (`PathEstimate::stamp`): they wrap after 71 minutes, and a stream idle
/// for that long measures one rate wrong, once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamPath {
    /// The window chosen last outside drains; 0 before the first.
    base: u32,
    /// Where the current rate measurement began: when, and the bytes consumed then (their
    /// low 32 bits).
    mark: Option<(u32, u32)>,
    /// When the latest grant was made.
    last_grant: Option<u32>,
    /// A rate was measured over a round trip.
    measured: bool,
    /// A drain held the window down since the rate measurement began.
    drained: bool,
    /// The round trip `base` was sized for, in microseconds.
    base_rtt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

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
        p.data_received(id, 1000, 2, t0 + 5 * MS);
        p.data_received(StreamId::new(3), 5000, 2, t0 + 6 * MS);
        assert_eq!(
            p.round_trip(),
            None,
            "not past the limit, or another stream"
        );
        p.data_received(id, 1001, 2, t0 + 40 * MS);
        assert_eq!(p.round_trip(), Some(40 * MS));
        // Answered: later data is no sample.
        p.data_received(id, 9000, 2, t0 + 90 * MS);
        assert_eq!(p.round_trip(), Some(40 * MS));
    }

    /// A stream that consumes `rate` bytes per second from `start`, granted at the instants
    /// `at` (after `start`); returns its windows.
    fn grants(
        p: &mut PathEstimate,
        s: &mut StreamPath,
        start: Instant,
        rate: f64,
        window: u32,
        at: &[Duration],
    ) -> Vec<u32> {
        let mut window = window;
        let mut before = (rate * at[0].as_secs_f64()) as u64;
        at.iter()
            .map(|&t| {
                let consumed = (rate * t.as_secs_f64()) as u64;
                let since = consumed - before;
                before = consumed;
                window = p.window(s, (consumed, since), window, 1, start + t);
                window
            })
            .collect()
    }

    fn every(step: Duration, from: Duration, to: Duration) -> Vec<Duration> {
        let mut v = Vec::new();
        let mut t = from;
        while t <= to {
            v.push(t);
            t += step;
        }
        v
    }

    /// What a stream delivering `rate` needs over a path of `rtt`, once settled.
    fn need(rate: f64, rtt: Duration) -> u32 {
        let mut w = 1.0;
        for _ in 0..50 {
            w = sized(rate, rtt, w, 1);
        }
        w as u32
    }

    /// A probe of stream 1 sent at `at` and answered `rtt` later, `sharers` streams busy.
    fn probe_with(p: &mut PathEstimate, sharers: usize, at: Instant, rtt: Duration) {
        let id = StreamId::new(1);
        p.update_sent(id, 0, at);
        p.data_received(id, 1, sharers, at + rtt);
    }

    #[test]
    fn a_drain_measures_the_path_afresh() {
        let t0 = origin();
        let mut p = PathEstimate::default();
        let probe = |p: &mut PathEstimate, at, rtt| probe_with(p, 1, at, rtt);
        // The first samples waited behind a queue.
        probe(&mut p, t0, 160 * MS);
        probe(&mut p, t0 + 200 * MS, 190 * MS);
        assert_eq!(p.round_trip(), Some(160 * MS), "queues only add");
        // 10 MB/s with a queue showing (the latest round trip is longer than the least): the
        // window comes down to what 160 ms need.
        let mut s = StreamPath::default();
        let w = grants(
            &mut p,
            &mut s,
            t0,
            10e6,
            2_200_000,
            &every(20 * MS, 400 * MS, S),
        );
        let full = *w.last().unwrap();
        assert!(full.abs_diff(need(10e6, 160 * MS)) < 5_000, "{w:?}");
        // The first drain (one stream busy: DRAIN_EVERY after the first sample): 0.6 of the
        // window before it, whatever the rate meanwhile...
        let drain_at = t0 + 160 * MS + DRAIN_EVERY;
        let drained = (f64::from(full) * DRAIN_SHARE) as u32;
        assert_eq!(p.window(&mut s, (0, 0), full, 1, drain_at), drained);
        // ... a probe sent before the drain settled does not end it (its sample counts, and
        // the window is scaled to it)...
        probe(&mut p, drain_at + 10 * MS, 120 * MS);
        assert_eq!(p.round_trip(), Some(120 * MS));
        let scaled = (f64::from(full) * 120.0 / 160.0 * DRAIN_SHARE) as u32;
        assert!(
            p.window(&mut s, (0, 0), drained, 1, drain_at + 60 * MS)
                .abs_diff(scaled)
                <= 1
        );
        // ... one sent after it does, and its sample is the estimate.
        probe(&mut p, drain_at + 100 * MS, 100 * MS);
        assert_eq!(p.round_trip(), Some(100 * MS));
        // Back to the window before the drain, scaled to the shorter round trip (a quarter
        // above the drain's at most per grant).
        let after = drain_at + 300 * MS;
        let w2 = (f64::from(full) * 100.0 / 160.0) as u32;
        let step = p.window(&mut s, (0, 0), scaled, 1, after);
        assert_eq!(step, (f64::from(scaled) * MAX_GROWTH) as u32);
        let w1 = p.window(&mut s, (0, 0), step, 1, after);
        assert!(w1.abs_diff(w2) <= 1, "{w1} {w2}");
        // The estimate fell much: the queue may have stood since the start. The next drain
        // comes a second later and goes deep, to half the share.
        let next = drain_at + 200 * MS + FIRST_DRAIN_AFTER;
        let deep = p.window(&mut s, (0, 0), full, 1, next);
        assert!(
            deep.abs_diff((f64::from(w1) * DRAIN_SHARE / 2.0) as u32) <= 1,
            "{deep}"
        );
        // One that gets no answer ends at its deadline.
        let late = next + 500 * MS;
        assert_eq!(p.window(&mut s, (0, 0), w1, 1, late), w1);
    }

    #[test]
    fn a_stream_left_alone_gets_the_whole_path_at_once() {
        let t0 = origin();
        let id = StreamId::new(1);
        let mut p = PathEstimate::default();
        p.update_sent(id, 0, t0);
        p.data_received(id, 1, 1, t0 + 40 * MS);
        // Eight streams share 12.5 MB/s; this one delivers its eighth, granted every 5 ms.
        let mut s = StreamPath::default();
        let (mut window, mut consumed) = (100_000, 0u64);
        let mut at = t0 + 40 * MS;
        for _ in 0..40 {
            at += 5 * MS;
            p.consumed(62_500);
            consumed += 62_500 / 8;
            window = p.window(&mut s, (consumed, 62_500 / 8), window, 8, at);
        }
        let shared = window;
        assert!(shared < need(12.5e6 / 4.0, 40 * MS), "{shared}");
        // The others ended: its next grants open the whole path (a quarter more at a grant).
        for _ in 0..8 {
            at += MS;
            p.consumed(12_500);
            consumed += 12_500;
            window = p.window(&mut s, (consumed, 12_500), window, 1, at);
        }
        assert!(window >= need(12.5e6, 40 * MS), "{shared} then {window}");
    }

    #[test]
    fn a_drain_that_finds_the_path_longer_is_confirmed_by_a_deep_one() {
        let t0 = origin();
        let mut p = PathEstimate::default();
        let probe = |p: &mut PathEstimate, at, rtt| probe_with(p, 2, at, rtt);
        // Several streams busy at the first sample: the first drain comes a second later.
        probe(&mut p, t0, 40 * MS);
        let mut s = StreamPath::default();
        let window = 600_000;
        let drain_at = t0 + 40 * MS + FIRST_DRAIN_AFTER;
        let drained = p.window(&mut s, (0, 0), window, 2, drain_at);
        assert!(drained < window);
        // Its samples wait behind a queue that did not leave (or the path got longer): it
        // runs to its deadline, four round trips, and the estimate stays.
        probe(&mut p, drain_at + 30 * MS, 90 * MS);
        probe(&mut p, drain_at + 120 * MS, 70 * MS);
        assert!(p.window(&mut s, (0, 0), drained, 2, drain_at + 150 * MS) < window);
        let ended = drain_at + 4 * 40 * MS;
        p.window(&mut s, (0, 0), drained, 2, ended);
        assert_eq!(p.round_trip(), Some(40 * MS), "unconfirmed");
        // A deep drain follows a second later, to half the drain's share; it finds the path
        // longer too, and the estimate follows it.
        let deep_at = ended + FIRST_DRAIN_AFTER;
        let deep = (f64::from(window) * DRAIN_SHARE / 2.0) as u32;
        assert_eq!(p.window(&mut s, (0, 0), window, 2, deep_at), deep);
        probe(&mut p, deep_at + 30 * MS, 65 * MS);
        p.window(&mut s, (0, 0), deep, 2, deep_at + 4 * 40 * MS);
        assert_eq!(p.round_trip(), Some(65 * MS), "confirmed by the deep drain");
        // A drain whose sample is as short as the estimate ends at once with it; a little
        // longer (jitter) leaves the estimate as it was.
        let mut q = PathEstimate::default();
        probe(&mut q, t0, 40 * MS);
        let at = t0 + 40 * MS + FIRST_DRAIN_AFTER;
        let mut s = StreamPath::default();
        q.window(&mut s, (0, 0), window, 2, at);
        probe(&mut q, at + 30 * MS, 43 * MS);
        probe(&mut q, at + 80 * MS, 41 * MS);
        assert!(q.drain.is_some(), "not shorter yet");
        q.window(&mut s, (0, 0), window, 2, at + 4 * 40 * MS);
        assert_eq!(q.round_trip(), Some(40 * MS), "within the jitter");
        assert!(!q.deep);
        probe(&mut q, at + DRAIN_EVERY + 10 * MS, 39 * MS);
        q.window(&mut s, (0, 0), window, 2, at + 4 * 40 * MS + DRAIN_EVERY);
        probe(&mut q, at + 4 * 40 * MS + DRAIN_EVERY + 30 * MS, 38 * MS);
        assert!(
            q.drain.is_none(),
            "a sample no longer than the estimate ends a drain"
        );
        assert_eq!(q.round_trip(), Some(38 * MS));
    }

    #[test]
    fn a_stale_probe_gives_way_to_another_stream() {
        let t0 = origin();
        let (a, b) = (StreamId::new(1), StreamId::new(3));
        let mut p = PathEstimate::default();
        p.update_sent(a, 10, t0);
        p.update_sent(b, 10, t0 + 10 * MS);
        p.data_received(b, 11, 2, t0 + 50 * MS);
        assert_eq!(p.round_trip(), None, "a's probe was still out");
        p.update_sent(b, 20, t0 + 2 * PROBE_STALE);
        p.data_received(b, 21, 2, t0 + 2 * PROBE_STALE + 30 * MS);
        assert_eq!(p.round_trip(), Some(30 * MS));
        p.update_sent(a, 10, t0 + 3 * PROBE_STALE);
        p.stream_ended(a);
        p.update_sent(b, 30, t0 + 3 * PROBE_STALE);
        p.data_received(b, 31, 2, t0 + 3 * PROBE_STALE + 20 * MS);
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
        let mut s = StreamPath::default();
        assert_eq!(
            p.window(&mut s, (0, 0), 1 << 20, 1, t0),
            UNKNOWN_PATH_WINDOW
        );
        assert_eq!(
            p.window(&mut s, (0, 0), 1 << 20, 4, t0),
            UNKNOWN_PATH_WINDOW / 4,
            "shared among the busy streams"
        );
        p.update_sent(id, 0, t0);
        p.data_received(id, 1, 2, t0 + 40 * MS);
        // A queue shows: the latest round trip is 60 ms.
        p.update_sent(id, 10, t0);
        p.data_received(id, 11, 2, t0 + 60 * MS);
        assert_eq!(p.round_trip(), Some(40 * MS));
        // 12.5 MB/s (100 Mbit/s) over 40 ms: 500 kB in flight, granted 1.05 times that, an
        // update interval (a sixteenth) and 4 ms of delivery. A stream that had more comes down a quarter per
        // round trip.
        let mut s = StreamPath::default();
        let w = grants(
            &mut p,
            &mut s,
            t0,
            12.5e6,
            1 << 20,
            &every(10 * MS, 50 * MS, 900 * MS),
        );
        let need_40ms = need(12.5e6, 40 * MS);
        assert!((600_000..630_000).contains(&need_40ms), "{need_40ms}");
        assert_eq!(*w.last().unwrap(), need_40ms, "{w:?}");
        assert!(w.windows(2).all(|p| p[1] >= p[0] * 3 / 4), "{w:?}");
        // A new stream whose first burst (at the bottleneck's rate) wants more than twice its
        // window jumps there.
        let mut new = StreamPath::default();
        let first = p.window(&mut new, (64 * 1024, 0), 256 * 1024, 1, t0 + 300 * MS);
        assert_eq!(first, 256 * 1024);
        let jump = p.window(&mut new, (128 * 1024, 64 * 1024), first, 1, t0 + 305 * MS);
        let burst = 64.0 * 1024.0 / 0.005;
        assert_eq!(jump, sized(burst, 40 * MS, 256.0 * 1024.0, 1) as u32);
        assert!(jump > 2 * first);
        // Never below the minimum, shared among the busy streams.
        let mut slow = StreamPath::default();
        let w = grants(
            &mut p,
            &mut slow,
            t0,
            1000.0,
            300_000,
            &every(10 * MS, 50 * MS, 900 * MS),
        );
        assert_eq!(*w.last().unwrap(), MIN_PATH_WINDOW);
        assert_eq!(
            p.window(&mut slow, (0, 0), 10, 4, t0 + 900 * MS),
            MIN_PATH_WINDOW / 4
        );
        // No queue shows (the latest round trip is the least) and a stream uses all its
        // window lets through: the window holds it back, and grows by half each round trip.
        let mut q = PathEstimate::default();
        q.update_sent(id, 0, t0);
        q.data_received(id, 1, 1, t0 + 40 * MS);
        let mut held = StreamPath::default();
        let window = 400_000;
        let every_rtt: Vec<Duration> = (1..=4u32).map(|k| k * 40 * MS).collect();
        let w = grants(&mut q, &mut held, t0, 400_000.0 / 0.04, window, &every_rtt);
        // (A quarter at a grant at most: grants come every sixteenth of a window.)
        assert!(w[2] >= window * 3 / 2, "{w:?}");
        assert!(w.windows(2).all(|p| p[1] >= p[0]), "{w:?}");
    }
}
