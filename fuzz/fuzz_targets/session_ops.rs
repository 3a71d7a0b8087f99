//! A client and a server session connected in memory, driven by arbitrary operations.
//!
//! Every byte a reader gets must be, in order, what the peer wrote on that stream (writers send
//! a deterministic pattern, so tracking counts is enough); no data follows EOF; EOF means the
//! writer finished and everything arrived; between two honest peers the only ways a session
//! ends are closing and the peer closing; buffers stay within the config. At the end, if no
//! side is closing, everything is delivered and all written data must have been read.

#![no_main]

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use smux_proto::{Config, Error, Event, ReadError, Session, Side, StreamId, Version, WriteError};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Bit 0: version 2. Bits 1-2: buffer sizes.
    cfg: u8,
    ops: Vec<Op>,
}

/// `client` picks the side acting; `stream` indexes the streams that side knows.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Open {
        client: bool,
    },
    Accept {
        client: bool,
    },
    Write {
        client: bool,
        stream: u8,
        len: u16,
        chunk: bool,
    },
    Read {
        client: bool,
        stream: u8,
        max: u16,
        chunk: bool,
    },
    Finish {
        client: bool,
        stream: u8,
    },
    Release {
        client: bool,
        stream: u8,
    },
    /// Moves up to `bytes` (0: all) of one side's output to the other's input.
    Deliver {
        from_client: bool,
        bytes: u16,
    },
    Advance {
        millis: u16,
    },
    Close {
        client: bool,
    },
}

/// Version 2 writers drop data this long after the peer's FIN if it grants no window.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

fn config(byte: u8) -> Config {
    let mut c = Config {
        version: if byte & 1 == 0 {
            Version::V1
        } else {
            Version::V2
        },
        keep_alive_disabled: true,
        ..Config::default()
    };
    let (recv, stream, frame, send, stream_send, backlog, streams) = match (byte >> 1) & 3 {
        0 => return c,
        1 => (4096, 1024, 100, 2048, 1024, 2, 4),
        2 => (65_536, 8192, 1500, 16_384, 4096, 8, 16),
        _ => (1, 1, 1, 1, 1, 1, 2),
    };
    c.max_receive_buffer = recv;
    c.max_stream_buffer = stream;
    c.max_frame_size = frame;
    c.max_send_buffer = send;
    c.max_stream_send_buffer = stream_send;
    c.accept_backlog = backlog;
    c.max_streams = streams;
    c
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
    /// When the writer finished (or released, or closed the session).
    finished_at: Option<Instant>,
    eof: bool,
}

struct End {
    s: Session,
    input: BytesMut,
    /// Streams opened or accepted and not released.
    known: Vec<StreamId>,
    eof_given: bool,
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
        let s = &mut self.ends[i].s;
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
        let peer = &mut self.ends[1 - i];
        if !peer.s.is_closed() {
            peer.input.extend_from_slice(&out);
            let _ = peer.s.handle_input(self.now, &mut peer.input);
        }
        out.len()
    }

    /// After every operation: closed transports, resumed input, events, buffer bounds.
    fn after_op(&mut self) {
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
            // The budget plus one frame, and the peer's frames are at most `max_frame_size`.
            assert!(end.s.buffered_input() <= c.max_receive_buffer + 65_535);
            assert!(end.s.buffered_input() <= c.max_receive_buffer + c.max_frame_size);
            assert!(end.s.buffered_output() <= c.max_send_buffer);
        }
    }

    fn apply(&mut self, op: Op) {
        let end = |client: bool| usize::from(!client);
        match op {
            Op::Open { client } => {
                if let Ok(id) = self.ends[end(client)].s.open_stream() {
                    assert_eq!(id.as_u32() % 2, u32::from(client), "own id parity");
                    self.learn(end(client), id);
                }
            }
            Op::Accept { client } => {
                if let Some(id) = self.ends[end(client)].s.accept_stream() {
                    self.learn(end(client), id);
                }
            }
            Op::Write {
                client,
                stream,
                len,
                chunk,
            } => self.write(end(client), stream, len, chunk),
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

fuzz_target!(|input: Input| {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let now = *BASE.get_or_init(Instant::now);
    let config = config(input.cfg);
    let end = |side| End {
        s: Session::new(side, config.clone(), now).expect("valid config"),
        input: BytesMut::new(),
        known: Vec::new(),
        eof_given: false,
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
});
