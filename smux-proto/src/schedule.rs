//! Order among streams with data to send.
//!
//! Two lanes. A stream that has little queued when it becomes ready (at most [`LIGHT`] bytes:
//! a request, a keystroke, a reply) joins the *light* lane, which goes first; any other stream
//! joins the *bulk* lane, where streams take turns one frame each (round robin), so a bulk
//! stream cannot starve the others. So an interactive frame waits behind at most the frame
//! being cut when it arrives, not one frame of every busy stream.
//!
//! The light lane cannot starve the bulk lane either: after [`LIGHT_BURST`] bytes in a row from
//! the light lane, one bulk frame goes. Within a stream, bytes keep their order (a stream is in
//! one lane at a time). Control frames bypass both lanes and go first. (Go orders data by a
//! heap on bytes sent; any order is compatible on the wire.)

use std::collections::VecDeque;

use crate::stream_id::StreamId;

/// A stream with at most this many bytes queued when it becomes ready goes in the light lane.
pub(crate) const LIGHT: usize = 4 * 1024;

/// Bytes the light lane may send in a row while bulk streams wait.
pub(crate) const LIGHT_BURST: usize = 64 * 1024;

/// Streams that have data they may send now, in turn order. A stream appears at most once
/// (the stream's `scheduled` flag guards the push).
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    light: VecDeque<StreamId>,
    bulk: VecDeque<StreamId>,
    /// Bytes sent from the light lane since the bulk lane last had a turn.
    light_run: usize,
}

/// Which lane a popped stream came from; report what it sent with [`ReadyQueue::sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Light,
    Bulk,
}

impl ReadyQueue {
    /// Puts a stream with `queued` bytes at the back of its lane.
    pub(crate) fn push(&mut self, id: StreamId, queued: usize) {
        if queued <= LIGHT {
            self.light.push_back(id);
        } else {
            self.bulk.push_back(id);
        }
    }

    /// The stream whose turn it is.
    pub(crate) fn pop(&mut self) -> Option<(StreamId, Lane)> {
        let bulk_due = self.light_run >= LIGHT_BURST && !self.bulk.is_empty();
        if !bulk_due {
            if let Some(id) = self.light.pop_front() {
                return Some((id, Lane::Light));
            }
        }
        self.bulk.pop_front().map(|id| (id, Lane::Bulk))
    }

    /// A stream popped from `lane` sent `n` bytes.
    pub(crate) fn sent(&mut self, lane: Lane, n: usize) {
        match lane {
            Lane::Light => self.light_run += n,
            Lane::Bulk => self.light_run = 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.light.is_empty() && self.bulk.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.light.clear();
        self.bulk.clear();
        self.light_run = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> StreamId {
        StreamId::new(n)
    }

    #[test]
    fn a_light_stream_goes_before_waiting_bulk_streams() {
        let mut q = ReadyQueue::default();
        for n in 1..=8 {
            q.push(id(n), 1 << 20);
        }
        q.push(id(99), 1);
        assert_eq!(q.pop(), Some((id(99), Lane::Light)));
        assert_eq!(q.pop(), Some((id(1), Lane::Bulk)));
    }

    #[test]
    fn bulk_streams_take_turns() {
        let mut q = ReadyQueue::default();
        q.push(id(1), 1 << 20);
        q.push(id(3), 1 << 20);
        let (first, lane) = q.pop().unwrap();
        q.sent(lane, 32 * 1024);
        q.push(first, 1 << 20);
        assert_eq!(q.pop(), Some((id(3), Lane::Bulk)));
        assert_eq!(q.pop(), Some((id(1), Lane::Bulk)));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn the_light_lane_cannot_starve_the_bulk_lane() {
        let mut q = ReadyQueue::default();
        q.push(id(1), 1 << 20);
        let mut light_frames = 0;
        loop {
            q.push(id(3), LIGHT);
            let (popped, lane) = q.pop().unwrap();
            q.sent(lane, LIGHT);
            if lane == Lane::Bulk {
                assert_eq!(popped, id(1));
                break;
            }
            light_frames += 1;
            // id(3) was popped; it is pushed again at the top of the loop.
            assert!(light_frames <= LIGHT_BURST / LIGHT, "bulk never had a turn");
        }
        assert_eq!(light_frames, LIGHT_BURST / LIGHT);
        // After the bulk frame, the light stream still waiting goes first again.
        assert_eq!(q.pop(), Some((id(3), Lane::Light)));
    }
}
