//! Refused streams whose FIN the peer may have missed, and when to send it again.
//!
//! smux has no reset: a stream the session refuses (beyond `max_streams`, during a drain or a
//! close) gets a FIN at once. Go's smux (checked against 1.5.16) registers a stream it opens
//! only *after* its SYN is written, and drops a FIN for a stream it does not know. So a FIN
//! that answers the SYN quickly can arrive first and be lost, and the Go stream then waits
//! forever. Whatever the peer sends on the stream afterwards (data, a window update) proves
//! the stream registered: the FIN goes again then, which settles the case of a peer that
//! writes first. A peer that only reads gets the FIN again once after
//! [`REPEAT_AFTER`]. A second FIN for a stream the peer knows is harmless: Go, and this
//! crate, ignore a FIN for a finished or unknown stream.
//!
//! The set is bounded: past [`TRACKED`] refusals the oldest is forgotten (it got its first FIN).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::stream_id::StreamId;

/// When a refused stream the peer said nothing more on gets its FIN again.
pub(crate) const REPEAT_AFTER: Duration = Duration::from_secs(1);
/// Most refused streams tracked at once.
pub(crate) const TRACKED: usize = 1024;

/// Refused streams waiting for the proof that the peer saw their FIN, in deadline order.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    pending: VecDeque<(Instant, StreamId)>,
}

impl Refusals {
    /// Stream `id` was refused at `now` (its first FIN is queued).
    pub(crate) fn refused(&mut self, id: StreamId, now: Instant) {
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

    /// The refused streams whose repeat is due at `now`, forgotten as they are returned.
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
    fn a_refusal_repeats_once_on_the_peers_next_frame_or_after_the_delay() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut r = Refusals::default();
        r.refused(id(1), t0);
        r.refused(id(3), t0 + Duration::from_millis(10));
        r.refused(id(5), t0 + Duration::from_millis(20));
        assert_eq!(r.next_deadline(), Some(t0 + REPEAT_AFTER));

        assert!(r.take(id(3)));
        assert!(!r.take(id(3)), "once");
        assert!(!r.take(id(7)), "never refused");
        assert!(r.take(id(5)));

        assert_eq!(r.due(t0).count(), 0);
        assert_eq!(r.due(t0 + REPEAT_AFTER).collect::<Vec<_>>(), [id(1)]);
        assert_eq!(r.len(), 0);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn the_set_is_bounded() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut r = Refusals::default();
        for n in 0..(TRACKED as u32 * 3) {
            r.refused(id(2 * n + 1), t0);
        }
        assert_eq!(r.len(), TRACKED);
        assert!(!r.take(id(1)), "the oldest were forgotten");
        assert!(r.take(id(2 * (TRACKED as u32 * 3 - 1) + 1)));
    }
}
