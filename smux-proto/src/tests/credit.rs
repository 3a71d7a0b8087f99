//! Version 2 windows carved out of the receive budget: input never pauses for the budget, the
//! windows granted stay within it, busy streams share it, and a peer that ignores our
//! shrinking UPDs is bounded by the accept backlog.

use std::collections::HashMap;

use super::*;
use crate::{InputPause, WriteError, INITIAL_PEER_WINDOW, RECEIVE_WINDOW_FLOOR};

const MIB: usize = 1024 * 1024;

fn v2(max_receive_buffer: usize) -> Config {
    Config {
        version: Version::V2,
        max_receive_buffer,
        ..Config::default()
    }
}

/// The shape that deadlocked: the client writes 1 MiB on each of 64 streams while reading the
/// echo; the server echoes each stream (reads a chunk, and reads the next only once the chunk
/// is written back). Windows granted beside the budget made the server pause input with the
/// client's UPDs unread behind it, which its echo writers needed. Now input never pauses, every
/// byte comes back, and the credit promised stays within the budget plus the floors and the
/// initial windows the client used before it saw our shrinking UPDs.
#[test]
fn sixty_four_streams_echo_a_mib_each_without_pausing_input() {
    const STREAMS: usize = 64;
    const SIZE: usize = MIB;
    let mut pair = Pair::new(v2(4 * MIB));
    let ids: Vec<StreamId> = (0..STREAMS)
        .map(|_| pair.client.open_stream().unwrap())
        .collect();
    let data: Vec<Vec<u8>> = (0..STREAMS).map(|i| pattern(i as u64, SIZE)).collect();
    let mut written = vec![0usize; STREAMS];
    let mut echoed: Vec<Vec<u8>> = vec![Vec::new(); STREAMS];
    // The server's echo task per stream: a chunk read and not yet written back.
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); STREAMS];
    let mut accepted = 0;
    let mut rounds = 0;
    while echoed.iter().map(Vec::len).sum::<usize>() < STREAMS * SIZE {
        rounds += 1;
        assert!(
            rounds < 20_000,
            "no progress: {:#?}",
            pair.server.snapshot()
        );
        for i in 0..STREAMS {
            if written[i] < SIZE {
                let end = (written[i] + 7919).min(SIZE);
                match pair.client.write(ids[i], &data[i][written[i]..end]) {
                    Ok(n) => written[i] += n,
                    Err(WriteError::Blocked) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let mut buf = [0u8; 16 * 1024];
            if let Ok(n) = pair.client.read(ids[i], &mut buf) {
                echoed[i].extend_from_slice(&buf[..n]);
            }
        }
        while let Some(id) = pair.server.accept_stream() {
            assert_eq!(id, ids[accepted]);
            accepted += 1;
        }
        for i in 0..accepted {
            if pending[i].is_empty() {
                let mut buf = [0u8; 16 * 1024];
                if let Ok(n) = pair.server.read(ids[i], &mut buf) {
                    pending[i].extend_from_slice(&buf[..n]);
                }
            }
            if !pending[i].is_empty() {
                match pair.server.write(ids[i], &pending[i]) {
                    Ok(n) => drop(pending[i].drain(..n)),
                    Err(WriteError::Blocked) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
        pair.drive();
        let pause = pair.server.input_pause();
        assert!(
            pause.is_none() || pause == Some(InputPause::AcceptBacklog),
            "server input paused: {pause:?}"
        );
        assert_eq!(pair.client.input_pause(), None);
        let snap = pair.server.snapshot();
        let forced = snap.streams.len() * INITIAL_PEER_WINDOW as usize;
        assert!(
            snap.receive_credit as usize <= 4 * MIB + forced,
            "credit {} beyond the budget and the initial windows",
            snap.receive_credit
        );
    }
    for i in 0..STREAMS {
        assert_eq!(checksum(&echoed[i]), checksum(&data[i]), "stream {i}");
    }
    assert_eq!(pair.server.stats().streams_refused, 0);
}

/// Streams the peer opened beyond what the budget covers get a shrinking UPD right after
/// their SYN; the windows granted after reads share the budget: with many busy streams each
/// gets about budget / streams, never less than the floor.
#[test]
fn windows_granted_share_the_budget() {
    let budget = MIB;
    let mut pair = Pair::new(v2(budget));
    let ids: Vec<StreamId> = (0..8).map(|_| pair.client.open_stream().unwrap()).collect();
    let mut to_server = BytesMut::new();
    pair.client.transmit_into(&mut to_server);
    pair.server.handle_input(pair.now, &mut to_server).unwrap();
    // 8 x 256 KiB initial windows exceed 1 MiB: the last four are shrunk at once.
    let shrinks: Vec<Frame> = transmit_frames(&mut pair.server);
    let shrunk: Vec<StreamId> = shrinks
        .iter()
        .map(|f| match f {
            Frame::Upd {
                stream_id,
                consumed: 0,
                window,
            } => {
                assert!(*window >= RECEIVE_WINDOW_FLOOR, "{f:?}");
                *stream_id
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(shrunk, &ids[4..]);
    // Every stream busy: the grants after reads are fair shares.
    for &id in &ids {
        assert_eq!(pair.server.accept_stream(), Some(id));
        pair.client.write(id, &[1u8; 1000]).unwrap();
    }
    pair.drive();
    for &id in &ids {
        let mut got = Vec::new();
        read_available(&mut pair.server, id, &mut got).unwrap();
        assert_eq!(got.len(), 1000);
    }
    let windows: Vec<u64> = pair
        .server
        .snapshot()
        .streams
        .iter()
        .map(|s| s.receive_window.unwrap().window)
        .collect();
    let total: u64 = windows.iter().sum();
    assert!(
        total <= budget as u64 + 8 * u64::from(RECEIVE_WINDOW_FLOOR),
        "{windows:?}"
    );
    assert!(windows
        .iter()
        .all(|&w| w >= u64::from(RECEIVE_WINDOW_FLOOR)));
    assert_eq!(pair.server.snapshot().receive_credit, total);
}

/// Before a round trip was measured, a stream's first grant is at most 512 KiB, whatever the
/// budget (`path.rs`; `tests/path.rs` shows a lone stream taking the whole budget when the
/// path needs it).
#[test]
fn a_first_grant_on_an_unknown_path_is_bounded() {
    let mut pair = Pair::new(v2(4 * MIB));
    let (id, _) = pair.open_client_stream();
    pair.client.write(id, b"x").unwrap();
    pair.drive();
    pair.server.read(id, &mut [0u8; 8]).unwrap();
    let frames = transmit_frames(&mut pair.server);
    assert_eq!(
        frames,
        vec![Frame::Upd {
            stream_id: id,
            consumed: 1,
            window: 512 * 1024
        }]
    );
}

/// A peer that opens streams nobody accepts and sends on each up to Go's initial window
/// (ignoring our shrinking UPDs, which it is allowed to have not seen yet): the data waiting in
/// the backlog is bounded by the budget, then input pauses until the application accepts.
#[test]
fn unaccepted_streams_hold_at_most_a_budget_of_data() {
    let budget = 256 * 1024;
    #[allow(clippy::disallowed_methods)]
    let t = Instant::now();
    let mut server = Session::new(Side::Server, v2(budget), t).unwrap();
    let mut wire = BytesMut::new();
    let chunk = vec![5u8; 16 * 1024];
    for i in 0..32u32 {
        let id = StreamId::new(2 * i + 1);
        Frame::Syn { stream_id: id }
            .encode(Version::V2, &mut wire)
            .unwrap();
        for _ in 0..12 {
            Frame::Psh {
                stream_id: id,
                data: bytes::Bytes::from(chunk.clone()),
            }
            .encode(Version::V2, &mut wire)
            .unwrap();
        }
    }
    assert_eq!(server.input_pause(), None);
    server.handle_input(t, &mut wire).unwrap();
    assert_eq!(server.input_pause(), Some(InputPause::AcceptBacklog));
    let buffered = server.buffered_input();
    assert!(
        (budget..budget + 16 * 1024 + 8).contains(&buffered),
        "{buffered}"
    );
    assert!(!wire.is_empty(), "the rest waits in the transport");
    // Accepting (and reading) lets the rest in; nothing is lost or refused.
    let expected = 32 * 12 * chunk.len();
    let mut accepted = Vec::new();
    let mut total = 0;
    for _ in 0..10_000 {
        accepted.extend(std::iter::from_fn(|| server.accept_stream()));
        for &id in &accepted {
            let mut got = Vec::new();
            read_available(&mut server, id, &mut got).unwrap();
            assert!(got.iter().all(|&b| b == 5));
            total += got.len();
        }
        server.handle_input(t, &mut wire).unwrap();
        if total == expected {
            break;
        }
    }
    assert_eq!(total, expected);
    assert_eq!(accepted.len(), 32);
    assert!(wire.is_empty());
    assert_eq!(server.stats().streams_refused, 0);
}

/// The core lets an application read a stream by id before accepting it: the data it reads
/// no longer counts as waiting in the backlog.
#[test]
fn reading_an_unaccepted_stream_frees_backlog_room() {
    let mut pair = Pair::new(Config {
        max_receive_buffer: 64 * 1024,
        ..v2(64 * 1024)
    });
    let id = pair.client.open_stream().unwrap();
    pair.client.write(id, &[9u8; 64 * 1024]).unwrap();
    pair.drive();
    assert_eq!(pair.server.input_pause(), Some(InputPause::AcceptBacklog));
    let mut got = Vec::new();
    read_available(&mut pair.server, id, &mut got).unwrap();
    assert_eq!(got.len(), 64 * 1024);
    assert_eq!(pair.server.input_pause(), None);
    assert_eq!(pair.server.accept_stream(), Some(id));
    assert_eq!(pair.server.snapshot().streams[0].buffered_input, 0);
}

/// A Go v2 echo server stops reading its input once its receive buffer (4 MiB) is full, and
/// its echo writers need our window to answer. Our client opens 256 streams and writes 64 KiB
/// on each (16 MiB: far beyond Go's buffer), while our budget alone would give each stream
/// 16 KiB. Modelled on the wire: Go reads our frames in order until its buffer is full and
/// then nothing more. For every stream, the window Go had read by then must let it send back
/// all it holds, or its writer waits for an UPD it will never read.
#[test]
fn a_peer_that_stops_reading_can_still_answer_everything_it_holds() {
    const STREAMS: usize = 256;
    const SIZE: usize = 64 * 1024;
    const GO_BUFFER: i64 = 4 * MIB as i64;
    let mut client = Pair::new(v2(4 * MIB)).client;
    let ids: Vec<StreamId> = (0..STREAMS)
        .map(|_| client.open_stream().unwrap())
        .collect();
    let mut written = vec![0usize; STREAMS];
    // What the Go server read, per stream: bytes held, and (consumed, window) of our latest UPD.
    let mut held: HashMap<StreamId, u64> = HashMap::new();
    let mut window: HashMap<StreamId, (u32, u32)> = HashMap::new();
    let mut bucket = GO_BUFFER;
    let mut go_paused = false;
    for _ in 0..10_000 {
        for (i, &id) in ids.iter().enumerate() {
            match client.write(id, &[7u8; SIZE][written[i]..]) {
                Ok(n) => written[i] += n,
                Err(WriteError::Blocked) => {}
                Err(e) => panic!("{e}"),
            }
        }
        for frame in transmit_frames(&mut client) {
            if go_paused {
                continue;
            }
            match frame {
                Frame::Psh { stream_id, data } => {
                    *held.entry(stream_id).or_default() += data.len() as u64;
                    bucket -= data.len() as i64;
                    // Go checks its buffer before reading each frame header.
                    go_paused = bucket <= 0;
                }
                Frame::Upd {
                    stream_id,
                    consumed,
                    window: w,
                } => {
                    window.insert(stream_id, (consumed, w));
                }
                _ => {}
            }
        }
        if written.iter().all(|&w| w == SIZE) && client.buffered_output() == 0 {
            break;
        }
    }
    assert!(go_paused, "the model never filled Go's buffer");
    for (id, &bytes) in &held {
        let (consumed, w) = window.get(id).copied().unwrap_or((0, INITIAL_PEER_WINDOW));
        // Go may send up to consumed + window; it sent nothing yet.
        assert!(
            u64::from(consumed) + u64::from(w) >= bytes,
            "{id}: Go holds {bytes} bytes to echo but may send only {consumed} + {w}"
        );
    }
}
