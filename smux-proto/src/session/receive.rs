//! Receiving: frames from the peer (SYN, FIN, PSH, UPD), reads by the application, and the
//! version 2 receive credit the reads give back (windows granted, room for replies).

use super::*;
use crate::stream::Windows;
use crate::trace::event;

impl Session {
    // ----------------------------------------------------------------------------------------
    // Frame handling

    pub(super) fn handle_frame(&mut self, frame: Frame) -> Result<(), ProtocolViolation> {
        match frame {
            Frame::Syn { stream_id } => self.on_syn(stream_id),
            Frame::Fin { stream_id } => self.on_fin(stream_id),
            Frame::Psh { stream_id, data } => return self.on_data(stream_id, data),
            Frame::Nop { .. } => {}
            Frame::Upd {
                stream_id,
                consumed,
                window,
            } => return self.on_window_update(stream_id, consumed, window),
        }
        Ok(())
    }

    pub(super) fn on_syn(&mut self, id: StreamId) {
        if self.streams.contains_key(&id) {
            return; // Go ignores a SYN for an open stream.
        }
        // A full backlog never gets here: input pauses until the application accepts.
        if !matches!(self.state, State::Open)
            || self.drain.is_some()
            || self.streams.len() >= self.config.max_streams
        {
            event!(
                self,
                info,
                stream = id.as_u32(),
                reason = if self.drain.is_some() {
                    "draining"
                } else if matches!(self.state, State::Open) {
                    "max_streams reached"
                } else {
                    "closing"
                },
                "stream from the peer refused"
            );
            self.stats.streams_refused += 1;
            self.control.push_back(Control::Fin(id));
            if matches!(self.state, State::Open) {
                self.early_fins.sent(id, self.now);
            }
            return;
        }
        self.create_stream(id);
        let hold = self.config.early_reply_hold;
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.unaccepted = true;
            if !hold.is_zero() {
                stream.held = true;
                self.holds.push_back((self.now + hold, id));
            }
        }
        self.backlog.push_back(id);
        event!(
            self,
            debug,
            stream = id.as_u32(),
            "stream opened by the peer"
        );
        self.events.push_back(Event::StreamOpened { stream_id: id });
    }

    /// The peer sent a frame on stream `id`, which the session does not know: if its FIN went
    /// out early (a refusal, a stream dropped without a word), the peer had registered the
    /// stream when it sent the frame, so the FIN sent again cannot be missed (`early_fins`).
    fn repeat_early_fin(&mut self, id: StreamId) {
        if self.early_fins.take(id) {
            event!(self, debug, stream = id.as_u32(), "early FIN sent again");
            self.control.push_back(Control::Fin(id));
        }
    }

    /// The peer has registered stream `id` (it sent something on it), or the hold of its
    /// output ran out: what was written goes out, then the FIN if it was asked for.
    pub(super) fn release_hold(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !std::mem::take(&mut stream.held) {
            return;
        }
        self.schedule(id);
        self.fin_if_drained(id);
        self.reap(id);
    }

    pub(super) fn on_fin(&mut self, id: StreamId) {
        let now = self.now;
        let Some(stream) = self.streams.get_mut(&id) else {
            self.early_fins.take(id); // The peer finished it: it knows the stream is over.
            return;
        };
        if stream.fin_received {
            return;
        }
        stream.fin_received = true;
        event!(
            self,
            debug,
            stream = id.as_u32(),
            "stream finished by the peer"
        );
        if let Some(windows) = stream.windows.as_deref_mut() {
            self.credit.closed(id, &mut windows.recv);
            self.path.stream_ended(id);
        }
        self.notify_readable(id);
        self.release_hold(id);
        self.maybe_stall(id, now);
        self.reap(id);
    }

    pub(super) fn on_data(&mut self, id: StreamId, data: Bytes) -> Result<(), ProtocolViolation> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            // Unknown stream: read and dropped, as Go does.
            self.repeat_early_fin(id);
            return Ok(());
        };
        if stream.fin_received {
            return Ok(()); // Data after FIN: nobody will read it.
        }
        if stream.held {
            self.release_hold(id);
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if let Some(windows) = stream.windows.as_deref_mut() {
            // Beyond every window the peer may have seen, the peer is broken.
            match windows.recv.on_received(data.len()) {
                Ok(delta) => self.credit.adjust(delta as i64),
                Err(beyond) => {
                    return Err(ProtocolViolation::WindowExceeded {
                        stream_id: id,
                        buffered: usize::try_from(beyond.buffered).unwrap_or(usize::MAX),
                        limit: usize::try_from(beyond.allowed).unwrap_or(usize::MAX),
                    })
                }
            }
            windows.recv.active_epoch = self.credit.epoch();
            let received = windows.recv.received();
            let sharers = self.credit.sharers();
            self.path.data_received(id, received, sharers, self.now);
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if stream.released {
            // Nobody will read it; acknowledge it so the peer's writer is not stuck.
            self.acknowledge(id, data.len());
            return Ok(());
        }
        self.recv_buffered += data.len();
        if stream.unaccepted {
            self.backlog_buffered += data.len();
        }
        stream.push_recv(data);
        self.notify_readable(id);
        Ok(())
    }

    pub(super) fn on_window_update(
        &mut self,
        id: StreamId,
        consumed: u32,
        window: u32,
    ) -> Result<(), ProtocolViolation> {
        let Some(stream) = self.streams.get_mut(&id) else {
            self.repeat_early_fin(id);
            return Ok(());
        };
        // Version 1 has no UPD: the decoder refuses it before it gets here.
        let Some(windows) = stream.windows.as_deref_mut() else {
            return Ok(());
        };
        windows.send.on_update(consumed, window).map_err(|e| {
            ProtocolViolation::ConsumedBeyondSent {
                stream_id: id,
                consumed: e.consumed,
                sent: e.sent,
            }
        })?;
        let available = windows.send.available();
        if available > 0 && matches!(stream.stall, Stall::Stalled(_)) {
            stream.stall = Stall::Reopened;
        }
        // A writer refused for want of window (its bytes beyond the window may take only
        // half of the send budget) may find room now.
        if stream.write_blocked && available > stream.send_len() {
            stream.write_blocked = false;
            self.events
                .push_back(Event::StreamWritable { stream_id: id });
        }
        if stream.held {
            self.release_hold(id);
        }
        self.schedule(id);
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Reading and flow control

    pub(super) fn readable_stream(&mut self, id: StreamId) -> Result<&mut Stream, ReadError> {
        match self.streams.get_mut(&id) {
            Some(s) if !s.released => Ok(s),
            _ => Err(ReadError::UnknownStream(id)),
        }
    }

    /// Nothing buffered: end of stream, session error, or wait.
    pub(super) fn read_end(&mut self, id: StreamId) -> Result<(), ReadError> {
        let closed = match &self.state {
            State::Closed(e) => Some(e.clone()),
            _ => None,
        };
        let Some(stream) = self.streams.get_mut(&id) else {
            return Err(ReadError::UnknownStream(id));
        };
        if stream.fin_received {
            return Ok(());
        }
        if let Some(e) = closed {
            return Err(ReadError::SessionClosed(e));
        }
        stream.read_blocked = true;
        Err(ReadError::Blocked)
    }

    /// The application read `n` bytes of stream `id`: give the budget back and, in version 2,
    /// owe the peer an UPD when Go would send one.
    pub(super) fn on_consumed(&mut self, id: StreamId, n: usize) {
        self.recv_buffered -= n;
        if self.streams.get(&id).is_some_and(|s| s.unaccepted) {
            // Read by id before it was accepted (the core allows it).
            self.backlog_buffered -= n;
        }
        self.acknowledge(id, n);
    }

    /// Counts `n` bytes of stream `id` as consumed for the v2 window (read by the application,
    /// or dropped because it released the stream) and owes the peer an UPD when Go would send
    /// one, so the peer's writer is never left waiting on bytes nobody will read.
    pub(super) fn acknowledge(&mut self, id: StreamId, n: usize) {
        if self.config.version != Version::V2 {
            return;
        }
        let closed = self.is_closed();
        let sharers = self.credit.sharers();
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let Some(windows) = stream.windows.as_deref_mut() else {
            return;
        };
        let due = windows.recv.on_consumed(n, sharers);
        self.credit.consumed(n);
        self.path.consumed(n);
        if due && !stream.fin_received && !closed {
            self.grant(id, true);
        }
    }

    /// Creates a stream (ours or the peer's). In version 2 it starts with Go's initial window,
    /// shrunk by an UPD right away (after its SYN, if ours) when the budget cannot cover it.
    pub(super) fn create_stream(&mut self, id: StreamId) {
        let v2 = self.config.version == Version::V2;
        let mut stream = Stream::new(v2, self.credit.epoch());
        // Nothing of it before this point.
        stream.output_end = self.queued_end() as u32;
        let shrink = stream
            .windows
            .as_ref()
            .is_some_and(|w| self.credit.opened(id, &w.recv));
        self.streams.insert(id, Box::new(stream));
        if shrink {
            self.grant(id, false);
        }
    }

    /// Version 2, a stream we opened while others are busy: an UPD right after the SYN narrows
    /// its initial window (Go's fixed 256 KiB) to a share of it, before the peer writes. Each
    /// new stream could otherwise have the peer send 256 KiB at once: a handful opened
    /// together queue megabytes on a slow path, and every round trip measured behind them
    /// (see `path.rs`) is that much too long. Its window grows with what it delivers.
    pub(super) fn narrow_initial_window(&mut self, id: StreamId) {
        let others = self.credit.sharers().saturating_sub(1);
        if self.config.version != Version::V2 || others == 0 {
            return;
        }
        let share = crate::window::INITIAL_PEER_WINDOW / (others as u32 + 1);
        if share >= self.credit.cap() {
            // Windows are capped below the share anyway (Go's 64 KiB, say): the first read's
            // UPD brings the window down, as Go's own does.
            return;
        }
        let window = share.max(self.credit.floor());
        if self
            .streams
            .get(&id)
            .and_then(|s| s.windows.as_ref())
            .is_some_and(|w| w.recv.window() > window)
        {
            self.set_window(id, window);
        }
    }

    /// Version 2: grants stream `id` a new window (its fair share of the receive budget, or
    /// the floor once released) and owes the peer an UPD. With `reclaim` (the stream is being
    /// read), when the budget falls short of the fair share, first shrinks the streams holding
    /// more than theirs.
    pub(super) fn grant(&mut self, id: StreamId, reclaim: bool) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        // Grants while reading (`reclaim`) are for a busy stream; at creation it is idle.
        let replies = self.reply_room(stream, 0);
        let path = self.path_window(id);
        let Some((stream, windows)) = self.stream_windows(id) else {
            return;
        };
        let mut grant = self
            .credit
            .choose(id, &windows.recv, reclaim, replies, path);
        if grant.short && reclaim && !stream.released {
            self.reclaim(id, grant.fair);
            let Some((_, windows)) = self.stream_windows(id) else {
                return;
            };
            grant = self.credit.choose(id, &windows.recv, true, replies, path);
        }
        let released = self.streams.get(&id).is_some_and(|s| s.released);
        let window = if released {
            self.credit.floor()
        } else {
            grant.window
        };
        self.set_window(id, window);
    }

    /// The window the path needs for stream `id`, from what it consumed since its previous
    /// grant (see `path.rs`).
    fn path_window(&mut self, id: StreamId) -> u32 {
        let sharers = self.credit.sharers();
        let Some(windows) = self
            .streams
            .get_mut(&id)
            .and_then(|s| s.windows.as_deref_mut())
        else {
            return u32::MAX;
        };
        let window = &mut windows.recv;
        let consumed = (window.consumed(), window.consumed_since_grant());
        let current = window.window();
        self.path
            .window(&mut window.path, consumed, current, sharers, self.now)
    }

    /// Grants `window` to stream `id` and owes the peer an UPD carrying it (one, however many
    /// grants come before it goes out).
    pub(super) fn set_window(&mut self, id: StreamId, window: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let Some(windows) = stream.windows.as_deref_mut() else {
            return;
        };
        self.credit.grant(id, &mut windows.recv, window);
        if !stream.update_queued {
            stream.update_queued = true;
            self.control.push_back(Control::Upd(id));
        }
    }

    /// Shrinks every other stream holding more than `fair` to it, and idle ones to the floor.
    pub(super) fn reclaim(&mut self, except: StreamId, fair: u32) {
        for id in self.credit.wide_streams() {
            if id == except {
                continue;
            }
            let Some((stream, windows)) = self.stream_windows(id) else {
                continue;
            };
            let target = if self.credit.is_idle(&windows.recv) {
                self.credit.floor()
            } else {
                fair
            };
            let window = target.max(self.reply_room(stream, 0));
            if window >= windows.recv.window() {
                continue;
            }
            self.set_window(id, window);
        }
    }

    /// Version 2: the window `stream` needs so that the peer can answer everything we sent on
    /// it, and `upcoming` bytes more, that we have not read back (none once it will receive
    /// nothing more). See "Room for replies" in `credit.rs`.
    pub(super) fn reply_room(&self, stream: &Stream, upcoming: usize) -> u32 {
        let Some(windows) = stream.windows.as_deref() else {
            return 0;
        };
        if stream.fin_received || stream.released {
            return 0;
        }
        let sent = windows.send.total() + upcoming as u64;
        self.credit.reply_room(&windows.recv, sent)
    }

    /// Stream `id` and its windows, if it exists and the session is version 2.
    pub(super) fn stream_windows(&self, id: StreamId) -> Option<(&Stream, &Windows)> {
        let stream = self.streams.get(&id)?;
        Some((stream, stream.windows.as_deref()?))
    }

    /// Version 2: whether the window the peer knows of stream `id` lacks room to answer what
    /// we sent on it and `upcoming` bytes more (up to the cap).
    pub(crate) fn lacks_reply_room(&self, id: StreamId, upcoming: usize) -> bool {
        let Some((stream, windows)) = self.stream_windows(id) else {
            return false;
        };
        let needed = self.reply_room(stream, upcoming);
        let window = &windows.recv;
        window.granted() < window.consumed() + u64::from(needed)
    }

    /// Version 2, before `upcoming` bytes of stream `id` (part of its queue) are framed: when
    /// the window the peer knows cannot take its answer to them, grants one that can, with
    /// room for the rest of the queue too (so a busy stream needs few of these), and puts the
    /// UPD in the transmit queue now, ahead of the data.
    pub(super) fn grant_reply_room(&mut self, id: StreamId, upcoming: usize) {
        if !self.lacks_reply_room(id, upcoming) {
            return;
        }
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        let ahead = self.reply_room(stream, stream.send_len());
        let path = self.path_window(id);
        let Some((_, windows)) = self.stream_windows(id) else {
            return;
        };
        let chosen = self
            .credit
            .choose(id, &windows.recv, true, ahead, path)
            .window;
        self.set_window(id, chosen);
        self.transmit_update_now(id);
    }

    pub(super) fn notify_readable(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if stream.read_blocked {
                stream.read_blocked = false;
                self.events
                    .push_back(Event::StreamReadable { stream_id: id });
            }
        }
    }
}
