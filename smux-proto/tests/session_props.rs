//! Property tests of a client and a server [`Session`] talking to each other in memory.
//!
//! The harness moves bytes from one session's `poll_transmit` to the other's `handle_input`, in
//! random chunk sizes, under a virtual clock (`base + offset`, with `Instant::now()` read once
//! for the whole test binary). A random sequence of application operations runs against both
//! ends with small buffers, so that flow control and blocking are exercised. The test checks,
//! after every step: data integrity and end-of-stream delivery, memory bounds, the event
//! contract, the byte accounting, and (by decoding everything on the wire) the frames each
//! side emits: SYN before anything else, no data after FIN, frame sizes, version 2 windows
//! respected by the sender and UPDs owed by the reader.
//!
//! A second group feeds crafted and invalid input to a session: valid frames must follow the
//! protocol's model, invalid ones must end the session with the right typed error, without
//! panicking, and the failure must be sticky.

mod common;

use common::{check_go_window, check_reply_room, fail, R};
use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes read between two UPDs of a stream with window `window`: an eighth, at least 32 KiB,
/// at most half (Go's interval) (`window::update_interval`).
fn update_interval(window: u32) -> u32 {
    (window / 8).max(32 * 1024).min(window / 2)
}

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use smux_proto::{
    Cmd, Config, Error, Event, Frame, FrameDecoder, InputPause, OpenError, ProtocolViolation,
    ReadError, Session, Side, StreamId, Version, WriteError, BUSY_RECEIVE_WINDOW_FLOOR,
    INITIAL_PEER_WINDOW, RECEIVE_WINDOW_FLOOR,
};

const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RECEIVE_BUFFER: usize = 64 * 1024;
const MAX_STREAM_BUFFER: usize = 16 * 1024;
const MAX_SEND_BUFFER: usize = 64 * 1024;
const MAX_STREAM_SEND_BUFFER: usize = 16 * 1024;

/// Transfers one test case may make before it is declared a runaway.
const STEP_BUDGET: u64 = 2_000_000;

/// Enough slots for the whole transmit queue (at most 256 KiB plus a frame, two slices per
/// frame of more than 512 bytes), so the wire monitor sees every frame when it is made.
const TRANSMIT_SLOTS: usize = 2048;

/// The only call to `Instant::now()`: every session runs on `base() + offset`. (The crate
/// forbids reading the clock; a test needs one real `Instant` to start from.)
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// The buffer sizes of one test case (both sides use the same).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_frame_size: usize,
    max_receive_buffer: usize,
    max_stream_buffer: usize,
    max_send_buffer: usize,
    max_stream_send_buffer: usize,
}

impl Limits {
    /// 64 KiB / 16 KiB receive, 64 KiB / 16 KiB send.
    fn small(max_frame_size: usize) -> Limits {
        Limits {
            max_frame_size,
            max_receive_buffer: MAX_RECEIVE_BUFFER,
            max_stream_buffer: MAX_STREAM_BUFFER,
            max_send_buffer: MAX_SEND_BUFFER,
            max_stream_send_buffer: MAX_STREAM_SEND_BUFFER,
        }
    }

    /// Version 2: the widest window one stream is granted.
    fn window_cap(&self) -> u32 {
        self.max_stream_buffer.min(self.max_receive_buffer) as u32
    }

    /// Version 2: the most room for replies one stream keeps.
    fn reply_cap(&self) -> u32 {
        common::reply_cap(self.max_stream_buffer)
    }

    /// Version 2: the window every stream may always be granted.
    fn window_floor(&self) -> u32 {
        RECEIVE_WINDOW_FLOOR.min(self.window_cap())
    }

    fn config(&self, version: Version) -> Config {
        Config::default()
            .with_version(version)
            .with_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .with_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .with_max_frame_size(self.max_frame_size)
            .with_max_receive_buffer(self.max_receive_buffer)
            .with_max_stream_buffer(self.max_stream_buffer)
            .with_max_send_buffer(self.max_send_buffer)
            .with_max_stream_send_buffer(self.max_stream_send_buffer)
    }
}

/// Mostly the small buffers above; sometimes tighter ones, where a couple of streams fill the
/// session's send budget; sometimes version 2 windows wider than the floor, so that grants
/// share the receive budget (fair shares, shrinking others when it falls short).
fn limits() -> impl Strategy<Value = Limits> {
    let frame = 1000usize..=4000;
    prop_oneof![
        2 => frame.clone().prop_map(Limits::small),
        1 => (
            frame.clone(),
            prop_oneof![Just(64 * 1024), Just(256 * 1024), Just(1024 * 1024)],
            prop_oneof![Just(32 * 1024), Just(64 * 1024), Just(256 * 1024)],
        )
            .prop_map(|(max_frame_size, max_receive_buffer, max_stream_buffer)| Limits {
                max_stream_buffer: max_stream_buffer.min(max_receive_buffer),
                max_receive_buffer,
                ..Limits::small(max_frame_size)
            }),
        1 => (
            frame,
            prop_oneof![Just(32 * 1024), Just(64 * 1024)],
            prop_oneof![Just(8 * 1024), Just(16 * 1024)],
            prop_oneof![Just(16 * 1024), Just(24 * 1024), Just(64 * 1024)],
            prop_oneof![Just(4 * 1024), Just(16 * 1024)],
        )
            .prop_map(|(max_frame_size, max_receive_buffer, max_stream_buffer, max_send_buffer, max_stream_send_buffer)| {
                Limits {
                    max_frame_size,
                    max_receive_buffer,
                    max_stream_buffer,
                    max_send_buffer,
                    max_stream_send_buffer,
                }
            }),
    ]
}

/// Proptest settings: `cases` unless `PROPTEST_CASES` says otherwise (for longer soaks), and
/// failing cases saved next to this file (the default location needs a `lib.rs`, which an
/// integration test does not have).
fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

const CLIENT: usize = 0;
const SERVER: usize = 1;

fn side_name(side: usize) -> &'static str {
    if side == CLIENT {
        "client"
    } else {
        "server"
    }
}

/// The byte at offset `off` of what `writer` sends on stream `id`: a pseudo-random function of
/// all three, so that misrouted, reordered, duplicated or lost data is detected.
fn data_byte(id: StreamId, writer: usize, off: usize) -> u8 {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    const LEN: usize = 65_521; // prime
    let table = TABLE.get_or_init(|| smux_test_support::payload(1, LEN));
    let salt = (id.as_u32() as usize).wrapping_mul(7919) + writer * 104_729;
    table[(off + salt) % LEN] ^ ((off / LEN) as u8).wrapping_mul(37)
}

fn data(id: StreamId, writer: usize, from: usize, len: usize) -> Vec<u8> {
    (from..from + len)
        .map(|o| data_byte(id, writer, o))
        .collect()
}

// ------------------------------------------------------------------------------------------
// Operations

#[derive(Debug, Clone)]
enum Op {
    /// `side` opens a stream.
    Open(usize),
    /// `side` accepts the next stream opened by the peer.
    Accept(usize),
    /// `side` writes `len` bytes on the `pick`-th stream it knows.
    Write {
        side: usize,
        pick: usize,
        len: usize,
        chunk: bool,
    },
    /// `side` tries a zero-copy direct write of `len` bytes on the `pick`-th stream it knows;
    /// the transport takes `take` bytes of it.
    WriteDirect {
        side: usize,
        pick: usize,
        len: usize,
        take: usize,
    },
    /// `side` writes a send buffer's worth and pumps, `rounds` times: bulk data, beyond the
    /// version 2 initial window.
    WriteMuch {
        side: usize,
        pick: usize,
        rounds: usize,
    },
    /// `side` reads at most `max` bytes from the `pick`-th stream it knows.
    Read {
        side: usize,
        pick: usize,
        max: usize,
        chunk: bool,
    },
    /// `side` half-closes the `pick`-th stream it knows.
    Finish { side: usize, pick: usize },
    /// `side` releases the `pick`-th stream it knows.
    Release { side: usize, pick: usize },
    /// Moves at most `max` bytes from `from` to its peer.
    Deliver { from: usize, max: usize },
    /// Moves everything both ways, `chunk` bytes at a time.
    Pump { chunk: usize },
    /// Advances the clock by less than the keepalive interval, runs the timers, pumps.
    Advance { millis: u64 },
}

/// `read_weight` varies from case to case: slow readers fill the receive buffers and block the
/// writers, fast ones keep the data moving.
fn op(read_weight: u32) -> impl Strategy<Value = Op> {
    let side = 0usize..2;
    let pick = any::<usize>();
    let write_len = prop_oneof![2 => 0usize..200, 3 => 0usize..6000, 3 => 0usize..40_000];
    // Powers of two land exactly on the version 2 UPD threshold (half the stream buffer).
    let read_max = prop_oneof![
        1usize..64,
        1usize..5000,
        1usize..40_000,
        prop::sample::select(vec![1024usize, 2048, 4096, 8192]),
    ];
    let chunk = prop_oneof![1usize..32, 32usize..3000, Just(usize::MAX)];
    // How much of a direct write the transport takes: inside a header, inside a payload, all.
    let direct_take = prop_oneof![1 => 0usize..20, 2 => 0usize..70_000, 1 => Just(usize::MAX)];
    prop_oneof![
        2 => side.clone().prop_map(Op::Open),
        2 => side.clone().prop_map(Op::Accept),
        8 => (side.clone(), pick, write_len, any::<bool>())
            .prop_map(|(side, pick, len, chunk)| Op::Write { side, pick, len, chunk }),
        // (Nested: proptest's unions of more than ten arms reject weight 0, which
        // `read_weight` may be.)
        4 => prop_oneof![
            1 => (side.clone(), pick, 1usize..40)
                .prop_map(|(side, pick, rounds)| Op::WriteMuch { side, pick, rounds }),
            3 => (side.clone(), pick, 0usize..200_000, direct_take)
                .prop_map(|(side, pick, len, take)| Op::WriteDirect { side, pick, len, take }),
        ],
        read_weight => (side.clone(), pick, read_max, any::<bool>())
            .prop_map(|(side, pick, max, chunk)| Op::Read { side, pick, max, chunk }),
        1 => (side.clone(), pick).prop_map(|(side, pick)| Op::Finish { side, pick }),
        1 => (side.clone(), pick).prop_map(|(side, pick)| Op::Release { side, pick }),
        4 => (side, prop_oneof![1usize..16, 1usize..4000, 1usize..100_000])
            .prop_map(|(from, max)| Op::Deliver { from, max }),
        3 => chunk.prop_map(|chunk| Op::Pump { chunk }),
        2 => (0u64..KEEP_ALIVE_INTERVAL.as_millis() as u64).prop_map(|millis| Op::Advance { millis }),
    ]
}

// ------------------------------------------------------------------------------------------
// The harness

/// What the test knows about one stream, per side (index `CLIENT` or `SERVER`).
#[derive(Debug, Clone)]
struct Rec {
    id: StreamId,
    opener: usize,
    /// Opened or accepted by the side.
    known: [bool; 2],
    released: [bool; 2],
    finished: [bool; 2],
    /// Bytes the side's writes accepted.
    written: [usize; 2],
    /// Bytes the side read.
    read: [usize; 2],
    /// The side read the end of the stream.
    eof: [bool; 2],
    /// The side's last read was `Blocked` and no `StreamReadable` came since.
    read_waiting: [bool; 2],
    /// The side's last write was `Blocked` and no `StreamWritable` came since.
    write_waiting: [bool; 2],
    /// The side saw `StreamOpened` for this stream (peer-opened streams only).
    opened_event: [bool; 2],

    // What the wire shows.
    /// The opener emitted the SYN.
    syn_sent: bool,
    /// PSH payload bytes the side emitted.
    data_sent: [usize; 2],
    /// The side emitted its FIN.
    fin_sent: [bool; 2],
    /// The side emitted its FIN a second time (an early FIN repeated).
    fin_repeated: [bool; 2],
    /// PSH payload bytes the side processed (before releasing the stream).
    data_arrived: [usize; 2],
    /// When the side processed the peer's FIN.
    peer_fin_at: [Option<Duration>; 2],
    /// PSH payload bytes the side processed, also after releasing the stream.
    data_processed: [usize; 2],
    /// The side processed the opener's SYN (the opener has the stream from `open_stream`).
    syn_arrived: [bool; 2],
    /// The size of the side's first read (0: none yet).
    first_read: [usize; 2],
    /// `(consumed, window)` of the last UPD the side emitted.
    upd_sent: [Option<(u32, u32)>; 2],
    /// `consumed` of the first UPD the side emitted (0: the window was shrunk before any
    /// read, so the peer may have used the initial window).
    first_upd: [Option<u32>; 2],
    /// `(consumed, window)` of the last UPD the side processed.
    upd_seen: [Option<(u32, u32)>; 2],
    /// Data offset up to which the side's frames were checked against its window when a
    /// direct write made them (their bytes are decoded later, maybe after a newer UPD).
    direct_checked: [usize; 2],
}

/// One direction of the wire, decoded twice: when frames are made (`poll_transmit`) and when
/// the receiver has processed them (its `bytes_in` counter passed their end).
struct Wire {
    decoder: FrameDecoder,
    /// Transmit-queue bytes seen, not yet decoded into frames.
    raw: BytesMut,
    /// Absolute offset (in the sender's output) of the end of `raw`.
    seen: u64,
    /// Absolute offset of the end of the last decoded frame.
    decoded: u64,
    /// Frames made and not yet processed by the receiver, with their end offsets.
    in_flight: VecDeque<(u64, Frame)>,
}

impl Wire {
    fn new(version: Version) -> Wire {
        Wire {
            decoder: FrameDecoder::new(version),
            raw: BytesMut::new(),
            seen: 0,
            decoded: 0,
            in_flight: VecDeque::new(),
        }
    }
}

struct Harness {
    version: Version,
    limits: Limits,
    s: [Session; 2],
    /// `inbox[i]`: bytes delivered to side `i` and not consumed by it yet.
    inbox: [BytesMut; 2],
    /// `wire[i]`: what side `i` sends.
    wire: [Wire; 2],
    /// Bytes side `i` wrote to the transport itself (direct writes), not delivered yet: they
    /// come before anything it transmits later.
    direct: [Vec<u8>; 2],
    offset: Duration,
    /// Deliver bytes even while the receiver does not want to read (it must then leave them
    /// in its buffer); otherwise they wait in the sender's transmit queue.
    eager: bool,
    streams: Vec<Rec>,
    index: HashMap<StreamId, usize>,
    last_opened: [u32; 2],
    last_accepted: [u32; 2],
    steps: u64,
}

impl Harness {
    fn new(version: Version, limits: Limits, eager: bool) -> Harness {
        let cfg = limits.config(version);
        let now = base();
        Harness {
            version,
            limits,
            s: [
                Session::new(Side::Client, cfg.clone(), now).expect("valid config"),
                Session::new(Side::Server, cfg, now).expect("valid config"),
            ],
            inbox: [BytesMut::new(), BytesMut::new()],
            wire: [Wire::new(version), Wire::new(version)],
            direct: [Vec::new(), Vec::new()],
            offset: Duration::ZERO,
            eager,
            streams: Vec::new(),
            index: HashMap::new(),
            last_opened: [1, 0],
            last_accepted: [0, 0],
            steps: 0,
        }
    }

    fn now(&self) -> Instant {
        base() + self.offset
    }

    /// Streams `side` knows, in a stable order.
    fn known(&self, side: usize) -> Vec<usize> {
        (0..self.streams.len())
            .filter(|&i| self.streams[i].known[side])
            .collect()
    }

    fn pick(&self, side: usize, pick: usize) -> Option<usize> {
        let known = self.known(side);
        (!known.is_empty()).then(|| known[pick % known.len()])
    }

    fn rec_of(&self, id: StreamId, what: &str) -> R<usize> {
        match self.index.get(&id) {
            Some(&i) => Ok(i),
            None => fail(format!("{what} for {id}, which no side opened")),
        }
    }

    /// Version 2 only: the writer may have given up on data it could not send (it processed
    /// the reader's FIN, the window stayed shut for the keepalive timeout), so the reader may
    /// legitimately get only a prefix.
    fn may_have_stalled(&self, rec: &Rec, reader: usize) -> bool {
        let writer = 1 - reader;
        self.version == Version::V2
            && rec.peer_fin_at[writer].is_some_and(|t| self.offset >= t + KEEP_ALIVE_TIMEOUT)
    }

    fn run(&mut self, op: &Op) -> R {
        match *op {
            Op::Open(side) => self.open(side)?,
            Op::Accept(side) => {
                self.accept(side)?;
            }
            Op::Write {
                side,
                pick,
                len,
                chunk,
            } => {
                if let Some(i) = self.pick(side, pick) {
                    self.write(side, i, len, chunk)?;
                }
            }
            Op::WriteDirect {
                side,
                pick,
                len,
                take,
            } => {
                if let Some(i) = self.pick(side, pick) {
                    self.write_direct(side, i, len, take)?;
                }
            }
            Op::WriteMuch { side, pick, rounds } => {
                if let Some(i) = self.pick(side, pick) {
                    for round in 0..rounds {
                        self.write(side, i, self.limits.max_stream_send_buffer, round % 2 == 0)?;
                        self.pump(usize::MAX)?;
                    }
                }
            }
            Op::Read {
                side,
                pick,
                max,
                chunk,
            } => {
                if let Some(i) = self.pick(side, pick) {
                    self.read(side, i, max, chunk)?;
                }
            }
            Op::Finish { side, pick } => {
                if let Some(i) = self.pick(side, pick) {
                    self.finish(side, i)?;
                }
            }
            Op::Release { side, pick } => {
                if let Some(i) = self.pick(side, pick) {
                    self.release(side, i);
                }
            }
            Op::Deliver { from, max } => {
                self.transfer(from, max)?;
            }
            Op::Pump { chunk } => {
                self.pump(chunk)?;
            }
            Op::Advance { millis } => self.advance(Duration::from_millis(millis))?,
        }
        self.drain_events(CLIENT)?;
        self.drain_events(SERVER)?;
        self.check_invariants()
    }

    fn open(&mut self, side: usize) -> R {
        let id = match self.s[side].open_stream() {
            Ok(id) => id,
            Err(e) => return fail(format!("{} open_stream failed: {e}", side_name(side))),
        };
        let expected = self.last_opened[side] + 2;
        prop_assert_eq!(
            id.as_u32(),
            expected,
            "{} stream ids go 3, 5, ... or 2, 4, ...",
            side_name(side)
        );
        self.last_opened[side] = expected;
        let mut known = [false; 2];
        known[side] = true;
        self.index.insert(id, self.streams.len());
        self.streams.push(Rec {
            id,
            opener: side,
            known,
            released: [false; 2],
            finished: [false; 2],
            written: [0; 2],
            read: [0; 2],
            eof: [false; 2],
            read_waiting: [false; 2],
            write_waiting: [false; 2],
            opened_event: [false; 2],
            syn_sent: false,
            data_sent: [0; 2],
            data_arrived: [0; 2],
            fin_sent: [false; 2],
            fin_repeated: [false; 2],
            peer_fin_at: [None; 2],
            data_processed: [0; 2],
            syn_arrived: [false; 2],
            first_read: [0; 2],
            upd_sent: [None; 2],
            first_upd: [None; 2],
            upd_seen: [None; 2],
            direct_checked: [0; 2],
        });
        Ok(())
    }

    /// Accepts one stream; returns whether there was one.
    fn accept(&mut self, side: usize) -> R<bool> {
        let Some(id) = self.s[side].accept_stream() else {
            return Ok(false);
        };
        let i = self.rec_of(id, "accept_stream")?;
        let rec = &mut self.streams[i];
        prop_assert_eq!(
            rec.opener,
            1 - side,
            "{} accepted its own stream {}",
            side_name(side),
            id
        );
        prop_assert!(
            !rec.known[side],
            "{} accepted {} twice",
            side_name(side),
            id
        );
        prop_assert!(
            rec.opened_event[side],
            "{} accepted {} without a StreamOpened event",
            side_name(side),
            id
        );
        prop_assert!(
            id.as_u32() > self.last_accepted[side],
            "{} accepted {} after {}: not in opening order",
            side_name(side),
            id,
            self.last_accepted[side]
        );
        self.last_accepted[side] = id.as_u32();
        rec.known[side] = true;
        Ok(true)
    }

    fn write(&mut self, side: usize, i: usize, len: usize, chunk: bool) -> R {
        let peer = 1 - side;
        let rec = &self.streams[i];
        let id = rec.id;
        let stalled = self.may_have_stalled(rec, peer);
        let payload = data(id, side, rec.written[side], len);
        let result = if chunk {
            self.s[side].write_chunk(id, &Bytes::from(payload))
        } else {
            self.s[side].write(id, &payload)
        };
        let rec = &mut self.streams[i];
        match result {
            Ok(n) => {
                prop_assert!(
                    !rec.released[side],
                    "write on released stream {} accepted",
                    id
                );
                prop_assert!(
                    !rec.finished[side],
                    "write on finished stream {} accepted",
                    id
                );
                prop_assert!(n <= len, "write took {} of {} bytes", n, len);
                prop_assert!(
                    len == 0 || n > 0,
                    "write returned Ok(0) for {} bytes instead of Blocked",
                    len
                );
                rec.written[side] += n;
            }
            Err(WriteError::Blocked) => {
                prop_assert!(
                    !rec.released[side] && !rec.finished[side],
                    "Blocked on a closed write half"
                );
                prop_assert!(len > 0, "empty write blocked");
                rec.write_waiting[side] = true;
            }
            Err(WriteError::UnknownStream(got)) => {
                prop_assert_eq!(got, id);
                prop_assert!(
                    rec.released[side],
                    "write on live stream {} says unknown",
                    id
                );
            }
            Err(WriteError::Finished(got)) => {
                prop_assert_eq!(got, id);
                prop_assert!(
                    rec.finished[side] && !rec.released[side],
                    "write on open stream {} says finished",
                    id
                );
            }
            Err(WriteError::PeerStoppedReading(got)) => {
                prop_assert_eq!(got, id);
                prop_assert!(!rec.released[side]);
                prop_assert!(
                    stalled,
                    "PeerStoppedReading on {} before the keepalive timeout passed since the peer's FIN",
                    id
                );
            }
            Err(e) => return fail(format!("{} write on {id}: unexpected {e}", side_name(side))),
        }
        Ok(())
    }

    /// One direct write: the bytes the transport takes go on the wire (before anything
    /// transmitted later), the rest of a partly taken frame is left to the transmit queue.
    /// When a direct write is not possible, a plain write with the same checks.
    fn write_direct(&mut self, side: usize, i: usize, len: usize, take: usize) -> R {
        let id = self.streams[i].id;
        let payload = data(id, side, self.streams[i].written[side], len);
        let waiting = self.s[side].wants_write();
        let write = match self.s[side].begin_direct_write(id, &payload) {
            Ok(Some(write)) => write,
            // Not possible now, or an error: `write` reports the same errors, with the checks.
            Ok(None) | Err(_) => return self.write(side, i, len, false),
        };
        prop_assert!(!waiting, "direct write while output waits");
        prop_assert!(
            !self.s[side].wants_write(),
            "output offered while a direct write is in flight"
        );
        prop_assert!(!write.is_empty() && write.len() <= len);
        let take = take.min(write.wire_len());
        let mut slices = vec![IoSlice::new(&[]); 2 * smux_proto::DIRECT_FRAMES];
        let n = write.slices(&mut slices);
        let mut bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        prop_assert_eq!(bytes.len(), write.wire_len());
        bytes.truncate(take);
        let start = self.s[side].stats().bytes_out;
        prop_assert_eq!(self.wire[side].seen, start, "wire monitor out of step");
        let accepted = self.s[side].end_direct_write(write, take);
        prop_assert_eq!(
            self.s[side].stats().bytes_out,
            start + take as u64,
            "bytes_out counts what the transport took"
        );
        prop_assert!(take == 0 || accepted > 0, "bytes went out, none accepted");
        let v2 = self.version == Version::V2;
        let rec = &mut self.streams[i];
        rec.written[side] += accepted;
        if v2 && accepted > 0 {
            // Go's rule when the frames were made: nothing else was queued, so everything
            // written is sent.
            check_go_window("direct write", id, rec.written[side], rec.upd_seen[side])?;
            rec.direct_checked[side] = rec.written[side];
        }
        let wire = &mut self.wire[side];
        wire.raw.extend_from_slice(&bytes);
        wire.seen += take as u64;
        self.direct[side].extend_from_slice(&bytes);
        Ok(())
    }

    /// One read; returns the bytes read (`Some(0)` at the end) or `None` when blocked.
    fn read(&mut self, side: usize, i: usize, max: usize, chunk: bool) -> R<Option<usize>> {
        let peer = 1 - side;
        let id = self.streams[i].id;
        let result = if chunk {
            self.s[side]
                .read_chunk(id, max)
                .map(|c| c.map_or_else(Vec::new, |b| b.to_vec()))
        } else {
            let mut buf = vec![0u8; max];
            self.s[side].read(id, &mut buf).map(|n| {
                buf.truncate(n);
                buf
            })
        };
        let stalled = self.may_have_stalled(&self.streams[i], side);
        let rec = &mut self.streams[i];
        match result {
            Ok(got) if got.is_empty() => {
                prop_assert!(
                    !rec.released[side],
                    "read on released stream {} succeeded",
                    id
                );
                prop_assert!(
                    rec.finished[peer] || rec.released[peer],
                    "{} read the end of {} before the peer finished it",
                    side_name(side),
                    id
                );
                prop_assert!(
                    rec.peer_fin_at[side].is_some(),
                    "end of {} read before the FIN was processed",
                    id
                );
                if stalled {
                    prop_assert!(rec.read[side] <= rec.written[peer]);
                } else {
                    prop_assert_eq!(
                        rec.read[side],
                        rec.written[peer],
                        "{} read the end of {} after {} of {} bytes",
                        side_name(side),
                        id,
                        rec.read[side],
                        rec.written[peer]
                    );
                }
                rec.eof[side] = true;
                rec.read_waiting[side] = false;
                Ok(Some(0))
            }
            Ok(got) => {
                prop_assert!(
                    !rec.released[side],
                    "read on released stream {} succeeded",
                    id
                );
                prop_assert!(
                    !rec.eof[side],
                    "{} read data on {} after its end",
                    side_name(side),
                    id
                );
                prop_assert!(got.len() <= max);
                let at = rec.read[side];
                prop_assert!(
                    at + got.len() <= rec.written[peer],
                    "{} read {} bytes of {} at {}, only {} were written",
                    side_name(side),
                    got.len(),
                    id,
                    at,
                    rec.written[peer]
                );
                let expected = data(id, peer, at, got.len());
                if got != expected {
                    let first = got
                        .iter()
                        .zip(&expected)
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    return fail(format!(
                        "{} read wrong data on {id} at offset {} (read of {} bytes from {at})",
                        side_name(side),
                        at + first,
                        got.len()
                    ));
                }
                if rec.read[side] == 0 {
                    rec.first_read[side] = got.len();
                }
                rec.read[side] += got.len();
                rec.read_waiting[side] = false;
                Ok(Some(got.len()))
            }
            Err(ReadError::Blocked) => {
                prop_assert!(!rec.released[side]);
                prop_assert!(
                    !rec.eof[side],
                    "{} read on {} blocked after its end",
                    side_name(side),
                    id
                );
                rec.read_waiting[side] = true;
                Ok(None)
            }
            Err(ReadError::UnknownStream(got)) => {
                prop_assert_eq!(got, id);
                prop_assert!(
                    rec.released[side],
                    "read on live stream {} says unknown",
                    id
                );
                Ok(None)
            }
            Err(e) => fail(format!("{} read on {id}: unexpected {e}", side_name(side))),
        }
    }

    fn finish(&mut self, side: usize, i: usize) -> R {
        let id = self.streams[i].id;
        let result = self.s[side].finish(id);
        let rec = &mut self.streams[i];
        match result {
            Ok(()) => {
                prop_assert!(!rec.released[side], "finish on released {} succeeded", id);
                rec.finished[side] = true;
            }
            Err(WriteError::UnknownStream(got)) => {
                prop_assert_eq!(got, id);
                prop_assert!(rec.released[side], "finish on live {} says unknown", id);
            }
            Err(e) => {
                return fail(format!(
                    "{} finish on {id}: unexpected {e}",
                    side_name(side)
                ))
            }
        }
        Ok(())
    }

    fn release(&mut self, side: usize, i: usize) {
        let id = self.streams[i].id;
        self.s[side].release_stream(id);
        self.streams[i].released[side] = true;
    }

    /// Moves at most `max` bytes from `from` to its peer, then lets the peer take its input.
    /// Every frame `from` makes is checked when it is made, and again when the peer has
    /// processed it.
    fn transfer(&mut self, from: usize, max: usize) -> R<usize> {
        let to = 1 - from;
        self.steps += 1;
        prop_assert!(
            self.steps < STEP_BUDGET,
            "runaway: {} transfers without settling",
            STEP_BUDGET
        );
        let now = self.now();
        let mut moved = Vec::new();
        let mut polled = false;
        let mut direct_moved = 0;
        if max > 0 && (self.eager || self.s[to].wants_read()) {
            polled = true;
            // What direct writes put on the wire comes first.
            direct_moved = self.direct[from].len().min(max);
            moved.extend(self.direct[from].drain(..direct_moved));
            let start = self.s[from].stats().bytes_out;
            let wire = &mut self.wire[from];
            let mut slices = vec![IoSlice::new(&[]); TRANSMIT_SLOTS];
            let n = self.s[from].poll_transmit(&mut slices);
            prop_assert!(
                n < TRANSMIT_SLOTS,
                "the transmit queue has more slices than the monitor can see"
            );
            let mut at = start;
            for slice in &slices[..n] {
                prop_assert!(!slice.is_empty(), "poll_transmit gave an empty slice");
                let end = at + slice.len() as u64;
                if end > wire.seen {
                    wire.raw
                        .extend_from_slice(&slice[(wire.seen.max(at) - at) as usize..]);
                    wire.seen = end;
                }
                at = end;
                if moved.len() < max {
                    let k = slice.len().min(max - moved.len());
                    moved.extend_from_slice(&slice[..k]);
                }
            }
            if n == 0 {
                prop_assert!(
                    !self.s[from].wants_write(),
                    "nothing to transmit, yet wants_write"
                );
            }
        }
        self.s[from].transmitted(moved.len() - direct_moved);
        if polled {
            self.check_frames_made(from)?;
        }
        self.inbox[to].extend_from_slice(&moved);
        if let Err(e) = self.s[to].handle_input(now, &mut self.inbox[to]) {
            return fail(format!("{} handle_input failed: {e}", side_name(to)));
        }
        self.check_frames_processed(from)?;
        self.drain_events(to)?;
        Ok(moved.len())
    }

    /// Decodes and checks the frames `side` made in its last `poll_transmit`.
    fn check_frames_made(&mut self, side: usize) -> R {
        let mut made = Vec::new();
        let wire = &mut self.wire[side];
        loop {
            let before = wire.raw.len();
            match wire.decoder.decode(&mut wire.raw) {
                Ok(Some(frame)) => {
                    wire.decoded += (before - wire.raw.len()) as u64;
                    wire.in_flight.push_back((wire.decoded, frame.clone()));
                    made.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    return fail(format!("{} emitted an invalid frame: {e}", side_name(side)))
                }
            }
        }
        prop_assert!(
            wire.raw.is_empty(),
            "{} left a partial frame in its transmit queue",
            side_name(side)
        );
        for frame in made {
            self.check_frame_made(side, frame)?;
        }
        self.check_updates_owed(side)
    }

    fn check_frame_made(&mut self, side: usize, frame: Frame) -> R {
        let name = side_name(side);
        let v2 = self.version == Version::V2;
        let limits = self.limits;
        match frame {
            Frame::Nop { stream_id } => prop_assert_eq!(stream_id.as_u32(), 0, "NOP on a stream"),
            Frame::Syn { stream_id } => {
                let i = self.rec_of(stream_id, "SYN")?;
                let rec = &mut self.streams[i];
                prop_assert_eq!(
                    rec.opener,
                    side,
                    "{} sent SYN for a stream it did not open",
                    name
                );
                prop_assert!(!rec.syn_sent, "{} sent SYN for {} twice", name, stream_id);
                rec.syn_sent = true;
            }
            Frame::Fin { stream_id } => {
                let i = self.rec_of(stream_id, "FIN")?;
                let rec = &mut self.streams[i];
                prop_assert!(
                    rec.syn_sent,
                    "{} sent FIN for {} before its SYN",
                    name,
                    stream_id
                );
                prop_assert!(
                    rec.finished[side] || rec.released[side],
                    "{} sent FIN for {}, which it neither finished nor released",
                    name,
                    stream_id
                );
                if rec.fin_sent[side] {
                    // Only an early FIN goes again, once (a Go peer may have missed it): on a
                    // stream the peer opened, with no data from this side.
                    prop_assert!(
                        rec.opener != side && rec.data_sent[side] == 0 && !rec.fin_repeated[side],
                        "{} sent FIN for {} twice",
                        name,
                        stream_id
                    );
                    self.streams[i].fin_repeated[side] = true;
                    return Ok(());
                }
                // FIN follows all the data, unless the data was given up on (version 2 stall).
                let rec = &self.streams[i];
                if rec.data_sent[side] != rec.written[side] && !self.may_have_stalled(rec, 1 - side)
                {
                    return fail(format!(
                        "{name} sent FIN for {stream_id} after {} of {} bytes",
                        rec.data_sent[side], rec.written[side]
                    ));
                }
                self.streams[i].fin_sent[side] = true;
            }
            Frame::Psh {
                stream_id,
                data: payload,
            } => {
                let i = self.rec_of(stream_id, "PSH")?;
                let rec = &mut self.streams[i];
                prop_assert!(
                    rec.syn_sent,
                    "{} sent data on {} before its SYN",
                    name,
                    stream_id
                );
                prop_assert!(
                    !rec.fin_sent[side],
                    "{} sent data on {} after its FIN",
                    name,
                    stream_id
                );
                prop_assert!(!payload.is_empty(), "{} sent an empty PSH", name);
                prop_assert!(
                    payload.len() <= limits.max_frame_size,
                    "{} sent a PSH of {} bytes",
                    name,
                    payload.len()
                );
                let at = rec.data_sent[side];
                prop_assert!(
                    at + payload.len() <= rec.written[side],
                    "{} sent data never written",
                    name
                );
                if payload[..] != data(stream_id, side, at, payload.len())[..] {
                    return fail(format!(
                        "{name} sent wrong data on {stream_id} in the PSH at offset {at}"
                    ));
                }
                rec.data_sent[side] += payload.len();
                if v2 && !rec.released[side] && rec.peer_fin_at[side].is_none() {
                    // Room for replies: the UPDs before this data let the peer answer all
                    // the side sent (up to the cap), however long it then pauses its input.
                    check_reply_room(
                        name,
                        stream_id,
                        rec.data_sent[side],
                        rec.upd_sent[side],
                        limits.reply_cap(),
                    )?;
                }
                if v2 && rec.data_sent[side] > rec.direct_checked[side] {
                    check_go_window(name, stream_id, rec.data_sent[side], rec.upd_seen[side])?;
                }
            }
            Frame::Upd {
                stream_id,
                consumed,
                window,
            } => {
                prop_assert!(v2, "{} sent UPD in version 1", name);
                let i = self.rec_of(stream_id, "UPD")?;
                let rec = &mut self.streams[i];
                // A share of the receive budget, never below the floor nor above the cap,
                // except as room for replies: at most what the side wrote and did not read
                // back, up to the reply cap.
                let replies = (rec.written[side] as u64)
                    .saturating_sub(u64::from(consumed))
                    .min(u64::from(limits.reply_cap())) as u32;
                let widest = limits.window_cap().max(replies);
                prop_assert!(
                    (limits.window_floor()..=widest).contains(&window),
                    "{} sent UPD window {} on {}, outside [{}, {}]",
                    name,
                    window,
                    stream_id,
                    limits.window_floor(),
                    widest
                );
                // The consumed count when the grant was decided: never beyond what was read
                // (once the stream is released, dropped data counts too: at most all that
                // arrived), and never going back. It may be 0 (a shrink before any read).
                let bound = if rec.released[side] {
                    rec.data_processed[side]
                } else {
                    rec.read[side]
                };
                prop_assert!(
                    consumed as usize <= bound,
                    "{} sent UPD consumed {} on {}, beyond the {} bytes {}",
                    name,
                    consumed,
                    stream_id,
                    bound,
                    if rec.released[side] {
                        "that arrived"
                    } else {
                        "read"
                    }
                );
                if let Some((previous, _)) = rec.upd_sent[side] {
                    prop_assert!(
                        consumed >= previous,
                        "{} sent UPD consumed {} on {} after {}",
                        name,
                        consumed,
                        stream_id,
                        previous
                    );
                }
                rec.first_upd[side].get_or_insert(consumed);
                rec.upd_sent[side] = Some((consumed, window));
            }
        }
        Ok(())
    }

    /// Version 2: a reader owes the writer an UPD after its first read and whenever half the
    /// window of its latest UPD was read since that UPD (unless the writer's FIN already
    /// arrived). Right after `poll_transmit`, every UPD owed must have been made.
    fn check_updates_owed(&self, side: usize) -> R {
        if self.version != Version::V2 {
            return Ok(());
        }
        for rec in &self.streams {
            if !rec.known[side]
                || rec.released[side]
                || rec.peer_fin_at[side].is_some()
                || rec.read[side] == 0
            {
                continue;
            }
            let Some((sent, window)) = rec.upd_sent[side] else {
                return fail(format!(
                    "{} read {} bytes of {} and sent no UPD",
                    side_name(side),
                    rec.read[side],
                    rec.id
                ));
            };
            prop_assert!(
                sent as usize >= rec.first_read[side],
                "{} read {} bytes of {} first but its last UPD says {}: no UPD after the first read",
                side_name(side),
                rec.first_read[side],
                rec.id,
                sent
            );
            prop_assert!(
                rec.read[side] - (sent as usize) < update_interval(window).max(1) as usize,
                "{} read {} bytes of {} but its last UPD says {} with window {}: an update \
                 interval unacknowledged",
                side_name(side),
                rec.read[side],
                rec.id,
                sent,
                window
            );
        }
        Ok(())
    }

    /// Notes the frames from `from` that the peer has now processed.
    fn check_frames_processed(&mut self, from: usize) -> R {
        let to = 1 - from;
        let processed = self.s[to].stats().bytes_in;
        let offset = self.offset;
        while let Some((end, _)) = self.wire[from].in_flight.front() {
            if *end > processed {
                break;
            }
            let (_, frame) = self.wire[from].in_flight.pop_front().expect("front exists");
            match frame {
                Frame::Fin { stream_id } => {
                    let i = self.rec_of(stream_id, "FIN")?;
                    self.streams[i].peer_fin_at[to].get_or_insert(offset);
                }
                Frame::Upd {
                    stream_id,
                    consumed,
                    window,
                } => {
                    let i = self.rec_of(stream_id, "UPD")?;
                    self.streams[i].upd_seen[to] = Some((consumed, window));
                }
                Frame::Psh { stream_id, data } => {
                    let i = self.rec_of(stream_id, "PSH")?;
                    let rec = &mut self.streams[i];
                    if !rec.released[to] {
                        rec.data_arrived[to] += data.len();
                    }
                    rec.data_processed[to] += data.len();
                }
                Frame::Syn { stream_id } => {
                    let i = self.rec_of(stream_id, "SYN")?;
                    self.streams[i].syn_arrived[to] = true;
                }
                _ => {}
            }
        }
        prop_assert!(
            self.wire[from]
                .in_flight
                .front()
                .is_none_or(|(end, _)| *end > processed),
            "processed offset inside a frame"
        );
        Ok(())
    }

    /// Moves bytes both ways until neither side has anything to send; returns the total.
    fn pump(&mut self, chunk: usize) -> R<usize> {
        let mut total = 0;
        for round in 0.. {
            // Tiny chunks for a while, then big ones, so that bulk data does not take forever.
            let step = if round < 200 { chunk } else { usize::MAX };
            let moved = self.transfer(CLIENT, step)? + self.transfer(SERVER, step)?;
            total += moved;
            if moved == 0 {
                break;
            }
        }
        Ok(total)
    }

    fn advance(&mut self, by: Duration) -> R {
        prop_assert!(by < KEEP_ALIVE_INTERVAL);
        self.offset += by;
        let now = self.now();
        self.s[CLIENT].handle_timeout(now);
        self.s[SERVER].handle_timeout(now);
        self.drain_events(CLIENT)?;
        self.drain_events(SERVER)?;
        self.pump(usize::MAX)?;
        Ok(())
    }

    fn drain_events(&mut self, side: usize) -> R {
        while let Some(event) = self.s[side].poll_event() {
            match event {
                Event::StreamOpened { stream_id } => {
                    let i = self.rec_of(stream_id, "StreamOpened")?;
                    let rec = &mut self.streams[i];
                    prop_assert_eq!(
                        rec.opener,
                        1 - side,
                        "StreamOpened for a stream the side opened itself"
                    );
                    prop_assert!(
                        !rec.opened_event[side],
                        "StreamOpened twice for {}",
                        stream_id
                    );
                    rec.opened_event[side] = true;
                }
                Event::StreamReadable { stream_id } => {
                    let i = self.rec_of(stream_id, "StreamReadable")?;
                    self.streams[i].read_waiting[side] = false;
                }
                Event::StreamWritable { stream_id } => {
                    let i = self.rec_of(stream_id, "StreamWritable")?;
                    self.streams[i].write_waiting[side] = false;
                }
                Event::Closed(e) => return fail(format!("{} closed: {e}", side_name(side))),
                other => return fail(format!("{} unexpected event {other:?}", side_name(side))),
            }
        }
        Ok(())
    }

    fn check_invariants(&self) -> R {
        let limits = self.limits;
        for side in [CLIENT, SERVER] {
            let s = &self.s[side];
            let name = side_name(side);
            if let Some(e) = s.error() {
                return fail(format!("{name} session failed: {e}"));
            }
            prop_assert!(!s.is_closing(), "{} is closing", name);
            prop_assert!(
                self.version == Version::V1 || s.input_pause() != Some(InputPause::ReceiveBudget),
                "{} paused input for the receive budget in version 2",
                name
            );
            let input = s.buffered_input();
            if self.version == Version::V1 {
                // Input pauses once the budget is used up: at most one frame beyond it.
                prop_assert!(
                    input <= limits.max_receive_buffer + limits.max_frame_size,
                    "{} buffers {} unread bytes, beyond the budget plus one frame",
                    name,
                    input
                );
                prop_assert!(input <= limits.max_receive_buffer + 65_535);
            } else {
                let bound = self.v2_input_bound(side);
                prop_assert!(
                    input <= bound,
                    "{} buffers {} unread bytes, beyond the budget, the floors and the \
                     initial windows ({})",
                    name,
                    input,
                    bound
                );
            }
            prop_assert!(
                s.buffered_output() <= limits.max_send_buffer,
                "{} buffers {} unsent bytes",
                name,
                s.buffered_output()
            );
            // The unread bytes the session reports are exactly what arrived and was not read
            // on the streams it did not release.
            let unread: usize = self
                .streams
                .iter()
                .filter(|r| !r.released[side])
                .map(|r| r.data_arrived[side] - r.read[side])
                .sum();
            prop_assert_eq!(
                input,
                unread,
                "{} buffered_input vs data arrived and not read",
                name
            );
            let timeout = s.poll_timeout();
            prop_assert!(
                timeout.is_some_and(|t| t <= self.now() + KEEP_ALIVE_INTERVAL),
                "{} poll_timeout {:?} beyond the next keepalive",
                name,
                timeout.map(|t| t - base())
            );
            // Every transmitted byte reached the peer: either consumed as part of a frame or
            // still waiting in its input buffer (or, written directly, on its way).
            let peer = &self.s[1 - side];
            prop_assert_eq!(
                s.stats().bytes_out,
                peer.stats().bytes_in
                    + self.inbox[1 - side].len() as u64
                    + self.direct[side].len() as u64,
                "bytes sent by {} vs taken by the peer",
                name
            );
            prop_assert!(s.stats().frames_out >= peer.stats().frames_in);
        }
        Ok(())
    }

    /// Version 2: what `side` may buffer, from the wire. Windows are carved out of the budget,
    /// except that every live stream may always get the floor, a stream whose window was
    /// shrunk before any read (its first UPD says nothing consumed, or it sent none yet) may
    /// have received the initial window before the peer saw the shrink, and a stream the side
    /// wrote on keeps room for the peer's replies (at most what it wrote, up to the cap).
    fn v2_input_bound(&self, side: usize) -> usize {
        let live = self
            .streams
            .iter()
            .filter(|r| (r.opener == side || r.syn_arrived[side]) && !r.released[side]);
        let (mut count, mut shrunk, mut replies) = (0, 0, 0);
        for rec in live {
            count += 1;
            if rec.first_upd[side].is_none_or(|c| c == 0) {
                shrunk += 1;
            }
            replies += rec.written[side].min(self.limits.reply_cap() as usize);
        }
        self.limits.max_receive_buffer
            + count * BUSY_RECEIVE_WINDOW_FLOOR.min(self.limits.window_cap()) as usize
            + shrunk * INITIAL_PEER_WINDOW as usize
            + replies
    }

    /// Both sides accept everything, finish every stream they hold, and read everything, until
    /// nothing moves any more; reads only happen when the event contract allows them.
    fn settle(&mut self) -> R {
        for _round in 0..10_000 {
            let mut progress = self.pump(usize::MAX)? > 0;
            for side in [CLIENT, SERVER] {
                while self.accept(side)? {
                    progress = true;
                }
                for i in self.known(side) {
                    let rec = &self.streams[i];
                    if !rec.released[side] && !rec.finished[side] {
                        self.finish(side, i)?;
                        progress = true;
                    }
                }
                for i in self.known(side) {
                    loop {
                        let rec = &self.streams[i];
                        if rec.released[side] || rec.eof[side] || rec.read_waiting[side] {
                            break;
                        }
                        // Half a stream window per read: exactly the version 2 UPD threshold.
                        match self.read(side, i, self.limits.max_stream_buffer / 2, i % 2 == 0)? {
                            Some(0) => {
                                progress = true;
                                break;
                            }
                            Some(_) => progress = true,
                            None => break,
                        }
                    }
                }
                self.drain_events(side)?;
            }
            self.check_invariants()?;
            if !progress {
                return Ok(());
            }
        }
        fail("settling does not end".into())
    }

    /// After [`settle`](Self::settle): every end that was not released read all the peer wrote
    /// and then the end of the stream.
    fn check_complete(&mut self) -> R {
        for i in 0..self.streams.len() {
            for side in [CLIENT, SERVER] {
                let rec = self.streams[i].clone();
                let peer = 1 - side;
                if rec.released[side] {
                    continue;
                }
                prop_assert!(
                    rec.known[side],
                    "{} never got stream {}",
                    side_name(side),
                    rec.id
                );
                if !rec.eof[side] {
                    // Tell a missing event from missing data.
                    let probe = self.s[side].read(rec.id, &mut [0u8; 1]);
                    return fail(format!(
                        "{} did not reach the end of {} (opened by {}): read {} of {} bytes; \
                         waiting for an event: {}; a read now gives {probe:?}; record {rec:?}",
                        side_name(side),
                        rec.id,
                        side_name(rec.opener),
                        rec.read[side],
                        rec.written[peer],
                        rec.read_waiting[side],
                    ));
                }
                if !self.may_have_stalled(&rec, side) {
                    prop_assert_eq!(
                        rec.read[side],
                        rec.written[peer],
                        "{} lost data of {}",
                        side_name(side),
                        rec.id
                    );
                }
            }
        }
        for side in [CLIENT, SERVER] {
            prop_assert!(
                self.inbox[side].is_empty(),
                "{} left {} bytes of input",
                side_name(side),
                self.inbox[side].len()
            );
            prop_assert_eq!(
                self.s[side].buffered_input(),
                0,
                "{} still buffers input",
                side_name(side)
            );
            let stats = self.s[side].stats();
            let peer = self.s[1 - side].stats();
            prop_assert_eq!(
                stats.frames_out,
                peer.frames_in,
                "{} frames sent vs received",
                side_name(side)
            );
            prop_assert_eq!(stats.streams_refused, 0);
        }
        Ok(())
    }

    /// Lets time pass (with keepalives flowing), then checks that every blocked writer was
    /// woken, releases everything and checks that nothing is left behind; finally closes.
    fn wind_down(&mut self) -> R {
        for _ in 0..4 {
            self.advance(Duration::from_secs(9))?;
            self.settle()?;
        }
        for rec in &self.streams {
            for side in [CLIENT, SERVER] {
                prop_assert!(
                    rec.released[side] || !rec.write_waiting[side],
                    "{} never got StreamWritable for {} after Blocked",
                    side_name(side),
                    rec.id
                );
            }
        }
        for i in 0..self.streams.len() {
            for side in [CLIENT, SERVER] {
                if self.streams[i].known[side] && !self.streams[i].released[side] {
                    self.release(side, i);
                }
            }
        }
        self.pump(usize::MAX)?;
        for _ in 0..4 {
            self.advance(Duration::from_secs(9))?;
        }
        for side in [CLIENT, SERVER] {
            let s = &self.s[side];
            prop_assert_eq!(
                s.stream_count(),
                0,
                "{} still tracks streams after all were released",
                side_name(side)
            );
            prop_assert_eq!(s.buffered_input(), 0);
            prop_assert_eq!(s.buffered_output(), 0);
            prop_assert!(
                !s.wants_write(),
                "{} still has something to send",
                side_name(side)
            );
            prop_assert!(s.wants_read());
        }
        // Graceful close: immediate with no streams; the peer then sees the transport end.
        let now = self.now();
        self.s[CLIENT].close();
        let mut slices = [IoSlice::new(&[]); 4];
        prop_assert_eq!(self.s[CLIENT].poll_transmit(&mut slices), 0);
        prop_assert!(self.s[CLIENT].is_closed());
        prop_assert!(matches!(
            self.s[CLIENT].poll_event(),
            Some(Event::Closed(Error::LocallyClosed))
        ));
        prop_assert!(matches!(
            self.s[CLIENT].open_stream(),
            Err(OpenError::SessionClosed(_))
        ));
        let result = self.s[SERVER].handle_eof(now, &mut self.inbox[SERVER]);
        prop_assert!(
            matches!(result, Err(Error::PeerClosed)),
            "server saw {:?}",
            result
        );
        prop_assert!(matches!(
            self.s[SERVER].poll_event(),
            Some(Event::Closed(Error::PeerClosed))
        ));
        Ok(())
    }
}

fn run_session_case(version: Version, limits: Limits, eager: bool, ops: &[Op]) -> R {
    let mut h = Harness::new(version, limits, eager);
    for op in ops {
        h.run(op)?;
    }
    h.settle()?;
    h.check_complete()?;
    h.wind_down()
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    (0u32..8).prop_flat_map(|read_weight| proptest::collection::vec(op(read_weight), 1..120))
}

proptest! {
    // Shrinking a failure is bounded in time: a debug run stays short even while it fails.
    #![proptest_config(ProptestConfig {
        max_shrink_iters: 4000,
        max_shrink_time: 10_000,
        ..proptest_config(96)
    })]

    /// Version 1: random traffic between two sessions keeps every stream intact.
    #[test]
    fn v1_random_traffic(limits in limits(), eager in any::<bool>(), ops in ops()) {
        run_session_case(Version::V1, limits, eager, &ops)?;
    }

    /// Version 2: the same, with per-stream windows.
    #[test]
    fn v2_random_traffic(limits in limits(), eager in any::<bool>(), ops in ops()) {
        run_session_case(Version::V2, limits, eager, &ops)?;
    }
}

/// Version 2 budgets from far below one initial window (every stream shrunk at open) to the
/// default; stream caps below, at and above the budget.
fn shared_budget_limits() -> impl Strategy<Value = Limits> {
    (
        1000usize..=4000,
        prop_oneof![
            Just(16 * 1024),
            Just(48 * 1024),
            Just(100_000),
            Just(256 * 1024),
            Just(1024 * 1024),
            Just(4 * 1024 * 1024),
        ],
        prop_oneof![
            Just(8 * 1024),
            Just(64 * 1024),
            Just(1024 * 1024),
            Just(4 * 1024 * 1024),
        ],
    )
        .prop_map(
            |(max_frame_size, max_receive_buffer, max_stream_buffer)| Limits {
                max_receive_buffer,
                max_stream_buffer,
                ..Limits::small(max_frame_size)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        max_shrink_iters: 2000,
        max_shrink_time: 10_000,
        ..proptest_config(48)
    })]

    /// Version 2, both sides opening streams and writing as much as the sessions take, reading
    /// parts of random streams: input never pauses for the receive budget, unread input stays
    /// within the budget plus a floor per live stream plus the initial window of streams
    /// shrunk before any read (counted from the wire; `check_invariants` after every step),
    /// and once the writers stop and the readers drain, every byte arrived intact.
    #[test]
    fn v2_shared_budget_bounds_input_and_delivers_everything(
        limits in shared_budget_limits(),
        opened in (1usize..=6, 1usize..=6),
        // Per round: which streams each side reads (a bit per stream), how much per read,
        // and the transfer chunk.
        rounds in proptest::collection::vec(
            (any::<u32>(), any::<u32>(), 1usize..=70_000, 1usize..=70_000, 1usize..=20_000),
            1..30,
        ),
    ) {
        let mut h = Harness::new(Version::V2, limits, true);
        for _ in 0..opened.0 {
            h.open(CLIENT)?;
        }
        for _ in 0..opened.1 {
            h.open(SERVER)?;
        }
        h.pump(usize::MAX)?;
        for side in [CLIENT, SERVER] {
            while h.accept(side)? {}
        }
        h.check_invariants()?;
        let streams = h.streams.len();
        prop_assert_eq!(streams, opened.0 + opened.1);
        for &(reads_client, reads_server, read_client, read_server, chunk) in &rounds {
            // Writers write until the session refuses (the send budgets or windows are full).
            for side in [CLIENT, SERVER] {
                for i in h.known(side) {
                    for k in 0..8 {
                        let before = h.streams[i].written[side];
                        h.write(side, i, limits.max_stream_send_buffer, k % 2 == 0)?;
                        if h.streams[i].written[side] == before {
                            break;
                        }
                    }
                }
            }
            h.transfer(CLIENT, chunk)?;
            h.transfer(SERVER, chunk)?;
            h.drain_events(CLIENT)?;
            h.drain_events(SERVER)?;
            h.check_invariants()?;
            for (side, mask, max) in [(CLIENT, reads_client, read_client), (SERVER, reads_server, read_server)] {
                for i in h.known(side) {
                    if mask & (1 << (i % 32)) != 0 {
                        h.read(side, i, max, i % 2 == 1)?;
                    }
                }
                h.drain_events(side)?;
            }
            h.check_invariants()?;
            h.pump(chunk)?;
            h.drain_events(CLIENT)?;
            h.drain_events(SERVER)?;
            h.check_invariants()?;
        }
        // The writers stop (they finish); the readers drain everything.
        h.settle()?;
        h.check_complete()?;
        // Nothing was released and nothing can stall: every byte written was read, and both
        // sides did write (the first stream each side knows always gets into the send budget).
        for side in [CLIENT, SERVER] {
            let mut total = 0;
            for rec in &h.streams {
                prop_assert_eq!(rec.read[1 - side], rec.written[side], "{} of {}", side_name(1 - side), rec.id);
                total += rec.written[side];
            }
            prop_assert!(total > 0, "{} wrote nothing", side_name(side));
        }
        h.wind_down()?;
    }
}

// ------------------------------------------------------------------------------------------
// Invalid input

/// A header that the rules forbid, and the violation it must cause.
fn bad_header(version: Version) -> impl Strategy<Value = ([u8; 8], ProtocolViolation)> {
    let v = version.as_u8();
    let sid = any::<u32>();
    prop_oneof![
        (
            any::<u8>().prop_filter("other version", move |b| *b != v),
            any::<[u8; 7]>()
        )
            .prop_map(move |(ver, rest)| {
                let mut h = [0u8; 8];
                h[0] = ver;
                h[1..].copy_from_slice(&rest);
                (
                    h,
                    ProtocolViolation::WrongVersion {
                        expected: v,
                        received: ver,
                    },
                )
            }),
        (5u8..=255, any::<u16>(), sid).prop_map(move |(cmd, len, sid)| {
            (
                header(v, cmd, len, sid),
                ProtocolViolation::UnknownCommand(cmd),
            )
        }),
        (
            prop_oneof![Just(0u8), Just(1u8), Just(3u8)],
            1u16..=u16::MAX,
            sid
        )
            .prop_map(move |(cmd, len, sid)| {
                let c = match cmd {
                    0 => Cmd::Syn,
                    1 => Cmd::Fin,
                    _ => Cmd::Nop,
                };
                (
                    header(v, cmd, len, sid),
                    ProtocolViolation::BadControlLength {
                        cmd: c,
                        stream_id: StreamId::new(sid),
                        len,
                    },
                )
            }),
        (any::<u16>(), sid).prop_map(move |(len, sid)| {
            let stream_id = StreamId::new(sid);
            match version {
                Version::V1 => (
                    header(v, 4, len, sid),
                    ProtocolViolation::UpdInVersion1 { stream_id },
                ),
                Version::V2 => {
                    let len = if len == 8 { 9 } else { len };
                    (
                        header(v, 4, len, sid),
                        ProtocolViolation::BadControlLength {
                            cmd: Cmd::Upd,
                            stream_id,
                            len,
                        },
                    )
                }
            }
        }),
    ]
}

fn header(ver: u8, cmd: u8, len: u16, sid: u32) -> [u8; 8] {
    let mut h = [ver, cmd, 0, 0, 0, 0, 0, 0];
    h[2..4].copy_from_slice(&len.to_le_bytes());
    h[4..8].copy_from_slice(&sid.to_le_bytes());
    h
}

/// A frame a peer may legally send to a session on `side` (small payloads, consistent state:
/// UPD claims nothing consumed, SYN uses the peer's parity).
fn valid_frame(version: Version, side: Side) -> BoxedStrategy<Frame> {
    let peer_id = (0u32..20).prop_map(move |n| {
        StreamId::new(match side {
            Side::Server => 2 * n + 3,
            Side::Client => 2 * n + 2,
        })
    });
    let any_id = (0u32..50).prop_map(StreamId::new);
    let syn = peer_id.prop_map(|stream_id| Frame::Syn { stream_id });
    let fin = any_id
        .clone()
        .prop_map(|stream_id| Frame::Fin { stream_id });
    let nop = any::<u32>().prop_map(|n| Frame::Nop {
        stream_id: StreamId::new(n),
    });
    let psh = (
        any_id.clone(),
        proptest::collection::vec(any::<u8>(), 0..100),
    )
        .prop_map(|(stream_id, data)| Frame::Psh {
            stream_id,
            data: Bytes::from(data),
        });
    match version {
        Version::V1 => prop_oneof![2 => syn, 1 => fin, 1 => nop, 3 => psh].boxed(),
        Version::V2 => {
            let upd = (any_id, any::<u32>()).prop_map(|(stream_id, window)| Frame::Upd {
                stream_id,
                consumed: 0,
                window,
            });
            prop_oneof![2 => syn, 1 => fin, 1 => nop, 3 => psh, 1 => upd].boxed()
        }
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Valid(Frame),
    Garbage([u8; 8], ProtocolViolation, Vec<u8>),
}

fn segments(version: Version, side: Side) -> impl Strategy<Value = Vec<Segment>> {
    let valid = valid_frame(version, side).prop_map(Segment::Valid);
    let garbage = (
        bad_header(version),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|((h, v), tail)| Segment::Garbage(h, v, tail))
        .boxed();
    let mixed = prop_oneof![3 => valid.clone(), 1 => garbage.clone()];
    (
        proptest::collection::vec(valid, 0..20),
        garbage,
        proptest::collection::vec(mixed, 0..10),
    )
        .prop_map(|(mut before, bad, after)| {
            before.push(bad);
            before.extend(after);
            before
        })
}

fn case() -> impl Strategy<Value = (Version, Side, Vec<Segment>, Vec<usize>)> {
    (
        prop_oneof![Just(Version::V1), Just(Version::V2)],
        prop_oneof![Just(Side::Client), Just(Side::Server)],
    )
        .prop_flat_map(|(v, side)| {
            (
                Just(v),
                Just(side),
                segments(v, side),
                proptest::collection::vec(prop_oneof![1usize..8, 1usize..200], 0..100),
            )
        })
}

/// Checks that a failed session stays failed with `expected`, whatever it is given.
fn check_sticky(
    s: &mut Session,
    now: Instant,
    expected: &ProtocolViolation,
    leftover: &mut BytesMut,
) -> R {
    let same = |e: &Error| matches!(e, Error::Protocol(p) if p == expected);
    prop_assert!(s.error().is_some_and(same), "error() is {:?}", s.error());
    prop_assert!(s.is_closed());
    prop_assert!(!s.wants_read());
    prop_assert_eq!(s.poll_timeout(), None);
    let mut closed = 0;
    while let Some(event) = s.poll_event() {
        if let Event::Closed(e) = event {
            prop_assert!(same(&e), "Closed({:?})", e);
            closed += 1;
        }
    }
    prop_assert_eq!(closed, 1, "Closed must be reported exactly once");
    // Whatever comes next, the session stays failed with the same error.
    let r = s.handle_input(now, leftover);
    prop_assert!(
        r.as_ref().is_err_and(same),
        "handle_input after failure: {:?}",
        r
    );
    let mut valid = BytesMut::new();
    Frame::Nop {
        stream_id: StreamId::new(0),
    }
    .encode(s.config().version, &mut valid)
    .unwrap();
    let r = s.handle_input(now + Duration::from_secs(1), &mut valid);
    prop_assert!(
        r.as_ref().is_err_and(same),
        "handle_input of a valid frame after failure: {:?}",
        r
    );
    let mut empty = BytesMut::new();
    let r = s.handle_input(now, &mut empty);
    prop_assert!(
        r.as_ref().is_err_and(same),
        "empty handle_input after failure: {:?}",
        r
    );
    s.handle_timeout(now + Duration::from_secs(100));
    let r = s.handle_eof(now + Duration::from_secs(100), &mut empty);
    prop_assert!(
        r.as_ref().is_err_and(same),
        "handle_eof after failure: {:?}",
        r
    );
    prop_assert!(
        s.error().is_some_and(same),
        "error() changed to {:?}",
        s.error()
    );
    prop_assert!(matches!(s.open_stream(), Err(OpenError::SessionClosed(ref e)) if same(e)));
    let mut slices = [IoSlice::new(&[]); 4];
    prop_assert_eq!(
        s.poll_transmit(&mut slices),
        0,
        "a failed session transmits nothing"
    );
    prop_assert!(s.poll_event().is_none(), "no more events after Closed");
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(256))]

    /// Valid frames, then an invalid header, then anything: the session fails exactly when
    /// the invalid header is complete, with the matching violation, and the failure sticks.
    #[test]
    fn garbage_ends_the_session_with_a_sticky_error((version, side, segs, cuts) in case()) {
        let mut wire = Vec::new();
        let mut first_bad = None;
        for seg in &segs {
            match seg {
                Segment::Valid(f) => f.encode(version, &mut wire).unwrap(),
                Segment::Garbage(h, v, tail) => {
                    if first_bad.is_none() {
                        first_bad = Some((wire.len(), v.clone()));
                    }
                    wire.extend_from_slice(h);
                    wire.extend_from_slice(tail);
                }
            }
        }
        let (bad_at, expected) = first_bad.expect("a garbage segment");
        let now = base();
        let mut s = Session::new(side, Config::default().with_version(version), now).unwrap();
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut cuts = cuts.into_iter();
        let mut failed = false;
        while fed < wire.len() {
            let step = cuts.next().unwrap_or(usize::MAX).min(wire.len() - fed);
            buf.extend_from_slice(&wire[fed..fed + step]);
            fed += step;
            let result = s.handle_input(now, &mut buf);
            if fed < bad_at + 8 {
                prop_assert!(result.is_ok(), "failed after {} bytes, before the bad header at {}: {:?}", fed, bad_at, result);
                // Reading the valid part never takes more than whole frames.
                prop_assert!(s.stats().bytes_in as usize <= bad_at);
            } else {
                match result {
                    Err(Error::Protocol(p)) => prop_assert_eq!(&p, &expected),
                    other => return fail(format!("after the bad header: {other:?}, expected {expected:?}")),
                }
                prop_assert_eq!(s.stats().bytes_in as usize, bad_at, "every valid frame before it was taken");
                failed = true;
                break;
            }
        }
        prop_assert!(failed, "the bad header was never reported");
        let mut rest = BytesMut::from(&wire[fed..]);
        rest.extend_from_slice(&buf);
        check_sticky(&mut s, now, &expected, &mut rest)?;
    }

    /// Arbitrary bytes never make a session panic; once it fails, it stays failed.
    #[test]
    fn arbitrary_input_never_panics(
        version in prop_oneof![Just(Version::V1), Just(Version::V2)],
        server in any::<bool>(),
        bytes in proptest::collection::vec(
            prop_oneof![
                3 => (0u8..=2, 0u8..=5, prop_oneof![Just(0u16), Just(8u16), 0u16..64], 0u32..12)
                    .prop_map(|(ver, cmd, len, sid)| header(ver, cmd, len, sid).to_vec()),
                2 => proptest::collection::vec(any::<u8>(), 0..64),
            ],
            0..40,
        ),
        step in 1usize..100,
    ) {
        let wire = bytes.concat();
        let side = if server { Side::Server } else { Side::Client };
        let now = base();
        let mut s = Session::new(side, Config::default().with_version(version), now).unwrap();
        let mut buf = BytesMut::new();
        let mut error: Option<Error> = None;
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            let result = s.handle_input(now, &mut buf);
            match (&error, result) {
                (None, Ok(())) => prop_assert!(s.error().is_none()),
                (None, Err(e)) => {
                    prop_assert!(matches!(e, Error::Protocol(_)), "only protocol errors from input: {:?}", e);
                    prop_assert_eq!(s.error().map(|e| e.to_string()), Some(e.to_string()));
                    error = Some(e);
                }
                (Some(first), Ok(())) => return fail(format!("recovered after {first}")),
                (Some(first), Err(e)) => prop_assert_eq!(first.to_string(), e.to_string()),
            }
            // Whatever happened, the session still answers its getters and outputs.
            let mut slices = [IoSlice::new(&[]); 8];
            let n = s.poll_transmit(&mut slices);
            let len: usize = slices[..n].iter().map(|s| s.len()).sum();
            s.transmitted(len);
            while s.poll_event().is_some() {}
        }
        let r = s.handle_eof(now, &mut buf);
        prop_assert!(r.is_err(), "end of input always ends the session");
        if let Some(first) = error {
            prop_assert_eq!(first.to_string(), r.unwrap_err().to_string());
        }
    }
}

// ------------------------------------------------------------------------------------------
// Valid input from a crafted peer

/// What a session must make of valid frames from its peer (Go's rules): a stream exists from
/// its first SYN (a repeated SYN is ignored); its data is the PSH payloads that arrive after
/// that SYN and before its first FIN, in order; PSH, FIN and UPD for streams never opened are
/// ignored; a FIN ends the stream. Returns the streams in opening order.
fn peer_model(frames: &[Frame]) -> Vec<(StreamId, Vec<u8>, bool)> {
    let mut order = Vec::new();
    let mut streams: HashMap<StreamId, (Vec<u8>, bool)> = HashMap::new();
    for frame in frames {
        match frame {
            Frame::Syn { stream_id } if !streams.contains_key(stream_id) => {
                streams.insert(*stream_id, (Vec::new(), false));
                order.push(*stream_id);
            }
            Frame::Psh { stream_id, data } => {
                if let Some((received, false)) = streams.get_mut(stream_id) {
                    received.extend_from_slice(data);
                }
            }
            Frame::Fin { stream_id } => {
                if let Some((_, fin)) = streams.get_mut(stream_id) {
                    *fin = true;
                }
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .map(|id| {
            let (received, fin) = streams.remove(&id).expect("recorded");
            (id, received, fin)
        })
        .collect()
}

/// Version, side, frames, fragmentation, read sizes, and `max_stream_buffer` (small ones
/// make the reader cross its UPD threshold often, and land exactly on it).
type CraftedCase = (Version, Side, Vec<Frame>, Vec<usize>, Vec<usize>, usize);

fn crafted_case() -> impl Strategy<Value = CraftedCase> {
    (
        prop_oneof![Just(Version::V1), Just(Version::V2)],
        prop_oneof![Just(Side::Client), Just(Side::Server)],
        prop_oneof![Just(128usize), Just(1000usize), Just(65_536usize)],
    )
        .prop_flat_map(|(v, side, stream_buffer)| {
            (
                Just(v),
                Just(side),
                proptest::collection::vec(valid_frame(v, side), 0..80),
                proptest::collection::vec(prop_oneof![1usize..8, 1usize..300], 0..100),
                proptest::collection::vec(
                    prop_oneof![1usize..110, prop::sample::select(vec![8usize, 16, 32, 64])],
                    1..20,
                ),
                Just(stream_buffer),
            )
        })
}

/// Everything `s` has to send, as frames.
fn transmit_all(s: &mut Session) -> Vec<Frame> {
    let mut out = BytesMut::new();
    loop {
        let taken = {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = s.poll_transmit(&mut slices);
            let mut taken = 0;
            for slice in &slices[..n] {
                out.extend_from_slice(slice);
                taken += slice.len();
            }
            taken
        };
        if taken == 0 {
            break;
        }
        s.transmitted(taken);
    }
    let decoder = FrameDecoder::new(s.config().version);
    let mut frames = Vec::new();
    while let Some(frame) = decoder
        .decode(&mut out)
        .expect("the session emits valid frames")
    {
        frames.push(frame);
    }
    assert!(out.is_empty(), "a partial frame was emitted");
    frames
}

proptest! {
    #![proptest_config(proptest_config(256))]

    /// A peer that sends valid frames in an unusual order (data before SYN or after FIN,
    /// repeated SYN and FIN, frames for streams never opened), in any fragmentation: the
    /// session accepts the streams in opening order and delivers exactly what the model says.
    #[test]
    fn valid_peer_frames_follow_the_model((version, side, frames, cuts, reads, stream_buffer) in crafted_case()) {
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(version, &mut wire).unwrap();
        }
        let now = base();
        let config = Config::default()
            .with_version(version)
            .with_max_stream_buffer(stream_buffer);
        let mut s = Session::new(side, config, now).unwrap();
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut cuts = cuts.into_iter();
        while fed < wire.len() {
            let step = cuts.next().unwrap_or(usize::MAX).min(wire.len() - fed);
            buf.extend_from_slice(&wire[fed..fed + step]);
            fed += step;
            let result = s.handle_input(now, &mut buf);
            prop_assert!(result.is_ok(), "valid input rejected: {:?}", result);
        }
        // Version 2: the latest window each stream granted, `(consumed, window)`: the initial
        // window until an UPD says otherwise.
        let cap = stream_buffer as u32;
        let floor = RECEIVE_WINDOW_FLOOR.min(cap);
        let mut grants: HashMap<StreamId, (u32, u32)> = HashMap::new();
        // Before any read, the only thing to say: windows the budget cannot cover, shrunk at
        // once (nothing consumed). The default budget covers 16 initial windows.
        let covered = Config::default().max_receive_buffer / INITIAL_PEER_WINDOW as usize;
        let opened_count = peer_model(&frames).len();
        for frame in transmit_all(&mut s) {
            match frame {
                Frame::Upd { stream_id, consumed: 0, window } if version == Version::V2 => {
                    prop_assert!(opened_count > covered, "{} streams fit the budget, yet {} was shrunk", opened_count, stream_id);
                    prop_assert!((floor..=cap).contains(&window), "shrunk to {}", window);
                    prop_assert!(grants.insert(stream_id, (0, window)).is_none(), "two UPDs for {}", stream_id);
                }
                other => return fail(format!("before reading, sent {other:?}")),
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(s.stats().bytes_in as usize, wire.len());
        prop_assert_eq!(s.stats().frames_in as usize, frames.len());
        let expected = peer_model(&frames);
        let mut opened = Vec::new();
        while let Some(event) = s.poll_event() {
            match event {
                Event::StreamOpened { stream_id } => opened.push(stream_id),
                Event::StreamReadable { .. } => {}
                other => return fail(format!("unexpected event {other:?}")),
            }
        }
        let ids: Vec<StreamId> = expected.iter().map(|(id, _, _)| *id).collect();
        prop_assert_eq!(&opened, &ids, "StreamOpened events, in opening order");
        let unread: usize = expected.iter().map(|(_, d, _)| d.len()).sum();
        prop_assert_eq!(s.buffered_input(), unread);
        let fins: HashMap<StreamId, bool> = expected.iter().map(|(id, _, fin)| (*id, *fin)).collect();
        let mut read_of: HashMap<StreamId, usize> = HashMap::new();
        for (id, data, fin) in expected {
            prop_assert_eq!(s.accept_stream(), Some(id));
            let mut got = Vec::new();
            let mut end = false;
            // Reads of sizes around the payload sizes, by copy or (two times in three) by chunk.
            for (k, &max) in reads.iter().cycle().enumerate() {
                let result = if k % 3 == 0 {
                    let mut buf = vec![0u8; max];
                    s.read(id, &mut buf).map(|n| buf[..n].to_vec())
                } else {
                    s.read_chunk(id, max).map(|c| c.map_or_else(Vec::new, |b| b.to_vec()))
                };
                match result {
                    Ok(chunk) if chunk.is_empty() => {
                        end = true;
                        break;
                    }
                    Ok(chunk) => {
                        prop_assert!(chunk.len() <= max, "asked for {} bytes, got {}", max, chunk.len());
                        got.extend_from_slice(&chunk);
                        read_of.insert(id, got.len());
                        // UPD after the first read, and whenever an update interval of the
                        // window of the latest UPD was read since it; none once FIN arrived.
                        let (acked, window) = grants.get(&id).copied().unwrap_or((0, INITIAL_PEER_WINDOW));
                        let owed = version == Version::V2
                            && !fin
                            && (got.len() == chunk.len() || got.len() - acked as usize >= update_interval(window) as usize);
                        let mut granted = false;
                        for frame in transmit_all(&mut s) {
                            let Frame::Upd { stream_id, consumed, window } = frame else {
                                return fail(format!("after a read, sent {frame:?}"));
                            };
                            prop_assert!((floor..=cap).contains(&window), "UPD window {} outside [{}, {}]", window, floor, cap);
                            let read = read_of.get(&stream_id).copied().unwrap_or(0);
                            prop_assert_eq!(consumed as usize, read, "UPD consumed for {} is what was read of it", stream_id);
                            let previous = grants.insert(stream_id, (consumed, window));
                            if stream_id == id {
                                prop_assert!(owed && !granted, "UPD for {} after reading {} bytes, not owed", id, got.len());
                                granted = true;
                            } else {
                                // Only a grant short of the budget shrinks other streams.
                                prop_assert!(owed, "UPD for {} while reading {}, which owed none", stream_id, id);
                                prop_assert!(!fins[&stream_id], "a finished stream {} was shrunk", stream_id);
                                let before = previous.map_or(INITIAL_PEER_WINDOW, |(_, w)| w);
                                prop_assert!(window < before, "{} reclaimed from {} to {}", stream_id, before, window);
                            }
                        }
                        prop_assert_eq!(granted, owed, "UPD owed after reading {} bytes of {}", got.len(), id);
                    }
                    Err(ReadError::Blocked) => break,
                    Err(e) => return fail(format!("read on {id}: {e}")),
                }
                prop_assert!(k < 100_000, "reading does not end");
            }
            prop_assert_eq!(got, data, "data of {}", id);
            prop_assert_eq!(end, fin, "end of {}", id);
        }
        prop_assert_eq!(s.accept_stream(), None);
        prop_assert_eq!(s.buffered_input(), 0);
        // Streams that were never opened stay unknown.
        for f in &frames {
            let id = f.stream_id();
            if !ids.contains(&id) && !matches!(f, Frame::Nop { .. }) {
                prop_assert!(matches!(s.read(id, &mut [0u8; 4]), Err(ReadError::UnknownStream(_))));
            }
        }
        prop_assert!(s.error().is_none());
    }
}

// ------------------------------------------------------------------------------------------
// Regressions found by the properties above, minimised by hand

/// Version 2. Both ends of a stream write more than the initial 256 KiB window and nobody
/// reads, so each end has data queued behind a shut window; then both release the stream.
/// Each side drops the unread data without granting window for it, so neither queued data
/// nor the FIN behind it can ever leave, and no FIN arrives to start a stall timer either.
/// The stream must still go away once both ends released it, and its queued bytes must stop
/// counting against the send budget (else a few such streams block every write for good).
/// (The receive budget covers the initial window, so neither end shrinks it at open.)
#[test]
fn v2_stream_released_by_both_ends_with_window_blocked_data_is_reaped() -> R {
    let limits = Limits {
        max_receive_buffer: INITIAL_PEER_WINDOW as usize,
        ..Limits::small(4000)
    };
    let mut h = Harness::new(Version::V2, limits, true);
    h.open(CLIENT)?;
    h.pump(usize::MAX)?;
    prop_assert!(h.accept(SERVER)?);
    let target = INITIAL_PEER_WINDOW as usize + 1;
    for side in [CLIENT, SERVER] {
        while h.streams[0].written[side] < target {
            let left = target - h.streams[0].written[side];
            h.write(side, 0, left.min(MAX_STREAM_SEND_BUFFER), false)?;
            h.pump(usize::MAX)?;
        }
    }
    for side in [CLIENT, SERVER] {
        prop_assert_eq!(h.streams[0].data_sent[side], INITIAL_PEER_WINDOW as usize);
        prop_assert_eq!(h.s[side].buffered_output(), 1, "one byte waits for window");
        h.release(side, 0);
    }
    h.pump(usize::MAX)?;
    // Far beyond every timeout, keepalives flowing.
    for _ in 0..20 {
        h.advance(Duration::from_secs(9))?;
    }
    for side in [CLIENT, SERVER] {
        prop_assert_eq!(
            h.s[side].stream_count(),
            0,
            "{} still holds the released stream",
            side_name(side)
        );
        prop_assert_eq!(
            h.s[side].buffered_output(),
            0,
            "{} still counts its bytes",
            side_name(side)
        );
    }
    Ok(())
}

/// Version 2. The peer read one byte (so it advertised its 16 KiB window), a full window is in
/// flight, and the peer released the stream (FIN). Only then does the application write more:
/// the window is shut, the peer's FIN has already arrived, and the peer will never grant
/// window again. PROTOCOL.md: a sender blocked on the window that receives FIN must fail with
/// a clear error, never hang; after the keepalive timeout the write must report
/// `PeerStoppedReading` and the queued bytes must be dropped. (The receive budget covers the
/// initial window, so the peer does not shrink it at open.)
#[test]
fn v2_data_written_after_the_peer_fin_with_a_shut_window_does_not_hang() -> R {
    let limits = Limits {
        max_receive_buffer: INITIAL_PEER_WINDOW as usize,
        ..Limits::small(4000)
    };
    let mut h = Harness::new(Version::V2, limits, true);
    h.open(CLIENT)?;
    h.pump(usize::MAX)?;
    prop_assert!(h.accept(SERVER)?);
    // 16385 bytes in flight, all framed under the initial 256 KiB guess.
    h.write(CLIENT, 0, MAX_STREAM_BUFFER, false)?;
    h.pump(usize::MAX)?;
    h.write(CLIENT, 0, 1, false)?;
    h.pump(usize::MAX)?;
    prop_assert_eq!(h.streams[0].written[CLIENT], MAX_STREAM_BUFFER + 1);
    // The first read advertises 16 KiB with 1 byte consumed: 16384 in flight, window shut.
    prop_assert_eq!(h.read(SERVER, 0, 1, false)?, Some(1));
    h.pump(usize::MAX)?;
    h.release(SERVER, 0);
    h.pump(usize::MAX)?;
    // The client writes after the peer's FIN arrived.
    h.write(CLIENT, 0, 100, false)?;
    prop_assert_eq!(h.streams[0].written[CLIENT], MAX_STREAM_BUFFER + 1 + 100);
    h.pump(usize::MAX)?;
    prop_assert_eq!(
        h.s[CLIENT].buffered_output(),
        100,
        "the window holds the bytes back"
    );
    for _ in 0..10 {
        h.advance(Duration::from_secs(9))?;
    }
    let id = h.streams[0].id;
    let result = h.s[CLIENT].write(id, b"more");
    prop_assert!(
        matches!(result, Err(WriteError::PeerStoppedReading(got)) if got == id),
        "90 s after the peer's FIN with a shut window, a write gives {:?}",
        result
    );
    prop_assert_eq!(
        h.s[CLIENT].buffered_output(),
        0,
        "the undeliverable bytes are dropped"
    );
    Ok(())
}

/// Version 2, a session send budget no larger than one stream's. The peer released stream A,
/// so the data queued on A beyond the initial window can never leave. What a stream queues
/// beyond its window takes half of the send budget at most: A's next write is refused with
/// `Blocked` there, and a write on stream B, within B's window, is still taken (a stream
/// stalled on its window does not starve the others). When A's stall expires (the keepalive
/// timeout after the peer's FIN), A's data is dropped, and A's writer, which `Blocked`
/// promised a `StreamWritable`, gets it (its next write fails: the peer stopped reading).
/// (The receive budget covers both initial windows, so the peer does not shrink A's at open.)
#[test]
fn v2_budget_freed_by_a_stall_wakes_blocked_writers() -> R {
    let limits = Limits {
        max_send_buffer: MAX_STREAM_SEND_BUFFER,
        max_receive_buffer: 2 * INITIAL_PEER_WINDOW as usize,
        ..Limits::small(4000)
    };
    let mut h = Harness::new(Version::V2, limits, true);
    h.open(CLIENT)?;
    h.open(CLIENT)?;
    h.pump(usize::MAX)?;
    prop_assert!(h.accept(SERVER)?);
    prop_assert!(h.accept(SERVER)?);
    let (a, b) = (0, 1);
    h.release(SERVER, a);
    h.pump(usize::MAX)?;
    // The initial window's worth goes out (and is dropped); half a send budget more stays
    // queued, and no more is taken.
    let half = MAX_STREAM_SEND_BUFFER / 2;
    let target = INITIAL_PEER_WINDOW as usize + half;
    while h.streams[a].written[CLIENT] < target {
        let left = target - h.streams[a].written[CLIENT];
        h.write(CLIENT, a, left.min(MAX_STREAM_SEND_BUFFER), false)?;
        prop_assert!(!h.streams[a].write_waiting[CLIENT], "refused below half");
        h.pump(usize::MAX)?;
    }
    prop_assert_eq!(
        h.s[CLIENT].buffered_output(),
        half,
        "A holds half the budget"
    );
    h.write(CLIENT, a, 1, false)?;
    prop_assert!(
        h.streams[a].write_waiting[CLIENT],
        "A's bytes beyond its window take no more than half the budget"
    );
    h.write(CLIENT, b, half, false)?;
    prop_assert!(
        !h.streams[b].write_waiting[CLIENT],
        "B's write within its window is taken beside the stalled stream"
    );
    prop_assert_eq!(h.streams[b].written[CLIENT], half);
    for _ in 0..4 {
        h.advance(Duration::from_secs(9))?;
    }
    prop_assert_eq!(
        h.s[CLIENT].buffered_output(),
        0,
        "A's stalled data was dropped, B's was sent"
    );
    prop_assert!(
        !h.streams[a].write_waiting[CLIENT],
        "A's stall ended, but its writer never got StreamWritable"
    );
    Ok(())
}
