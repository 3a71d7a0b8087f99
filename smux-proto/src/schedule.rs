//! Fair order among streams with data to send.
//!
//! Streams take turns, one frame each (round robin), so a bulk stream cannot starve the
//! others; within a stream, bytes keep their order. Control frames bypass this queue entirely
//! and always go first. (Go orders data by a heap on bytes sent; any fair order is compatible
//! on the wire.)

use std::collections::VecDeque;

use crate::stream_id::StreamId;

/// Streams that have data they may send now, in turn order. A stream appears at most once
/// (the stream's `scheduled` flag guards the push).
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    queue: VecDeque<StreamId>,
}

impl ReadyQueue {
    /// Puts a stream at the back of the line.
    pub(crate) fn push(&mut self, id: StreamId) {
        self.queue.push_back(id);
    }

    /// The stream whose turn it is.
    pub(crate) fn pop(&mut self) -> Option<StreamId> {
        self.queue.pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }
}
