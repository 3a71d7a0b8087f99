//! Sending: writes queued by the application, the scheduler that frames them in turn, the
//! control frames that go first, and the send budget's waiters.

use super::*;
use crate::trace::event;

impl Session {
    // ----------------------------------------------------------------------------------------
    // Writing

    pub(super) fn live_stream(&mut self, id: StreamId) -> Result<&mut Stream, WriteError> {
        match self.streams.get_mut(&id) {
            Some(s) if !s.released => Ok(s),
            _ => Err(WriteError::UnknownStream(id)),
        }
    }

    /// The stream, if the session and the stream both accept writes.
    pub(super) fn open_for_writing(&mut self, id: StreamId) -> Result<&mut Stream, WriteError> {
        match &self.state {
            State::Open => {}
            State::Closing => return Err(WriteError::SessionClosed(Error::LocallyClosed)),
            State::Closed(e) => return Err(WriteError::SessionClosed(e.clone())),
        }
        let stream = self.live_stream(id)?;
        if stream.peer_stopped_reading {
            return Err(WriteError::PeerStoppedReading(id));
        }
        if stream.write_half != WriteHalf::Open {
            return Err(WriteError::Finished(id));
        }
        Ok(stream)
    }

    /// Whether stream `id` accepts writes with nothing of its own queued (errors as `write`).
    pub(crate) fn writable(&mut self, id: StreamId) -> Result<bool, WriteError> {
        Ok(self.open_for_writing(id)?.send_len() == 0)
    }

    /// Version 2: what the peer's window lets stream `id` send now.
    pub(crate) fn send_window_available(&self, id: StreamId) -> Option<usize> {
        self.stream_windows(id).map(|(_, w)| w.send.available())
    }

    /// Accounts for a direct write: `accepted` payload bytes in `frames` frames went to the
    /// transport (`written` wire bytes of them already), `rest` finishes the last frame.
    pub(crate) fn record_direct_write(
        &mut self,
        id: StreamId,
        accepted: usize,
        frames: u64,
        written: usize,
        rest: Option<Bytes>,
    ) {
        if let Some(rest) = rest {
            // A failed session sends nothing more.
            if !self.is_closed() {
                self.outbox.push_front(rest);
            }
        }
        self.stats.frames_out += frames;
        self.stats.bytes_out += written as u64;
        let end = self.queued_end();
        if let Some(stream) = self.streams.get_mut(&id) {
            if let Some(windows) = stream.windows.as_deref_mut() {
                windows.send.on_sent(accepted);
            }
            if accepted > 0 {
                stream.output_end = end as u32;
            }
        }
    }

    /// How many of `len` bytes stream `id` may queue now.
    ///
    /// The session budget (`max_send_buffer`) bounds what all streams hold. In version 2, what
    /// a stream queues beyond the window the peer gave it may take only the first half of the
    /// budget: such bytes wait for the peer, which may never grant more, and streams stalled
    /// that way must not starve the others (their bytes within their windows can always use
    /// the other half).
    pub(super) fn write_room(&mut self, id: StreamId, len: usize) -> Result<usize, WriteError> {
        let budget = self.config.max_send_buffer;
        let mut session_room = budget - self.send_buffered;
        let stream_cap = self.config.max_stream_send_buffer;
        let buffered = self.send_buffered;
        let stream = self.open_for_writing(id)?;
        if len == 0 {
            return Ok(0);
        }
        if let Some(windows) = stream.windows.as_deref() {
            let within_window = windows.send.available().saturating_sub(stream.send_len());
            let beyond_window = (budget / 2).saturating_sub(buffered);
            session_room = session_room.min(within_window.max(beyond_window));
        }
        let room = (stream_cap - stream.send_len()).min(session_room);
        if room == 0 {
            let newly_blocked = !stream.write_blocked;
            stream.write_blocked = true;
            // However often a blocked writer retries, it waits in the list once.
            if session_room == 0 && !stream.awaits_send_budget {
                stream.awaits_send_budget = true;
                self.send_waiters.push(id);
            }
            if newly_blocked {
                event!(
                    self,
                    trace,
                    stream = id.as_u32(),
                    reason = if session_room == 0 {
                        "session send buffer full"
                    } else {
                        "stream send buffer full"
                    },
                    "write blocked"
                );
            }
            return Err(WriteError::Blocked);
        }
        Ok(room.min(len))
    }

    pub(super) fn enqueue(&mut self, id: StreamId, data: Bytes) {
        self.send_buffered += data.len();
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.push_send(data);
        }
        self.schedule(id);
    }

    /// Queues the stream for the scheduler if it has data it may send now; a version 2 stream
    /// with data shut out by the window may be stalled instead.
    pub(super) fn schedule(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.send_len() == 0 || stream.held {
            return;
        }
        if stream
            .windows
            .as_ref()
            .is_some_and(|w| w.send.available() == 0)
        {
            let now = self.now;
            self.maybe_stall(id, now);
        } else if !stream.scheduled {
            stream.scheduled = true;
            self.ready.push(id, stream.send_len());
        }
    }

    pub(super) fn finish_stream(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.write_half == WriteHalf::Open {
            stream.write_half = WriteHalf::FinAfterData;
        }
        // Also when finished before: a FIN held back may go now (the stream was released).
        self.fin_if_drained(id);
    }

    /// Queues the FIN of a finished stream once its data is all framed (and, while the
    /// stream's output is held, not before; see `Stream::held`). A held stream dropped without
    /// a word gets its FIN at once, as an early FIN, so it leaves the stream table at once.
    pub(super) fn fin_if_drained(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.write_half != WriteHalf::FinAfterData || stream.send_len() > 0 {
            return;
        }
        if stream.held {
            if !stream.released {
                return;
            }
            stream.held = false;
            if matches!(self.state, State::Open) {
                self.early_fins.sent(id, self.now);
            }
        }
        stream.write_half = WriteHalf::FinQueued;
        self.control.push_back(Control::Fin(id));
    }

    /// Moves control frames, then data frames in the scheduler's order (see `schedule.rs`),
    /// into the transmit queue.
    pub(super) fn fill_outbox(&mut self, target: usize) {
        self.drain_control(target);
        let v2 = self.config.version == Version::V2;
        while self.outbox.len() < target {
            let Some((id, lane)) = self.ready.pop() else {
                break;
            };
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            stream.scheduled = false;
            let mut limit = self.config.max_frame_size.min(stream.send_len());
            if let Some(windows) = stream.windows.as_deref() {
                limit = limit.min(windows.send.available());
            }
            if limit == 0 {
                continue;
            }
            if v2 {
                // The peer must read the room to answer before the data it answers.
                self.grant_reply_room(id, limit);
            }
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            let payload = stream.take_send(limit);
            if let Some(windows) = stream.windows.as_deref_mut() {
                windows.send.on_sent(payload.len());
            }
            self.ready.sent(lane, payload.len());
            self.release_send_budget(payload.len());
            self.stats.frames_out += 1;
            self.outbox.push_data(id, payload);
            let end = self.queued_end();
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.output_end = end as u32;
            }
            self.after_send_progress(id);
            self.fin_if_drained(id);
            self.schedule(id);
            self.reap(id);
        }
        self.drain_control(target);
    }

    /// Moves control frames into the transmit queue while it holds less than `target` bytes
    /// (at most `TRANSMIT_TARGET`); beyond that they wait in `control`, where
    /// `CONTROL_QUEUE_LIMIT` applies (a peer that floods SYNs and reads nothing must not grow
    /// the transmit queue).
    pub(super) fn drain_control(&mut self, target: usize) {
        if self.nop_queued {
            self.nop_queued = false;
            self.control.push_back(Control::Nop);
        }
        while self.outbox.len() < target {
            let Some(control) = self.control.pop_front() else {
                break;
            };
            match control {
                Control::Syn(id) => {
                    self.outbox.push_control(Cmd::Syn, id);
                    let end = self.queued_end();
                    if let Some(stream) = self.streams.get_mut(&id) {
                        stream.syn_pending = false;
                        stream.output_end = end as u32;
                    }
                    self.after_control_framed(id);
                }
                Control::Fin(id) => {
                    self.outbox.push_control(Cmd::Fin, id);
                    let end = self.queued_end();
                    if let Some(stream) = self.streams.get_mut(&id) {
                        stream.fin_framed = true;
                        stream.output_end = end as u32;
                        self.fins_in_outbox.push(id);
                    }
                    self.after_control_framed(id);
                }
                Control::Nop => self.outbox.push_control(Cmd::Nop, StreamId::new(0)),
                Control::Upd(id) => {
                    // Already sent ahead of a PSH (`transmit_update_now`) if no longer owed.
                    if self.streams.get(&id).is_some_and(|s| s.update_queued) {
                        self.transmit_update_now(id);
                    }
                    continue;
                }
            }
            self.stats.frames_out += 1;
        }
    }

    /// Puts the UPD stream `id` owes in the transmit queue now; its entry in `control`, if
    /// any, is skipped when its turn comes.
    pub(super) fn transmit_update_now(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.update_queued = false;
        let Some(windows) = stream.windows.as_deref_mut() else {
            return;
        };
        let (consumed, window) = windows.recv.update_fields();
        if let Some(beyond) = windows.recv.announce() {
            self.path.update_sent(id, beyond, self.now);
        }
        self.outbox.push_update(id, consumed, window);
        self.stats.frames_out += 1;
    }

    /// A SYN or FIN of stream `id` was framed: wake a flusher waiting for it.
    fn after_control_framed(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if stream.flush_wanted && stream.output_framed() {
                stream.flush_wanted = false;
                self.events
                    .push_back(Event::StreamWritable { stream_id: id });
            }
        }
    }

    /// Stream `id` framed some data: wake writers and flushers that wait for room.
    pub(super) fn after_send_progress(&mut self, id: StreamId) {
        let half_stream = self.config.max_stream_send_buffer / 2;
        if let Some(stream) = self.streams.get_mut(&id) {
            let room_again = stream.write_blocked && stream.send_len() <= half_stream;
            let flushed = stream.flush_wanted && stream.output_framed();
            if room_again || flushed {
                stream.write_blocked &= !room_again;
                stream.flush_wanted &= !flushed;
                self.events
                    .push_back(Event::StreamWritable { stream_id: id });
            }
        }
    }

    /// `n` written bytes left the send queues (framed, or dropped): wake writers that wait for
    /// the session budget once half of it is free.
    pub(super) fn release_send_budget(&mut self, n: usize) {
        self.send_buffered -= n;
        if !self.send_waiters.is_empty() && self.send_buffered <= self.config.max_send_buffer / 2 {
            for waiter in std::mem::take(&mut self.send_waiters) {
                if let Some(stream) = self.streams.get_mut(&waiter) {
                    stream.awaits_send_budget = false;
                    if stream.write_blocked {
                        stream.write_blocked = false;
                        self.events
                            .push_back(Event::StreamWritable { stream_id: waiter });
                    }
                }
            }
        }
    }
}
