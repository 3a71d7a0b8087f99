//! The slow link of the interactive tests (smux-tokio's and smux-smol's
//! `tests/interactive.rs`): its settings, and how many ticks a message may take to cross it
//! behind bulk streams.

/// Bytes the slow link carries each way per tick.
pub const RATE: usize = 64 * 1024;
/// Each buffer of the link: a sender's bytes not yet delivered (its socket buffer and the
/// wire), and a receiver's bytes delivered and not yet read.
pub const LINK_BUFFER: usize = 64 * 1024;
/// The driver takes output from the session in batches; while the transport is full, frames
/// are moved into the transmit queue until it holds 64 KiB (`CONGESTED_BATCH` in
/// smux-futures), so a batch is at most that plus the one frame that crossed the mark; the
/// next batch is taken once it is written.
pub const BATCH: usize = 64 * 1024;
/// A stream's write of at most this many bytes goes ahead of the bulk streams' frames in the
/// session's queue (the scheduler's light lane, `LIGHT` in smux-proto).
pub const LIGHT: usize = 4 * 1024;
/// One data frame of the default config: 32 KiB of payload and the 8-byte header.
pub const FRAME: usize = 32 * 1024 + 8;

/// Ticks for a message of `len` bytes to cross the link one way behind `busy` bulk streams
/// writing the same way. Ahead of its last byte, at most:
///
/// - the batch the driver holds when the message is written: `BATCH + FRAME`;
/// - in the batches that carry the message, one frame of every busy stream per frame of the
///   message (the session sends a frame of each stream with data in turn), unless the message
///   is at most [`LIGHT`] bytes (it goes first): `busy * FRAME * frames`, and the message
///   itself;
/// - the link: `LINK_BUFFER` not yet delivered and `LINK_BUFFER` delivered and not yet read
///   (the peer reads everything delivered before the next tick, so that one is mostly empty).
///
/// That many bytes at `RATE` per tick, plus the tick in which the last byte is delivered.
pub fn one_way_ticks(busy: usize, len: usize) -> u64 {
    let frames = len.div_ceil(FRAME - 8).max(1);
    let behind_bulk = if len <= LIGHT {
        0
    } else {
        busy * FRAME * frames
    };
    let ahead = BATCH + FRAME + behind_bulk + len + 2 * LINK_BUFFER;
    (ahead.div_ceil(RATE) + 1) as u64
}

/// Ticks for a request of `request` bytes and its response of `response` bytes, with `up`
/// bulk streams writing towards the server and `down` towards the client: both ways, with a
/// margin of 2 (for the wake-ups and polls between a delivery and the next write, and the
/// few control frames, version 2's window updates among them).
pub fn round_trip_ticks(up: usize, down: usize, request: usize, response: usize) -> u64 {
    2 * (one_way_ticks(up, request) + one_way_ticks(down, response))
}
