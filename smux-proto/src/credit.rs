//! Version 2 receive credit: the windows granted to the peer are carved out of one budget,
//! `max_receive_buffer`, instead of being granted beside it.
//!
//! Every stream *reserves* its unread bytes plus what the peer may still send under our latest
//! grant ([`RecvWindow::reserved`]). The session keeps the sum within the budget, with two
//! exceptions the protocol leaves no way around:
//! - a new stream starts with Go's fixed initial window ([`INITIAL_PEER_WINDOW`]); when the budget
//!   cannot cover it, an UPD shrinks it right after the SYN, but the peer may use the initial
//!   window before that UPD reaches it;
//! - every stream may always be granted a small floor ([`FLOOR`]), and a stream being read
//!   Go's default window ([`BUSY_FLOOR`]), so no stream ever starves behind the others, whatever
//!   they hold, and a Go peer's writers wait for us no more than for another Go peer.
//!
//! - a stream's window always covers what we sent on it and have not read back yet, up to
//!   a cap (`max_stream_buffer`, at least the initial window) (see below).
//!
//! So, while the peer respects our windows, unread data never exceeds the budget by more than
//! those, and input never has to pause: window updates from the peer are always read, and a
//! writer waiting for one is never stuck behind our own unread data (the deadlock that pausing
//! input for the budget caused).
//!
//! Auto-tuning: each grant gives the stream a fair share of the budget, the budget divided by the
//! number of streams holding more than the floor, up to `max_stream_buffer`. A stream alone may
//! take the whole budget, many busy streams share it, and when a grant finds the budget short,
//! streams that received nothing for two epochs (an epoch ends each time a budget's worth of
//! data was consumed) are shrunk to the floor and the others to their fair share.
//!
//! Room for replies: a Go peer stops reading its input while its receive buffer is full, in
//! version 2 too. If its streams then hold data their readers will answer (an echo, a proxy,
//! a request/response server) while their writers wait for our window, they wait for ever: the
//! UPDs that would let them go on sit in the input Go no longer reads. So a stream's window
//! never drops below what we sent on it and have not read back, and before a PSH goes out
//! whose bytes it does not cover, an UPD that covers them goes first, on the same connection:
//! whatever Go read of ours, it also read the room to answer it. That room is the one part of
//! the windows that is not carved out of the budget: the peer can only fill it with as many
//! bytes as we sent it, and never more than `reply_cap` per stream.

use std::collections::HashSet;

use crate::stream_id::StreamId;
use crate::window::{RecvWindow, INITIAL_PEER_WINDOW};

/// The window every stream may always be granted, budget or not: what idle streams keep.
pub const FLOOR: u32 = 16 * 1024;

/// The window a stream that is being read is always granted, budget or not: Go's default
/// window. Smaller windows make a Go writer wait for our UPDs more often than between two Go
/// peers, and a Go peer stops reading its input (our UPDs included) while its receive buffer
/// is full: a Go server echoing hundreds of streams then deadlocks where it does not with a
/// Go client.
pub const BUSY_FLOOR: u32 = 64 * 1024;

/// The session's side of receive credit.
#[derive(Debug)]
pub(crate) struct Credit {
    budget: u64,
    /// The widest window one stream is granted.
    cap: u32,
    floor: u32,
    busy_floor: u32,
    /// The most room for replies one stream keeps.
    reply_cap: u32,
    /// Sum of every live stream's [`RecvWindow::reserved`].
    reserved: u64,
    /// Streams whose latest grant is wider than the floor.
    wide: HashSet<StreamId, crate::id_hash::RandomIdState>,
    /// Traffic epoch: advances each time `budget` bytes were consumed.
    epoch: u32,
    consumed_in_epoch: u64,
}

/// What a grant decided.
pub(crate) struct Grant {
    pub(crate) window: u32,
    /// The budget could not give the fair share: others should be shrunk (see `reclaim`).
    pub(crate) short: bool,
    pub(crate) fair: u32,
}

impl Credit {
    pub(crate) fn new(max_receive_buffer: usize, max_stream_buffer: usize) -> Credit {
        let budget = max_receive_buffer as u64;
        let cap = max_stream_buffer.min(max_receive_buffer) as u32;
        Credit {
            budget,
            cap,
            floor: FLOOR.min(cap),
            busy_floor: BUSY_FLOOR.min(cap),
            reply_cap: u32::try_from(max_stream_buffer)
                .unwrap_or(u32::MAX)
                .max(INITIAL_PEER_WINDOW),
            reserved: 0,
            wide: HashSet::default(),
            epoch: 0,
            consumed_in_epoch: 0,
        }
    }

    /// Total reserved by all streams.
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved
    }

    pub(crate) fn epoch(&self) -> u32 {
        self.epoch
    }

    /// A stream was created with Go's initial window. Returns whether the budget cannot cover
    /// it, so the window should be shrunk at once.
    pub(crate) fn opened(&mut self, id: StreamId, window: &RecvWindow) -> bool {
        self.reserved += window.reserved();
        if INITIAL_PEER_WINDOW > self.floor {
            self.wide.insert(id);
        }
        self.reserved > self.budget
    }

    /// Applies a change of one stream's reservation.
    pub(crate) fn adjust(&mut self, delta: i64) {
        self.reserved = self.reserved.checked_add_signed(delta).unwrap_or(0);
    }

    /// `n` bytes were consumed (`reserved` drops by as much).
    pub(crate) fn consumed(&mut self, n: usize) {
        self.adjust(-(n as i64));
        self.consumed_in_epoch += n as u64;
        if self.consumed_in_epoch >= self.budget {
            self.consumed_in_epoch = 0;
            self.epoch = self.epoch.wrapping_add(1);
        }
    }

    /// Whether a stream last received data two or more epochs ago.
    pub(crate) fn is_idle(&self, window: &RecvWindow) -> bool {
        self.epoch.wrapping_sub(window.active_epoch) >= 2
    }

    /// The window stream `window` needs so that the peer can answer the `sent` bytes we sent
    /// on it (everything we have not read back, up to the cap).
    pub(crate) fn reply_room(&self, window: &RecvWindow, sent: u64) -> u32 {
        window.unanswered(sent).min(u64::from(self.reply_cap)) as u32
    }

    /// The window a grant to stream `id` should carry now: its fair share, within what the
    /// budget has left and what the path needs (`path`, see `path.rs`) (never below the
    /// floor; with `busy`, the stream is being read, never below the busy floor), and never
    /// below `replies` (its room for replies).
    pub(crate) fn choose(
        &self,
        id: StreamId,
        window: &RecvWindow,
        busy: bool,
        replies: u32,
        path: u32,
    ) -> Grant {
        let sharers = self.wide.len() + usize::from(!self.wide.contains(&id));
        let fair = (self.budget / sharers as u64).clamp(u64::from(self.floor), u64::from(self.cap));
        let others = self.reserved - window.reserved().min(self.reserved);
        let room = self.budget.saturating_sub(others);
        let floor = if busy { self.busy_floor } else { self.floor };
        let chosen = fair
            .min(room)
            .min(u64::from(path))
            .max(u64::from(floor.max(replies)));
        Grant {
            window: chosen as u32,
            short: room < fair,
            fair: fair as u32,
        }
    }

    /// The widest window one stream is granted.
    pub(crate) fn cap(&self) -> u32 {
        self.cap
    }

    /// How many streams hold windows wider than the floor (the busy ones, about).
    pub(crate) fn sharers(&self) -> usize {
        self.wide.len()
    }

    /// The floor, for streams that only need to be acknowledged.
    pub(crate) fn floor(&self) -> u32 {
        self.floor
    }

    /// Grants `window` to stream `id` and accounts for it.
    pub(crate) fn grant(&mut self, id: StreamId, recv: &mut RecvWindow, window: u32) {
        let delta = recv.grant(window);
        self.adjust(delta);
        if window > self.floor {
            self.wide.insert(id);
        } else {
            self.wide.remove(&id);
        }
    }

    /// Stream `id` will receive nothing more.
    pub(crate) fn closed(&mut self, id: StreamId, recv: &mut RecvWindow) {
        let delta = recv.close();
        self.adjust(delta);
        self.wide.remove(&id);
    }

    /// Stream `id` is forgotten.
    pub(crate) fn removed(&mut self, id: StreamId, recv: &RecvWindow) {
        self.adjust(-(recv.reserved() as i64));
        self.wide.remove(&id);
    }

    /// The streams holding more than the floor, for a reclaim pass.
    pub(crate) fn wide_streams(&self) -> Vec<StreamId> {
        self.wide.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn a_lone_stream_may_take_the_whole_budget_up_to_the_cap() {
        let mut c = Credit::new(4 * MIB, 4 * MIB);
        let id = StreamId::new(1);
        let mut w = RecvWindow::new(0);
        assert!(!c.opened(id, &w));
        let g = c.choose(id, &w, true, 0, u32::MAX);
        assert_eq!(g.window, 4 * MIB as u32);
        assert!(!g.short);
        c.grant(id, &mut w, g.window);
        assert_eq!(c.reserved(), 4 * MIB as u64);
        let capped = Credit::new(4 * MIB, MIB);
        assert_eq!(
            capped
                .choose(id, &RecvWindow::new(0), true, 0, u32::MAX)
                .window,
            MIB as u32
        );
    }

    #[test]
    fn busy_streams_share_the_budget_and_new_ones_beyond_it_are_shrunk() {
        let mut c = Credit::new(4 * MIB, 4 * MIB);
        let mut windows: Vec<(StreamId, RecvWindow)> = Vec::new();
        for i in 0..16u32 {
            let id = StreamId::new(2 * i + 1);
            let w = RecvWindow::new(0);
            assert!(!c.opened(id, &w), "16 initial windows fit in 4 MiB");
            windows.push((id, w));
        }
        let id = StreamId::new(99);
        let w = RecvWindow::new(0);
        assert!(c.opened(id, &w), "the 17th does not");
        let g = c.choose(id, &w, false, 0, u32::MAX);
        assert_eq!(g.window, FLOOR);
        assert!(g.short);
        // Every one granted its share: the sum stays within the budget (plus floors).
        for (id, w) in &mut windows {
            let g = c.choose(*id, w, true, 0, u32::MAX);
            c.grant(*id, w, g.window);
        }
        assert!(c.reserved() <= 4 * MIB as u64 + 17 * u64::from(BUSY_FLOOR));
    }
}
