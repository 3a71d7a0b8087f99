//! Version 2 per-stream flow control, computed exactly as Go smux does.
//!
//! Sender side ([`SendWindow`]): `inflight = sent - peer_consumed` in wrapping `u32` arithmetic,
//! read as `i32`; the sender may have `peer_window - inflight` more bytes in flight. Before the
//! first UPD the peer's window is assumed to be [`INITIAL_PEER_WINDOW`].
//!
//! Receiver side ([`RecvWindow`]): after a read, send UPD(consumed = total read) when at least
//! [`update_interval`] bytes were read since the last UPD (a sixteenth of the window; Go waits
//! for half), and after the very first read. The window each UPD carries is chosen by the
//! session's [`Credit`](crate::credit::Credit), within what the path needs (`path.rs`).

/// The window assumed for the peer before its first UPD arrives (Go's `initialPeerWindow`).
pub const INITIAL_PEER_WINDOW: u32 = 262_144;

/// What a stream may still send under the peer's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendWindow {
    /// Bytes of the stream framed for sending so far; Go's wrapping `numWritten` is its low
    /// 32 bits.
    sent: u64,
    /// `consumed` of the latest UPD (Go's `peerConsumed`).
    peer_consumed: u32,
    /// `window` of the latest UPD (Go's `peerWindow`).
    peer_window: u32,
}

/// An UPD claimed the peer read bytes that were never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConsumedBeyondSent {
    pub(crate) consumed: u32,
    pub(crate) sent: u32,
}

impl SendWindow {
    pub(crate) fn new() -> Self {
        SendWindow {
            sent: 0,
            peer_consumed: 0,
            peer_window: INITIAL_PEER_WINDOW,
        }
    }

    /// Bytes framed for sending since the stream began.
    pub(crate) fn total(&self) -> u64 {
        self.sent
    }

    /// Go's `numWritten`.
    fn num_written(&self) -> u32 {
        self.sent as u32
    }

    /// Bytes sent and not yet reported consumed by the peer.
    pub(crate) fn inflight(&self) -> i32 {
        self.num_written().wrapping_sub(self.peer_consumed) as i32
    }

    /// How many more bytes may be sent now.
    pub(crate) fn available(&self) -> usize {
        let win = i64::from(self.peer_window as i32) - i64::from(self.inflight());
        usize::try_from(win).unwrap_or(0)
    }

    /// Records `n` bytes framed for sending; `n` never exceeds [`available`](Self::available).
    pub(crate) fn on_sent(&mut self, n: usize) {
        debug_assert!(n <= self.available());
        self.sent += n as u64;
    }

    /// Applies an UPD. Rejects (changing nothing) a `consumed` beyond what was sent, which Go
    /// reports as `ErrConsumed`.
    pub(crate) fn on_update(
        &mut self,
        consumed: u32,
        window: u32,
    ) -> Result<(), ConsumedBeyondSent> {
        if (self.num_written().wrapping_sub(consumed) as i32) < 0 {
            return Err(ConsumedBeyondSent {
                consumed,
                sent: self.num_written(),
            });
        }
        self.peer_consumed = consumed;
        self.peer_window = window;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn assert_invariants(&self) {
        assert!(self.inflight() >= 0, "inflight negative: {self:?}");
        assert!(
            self.available() <= (self.peer_window as i32).max(0) as usize,
            "available beyond window: {self:?}"
        );
    }
}

/// Bytes consumed between two UPDs of a stream whose window is `window`, while `sharers`
/// streams are busy: a sixteenth of the window, but not less than [`INTERVAL_FLOOR`] shared
/// among the busy streams (nor more than half, Go's interval, for small windows).
///
/// The sender learns of consumed bytes one UPD late: to keep the link busy, a window must
/// exceed the bandwidth-delay product by one interval. With Go's half-window interval that is
/// twice the product, and whatever a window holds beyond the product waits in a queue; a
/// sixteenth needs 16/15 of it, for an UPD of 12 bytes per sixteenth of a window. The floor keeps UPDs few where windows are small (on loopback);
/// shared, it adds [`INTERVAL_FLOOR`] to the queue however many streams are busy, not that
/// much per stream (eight downloads would otherwise queue 256 KiB, 20 ms at 100 Mbit/s).
pub(crate) fn update_interval(window: u32, sharers: usize) -> u32 {
    let floor = (INTERVAL_FLOOR / sharers.max(1) as u32).max(MIN_INTERVAL_FLOOR);
    (window / 16).max(floor).min(window / 2)
}

/// The update interval's floor for one busy stream (see [`update_interval`]).
const INTERVAL_FLOOR: u32 = 32 * 1024;

/// The update interval's floor however many streams are busy: an UPD is 12 bytes on the wire,
/// a third of a per cent of this.
const MIN_INTERVAL_FLOOR: u32 = 4 * 1024;

/// Version 2 receive side of one stream: what arrived, what the application consumed, and the
/// window granted to the peer. Counters are `u64` from the stream's start; the wire carries
/// them as Go's wrapping `u32`.
///
/// Go's sender may send up to `consumed + window` of the latest UPD it has seen (before the
/// first one, [`INITIAL_PEER_WINDOW`]). Since it stores the two fields one after the other, a
/// writer may pair a new consumed count with the previous window; `limit` allows for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecvWindow {
    received: u64,
    consumed: u64,
    /// The consumed count of the latest grant (Go: the UPD's `consumed`).
    acked: u64,
    /// The window of the latest grant (Go: the UPD's `window`).
    window: u32,
    /// The session's traffic epoch when data last arrived (see `Credit`).
    pub(crate) active_epoch: u32,
    /// The furthest the peer may legitimately send, over every grant it may have seen.
    limit: u64,
    /// No more data will be read from the peer (FIN received): nothing more is promised.
    closed: bool,
    /// The limit (`granted()`) the latest UPD framed carried: what the peer knows, once it
    /// arrives.
    announced: u64,
    /// What path sizing keeps for the stream (see `path.rs`).
    pub(crate) path: crate::path::StreamPath,
}

/// Data beyond every window the peer may have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BeyondWindow {
    /// Unread bytes the stream would hold.
    pub(crate) buffered: u64,
    /// The most the peer may have in flight unread.
    pub(crate) allowed: u64,
}

impl RecvWindow {
    pub(crate) fn new(epoch: u32) -> Self {
        RecvWindow {
            received: 0,
            consumed: 0,
            acked: 0,
            window: INITIAL_PEER_WINDOW,
            active_epoch: epoch,
            limit: u64::from(INITIAL_PEER_WINDOW),
            closed: false,
            announced: u64::from(INITIAL_PEER_WINDOW),
            path: crate::path::StreamPath::default(),
        }
    }

    /// Bytes received since the stream began.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Bytes consumed since the latest grant.
    pub(crate) fn consumed_since_grant(&self) -> u64 {
        self.consumed - self.acked
    }

    /// An UPD carrying the latest grant is framed: returns the furthest the peer may have
    /// known it could send before, if the UPD lets it send further. (After a shrink, the peer
    /// may still send as far as an earlier UPD let it.)
    pub(crate) fn announce(&mut self) -> Option<u64> {
        let before = self.announced;
        self.announced = before.max(self.granted());
        (self.announced > before).then_some(before)
    }

    /// Where we asked the peer to stop.
    pub(crate) fn granted(&self) -> u64 {
        self.acked + u64::from(self.window)
    }

    /// Bytes the application consumed (read, or dropped with the stream).
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Of the `sent` bytes we sent on this stream, how many we have not read back yet: the
    /// most a peer that replies to what it reads (an echo, a proxy, a request/response
    /// server) may owe us.
    pub(crate) fn unanswered(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.consumed)
    }

    /// The share of the receive budget this stream holds: its unread bytes plus what the peer
    /// may still send under our latest grant.
    pub(crate) fn reserved(&self) -> u64 {
        let end = if self.closed {
            self.received
        } else {
            self.granted().max(self.received)
        };
        end - self.consumed
    }

    /// Records `n` bytes received; returns the change of [`reserved`](Self::reserved), or the
    /// violation when the peer went beyond every window it may have seen.
    pub(crate) fn on_received(&mut self, n: usize) -> Result<u64, BeyondWindow> {
        let received = self.received + n as u64;
        if received > self.limit {
            return Err(BeyondWindow {
                buffered: received - self.consumed,
                allowed: self.limit - self.consumed,
            });
        }
        let before = self.reserved();
        self.received = received;
        Ok(self.reserved() - before)
    }

    /// Records `n > 0` bytes consumed (which lowers [`reserved`](Self::reserved) by `n`);
    /// returns whether an UPD is due now: after the first read, and once
    /// [`update_interval`] bytes were consumed since the latest grant.
    /// `sharers` streams are busy (see [`update_interval`]).
    pub(crate) fn on_consumed(&mut self, n: usize, sharers: usize) -> bool {
        let first = self.consumed == 0;
        self.consumed += n as u64;
        first || self.consumed - self.acked >= u64::from(update_interval(self.window, sharers))
    }

    /// Grants `window` bytes beyond what was consumed; returns the new `reserved()` minus the
    /// old one (negative when the window shrinks).
    pub(crate) fn grant(&mut self, window: u32) -> i64 {
        let before = self.reserved() as i64;
        let widest = window.max(self.window);
        self.acked = self.consumed;
        self.window = window;
        self.limit = self.limit.max(self.consumed + u64::from(widest));
        self.reserved() as i64 - before
    }

    /// No more data will be read (the peer's FIN arrived); returns the change of `reserved()`.
    pub(crate) fn close(&mut self) -> i64 {
        let before = self.reserved() as i64;
        self.closed = true;
        self.reserved() as i64 - before
    }

    /// The latest grant as an UPD carries it: `(consumed, window)`, wrapping like Go's.
    pub(crate) fn update_fields(&self) -> (u32, u32) {
        (self.acked as u32, self.window)
    }

    /// The window of the latest grant.
    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    pub(crate) fn snapshot(&self) -> crate::snapshot::ReceiveWindowSnapshot {
        crate::snapshot::ReceiveWindowSnapshot {
            received: self.received,
            consumed: self.consumed,
            granted: self.granted(),
            window: u64::from(self.window),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn initial_window_is_256_kib() {
        let w = SendWindow::new();
        assert_eq!(w.available(), 262_144);
    }

    #[test]
    fn sending_shrinks_and_update_restores_the_window() {
        let mut w = SendWindow::new();
        w.on_sent(200_000);
        assert_eq!(w.available(), 62_144);
        w.on_sent(62_144);
        assert_eq!(w.available(), 0);
        w.on_update(100_000, 65_536).unwrap();
        // inflight 162_144 > window 65_536: still nothing may be sent.
        assert_eq!(w.available(), 0);
        w.on_update(262_144, 65_536).unwrap();
        assert_eq!(w.available(), 65_536);
    }

    #[test]
    fn update_claiming_more_than_sent_is_rejected() {
        let mut w = SendWindow::new();
        w.on_sent(10);
        assert_eq!(
            w.on_update(11, 100),
            Err(ConsumedBeyondSent {
                consumed: 11,
                sent: 10
            })
        );
        assert_eq!(w.available(), 262_134, "a rejected update changes nothing");
    }

    #[test]
    fn counters_wrap_like_go() {
        let mut w = SendWindow {
            sent: u64::from(u32::MAX - 5),
            peer_consumed: u32::MAX - 5,
            peer_window: 100,
        };
        w.on_sent(50);
        assert_eq!(w.inflight(), 50);
        assert_eq!(w.available(), 50);
        w.on_update(20, 100).unwrap(); // wrapped past zero
        assert_eq!(w.inflight(), 24);
    }

    #[test]
    fn first_read_and_every_update_interval_trigger_an_update() {
        let mut r = RecvWindow::new(0);
        r.on_received(300).unwrap();
        assert!(r.on_consumed(1, 1), "first read");
        // Reserved drops from the initial window to the 299 unread bytes (more than the window).
        assert_eq!(r.grant(100), 299 - (262_144 - 1));
        assert_eq!(r.update_fields(), (1, 100));
        assert!(!r.on_consumed(30, 1));
        assert!(!r.on_consumed(19, 1));
        assert!(
            r.on_consumed(1, 1),
            "50 bytes (half a small window) since the last grant"
        );
        r.grant(100);
        assert_eq!(r.update_fields(), (51, 100));
    }

    #[test]
    fn updates_come_every_sixteenth_of_a_large_window() {
        assert_eq!(update_interval(100, 1), 50);
        assert_eq!(update_interval(64 * 1024, 1), 32 * 1024);
        assert_eq!(update_interval(512 * 1024, 1), 32 * 1024);
        assert_eq!(update_interval(1 << 20, 1), 64 * 1024);
        assert_eq!(update_interval(4 << 20, 1), 256 * 1024);
    }

    #[test]
    fn busy_streams_share_the_update_interval_floor() {
        // Eight downloads: 4 KiB each, not 32 KiB each (224 KiB more queued on the path).
        assert_eq!(update_interval(64 * 1024, 8), 4 * 1024);
        assert_eq!(update_interval(100 * 1024, 8), 6_400);
        assert_eq!(update_interval(128 * 1024, 4), 8 * 1024);
        // Never below 4 KiB (nor above half a window), a sixteenth of a large window.
        assert_eq!(update_interval(16 * 1024, 1000), 4 * 1024);
        assert_eq!(update_interval(6 * 1024, 1000), 3 * 1024);
        assert_eq!(update_interval(1 << 20, 8), 64 * 1024);
    }

    #[test]
    fn an_update_announces_the_limit_the_peer_knew_before() {
        let mut r = RecvWindow::new(0);
        r.on_received(1000).unwrap();
        r.on_consumed(1000, 1);
        r.grant(1 << 20);
        assert_eq!(r.announce(), Some(262_144), "the initial window");
        assert_eq!(r.announce(), None, "nothing new");
        r.grant(100);
        assert_eq!(r.announce(), None, "a shrink lets the peer send no further");
        r.on_received(2000).unwrap();
        r.on_consumed(2000, 1);
        r.grant(1 << 20);
        assert_eq!(
            r.announce(),
            Some(1000 + (1 << 20)),
            "the peer may still go as far as the grant before the shrink"
        );
    }

    #[test]
    fn reserved_counts_unread_and_promised_bytes() {
        let mut r = RecvWindow::new(0);
        assert_eq!(r.reserved(), 262_144, "the initial window is promised");
        assert_eq!(r.grant(1000), 1000 - 262_144);
        assert_eq!(r.on_received(600), Ok(0), "within the grant");
        // The peer may have sent under the initial window before it saw the shrink.
        assert_eq!(r.on_received(900), Ok(500));
        assert_eq!(r.reserved(), 1500);
        r.on_consumed(1500, 1);
        assert_eq!(r.reserved(), 0);
        assert_eq!(r.close(), 0);
        assert_eq!(r.on_received(100), Ok(100), "within the old limit still");
    }

    #[test]
    fn data_beyond_every_window_is_refused() {
        let mut r = RecvWindow::new(0);
        assert_eq!(
            r.on_received(262_145),
            Err(BeyondWindow {
                buffered: 262_145,
                allowed: 262_144
            })
        );
        r.on_received(262_144).unwrap();
        r.on_consumed(262_144, 1);
        r.grant(10);
        // Go may pair the new consumed count with the previous (larger) window.
        assert_eq!(r.on_received(262_144), Ok(262_144 - 10));
        assert!(r.on_received(1).is_err());
    }

    proptest! {
        /// Random sends and truthful updates keep the sender inside the peer's window.
        #[test]
        fn send_window_never_goes_negative(ops in proptest::collection::vec((any::<bool>(), 0u32..100_000, 1u32..300_000), 1..200)) {
            let mut w = SendWindow::new();
            let mut sent_total: u64 = 0;
            let mut consumed_total: u64 = 0;
            for (send, amount, window) in ops {
                if send {
                    let n = (amount as usize).min(w.available());
                    w.on_sent(n);
                    sent_total += n as u64;
                } else {
                    let advance = u64::from(amount).min(sent_total - consumed_total);
                    consumed_total += advance;
                    w.on_update(consumed_total as u32, window).unwrap();
                }
                w.assert_invariants();
                prop_assert_eq!(i64::from(w.inflight()), (sent_total - consumed_total) as i64);
            }
        }

        /// The reader never lets an update interval go unacknowledged, and what it
        /// reserves is always its unread bytes plus what the peer may still send.
        #[test]
        fn receiver_acknowledges_every_update_interval(reads in proptest::collection::vec(1usize..70_000, 1..100), window in 2u32..200_000) {
            let mut r = RecvWindow::new(0);
            r.grant(window);
            let mut total: u64 = 0;
            for n in reads {
                let n = n.min((r.granted() - total) as usize);
                if n == 0 {
                    continue;
                }
                r.on_received(n).unwrap();
                total += n as u64;
                if r.on_consumed(n, 1) {
                    r.grant(window);
                    prop_assert_eq!(r.update_fields().0, total as u32);
                }
                let (acked, _) = r.update_fields();
                prop_assert!(total - u64::from(acked) < u64::from(update_interval(window, 1)).max(1));
                prop_assert_eq!(r.reserved(), r.granted() - total);
            }
        }
    }
}
