//! Early FINs: FINs sent on a stream the peer just opened, before the peer sent anything on
//! it, which the peer may have missed; and when to send them again.
//!
//! Go's smux (checked against 1.5.16) puts a stream it opens in its table only *after* its SYN
//! is written, and drops whatever arrives for a stream not in it. So a FIN that answers the SYN
//! quickly can arrive first and be lost, and the Go stream then waits forever. That FIN is the
//! one of a refusal (smux has no reset: a stream beyond `max_streams`, or opened during a
//! drain or a close, gets a FIN at once) and of a stream the application dropped without a
//! word. (Data written early is held back instead, see `Config::early_reply_hold`; a FIN alone
//! goes out at once, so that such a stream leaves the stream table at once.)
//!
//! Whatever the peer sends on the stream afterwards (data, a window update) proves that it had
//! registered the stream: the FIN goes again then, which settles the case of a peer that
//! writes first. A peer that only reads gets the FIN again once after [`REPEAT_AFTER`]. A
//! second FIN for a stream the peer knows is harmless: Go, and this crate, ignore a FIN for a
//! finished or unknown stream.
//!
//! The set is bounded: past [`TRACKED`] FINs the oldest is forgotten (it was sent once).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::stream_id::StreamId;

/// When an early FIN the peer said nothing more after goes again.
pub(crate) const REPEAT_AFTER: Duration = Duration::from_secs(1);
/// Most early FINs tracked at once.
pub(crate) const TRACKED: usize = 1024;

/// Streams whose early FIN the peer may have missed, in deadline order.
#[derive(Debug, Default)]
pub(crate) struct EarlyFins {
    pending: VecDeque<(Instant, StreamId)>,
}

impl EarlyFins {
    /// The early FIN of stream `id` was queued at `now`.
    pub(crate) fn sent(&mut self, id: StreamId, now: Instant) {
        if self.pending.len() == TRACKED {
            self.pending.pop_front();
        }
        self.pending.push_back((now + REPEAT_AFTER, id));
    }

    /// Stops tracking stream `id`; returns whether it was tracked. When the peer sends data or
    /// a window update on it, the FIN goes again; when the peer finishes it, nothing does.
    pub(crate) fn take(&mut self, id: StreamId) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        match self.pending.iter().position(|&(_, s)| s == id) {
            Some(at) => {
                self.pending.remove(at);
                true
            }
            None => false,
        }
    }

    /// When the next repeat is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.front().map(|&(at, _)| at)
    }

    /// The streams whose repeat is due at `now`, forgotten as they are returned.
    pub(crate) fn due(&mut self, now: Instant) -> impl Iterator<Item = StreamId> + '_ {
        std::iter::from_fn(move || match self.pending.front() {
            Some(&(at, id)) if at <= now => {
                self.pending.pop_front();
                Some(id)
            }
            _ => None,
        })
    }

    /// Forgets them all (the session is closing: the end of the connection ends the streams).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    /// How many are tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> StreamId {
        StreamId::new(n)
    }

    #[test]
    fn a_fin_repeats_once_on_the_peers_next_frame_or_after_the_delay() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut fins = EarlyFins::default();
        fins.sent(id(1), t0);
        fins.sent(id(3), t0 + Duration::from_millis(10));
        fins.sent(id(5), t0 + Duration::from_millis(20));
        assert_eq!(fins.next_deadline(), Some(t0 + REPEAT_AFTER));

        assert!(fins.take(id(3)));
        assert!(!fins.take(id(3)), "once");
        assert!(!fins.take(id(7)), "never sent");
        assert!(fins.take(id(5)));

        assert_eq!(fins.due(t0).count(), 0);
        assert_eq!(fins.due(t0 + REPEAT_AFTER).collect::<Vec<_>>(), [id(1)]);
        assert_eq!(fins.len(), 0);
        assert_eq!(fins.next_deadline(), None);
    }

    #[test]
    fn the_set_is_bounded() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut fins = EarlyFins::default();
        for n in 0..(TRACKED as u32 * 3) {
            fins.sent(id(2 * n + 1), t0);
        }
        assert_eq!(fins.len(), TRACKED);
        assert!(!fins.take(id(1)), "the oldest were forgotten");
        assert!(fins.take(id(2 * (TRACKED as u32 * 3 - 1) + 1)));
    }
}
