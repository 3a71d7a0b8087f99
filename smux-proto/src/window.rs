//! Version 2 per-stream flow control, computed exactly as Go smux does.
//!
//! Sender side ([`SendWindow`]): `inflight = sent - peer_consumed` in wrapping `u32` arithmetic,
//! read as `i32`; the sender may have `peer_window - inflight` more bytes in flight. Before the
//! first UPD the peer's window is assumed to be [`INITIAL_PEER_WINDOW`].
//!
//! Receiver side ([`RecvWindow`]): after a read, send UPD(consumed = total read) when at least
//! half the advertised window was read since the last UPD, and after the very first read.

/// The window assumed for the peer before its first UPD arrives (Go's `initialPeerWindow`).
pub const INITIAL_PEER_WINDOW: u32 = 262_144;

/// What a stream may still send under the peer's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendWindow {
    /// Bytes of the stream framed for sending so far, wrapping (Go's `numWritten`).
    sent: u32,
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

    /// Bytes sent and not yet reported consumed by the peer.
    pub(crate) fn inflight(&self) -> i32 {
        self.sent.wrapping_sub(self.peer_consumed) as i32
    }

    /// How many more bytes may be sent now.
    pub(crate) fn available(&self) -> usize {
        let win = i64::from(self.peer_window as i32) - i64::from(self.inflight());
        usize::try_from(win).unwrap_or(0)
    }

    /// Records `n` bytes framed for sending; `n` never exceeds [`available`](Self::available).
    pub(crate) fn on_sent(&mut self, n: usize) {
        debug_assert!(n <= self.available());
        self.sent = self.sent.wrapping_add(n as u32);
    }

    /// Applies an UPD. Rejects (changing nothing) a `consumed` beyond what was sent, which Go
    /// reports as `ErrConsumed`.
    pub(crate) fn on_update(
        &mut self,
        consumed: u32,
        window: u32,
    ) -> Result<(), ConsumedBeyondSent> {
        if (self.sent.wrapping_sub(consumed) as i32) < 0 {
            return Err(ConsumedBeyondSent {
                consumed,
                sent: self.sent,
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

/// When a reading stream owes the peer an UPD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecvWindow {
    /// Total bytes read by the application, wrapping (Go's `numRead`).
    read: u32,
    /// Bytes read since the last UPD (Go's `incr`).
    since_update: u32,
    /// Half the advertised window: the UPD threshold.
    threshold: u32,
}

impl RecvWindow {
    pub(crate) fn new(max_stream_buffer: usize) -> Self {
        RecvWindow {
            read: 0,
            since_update: 0,
            threshold: (max_stream_buffer / 2) as u32,
        }
    }

    /// Records a read of `n > 0` bytes; returns `Some(consumed)` when an UPD is due.
    pub(crate) fn on_read(&mut self, n: usize) -> Option<u32> {
        let n = n as u32;
        self.read = self.read.wrapping_add(n);
        self.since_update = self.since_update.wrapping_add(n);
        // Go: `s.incr >= MaxStreamBuffer/2 || s.numRead == n` (the second is the first read),
        // and an UPD is only sent when the consumed count is non-zero.
        if self.since_update >= self.threshold || self.read == n {
            self.since_update = 0;
            (self.read != 0).then_some(self.read)
        } else {
            None
        }
    }

    /// Total bytes read so far (the `consumed` of the next UPD).
    pub(crate) fn consumed(&self) -> u32 {
        self.read
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
            sent: u32::MAX - 5,
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
    fn first_read_and_every_half_window_trigger_an_update() {
        let mut r = RecvWindow::new(100);
        assert_eq!(r.on_read(1), Some(1), "first read");
        assert_eq!(r.on_read(30), None);
        assert_eq!(r.on_read(19), None);
        assert_eq!(r.on_read(1), Some(51), "50 bytes since the last UPD");
        assert_eq!(r.on_read(49), None);
        assert_eq!(r.on_read(1), Some(101));
        assert_eq!(r.consumed(), 101);
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

        /// The reader never lets more than half its window go unacknowledged.
        #[test]
        fn receiver_acknowledges_every_half_window(reads in proptest::collection::vec(1usize..70_000, 1..100), buffer in 2usize..200_000) {
            let mut r = RecvWindow::new(buffer);
            let mut acked: u64 = 0;
            let mut total: u64 = 0;
            for n in reads {
                total += n as u64;
                if let Some(consumed) = r.on_read(n) {
                    prop_assert_eq!(consumed, total as u32);
                    acked = total;
                }
                prop_assert!(total - acked < (buffer / 2).max(1) as u64);
            }
        }
    }
}
