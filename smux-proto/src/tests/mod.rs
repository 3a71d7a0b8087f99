//! Protocol behaviour tests: a client and a server session pumped against each other in
//! memory, with no sockets and a virtual clock.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::{
    Config, Error, Event, Frame, FrameDecoder, ReadError, Session, Side, StreamId, Version,
    WriteError,
};

mod credit;
mod direct;
mod drain;
mod early_reply;
mod flow_control;
mod keepalive;
mod lifecycle;
mod limits;
mod path;
mod violations;

/// A client and a server connected by two in-memory pipes.
pub(crate) struct Pair {
    pub(crate) client: Session,
    pub(crate) server: Session,
    /// Bytes the client sent that the server has not consumed yet.
    pub(crate) to_server: BytesMut,
    /// Bytes the server sent that the client has not consumed yet.
    pub(crate) to_client: BytesMut,
    pub(crate) now: Instant,
    pub(crate) client_events: Vec<Event>,
    pub(crate) server_events: Vec<Event>,
    /// The most bytes moved per transmit call (to exercise partial writes).
    pub(crate) write_limit: usize,
}

impl Pair {
    pub(crate) fn new(config: Config) -> Pair {
        Pair::with_configs(config.clone(), config)
    }

    pub(crate) fn with_configs(client: Config, server: Config) -> Pair {
        // The origin of the virtual clock; every later instant is computed from it.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Pair {
            client: Session::new(Side::Client, client, now).unwrap(),
            server: Session::new(Side::Server, server, now).unwrap(),
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            write_limit: usize::MAX,
        }
    }

    /// Version 2 with Go's default 64 KiB window (ours is larger), for the tests of Go's
    /// window arithmetic.
    pub(crate) fn go_v2() -> Pair {
        Pair::new(Config {
            version: Version::V2,
            max_stream_buffer: 64 * 1024,
            ..Config::default()
        })
    }

    pub(crate) fn v(version: Version) -> Pair {
        Pair::new(Config {
            version,
            ..Config::default()
        })
    }

    /// Moves what `from` wants to send into `pipe`, at most `limit` bytes per call.
    pub(crate) fn transmit(from: &mut Session, pipe: &mut BytesMut, limit: usize) -> usize {
        let mut total = 0;
        loop {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = from.poll_transmit(&mut slices);
            if n == 0 {
                return total;
            }
            let mut written = 0;
            for s in &slices[..n] {
                let k = s.len().min(limit - written);
                pipe.extend_from_slice(&s[..k]);
                written += k;
                if written == limit {
                    break;
                }
            }
            from.transmitted(written);
            total += written;
        }
    }

    /// Pumps bytes both ways until nothing moves. Panics on livelock.
    pub(crate) fn drive(&mut self) {
        for _ in 0..100_000 {
            let moved = Pair::transmit(&mut self.client, &mut self.to_server, self.write_limit)
                + Pair::transmit(&mut self.server, &mut self.to_client, self.write_limit);
            let before = self.to_server.len() + self.to_client.len();
            let _ = self.server.handle_input(self.now, &mut self.to_server);
            let _ = self.client.handle_input(self.now, &mut self.to_client);
            let consumed = before - (self.to_server.len() + self.to_client.len());
            self.client_events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
            self.server_events
                .extend(std::iter::from_fn(|| self.server.poll_event()));
            if moved == 0 && consumed == 0 {
                return;
            }
        }
        panic!("pair did not settle: livelock");
    }

    /// Advances the virtual clock by `by`, firing both sessions' timers, and pumps.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.drive();
    }

    /// Opens a stream on the client and accepts it on the server.
    pub(crate) fn open_client_stream(&mut self) -> (StreamId, StreamId) {
        let id = self.client.open_stream().unwrap();
        self.drive();
        let accepted = self.server.accept_stream().expect("stream accepted");
        assert_eq!(accepted, id);
        (id, accepted)
    }

    pub(crate) fn take_client_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.client_events)
    }

    pub(crate) fn take_server_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.server_events)
    }
}

/// Writes all of `data`, driving the pair whenever the send buffers are full.
pub(crate) fn write_all(pair: &mut Pair, side: Side, id: StreamId, mut data: &[u8]) {
    while !data.is_empty() {
        let session = match side {
            Side::Client => &mut pair.client,
            Side::Server => &mut pair.server,
        };
        match session.write(id, data) {
            Ok(n) => data = &data[n..],
            Err(crate::WriteError::Blocked) => pair.drive(),
            Err(e) => panic!("write failed: {e}"),
        }
    }
}

/// Reads everything buffered on a stream; `Ok(true)` once it ended.
pub(crate) fn read_available(
    session: &mut Session,
    id: StreamId,
    out: &mut Vec<u8>,
) -> Result<bool, ReadError> {
    let mut buf = [0u8; 8192];
    loop {
        match session.read(id, &mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(ReadError::Blocked) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

pub(crate) use smux_test_support::{checksum, payload as pattern};

/// Decodes every frame in `bytes`.
pub(crate) fn frames(bytes: &[u8], version: Version) -> Vec<Frame> {
    let decoder = FrameDecoder::new(version);
    let mut buf = BytesMut::from(bytes);
    std::iter::from_fn(|| decoder.decode(&mut buf).unwrap()).collect()
}

/// Collects what `session` transmits, without delivering it.
pub(crate) fn transmit_frames(session: &mut Session) -> Vec<Frame> {
    let mut pipe = BytesMut::new();
    session.transmit_into(&mut pipe);
    frames(&pipe, session.config().version)
}

pub(crate) fn closed_error(events: &[Event]) -> Option<&Error> {
    events.iter().find_map(|e| match e {
        Event::Closed(e) => Some(e),
        _ => None,
    })
}
