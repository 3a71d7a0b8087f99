//! Lifetimes: streams forgotten once both halves are done, the session's graceful close and
//! its failure.

use super::*;

impl Session {
    // ----------------------------------------------------------------------------------------
    // Lifetimes

    /// Forgets a released stream once nothing of it is left to send.
    pub(super) fn reap(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get(&id) {
            if stream.released
                && stream.write_half == WriteHalf::FinQueued
                && stream.send_len() == 0
            {
                let stream = self.streams.remove(&id);
                if let (Some(stream), Version::V2) = (stream, self.config.version) {
                    self.credit.removed(id, &stream.recv_window);
                }
            }
        }
    }

    pub(super) fn check_close_complete(&mut self) {
        if !matches!(self.state, State::Closing)
            || !self.outbox.is_empty()
            || !self.control.is_empty()
        {
            return;
        }
        let all_finished = self
            .streams
            .values()
            .all(|s| s.write_half == WriteHalf::FinQueued && s.send_len() == 0);
        if all_finished {
            self.state = State::Closed(Error::LocallyClosed);
            self.events.push_back(Event::Closed(Error::LocallyClosed));
        }
    }

    /// Ends the session with `error` unless it already ended; returns the error in force.
    pub(super) fn fail(&mut self, error: Error) -> Error {
        if let State::Closed(existing) = &self.state {
            return existing.clone();
        }
        self.state = State::Closed(error.clone());
        self.outbox.clear();
        self.control.clear();
        self.nop_queued = false;
        self.ready.clear();
        self.send_waiters.clear();
        self.stall_deadlines.clear();
        self.fins_in_outbox.clear();
        for stream in self.streams.values_mut() {
            stream.discard_send();
        }
        self.send_buffered = 0;
        self.events.push_back(Event::Closed(error.clone()));
        error
    }

    /// Entries in the list of writers waiting for send budget (for tests).
    #[cfg(test)]
    pub(crate) fn send_waiter_count(&self) -> usize {
        self.send_waiters.len()
    }

    /// Entries in the queue of stall deadlines (for tests).
    #[cfg(test)]
    pub(crate) fn stall_queue_len(&self) -> usize {
        self.stall_deadlines.len()
    }

    #[cfg(test)]
    pub(crate) fn set_last_stream_id(&mut self, last: u32) {
        self.ids = StreamIdAllocator::starting_after(self.side, last);
    }
}
