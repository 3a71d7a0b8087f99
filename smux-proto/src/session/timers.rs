//! Time: keepalive and its timeout, the deadlines of single streams (version 2 writes stalled
//! after the peer's FIN, early FINs sent again, early-reply holds), and what the session notes
//! when time passes. `handle_timeout` and `poll_timeout` call into it.

use super::*;
use crate::trace::event;

impl Session {
    // ----------------------------------------------------------------------------------------
    // Keepalive

    /// Queues a NOP when the interval has passed, and fails the session when nothing came
    /// from the peer for the keepalive timeout (not counting time with input paused).
    pub(super) fn keep_alive(&mut self, now: Instant) {
        if now >= self.next_keepalive {
            self.nop_queued = true;
            self.next_keepalive = now + self.config.keep_alive_interval;
        }
        if !self.input_paused && now >= self.last_input + self.config.keep_alive_timeout {
            event!(
                self,
                warn,
                timeout = ?self.config.keep_alive_timeout,
                "keepalive timeout: nothing received from the peer"
            );
            self.fail(Error::KeepAliveTimeout(self.config.keep_alive_timeout));
        }
    }

    // ----------------------------------------------------------------------------------------
    // Per-stream deadlines

    /// Acts on every stream deadline that has come: stalled writes fail, early FINs the peer
    /// said nothing after go once more, holds end.
    pub(super) fn expire_stream_deadlines(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.stall_deadlines.front() {
            if deadline > now {
                break;
            }
            self.stall_deadlines.pop_front();
            self.expire_stall(id, deadline);
        }
        self.control
            .extend(self.early_fins.due(now).map(Control::Fin));
        while let Some(&(deadline, id)) = self.holds.front() {
            if deadline > now {
                break;
            }
            self.holds.pop_front();
            self.release_hold(id);
        }
    }

    /// The earliest stream deadline, if any.
    pub(super) fn next_stream_deadline(&self) -> Option<Instant> {
        let mut next = self.stall_deadlines.front().map(|&(at, _)| at);
        if let Some(at) = self.early_fins.next_deadline() {
            next = min_instant(next, at);
        }
        if let Some(&(at, _)) = self.holds.front() {
            next = min_instant(next, at);
        }
        next
    }

    // ----------------------------------------------------------------------------------------
    // Version 2 stalls after the peer's FIN

    /// A version 2 stream whose peer sent FIN and whose window is shut may never get an UPD (a
    /// Go peer forgets a stream when it closes it). Give it the keepalive timeout.
    pub(super) fn maybe_stall(&mut self, id: StreamId, now: Instant) {
        if self.config.version != Version::V2 {
            return;
        }
        let timeout = if self.config.keep_alive_disabled {
            STALL_TIMEOUT_WITHOUT_KEEPALIVE
        } else {
            self.config.keep_alive_timeout
        };
        if let Some(stream) = self.streams.get_mut(&id) {
            if stream.fin_received
                && stream.send_len() > 0
                && stream
                    .windows
                    .as_ref()
                    .is_some_and(|w| w.send.available() == 0)
                && !matches!(stream.stall, Stall::Stalled(_))
            {
                let deadline = now + timeout;
                event!(
                    self,
                    debug,
                    stream = id.as_u32(),
                    unsent = stream.send_len(),
                    ?timeout,
                    "write stalled: the peer finished the stream and its window is shut"
                );
                if stream.stall == Stall::Clear {
                    self.stall_deadlines.push_back((deadline, id));
                }
                stream.stall = Stall::Stalled(deadline);
            }
        }
    }

    /// The queued stall deadline `deadline` of stream `id` has come.
    pub(super) fn expire_stall(&mut self, id: StreamId, deadline: Instant) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        match stream.stall {
            Stall::Stalled(current) if current == deadline => {}
            Stall::Stalled(later) => {
                // The window opened and the stream stalled again: wait for the new deadline.
                // It is older than the deadlines queued after the stream stalled again, so it
                // goes before them.
                let at = self.stall_deadlines.partition_point(|&(d, _)| d <= later);
                self.stall_deadlines.insert(at, (later, id));
                return;
            }
            Stall::Reopened | Stall::Clear => {
                stream.stall = Stall::Clear;
                return;
            }
        }
        stream.stall = Stall::Clear;
        stream.peer_stopped_reading = true;
        let dropped = stream.discard_send();
        event!(
            self,
            warn,
            stream = id.as_u32(),
            dropped,
            "stalled write failed: no window came from the peer, which finished the stream"
        );
        self.events
            .push_back(Event::StreamWritable { stream_id: id });
        self.release_send_budget(dropped);
        self.fin_if_drained(id);
        self.reap(id);
    }

    /// Notes the time; while input is paused the keepalive timeout restarts from now.
    pub(super) fn observe_time(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        if self.input_paused || !self.wants_read() {
            self.last_input = self.last_input.max(now);
        }
        self.input_paused = !self.wants_read();
    }
}
