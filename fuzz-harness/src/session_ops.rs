//! A client and a server session connected in memory, driven by arbitrary operations.
//!
//! Every byte a reader gets must be, in order, what the peer wrote on that stream (writers send
//! a deterministic pattern, so tracking counts is enough); no data follows EOF; EOF means the
//! writer finished and everything arrived; between two honest peers the only ways a session
//! ends are closing and the peer closing; buffers stay within the config. At the end, if no
//! side is closing, everything is delivered and all written data must have been read.
//!
//! The harness also decodes both directions of the connection and checks every frame: ids have
//! the opener's parity and a stream's first frame from its opener is its SYN; PSH payloads are
//! the writer's pattern at the right offset; nothing follows a FIN; no NOP (keepalive is off);
//! version 2 UPDs advertise a window between the floor and the cap with a consumed count that
//! never goes back, never passes what was sent nor (until the reader released the stream)
//! what was read, and a writer never has more bytes in flight than the window it
//! knew when it framed them (the window never goes negative). It checks the session's
//! counters (`Session::stats`) against what it saw, the stream limit, and that unread input
//! stays below `max_receive_buffer` plus one frame (version 2: plus a floor per stream and the
//! initial window of streams shrunk before any read) and unsent output within `max_send_buffer`.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use smux_proto::{
    Config, Error, Event, Frame, FrameDecoder, ReadError, Session, Side, StreamId, Version,
    WriteError, BUSY_RECEIVE_WINDOW_FLOOR, DIRECT_FRAMES, INITIAL_PEER_WINDOW,
};

use crate::shared::{reply_cap, set_limits, window_bounds};

/// A `session_ops` input: a configuration byte and the operations to apply.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// Bit 0: version 2. Bits 1-2: buffer sizes (default, small, medium, one byte).
    pub cfg: u8,
    /// Applied in order, then everything is delivered and read ([`run_session_ops`]).
    pub ops: Vec<Op>,
}

/// One step of the application or the network. `client` picks the side acting; `stream`
/// indexes the streams that side knows (opened or accepted, not released).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Op {
    /// Opens a stream.
    Open {
        /// The side acting.
        client: bool,
    },
    /// Accepts a stream the peer opened, if one is waiting.
    Accept {
        /// The side acting.
        client: bool,
    },
    /// Writes `len` bytes of the side's pattern (with `write_chunk` if `chunk`).
    Write {
        /// The side acting.
        client: bool,
        /// Which known stream.
        stream: u8,
        /// How many bytes to offer.
        len: u16,
        /// Use `write_chunk` instead of `write`.
        chunk: bool,
    },
    /// Reads at most `max` bytes (with `read_chunk` if `chunk`).
    Read {
        /// The side acting.
        client: bool,
        /// Which known stream.
        stream: u8,
        /// Most bytes to read (0 counts as 1).
        max: u16,
        /// Use `read_chunk` instead of `read`.
        chunk: bool,
    },
    /// Half-closes a stream (FIN after its data).
    Finish {
        /// The side acting.
        client: bool,
        /// Which known stream.
        stream: u8,
    },
    /// Drops the stream handle (`release_stream`).
    Release {
        /// The side acting.
        client: bool,
        /// Which known stream.
        stream: u8,
    },
    /// Moves up to `bytes` (0: all) of one side's output to the other's input.
    Deliver {
        /// Whose output.
        from_client: bool,
        /// How many bytes at most (0: everything pending).
        bytes: u16,
    },
    /// Advances the virtual clock and runs both sessions' timers.
    Advance {
        /// By how much.
        millis: u16,
    },
    /// Closes one session gracefully.
    Close {
        /// The side acting.
        client: bool,
    },
    /// Starts a drain on one side: the peer's new streams are refused, and the session
    /// closes once no stream is left, or `millis` ms from now (no deadline when 0).
    Drain {
        /// The side acting.
        client: bool,
        /// Deadline from now, in ms (0: none).
        millis: u16,
    },
    /// Writes `len` bytes of the side's pattern with a zero-copy direct write of which the
    /// transport takes `take` bytes (a plain write when a direct write is not possible).
    WriteDirect {
        /// The side acting.
        client: bool,
        /// Which known stream.
        stream: u8,
        /// How many bytes to offer.
        len: u16,
        /// How many bytes of the frames the transport takes.
        take: u16,
    },
}

/// Version 2 writers drop data this long after the peer's FIN if it grants no window.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

fn config(byte: u8) -> Config {
    let mut c = Config::default()
        .with_version(if byte & 1 == 0 {
            Version::V1
        } else {
            Version::V2
        })
        .with_keep_alive_disabled(true);
    let limits = match (byte >> 1) & 3 {
        0 => return c,
        1 => [4096, 1024, 100, 2048, 1024, 2, 4],
        2 => [65_536, 8192, 1500, 16_384, 4096, 8, 16],
        _ => [1, 1, 1, 1, 1, 1, 2],
    };
    set_limits(&mut c, limits);
    c
}

/// Version 2: what session `s` may buffer, from the wire (its peer `writer` is honest).
/// Windows are carved out of the budget, except that every live stream may always get the
/// floor, a stream whose window was shrunk before any read (its first UPD says nothing
/// consumed, or none was seen yet) may have received the initial window before the writer
/// saw the shrink, and a stream keeps room for the replies to what this end wrote on it.
fn v2_input_bound(s: &Session, tracks: &HashMap<(usize, StreamId), Track>, writer: usize) -> usize {
    let c = s.config();
    let (_, cap) = window_bounds(c);
    let busy_floor = BUSY_RECEIVE_WINDOW_FLOOR.min(cap);
    let replies = reply_cap(c) as u64;
    let mut bound = c.max_receive_buffer;
    for stream in s.snapshot().streams.iter().filter(|st| !st.released) {
        bound += busy_floor as usize;
        // Room for the peer's replies: at most what this end wrote.
        if let Some(own) = tracks.get(&(1 - writer, stream.id)) {
            bound += own.written.min(replies) as usize;
        }
        let first = tracks
            .get(&(writer, stream.id))
            .and_then(|t| t.wire.updates.first());
        if first.is_none_or(|&(_, consumed, _)| consumed == 0) {
            bound += INITIAL_PEER_WINDOW as usize;
        }
    }
    bound
}

/// The byte at `offset` of what end `writer` writes on stream `id`.
fn pattern(writer: usize, id: StreamId, offset: u64) -> u8 {
    (offset % 251) as u8 ^ (id.as_u32() as u8).wrapping_mul(31) ^ ((writer as u8) << 7)
}

/// One direction of one stream, as the harness saw it.
#[derive(Default)]
struct Track {
    written: u64,
    read: u64,
    writer_knew: bool,
    /// The reader released the stream: data it drops counts as consumed.
    reader_released: bool,
    /// When the writer finished (or released, or closed the session).
    finished_at: Option<Instant>,
    eof: bool,
    /// The writer's SYN, PSH and FIN frames, as decoded from its output.
    wire: WireTrack,
}

/// One direction of one stream on the wire.
#[derive(Default)]
struct WireTrack {
    syn: bool,
    fin: bool,
    /// A second FIN was sent (an early FIN repeated).
    fin_repeated: bool,
    /// PSH payload bytes the writer sent.
    sent: u64,
    /// The reader's latest UPD `consumed` (version 2).
    consumed: Option<u32>,
    /// The reader's UPDs as they reach the writer: where the frame ends in the writer's input
    /// stream, `consumed`, `window`.
    updates: Vec<(u64, u32, u32)>,
}

impl WireTrack {
    /// The writer's view of the window once it has taken `input_used` bytes of input:
    /// (consumed, window) of the latest UPD it processed.
    fn known_window(&self, input_used: u64) -> (u32, u32) {
        self.updates
            .iter()
            .rev()
            .find(|&&(end, _, _)| end <= input_used)
            .map_or((0, INITIAL_PEER_WINDOW), |&(_, c, w)| (c, w))
    }
}

struct End {
    s: Session,
    input: BytesMut,
    /// Streams opened or accepted and not released.
    known: Vec<StreamId>,
    eof_given: bool,
    /// The output handed over so far and not yet decoded (a partial frame).
    out_undecoded: BytesMut,
    /// Frames decoded from the output so far.
    frames_decoded: u64,
    /// (`frames_out` after a `poll_transmit` round, `bytes_in` during it): frames numbered
    /// below the first were framed knowing the input up to the second.
    framed_with: VecDeque<(u64, u64)>,
    /// Bytes this end handed to the transport, and received from it.
    bytes_out: u64,
    bytes_in: u64,
    opened: u64,
    accepted: u64,
}

struct World {
    ends: [End; 2],
    /// Keyed by (writer end, stream id); end 0 is the client.
    tracks: HashMap<(usize, StreamId), Track>,
    now: Instant,
}

impl World {
    fn pick(&self, i: usize, k: u8) -> Option<StreamId> {
        let known = &self.ends[i].known;
        (!known.is_empty()).then(|| known[k as usize % known.len()])
    }

    fn learn(&mut self, i: usize, id: StreamId) {
        self.ends[i].known.push(id);
        self.tracks.entry((i, id)).or_default().writer_knew = true;
    }

    fn finished(&mut self, i: usize, id: StreamId) {
        let now = self.now;
        self.tracks
            .entry((i, id))
            .or_default()
            .finished_at
            .get_or_insert(now);
    }

    /// Whether end `w` may have dropped data of stream `id` because the reader stalled it.
    fn stall_possible(&self, w: usize, id: StreamId) -> bool {
        self.ends[w].s.config().version == Version::V2
            && self
                .tracks
                .get(&(1 - w, id))
                .and_then(|t| t.finished_at)
                .is_some_and(|at| self.now >= at + STALL_TIMEOUT)
    }

    fn write(&mut self, i: usize, k: u8, len: u16, chunk: bool) {
        let Some(id) = self.pick(i, k) else { return };
        let t = self.tracks.entry((i, id)).or_default();
        let data: Vec<u8> = (0..u64::from(len))
            .map(|o| pattern(i, id, t.written + o))
            .collect();
        let s = &mut self.ends[i].s;
        let result = if chunk {
            s.write_chunk(id, &Bytes::from(data))
        } else {
            s.write(id, &data)
        };
        match result {
            Ok(n) => {
                assert!(n <= usize::from(len));
                t.written += n as u64;
            }
            Err(WriteError::Blocked) => assert!(len > 0),
            Err(WriteError::Finished(_)) => assert!(t.finished_at.is_some()),
            Err(WriteError::PeerStoppedReading(_)) => assert_eq!(s.config().version, Version::V2),
            Err(WriteError::SessionClosed(_)) => assert!(s.is_closing()),
            Err(e) => panic!("write on a known stream: {e}"),
        }
    }

    /// A zero-copy direct write of `len` pattern bytes, the transport taking `take` bytes of
    /// its frames; the rest of a partly taken frame goes out with the next delivery.
    fn write_direct(&mut self, i: usize, k: u8, len: u16, take: u16) {
        let Some(id) = self.pick(i, k) else { return };
        let written = self.tracks.entry((i, id)).or_default().written;
        let data: Vec<u8> = (0..u64::from(len))
            .map(|o| pattern(i, id, written + o))
            .collect();
        let s = &mut self.ends[i].s;
        let waiting = s.wants_write();
        let write = match s.begin_direct_write(id, &data) {
            Ok(Some(write)) => write,
            // Not possible now, or an error: a plain write reports the same, with the checks.
            Ok(None) | Err(_) => return self.write(i, k, len, false),
        };
        assert!(!waiting, "direct write while output waits");
        assert!(
            !s.wants_write(),
            "output offered while a direct write is in flight"
        );
        assert!(!write.is_empty() && write.len() <= data.len());
        let take = usize::from(take).min(write.wire_len());
        let mut slices = [IoSlice::new(&[]); 2 * DIRECT_FRAMES];
        let n = write.slices(&mut slices);
        let mut out: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(out.len(), write.wire_len());
        out.truncate(take);
        let accepted = s.end_direct_write(write, take);
        assert!(take == 0 || accepted > 0, "bytes went out, none accepted");
        self.tracks.entry((i, id)).or_default().written += accepted as u64;
        if take > 0 {
            self.hand_over(i, out);
        }
    }

    /// Reads once from stream `id` of end `i`, checking what comes out.
    fn read(&mut self, i: usize, id: StreamId, max: u16, chunk: bool) {
        let w = 1 - i;
        let stall = self.stall_possible(w, id);
        let t = self.tracks.entry((w, id)).or_default();
        let s = &mut self.ends[i].s;
        let max = usize::from(max).max(1);
        let result = if chunk {
            s.read_chunk(id, max)
                .map(|c| c.map_or_else(Vec::new, |c| c.to_vec()))
        } else {
            let mut buf = vec![0; max];
            s.read(id, &mut buf).map(|n| buf[..n].to_vec())
        };
        match result {
            Ok(data) if data.is_empty() => {
                if !t.eof {
                    assert!(
                        t.finished_at.is_some() || !t.writer_knew,
                        "EOF but never finished"
                    );
                    assert!(
                        stall || t.read == t.written,
                        "EOF at {} of {}",
                        t.read,
                        t.written
                    );
                    t.eof = true;
                }
            }
            Ok(data) => {
                assert!(!t.eof, "data after EOF");
                assert!(data.len() <= max);
                for (o, &b) in (t.read..).zip(&data) {
                    assert!(o < t.written, "read more than written");
                    assert_eq!(b, pattern(w, id, o), "wrong byte at {o}");
                }
                t.read += data.len() as u64;
            }
            Err(ReadError::Blocked) => assert!(!t.eof && !s.is_closed()),
            Err(ReadError::SessionClosed(_)) => assert!(!t.eof && s.is_closed()),
            Err(e) => panic!("read on a known stream: {e}"),
        }
    }

    /// Moves up to `max` bytes of end `i`'s output to its peer; returns how many.
    fn deliver(&mut self, i: usize, max: usize) -> usize {
        let mut out = Vec::new();
        let end = &mut self.ends[i];
        let s = &mut end.s;
        while out.len() < max {
            let before = out.len();
            let mut slices = [IoSlice::new(&[]); 16];
            let n = s.poll_transmit(&mut slices);
            for slice in &slices[..n] {
                let take = slice.len().min(max - out.len());
                out.extend_from_slice(&slice[..take]);
            }
            if out.len() == before {
                break;
            }
            s.transmitted(out.len() - before);
        }
        self.hand_over(i, out)
    }

    /// End `i`'s transport takes `out`: it is checked and reaches the peer (if it still reads);
    /// returns its length.
    fn hand_over(&mut self, i: usize, out: Vec<u8>) -> usize {
        let end = &mut self.ends[i];
        // Everything framed by now was framed knowing the input taken so far.
        let stats = end.s.stats();
        if end
            .framed_with
            .back()
            .is_none_or(|&(f, _)| f < stats.frames_out)
        {
            end.framed_with
                .push_back((stats.frames_out, stats.bytes_in));
        }
        end.bytes_out += out.len() as u64;
        end.out_undecoded.extend_from_slice(&out);
        let peer_open = !self.ends[1 - i].s.is_closed();
        let input_end = self.ends[1 - i].bytes_in + if peer_open { out.len() as u64 } else { 0 };
        self.check_output(i, input_end);
        let peer = &mut self.ends[1 - i];
        if peer_open {
            peer.bytes_in += out.len() as u64;
            peer.input.extend_from_slice(&out);
            let _ = peer.s.handle_input(self.now, &mut peer.input);
        }
        out.len()
    }

    /// Decodes and checks the complete frames end `w` has handed over; `input_end` is where
    /// the handed-over bytes end in the peer's input stream.
    fn check_output(&mut self, w: usize, input_end: u64) {
        let r = 1 - w;
        let version = self.ends[w].s.config().version;
        let (floor, cap) = window_bounds(self.ends[w].s.config());
        let decoder = FrameDecoder::new(version);
        loop {
            let end = &mut self.ends[w];
            let frame = match decoder.decode(&mut end.out_undecoded) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => panic!("end {w} sent an invalid frame: {e}"),
            };
            // Only meaningful while the peer takes input (the offsets of its UPDs).
            let frame_end = input_end.saturating_sub(end.out_undecoded.len() as u64);
            let index = end.frames_decoded;
            end.frames_decoded += 1;
            while end.framed_with.front().is_some_and(|&(f, _)| f <= index) {
                end.framed_with.pop_front();
            }
            let &(_, input_used) = end
                .framed_with
                .front()
                .expect("more frames decoded than the session counted");
            let own = |id: StreamId| id.as_u32() % 2 == (w as u32 + 1) % 2;
            match frame {
                Frame::Syn { stream_id } => {
                    assert!(
                        own(stream_id),
                        "end {w}: SYN {stream_id} of the peer's parity"
                    );
                    let wire = &mut self.tracks.entry((w, stream_id)).or_default().wire;
                    assert!(
                        !wire.syn && !wire.fin && wire.sent == 0,
                        "SYN {stream_id} late"
                    );
                    wire.syn = true;
                }
                Frame::Psh { stream_id, data } => {
                    let wire = &mut self.tracks.entry((w, stream_id)).or_default().wire;
                    assert!(
                        !own(stream_id) || wire.syn,
                        "PSH {stream_id} before its SYN"
                    );
                    assert!(!wire.fin, "PSH {stream_id} after its FIN");
                    for (o, &b) in (wire.sent..).zip(&data[..]) {
                        assert_eq!(b, pattern(w, stream_id, o), "{stream_id}: wrong byte {o}");
                    }
                    wire.sent += data.len() as u64;
                    let sent = wire.sent;
                    if version == Version::V2 {
                        let (consumed, window) = wire.known_window(input_used);
                        let inflight = wire.sent - u64::from(consumed);
                        assert!(
                            inflight <= u64::from(window),
                            "{stream_id}: {inflight} bytes in flight, window {window}"
                        );
                        // Room for replies: the latest UPD `w` sent on the stream before this
                        // data lets the peer answer all of it (up to the cap), unless `w` will
                        // receive nothing more.
                        let back = self.tracks.entry((r, stream_id)).or_default();
                        if back.finished_at.is_none() && !back.reader_released {
                            let (c, win) = back
                                .wire
                                .updates
                                .last()
                                .map_or((0, INITIAL_PEER_WINDOW), |&(_, c, win)| (c, win));
                            let granted = u64::from(c) + u64::from(win);
                            let cap = u64::from(reply_cap(self.ends[w].s.config()));
                            assert!(
                                granted >= sent.min(u64::from(c) + cap),
                                "{stream_id}: {sent} bytes sent before room to answer them \
                                 ({granted} granted)"
                            );
                        }
                    }
                }
                Frame::Fin { stream_id } => {
                    let track = self.tracks.entry((w, stream_id)).or_default();
                    assert!(
                        !own(stream_id) || track.wire.syn,
                        "FIN {stream_id} before its SYN"
                    );
                    if track.wire.fin {
                        // Only an early FIN goes again, once (the peer may have missed the
                        // first): on a stream the peer opened, with no data from this end.
                        assert!(
                            !own(stream_id) && track.wire.sent == 0 && !track.wire.fin_repeated,
                            "second FIN {stream_id}"
                        );
                        track.wire.fin_repeated = true;
                    }
                    track.wire.fin = true;
                }
                Frame::Upd {
                    stream_id,
                    consumed,
                    window,
                } => {
                    // About the data end `w` reads, which end `r` writes: a share of the
                    // receive budget, never below the floor nor above the cap, except as room
                    // for replies (at most what `w` wrote and did not read back).
                    let own_written = self.tracks.get(&(w, stream_id)).map_or(0, |t| t.written);
                    let replies = own_written
                        .saturating_sub(u64::from(consumed))
                        .min(u64::from(reply_cap(self.ends[w].s.config())));
                    let widest = cap.max(replies as u32);
                    assert!(
                        (floor..=widest).contains(&window),
                        "{stream_id}: UPD window {window} outside [{floor}, {widest}]"
                    );
                    let track = self.tracks.entry((r, stream_id)).or_default();
                    // The consumed count when the grant was decided: at most what was read,
                    // unless the reader released the stream (then dropped data counts too).
                    assert!(
                        track.reader_released || u64::from(consumed) <= track.read,
                        "{stream_id}: consumed {consumed} but {} read",
                        track.read
                    );
                    let wire = &mut track.wire;
                    assert!(
                        u64::from(consumed) <= wire.sent,
                        "{stream_id}: consumed {consumed} of {} sent",
                        wire.sent
                    );
                    assert!(
                        wire.consumed.is_none_or(|c| c <= consumed),
                        "{stream_id}: consumed went back"
                    );
                    wire.consumed = Some(consumed);
                    wire.updates.push((frame_end, consumed, window));
                }
                Frame::Nop { .. } => panic!("end {w}: NOP with keepalive off"),
            }
        }
    }

    /// After every operation: closed transports, resumed input, events, buffer bounds.
    fn after_op(&mut self) {
        // A drained session closes by itself (no stream left, or its deadline): from then on
        // its streams are finished, as after `Op::Close`.
        for i in 0..2 {
            if self.ends[i].s.is_closing() {
                let now = self.now;
                for (_, t) in self.tracks.iter_mut().filter(|((w, _), _)| *w == i) {
                    t.finished_at.get_or_insert(now);
                }
            }
        }
        for i in 0..2 {
            if self.ends[i].s.is_closed() && !self.ends[1 - i].eof_given {
                let peer = &mut self.ends[1 - i];
                peer.eof_given = true;
                let _ = peer.s.handle_eof(self.now, &mut peer.input);
            }
        }
        for (i, end) in self.ends.iter_mut().enumerate() {
            if !end.input.is_empty() || end.eof_given {
                let _ = end.s.handle_input(self.now, &mut end.input);
            }
            while let Some(event) = end.s.poll_event() {
                match event {
                    Event::Closed(Error::LocallyClosed | Error::PeerClosed) => {}
                    Event::Closed(e) => panic!("end {i} failed: {e}"),
                    Event::StreamOpened { stream_id } => {
                        assert_eq!(stream_id.as_u32() % 2, i as u32, "peer's id parity");
                    }
                    _ => {}
                }
            }
            let c = end.s.config();
            let (recv, send) = (end.s.buffered_input(), end.s.buffered_output());
            if c.version == Version::V1 {
                // Input is taken while under the budget, and the peer's frames are at most
                // `max_frame_size`: under the budget plus one frame.
                assert!(
                    recv < c.max_receive_buffer + c.max_frame_size,
                    "buffered input {recv}"
                );
            } else {
                let bound = v2_input_bound(&end.s, &self.tracks, 1 - i);
                assert!(
                    recv <= bound,
                    "end {i}: buffered input {recv}, bound {bound}"
                );
            }
            assert!(send <= c.max_send_buffer, "buffered output {send}");
            assert!(end.s.stream_count() <= c.max_streams);
            let stats = end.s.stats();
            assert_eq!(stats.bytes_out, end.bytes_out, "end {i}: stats.bytes_out");
            assert_eq!(
                stats.bytes_in,
                end.bytes_in - end.input.len() as u64,
                "end {i}: stats.bytes_in"
            );
            assert_eq!(
                stats.streams_opened, end.opened,
                "end {i}: stats.streams_opened"
            );
            assert_eq!(stats.streams_accepted, end.accepted, "end {i}");
            assert!(stats.frames_out >= end.frames_decoded);
        }
        // Unsent output is data written and not yet seen on the wire (less what was dropped).
        for i in 0..2 {
            let unseen: u64 = self
                .tracks
                .iter()
                .filter(|((w, _), _)| *w == i)
                .map(|(_, t)| t.written - t.wire.sent)
                .sum();
            assert!(self.ends[i].s.buffered_output() as u64 <= unseen);
        }
    }

    fn apply(&mut self, op: Op) {
        let end = |client: bool| usize::from(!client);
        match op {
            Op::Open { client } => {
                if let Ok(id) = self.ends[end(client)].s.open_stream() {
                    assert_eq!(id.as_u32() % 2, u32::from(client), "own id parity");
                    self.ends[end(client)].opened += 1;
                    self.learn(end(client), id);
                }
            }
            Op::Accept { client } => {
                if let Some(id) = self.ends[end(client)].s.accept_stream() {
                    self.ends[end(client)].accepted += 1;
                    self.learn(end(client), id);
                }
            }
            Op::Write {
                client,
                stream,
                len,
                chunk,
            } => self.write(end(client), stream, len, chunk),
            Op::WriteDirect {
                client,
                stream,
                len,
                take,
            } => self.write_direct(end(client), stream, len, take),
            Op::Read {
                client,
                stream,
                max,
                chunk,
            } => {
                if let Some(id) = self.pick(end(client), stream) {
                    self.read(end(client), id, max, chunk);
                }
            }
            Op::Finish { client, stream } => {
                let i = end(client);
                let Some(id) = self.pick(i, stream) else {
                    return;
                };
                match self.ends[i].s.finish(id) {
                    Ok(()) => self.finished(i, id),
                    Err(e) => assert!(self.ends[i].s.is_closed(), "finish: {e}"),
                }
            }
            Op::Release { client, stream } => {
                let i = end(client);
                let Some(id) = self.pick(i, stream) else {
                    return;
                };
                self.ends[i].known.retain(|&k| k != id);
                self.ends[i].s.release_stream(id);
                self.tracks.entry((1 - i, id)).or_default().reader_released = true;
                if !self.ends[i].s.is_closed() {
                    self.finished(i, id);
                }
            }
            Op::Deliver { from_client, bytes } => {
                let max = if bytes == 0 {
                    usize::MAX
                } else {
                    usize::from(bytes)
                };
                self.deliver(end(from_client), max);
            }
            Op::Advance { millis } => {
                self.now += Duration::from_millis(u64::from(millis));
                for end in &mut self.ends {
                    end.s.handle_timeout(self.now);
                }
            }
            Op::Drain { client, millis } => {
                let i = end(client);
                let deadline =
                    (millis > 0).then(|| self.now + Duration::from_millis(millis.into()));
                self.ends[i].s.drain(deadline);
                if self.ends[i].s.is_draining() && !self.ends[i].s.is_closing() {
                    assert!(matches!(
                        self.ends[i].s.open_stream(),
                        Err(smux_proto::OpenError::Draining)
                    ));
                }
            }
            Op::Close { client } => {
                let i = end(client);
                if !self.ends[i].s.is_closing() {
                    self.ends[i].s.close();
                    let now = self.now;
                    for (_, t) in self.tracks.iter_mut().filter(|((w, _), _)| *w == i) {
                        t.finished_at.get_or_insert(now);
                    }
                }
            }
        }
    }

    /// With neither side closing: deliver, accept and read everything until nothing moves,
    /// then every written byte must have been read, and every finished stream seen to end.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            if self.ends.iter().any(|e| e.s.is_closing()) {
                return;
            }
            let mut progress = 0;
            for i in 0..2 {
                while let Some(id) = self.ends[i].s.accept_stream() {
                    self.ends[i].accepted += 1;
                    self.learn(i, id);
                    progress += 1;
                }
                progress += self.deliver(i, usize::MAX);
                for id in self.ends[i].known.clone() {
                    loop {
                        let before = self.tracks.get(&(1 - i, id)).map_or(0, |t| t.read);
                        self.read(i, id, u16::MAX, false);
                        let after = self.tracks.get(&(1 - i, id)).map_or(0, |t| t.read);
                        if after == before {
                            break;
                        }
                        progress += 1;
                    }
                }
            }
            self.after_op();
            if progress == 0 {
                break;
            }
        }
        if self.ends.iter().any(|e| e.s.is_closing()) {
            return;
        }
        for i in 0..2 {
            for &id in &self.ends[i].known {
                let w = 1 - i;
                let stall = self.stall_possible(w, id);
                let t = self.tracks.get(&(w, id)).expect("tracked when read");
                assert!(
                    stall || t.read == t.written,
                    "{id}: stuck at {} of {}",
                    t.read,
                    t.written
                );
                if t.finished_at.is_some() || !t.writer_knew {
                    assert!(stall || t.eof, "{id}: finished by its writer, no EOF seen");
                }
            }
        }
    }
}

/// Runs one input (decoded with `arbitrary` as cargo-fuzz does; inputs it cannot decode are
/// skipped); panics if an invariant is broken.
pub fn session_ops(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run_session_ops(input);
    }
}

/// Runs one decoded input; panics if an invariant is broken.
pub fn run_session_ops(input: Input) {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let now = *BASE.get_or_init(Instant::now);
    let config = config(input.cfg);
    let end = |side| End {
        s: Session::new(side, config.clone(), now).expect("valid config"),
        input: BytesMut::new(),
        known: Vec::new(),
        eof_given: false,
        out_undecoded: BytesMut::new(),
        frames_decoded: 0,
        framed_with: VecDeque::new(),
        bytes_out: 0,
        bytes_in: 0,
        opened: 0,
        accepted: 0,
    };
    let mut world = World {
        ends: [end(Side::Client), end(Side::Server)],
        tracks: HashMap::new(),
        now,
    };
    for op in input.ops {
        world.apply(op);
        world.after_op();
    }
    world.settle();
}
