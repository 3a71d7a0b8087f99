//! Property tests of version 2 receive credit: windows carved out of one session budget
//! (`max_receive_buffer`).
//!
//! Two in-memory sessions talk to each other with random cuts of the byte stream. Both open a
//! random number of streams; every writer writes as much as its buffers take whenever it can
//! (so each peer sends up to every window it is given), readers read random amounts of random
//! streams, and budgets and per-stream caps vary from case to case. After every step:
//! - input is never paused for the receive budget, and every complete frame offered is taken;
//! - each side's unread data stays within the budget, plus the floor window for every stream,
//!   plus the initial window for every stream whose window was shrunk before any read (counted
//!   from the UPDs on the wire, not from the session), plus the room for replies of every
//!   stream the side wrote on (at most what it wrote, up to the reply cap);
//! - the credit a session reports is the sum of what its streams reserve;
//! - UPDs carry a window within `[floor, cap]` (wider only as room for replies: never more than
//!   the side wrote and did not read back, up to the reply cap) and a consumed count that never
//!   goes back nor beyond what was read, and no writer exceeds the latest window it saw;
//! - room for replies: when a side sends data on a stream it still receives on, the latest UPD
//!   it sent there (or the initial window) lets the peer answer all of it (up to the reply cap),
//!   so a peer that pauses its input while its writers wait cannot deadlock on us.
//!
//! Then writing stops, every stream is finished and readers drain everything: every byte
//! written must arrive, intact, within a bounded number of rounds (no stream starves).

mod common;

use common::{check_go_window, check_reply_room, fail, R};
use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;
use std::time::Instant;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use smux_proto::{
    Config, Frame, FrameDecoder, InputPause, ReadError, Session, Side, StreamId, Version,
    WriteError, BUSY_RECEIVE_WINDOW_FLOOR, INITIAL_PEER_WINDOW, RECEIVE_WINDOW_FLOOR,
};

const KIB: usize = 1024;

/// The only call to `Instant::now()` (time does not matter here: keepalive is off).
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// The byte at offset `off` of what `writer` sends on stream `id`.
fn data_byte(id: StreamId, writer: usize, off: usize) -> u8 {
    let x = (off as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(id.as_u32()) << 32 | writer as u64);
    let x = x ^ (x >> 29);
    (x.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 56) as u8
}

fn data(id: StreamId, writer: usize, from: usize, len: usize) -> Vec<u8> {
    (from..from + len)
        .map(|o| data_byte(id, writer, o))
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_receive_buffer: usize,
    max_stream_buffer: usize,
    max_frame_size: usize,
    max_send_buffer: usize,
    max_stream_send_buffer: usize,
}

impl Limits {
    /// The widest window a grant may carry.
    fn cap(&self) -> u32 {
        self.max_stream_buffer.min(self.max_receive_buffer) as u32
    }

    fn floor(&self) -> u32 {
        RECEIVE_WINDOW_FLOOR.min(self.cap())
    }

    /// The most room for replies a stream keeps.
    fn reply_cap(&self) -> u32 {
        common::reply_cap(self.max_stream_buffer)
    }

    fn config(&self) -> Config {
        Config::default()
            .with_version(Version::V2)
            .with_keep_alive_disabled(true)
            .with_max_frame_size(self.max_frame_size)
            .with_max_receive_buffer(self.max_receive_buffer)
            .with_max_stream_buffer(self.max_stream_buffer)
            .with_max_send_buffer(self.max_send_buffer)
            .with_max_stream_send_buffer(self.max_stream_send_buffer)
    }
}

/// Budgets below, at and above the initial window; caps below the floor, at it, up to the
/// whole budget and beyond it.
fn limits() -> impl Strategy<Value = Limits> {
    (
        prop::sample::select(vec![32 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB, 4096 * KIB]),
        prop::sample::select(vec![
            8 * KIB,
            16 * KIB,
            64 * KIB,
            256 * KIB,
            1024 * KIB,
            4096 * KIB,
        ]),
        prop::sample::select(vec![1000usize, 4096, 32 * KIB]),
        prop::sample::select(vec![64 * KIB, 256 * KIB, 1024 * KIB]),
        prop::sample::select(vec![16 * KIB, 64 * KIB]),
    )
        .prop_map(|(budget, cap, frame, send, stream_send)| Limits {
            max_receive_buffer: budget,
            max_stream_buffer: cap,
            max_frame_size: frame,
            max_send_buffer: send,
            max_stream_send_buffer: stream_send.min(send),
        })
}

#[derive(Debug, Clone)]
enum Op {
    Open(usize),
    /// `side` reads at most `max` bytes of the `pick`-th stream it knows.
    Read {
        side: usize,
        pick: usize,
        max: usize,
    },
    /// Moves at most `max` bytes from `from` to its peer.
    Deliver {
        from: usize,
        max: usize,
    },
    /// Moves everything both ways, `chunk` bytes at a time, until nothing moves.
    Pump {
        chunk: usize,
    },
}

/// `read_weight` varies from case to case: slow readers let every window fill up.
fn op(read_weight: u32) -> impl Strategy<Value = Op> {
    let side = 0usize..2;
    prop_oneof![
        3 => side.clone().prop_map(Op::Open),
        read_weight => (side.clone(), any::<usize>(), prop_oneof![1usize..64, 1usize..16_384, 1usize..1_000_000])
            .prop_map(|(side, pick, max)| Op::Read { side, pick, max }),
        8 => (side, prop_oneof![1usize..16, 1usize..4000, 1usize..200_000])
            .prop_map(|(from, max)| Op::Deliver { from, max }),
        4 => prop_oneof![1usize..3000, Just(usize::MAX)].prop_map(|chunk| Op::Pump { chunk }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    (1u32..=12).prop_flat_map(|read_weight| proptest::collection::vec(op(read_weight), 1..80))
}

/// One stream, per side (index 0: client, 1: server).
#[derive(Debug)]
struct Rec {
    id: StreamId,
    opener: usize,
    /// Bytes the side will write in all.
    target: [usize; 2],
    written: [usize; 2],
    read: [usize; 2],
    eof: [bool; 2],
    finished: [bool; 2],
    /// Accepted (the opener knows it from the start).
    known: [bool; 2],
    // From the wire.
    /// The side processed the SYN (the opener has the stream from the start).
    syn_arrived: [bool; 2],
    /// PSH payload bytes the side emitted.
    data_sent: [usize; 2],
    /// `(consumed, window)` of the latest UPD the side emitted.
    upd_sent: [Option<(u32, u32)>; 2],
    /// `consumed` of the first UPD the side emitted.
    first_upd: [Option<u32>; 2],
    /// `(consumed, window)` of the latest UPD the side processed.
    upd_seen: [Option<(u32, u32)>; 2],
}

struct Pair {
    limits: Limits,
    s: [Session; 2],
    /// Bytes side `i` transmitted and that were not delivered yet.
    outq: [VecDeque<u8>; 2],
    /// Bytes delivered to side `i`, not taken by it yet (at most a partial frame).
    inbox: [BytesMut; 2],
    /// Decodes what side `i` transmits, when it does.
    made: [FrameDecoder; 2],
    made_raw: [BytesMut; 2],
    /// Decodes what side `i` receives, as it is delivered.
    arrived: [FrameDecoder; 2],
    arrived_raw: [BytesMut; 2],
    streams: Vec<Rec>,
    index: HashMap<StreamId, usize>,
    sizes: Vec<usize>,
    writing: bool,
}

fn other(side: usize) -> usize {
    1 - side
}

impl Pair {
    fn new(limits: Limits, sizes: Vec<usize>) -> Pair {
        let cfg = limits.config();
        Pair {
            limits,
            s: [
                Session::new(Side::Client, cfg.clone(), base()).expect("valid config"),
                Session::new(Side::Server, cfg, base()).expect("valid config"),
            ],
            outq: [VecDeque::new(), VecDeque::new()],
            inbox: [BytesMut::new(), BytesMut::new()],
            made: [
                FrameDecoder::new(Version::V2),
                FrameDecoder::new(Version::V2),
            ],
            made_raw: [BytesMut::new(), BytesMut::new()],
            arrived: [
                FrameDecoder::new(Version::V2),
                FrameDecoder::new(Version::V2),
            ],
            arrived_raw: [BytesMut::new(), BytesMut::new()],
            streams: Vec::new(),
            index: HashMap::new(),
            sizes,
            writing: true,
        }
    }

    fn rec(&self, id: StreamId) -> R<usize> {
        match self.index.get(&id) {
            Some(&i) => Ok(i),
            None => fail(format!("frame for unknown stream {id}")),
        }
    }

    fn open(&mut self, side: usize) -> R {
        let id = match self.s[side].open_stream() {
            Ok(id) => id,
            Err(e) => return fail(format!("open_stream: {e}")),
        };
        let k = self.streams.len();
        let size = |j: usize| self.sizes[j % self.sizes.len()];
        let mut known = [false; 2];
        known[side] = true;
        let mut syn_arrived = [false; 2];
        syn_arrived[side] = true;
        self.index.insert(id, k);
        self.streams.push(Rec {
            id,
            opener: side,
            target: [size(2 * k), size(2 * k + 1)],
            written: [0; 2],
            read: [0; 2],
            eof: [false; 2],
            finished: [false; 2],
            known,
            syn_arrived,
            data_sent: [0; 2],
            upd_sent: [None; 2],
            first_upd: [None; 2],
            upd_seen: [None; 2],
        });
        Ok(())
    }

    /// Accepts every stream the peer opened, and writes as much as the buffers take.
    fn top_up(&mut self) -> R {
        for side in [0, 1] {
            while let Some(id) = self.s[side].accept_stream() {
                let i = self.rec(id)?;
                prop_assert_eq!(self.streams[i].opener, other(side));
                self.streams[i].known[side] = true;
            }
        }
        if !self.writing {
            return Ok(());
        }
        for i in 0..self.streams.len() {
            for side in [0, 1] {
                loop {
                    let rec = &self.streams[i];
                    if !rec.known[side] || rec.written[side] >= rec.target[side] {
                        break;
                    }
                    let len = (rec.target[side] - rec.written[side]).min(64 * KIB);
                    let payload = data(rec.id, side, rec.written[side], len);
                    match self.s[side].write(rec.id, &payload) {
                        Ok(n) => {
                            prop_assert!(n > 0 && n <= len);
                            self.streams[i].written[side] += n;
                        }
                        Err(WriteError::Blocked) => break,
                        Err(e) => return fail(format!("write on {}: {e}", rec.id)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads at most `max` bytes, checking them; returns the count (`None`: nothing there).
    fn read(&mut self, side: usize, i: usize, max: usize) -> R<Option<usize>> {
        let rec = &self.streams[i];
        if !rec.known[side] || rec.eof[side] {
            return Ok(None);
        }
        let id = rec.id;
        let mut buf = vec![0u8; max];
        match self.s[side].read(id, &mut buf) {
            Ok(0) => {
                let rec = &mut self.streams[i];
                prop_assert!(
                    rec.finished[other(side)],
                    "end of {} before the peer finished",
                    id
                );
                prop_assert_eq!(
                    rec.read[side],
                    rec.written[other(side)],
                    "end of {} after {} of the {} bytes written",
                    id,
                    rec.read[side],
                    rec.written[other(side)]
                );
                rec.eof[side] = true;
                Ok(Some(0))
            }
            Ok(n) => {
                let rec = &mut self.streams[i];
                let at = rec.read[side];
                prop_assert!(at + n <= rec.written[other(side)], "read more than written");
                if buf[..n] != data(id, other(side), at, n)[..] {
                    return fail(format!("wrong data on {id} in {n} bytes read at {at}"));
                }
                rec.read[side] += n;
                Ok(Some(n))
            }
            Err(ReadError::Blocked) => Ok(None),
            Err(e) => fail(format!("read on {id}: {e}")),
        }
    }

    /// Takes everything `side` has to send onto its side of the wire, checking each frame.
    fn transmit(&mut self, side: usize) -> R {
        let mut out = BytesMut::new();
        self.s[side].transmit_into(&mut out);
        self.outq[side].extend(out.iter().copied());
        self.made_raw[side].extend_from_slice(&out);
        let limits = self.limits;
        loop {
            let frame = match self.made[side].decode(&mut self.made_raw[side]) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return fail(format!("invalid frame emitted: {e}")),
            };
            match frame {
                Frame::Psh { stream_id, data } => {
                    let i = self.rec(stream_id)?;
                    let rec = &mut self.streams[i];
                    rec.data_sent[side] += data.len();
                    if !rec.finished[other(side)] {
                        // Room for replies: the peer read (before this data) a window that
                        // lets it answer everything sent so far.
                        check_reply_room(
                            side,
                            stream_id,
                            rec.data_sent[side],
                            rec.upd_sent[side],
                            limits.reply_cap(),
                        )?;
                    }
                    check_go_window(side, stream_id, rec.data_sent[side], rec.upd_seen[side])?;
                }
                Frame::Upd {
                    stream_id,
                    consumed,
                    window,
                } => {
                    let i = self.rec(stream_id)?;
                    let rec = &mut self.streams[i];
                    let replies = (rec.written[side] as u64)
                        .saturating_sub(u64::from(consumed))
                        .min(u64::from(limits.reply_cap()))
                        as u32;
                    let widest = limits.cap().max(replies);
                    prop_assert!(
                        (limits.floor()..=widest).contains(&window),
                        "UPD window {} on {} outside [{}, {}]",
                        window,
                        stream_id,
                        limits.floor(),
                        widest
                    );
                    prop_assert!(
                        consumed as usize <= rec.read[side],
                        "UPD consumed {} on {}, only {} read",
                        consumed,
                        stream_id,
                        rec.read[side]
                    );
                    if let Some((previous, _)) = rec.upd_sent[side] {
                        prop_assert!(consumed >= previous, "UPD consumed went back");
                    }
                    rec.upd_sent[side] = Some((consumed, window));
                    rec.first_upd[side].get_or_insert(consumed);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Moves at most `max` bytes from `from` to its peer, which must take every complete
    /// frame; both then transmit what they have. Returns the bytes moved.
    fn deliver(&mut self, from: usize, max: usize) -> R<usize> {
        let to = other(from);
        self.transmit(from)?;
        let n = self.outq[from].len().min(max);
        let moved: Vec<u8> = self.outq[from].drain(..n).collect();
        self.inbox[to].extend_from_slice(&moved);
        // Streams waiting to be accepted may pause input (never the receive budget): the
        // application accepts them and input goes on.
        for attempt in 0.. {
            if let Err(e) = self.s[to].handle_input(base(), &mut self.inbox[to]) {
                return fail(format!("handle_input: {e}"));
            }
            match self.s[to].input_pause() {
                Some(InputPause::AcceptBacklog) if attempt < 1000 => self.top_up()?,
                _ => break,
            }
        }
        let mut rest = self.inbox[to].clone();
        prop_assert!(
            matches!(FrameDecoder::new(Version::V2).decode(&mut rest), Ok(None)),
            "a complete frame was left in the input ({:?})",
            self.s[to].input_pause()
        );
        // What the receiver has now processed.
        self.arrived_raw[to].extend_from_slice(&moved);
        while let Some(frame) = self.arrived[to]
            .decode(&mut self.arrived_raw[to])
            .expect("valid frames")
        {
            match frame {
                Frame::Syn { stream_id } => {
                    let i = self.rec(stream_id)?;
                    self.streams[i].syn_arrived[to] = true;
                }
                Frame::Upd {
                    stream_id,
                    consumed,
                    window,
                } => {
                    let i = self.rec(stream_id)?;
                    self.streams[i].upd_seen[to] = Some((consumed, window));
                }
                _ => {}
            }
        }
        self.top_up()?;
        self.transmit(to)?;
        self.transmit(from)?;
        self.check()?;
        Ok(n)
    }

    fn pump(&mut self, chunk: usize) -> R<usize> {
        let mut total = 0;
        for round in 0..100_000 {
            let step = if round < 100 { chunk } else { usize::MAX };
            let moved = self.deliver(0, step)? + self.deliver(1, step)?;
            total += moved;
            if moved == 0 {
                return Ok(total);
            }
        }
        fail("pumping never settles".into())
    }

    fn run(&mut self, op: &Op) -> R {
        match *op {
            Op::Open(side) => self.open(side)?,
            Op::Read { side, pick, max } => {
                let known: Vec<usize> = (0..self.streams.len())
                    .filter(|&i| self.streams[i].known[side])
                    .collect();
                if !known.is_empty() {
                    self.read(side, known[pick % known.len()], max)?;
                }
            }
            Op::Deliver { from, max } => {
                self.deliver(from, max)?;
            }
            Op::Pump { chunk } => {
                self.pump(chunk)?;
            }
        }
        self.top_up()?;
        self.transmit(0)?;
        self.transmit(1)?;
        self.check()
    }

    /// The invariants that hold after every step (both sides have transmitted everything they
    /// had, so every UPD decided is on the wire).
    fn check(&self) -> R {
        let limits = self.limits;
        for side in [0, 1] {
            let s = &self.s[side];
            if let Some(e) = s.error() {
                return fail(format!("session {side} failed: {e}"));
            }
            let pause = s.input_pause();
            prop_assert!(
                pause != Some(InputPause::ReceiveBudget),
                "version 2 input paused for the receive budget"
            );
            prop_assert_eq!(pause, None, "input paused");
            // Memory: the budget, a busy floor per stream, and the initial window of every stream
            // shrunk before any read (the peer may have used it before it saw the shrink).
            let (mut live, mut shrunk, mut replies) = (0usize, 0usize, 0usize);
            for rec in self.streams.iter().filter(|r| r.syn_arrived[side]) {
                live += 1;
                if rec.first_upd[side] == Some(0) {
                    shrunk += 1;
                }
                replies += rec.written[side].min(limits.reply_cap() as usize);
            }
            let bound = limits.max_receive_buffer
                + live * BUSY_RECEIVE_WINDOW_FLOOR.min(limits.cap()) as usize
                + shrunk * INITIAL_PEER_WINDOW as usize
                + replies;
            prop_assert!(
                s.buffered_input() <= bound,
                "side {} buffers {} unread bytes, beyond {} (budget {}, {} streams, {} shrunk at open)",
                side,
                s.buffered_input(),
                bound,
                limits.max_receive_buffer,
                live,
                shrunk
            );
            // The credit is the sum of what the streams reserve.
            let snap = s.snapshot();
            let mut reserved = 0u64;
            let mut unread = 0usize;
            for st in &snap.streams {
                let Some(w) = st.receive_window else {
                    return fail(format!("no receive window for {} in version 2", st.id));
                };
                prop_assert!(w.consumed <= w.received);
                let end = if st.fin_received {
                    w.received
                } else {
                    w.granted.max(w.received)
                };
                reserved += end - w.consumed;
                unread += st.buffered_input;
                prop_assert_eq!(
                    (w.received - w.consumed) as usize,
                    st.buffered_input,
                    "unread bytes of {}",
                    st.id
                );
            }
            prop_assert_eq!(
                reserved,
                snap.receive_credit,
                "receive credit of side {}",
                side
            );
            prop_assert_eq!(unread, s.buffered_input());
        }
        Ok(())
    }

    /// Writing stops, every stream is finished, and both sides read everything: every stream
    /// must reach its end, with all its bytes, within a bounded number of rounds.
    fn drain(&mut self) -> R {
        self.writing = false;
        for i in 0..self.streams.len() {
            for side in [0, 1] {
                let rec = &mut self.streams[i];
                if rec.known[side] && !rec.finished[side] {
                    let id = rec.id;
                    rec.finished[side] = true;
                    if let Err(e) = self.s[side].finish(id) {
                        return fail(format!("finish {id}: {e}"));
                    }
                }
            }
        }
        // Each round every reader empties its buffers, so each stream moves at least half a
        // floor window per round.
        let most = self
            .streams
            .iter()
            .flat_map(|r| r.written)
            .max()
            .unwrap_or(0);
        let rounds = 4 * (most / self.limits.floor() as usize + 1) + 20;
        for _ in 0..rounds {
            self.pump(usize::MAX)?;
            for i in 0..self.streams.len() {
                for side in [0, 1] {
                    while let Some(n) = self.read(side, i, 256 * KIB)? {
                        if n == 0 {
                            break;
                        }
                    }
                    // Streams accepted during the drain are finished too.
                    if !self.streams[i].finished[side] && self.streams[i].known[side] {
                        let id = self.streams[i].id;
                        self.streams[i].finished[side] = true;
                        if let Err(e) = self.s[side].finish(id) {
                            return fail(format!("finish {id}: {e}"));
                        }
                    }
                }
            }
            self.top_up()?;
            self.transmit(0)?;
            self.transmit(1)?;
            self.check()?;
            if self.streams.iter().all(|r| r.eof == [true; 2]) {
                for side in [0, 1] {
                    prop_assert_eq!(self.s[side].buffered_input(), 0);
                    prop_assert_eq!(
                        self.s[side].snapshot().receive_credit,
                        0,
                        "credit held after every stream ended"
                    );
                }
                return Ok(());
            }
        }
        let stuck: Vec<String> = self
            .streams
            .iter()
            .filter(|r| r.eof != [true; 2])
            .map(|r| {
                format!(
                    "{} read {:?} of {:?} written, eof {:?}",
                    r.id,
                    r.read,
                    [r.written[1], r.written[0]],
                    r.eof
                )
            })
            .collect();
        fail(format!("streams starve after {rounds} rounds: {stuck:?}"))
    }
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        max_shrink_iters: 2000,
        max_shrink_time: 20_000,
        ..ProptestConfig::default()
    }
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(
        prop_oneof![1 => Just(0usize), 2 => 0usize..20_000, 3 => 0usize..700_000, 1 => 0usize..1_500_000],
        1..16,
    )
}

proptest! {
    #![proptest_config(proptest_config(128))]

    /// Streams opened by both sides, greedy writers, random partial reads, random budgets and
    /// caps: version 2 never pauses input for the budget, stays within its memory bound,
    /// reports its credit exactly, and delivers every byte of every stream.
    #[test]
    fn v2_windows_share_the_budget_without_pausing_or_starving(
        limits in limits(),
        sizes in sizes(),
        first in 0usize..2,
        ops in ops(),
    ) {
        let mut pair = Pair::new(limits, sizes);
        pair.open(first)?;
        pair.top_up()?;
        for op in &ops {
            pair.run(op)?;
        }
        pair.drain()?;
    }
}
