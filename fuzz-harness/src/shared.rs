//! Pieces the targets share: a tiny deterministic generator and the small-limit configs.

use smux_proto::{Config, INITIAL_PEER_WINDOW, RECEIVE_WINDOW_FLOOR};

/// xorshift32: reproducible schedules and chunk sizes drawn from the fuzzer's input.
pub(crate) struct Rng(pub(crate) u32);

impl Rng {
    pub(crate) fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// A value below `n`.
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }

    /// A chunk length: tiny, small, large, or everything (`usize::MAX`).
    pub(crate) fn chunk_len(&mut self) -> usize {
        let r = self.next();
        match r % 4 {
            0 => 1 + (r >> 8) as usize % 8,
            1 => 1 + (r >> 8) as usize % 64,
            2 => 1 + (r >> 8) as usize % 70_000,
            _ => usize::MAX,
        }
    }
}

/// Sets the buffer and stream limits, in this order: `max_receive_buffer`,
/// `max_stream_buffer`, `max_frame_size`, `max_send_buffer`, `max_stream_send_buffer`,
/// `accept_backlog`, `max_streams`.
pub(crate) fn set_limits(c: &mut Config, limits: [usize; 7]) {
    let [recv, stream, frame, send, stream_send, backlog, streams] = limits;
    c.max_receive_buffer = recv;
    c.max_stream_buffer = stream;
    c.max_frame_size = frame;
    c.max_send_buffer = send;
    c.max_stream_send_buffer = stream_send;
    c.accept_backlog = backlog;
    c.max_streams = streams;
}

/// Version 2: the narrowest and the widest window a session with config `c` grants (the
/// floor, and `max_stream_buffer` capped by the receive budget).
pub(crate) fn window_bounds(c: &Config) -> (u32, u32) {
    let cap = c.max_stream_buffer.min(c.max_receive_buffer) as u32;
    (RECEIVE_WINDOW_FLOOR.min(cap), cap)
}

/// Version 2: the most room for replies a stream of a session with config `c` keeps (a window
/// wider than the cap, never more than the stream's own unanswered writes).
pub(crate) fn reply_cap(c: &Config) -> u32 {
    (c.max_stream_buffer as u32).max(INITIAL_PEER_WINDOW)
}
