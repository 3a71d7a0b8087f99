//! Lifetimes: streams forgotten once both halves are done, the session's graceful close and
//! its failure.

use super::*;
use crate::trace::event;

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
                event!(self, debug, stream = id.as_u32(), "stream closed");
                if let Some(windows) = stream.as_ref().and_then(|s| s.windows.as_deref()) {
                    self.credit.removed(id, &windows.recv);
                }
                self.check_drain();
            }
        }
    }

    /// Starts a drain: the graceful shutdown of a server that stops taking work.
    ///
    /// - Streams the peer opens from now on are refused: each gets a FIN at once (smux has
    ///   no reset), so the peer reads its end right away and what it writes is discarded,
    ///   as for any stream beyond [`Config::max_streams`]. They count in
    ///   [`Stats::streams_refused`](crate::Stats::streams_refused). Go's smux registers a
    ///   stream it opens only after writing its SYN and ignores a FIN for a stream it does
    ///   not know, so it can miss that FIN: the session sends it once more when the peer
    ///   next sends data or a window update on the stream, or else after a second.
    /// - [`open_stream`](Self::open_stream) fails with [`OpenError::Draining`].
    /// - Streams already open, and those waiting in the accept backlog, go on as usual.
    /// - Once no stream is left (the application released every one, with its data and FIN
    ///   framed), the session [`close`](Self::close)s. At
    ///   `deadline`, if one is given, it closes with whatever streams are left: each is
    ///   finished after the data written to it.
    ///
    /// Draining again moves the deadline; a closing or closed session ignores it.
    pub fn drain(&mut self, deadline: Option<Instant>) {
        if !matches!(self.state, State::Open) {
            return;
        }
        event!(
            self,
            info,
            streams = self.streams.len(),
            ?deadline,
            "draining"
        );
        self.drain = Some(Drain { deadline });
        self.check_drain();
    }

    /// True once [`drain`](Self::drain) was called (also after the drain ended in a close).
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Closes a draining session once no stream is left or its deadline has come.
    pub(super) fn check_drain(&mut self) {
        let Some(drain) = self.drain else { return };
        if !matches!(self.state, State::Open) {
            return;
        }
        let late = drain.deadline.is_some_and(|at| self.now >= at);
        if self.streams.is_empty() || late {
            self.close();
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
            event!(self, debug, "closed: everything handed to the transport");
            self.state = State::Closed(Error::LocallyClosed);
            self.events.push_back(Event::Closed(Error::LocallyClosed));
        }
    }

    /// Ends the session with `error` unless it already ended; returns the error in force.
    pub(super) fn fail(&mut self, error: Error) -> Error {
        if let State::Closed(existing) = &self.state {
            return existing.clone();
        }
        match &error {
            Error::Protocol(_) => {
                event!(self, warn, %error, "protocol violation: session ended");
            }
            Error::LocallyClosed | Error::PeerClosed => {
                event!(self, debug, %error, "session ended");
            }
            _ => event!(self, info, %error, "session ended"),
        }
        self.state = State::Closed(error.clone());
        self.outbox.clear();
        self.control.clear();
        self.nop_queued = false;
        self.ready.clear();
        self.send_waiters.clear();
        self.stall_deadlines.clear();
        self.fins_in_outbox.clear();
        self.early_fins.clear();
        self.holds.clear();
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
