//! Hostile peers over real loopback TCP.
//!
//! Our side is a `smux_tokio::Mux`; the peer is a raw `TcpStream` writing frames built by hand
//! (the `frame` helper below, independent of the crate's encoder). Every case checks:
//! - the typed error: its `io::ErrorKind` and the `smux_proto::Error` inside it (and the exact
//!   `ProtocolViolation` for protocol errors), on streams, `accept` and `drive` alike;
//! - that the session ends and closes the transport (the raw peer reads EOF);
//! - that a second, healthy mux pair in the same process keeps echoing during and after;
//! - for floods, that memory stays within the configured bounds (stream counts, bytes the peer
//!   could push or we could queue, and process RSS).
//!
//! The tests take a file-wide lock so that they run one at a time: the RSS measurement and the
//! "the peer's writes stall" checks are then not disturbed by the other cases; the whole file
//! takes about 20 s.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smux_test_support::{checksum, payload};
use smux_tokio::proto::{Cmd, Error as SmuxError, ProtocolViolation};
use smux_tokio::{InputPause, Mux, MuxConfig, MuxStream, Side, StreamId, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

type TcpMux = Mux<TcpStream>;
type TcpMuxStream = MuxStream<TcpStream>;

/// Failure guard: anything that takes longer is a hang.
const GUARD: Duration = Duration::from_secs(20);

/// One hostile case at a time (see the module docs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ------------------------------------------------------------------------------------------------
// Raw frames, by hand

const SYN: u8 = 0;
const FIN: u8 = 1;
const PSH: u8 = 2;
const NOP: u8 = 3;
const UPD: u8 = 4;

/// A frame header with whatever LEN we like (it may lie about the payload that follows).
fn header(ver: u8, cmd: u8, len: u16, sid: u32) -> Vec<u8> {
    let mut h = vec![ver, cmd];
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&sid.to_le_bytes());
    h
}

/// A complete frame: header with LEN = `data.len()`, then `data`.
fn frame(ver: u8, cmd: u8, sid: u32, data: &[u8]) -> Vec<u8> {
    let mut f = header(ver, cmd, u16::try_from(data.len()).unwrap(), sid);
    f.extend_from_slice(data);
    f
}

/// A version 2 window update.
fn upd(sid: u32, consumed: u32, window: u32) -> Vec<u8> {
    let mut data = consumed.to_le_bytes().to_vec();
    data.extend_from_slice(&window.to_le_bytes());
    frame(2, UPD, sid, &data)
}

fn ver(version: Version) -> u8 {
    version.as_u8()
}

/// Frames parsed from raw bytes our mux wrote: (cmd, sid, payload). A trailing partial frame
/// is left in `buf`.
fn take_frames(buf: &mut Vec<u8>) -> Vec<(u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 8 {
        let h = &buf[at..at + 8];
        let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
        if buf.len() - at < 8 + len {
            break;
        }
        let sid = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        frames.push((h[1], sid, buf[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    buf.drain(..at);
    frames
}

// ------------------------------------------------------------------------------------------------
// Data helpers

/// Resident set size of this process, from /proc/self/status.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

// ------------------------------------------------------------------------------------------------
// Connections

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {GUARD:?} (hang)"))
}

/// Kernel buffer sizes for the small-buffer connections of the flood tests.
const SMALL_SOCKET_BUFFER: u32 = 32 * 1024;

/// A loopback TCP connection (connecting end, accepting end); with `small_buffers`, both ends'
/// kernel send and receive buffers are shrunk, so that the bytes in flight in the kernel stay
/// small next to the bounds under test. Returns also the kernel buffering of the connection
/// (both ends' send and receive buffers as the kernel reports them).
async fn tcp_pair_with(small_buffers: bool) -> (TcpStream, TcpStream, usize) {
    let listen = TcpSocket::new_v4().unwrap();
    let connect = TcpSocket::new_v4().unwrap();
    if small_buffers {
        for s in [&listen, &connect] {
            s.set_send_buffer_size(SMALL_SOCKET_BUFFER).unwrap();
            s.set_recv_buffer_size(SMALL_SOCKET_BUFFER).unwrap();
        }
    }
    let kernel = [&listen, &connect]
        .iter()
        .map(|s| (s.send_buffer_size().unwrap() + s.recv_buffer_size().unwrap()) as usize)
        .sum();
    listen.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listen.local_addr().unwrap();
    let listener: TcpListener = listen.listen(16).unwrap();
    let (client, accepted) = tokio::join!(connect.connect(addr), listener.accept());
    let client = client.unwrap();
    let (server, _) = accepted.unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server, kernel)
}

/// Our mux (as `side`) on one end of a fresh connection, the raw hostile peer on the other.
async fn hostile_pair(side: Side, config: MuxConfig) -> (TcpMux, TcpStream) {
    let (ours, raw, _) = tcp_pair_with(false).await;
    (Mux::new(ours, side, config).unwrap(), raw)
}

fn config(version: Version) -> MuxConfig {
    MuxConfig::default().with_version(version)
}

/// The first two stream ids the raw peer uses: the parity of the side opposite ours.
fn peer_ids(our_side: Side) -> (u32, u32) {
    match our_side {
        Side::Server => (3, 5),
        Side::Client => (2, 4),
    }
}

/// The smux error carried by an `io::Error` from the mux, checked through both `get_ref` and
/// `into_inner`, which must agree.
fn smux_error(e: io::Error) -> SmuxError {
    let by_ref = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<SmuxError>())
        .unwrap_or_else(|| panic!("{e:?} does not carry a smux_proto::Error"))
        .to_string();
    let kind = e.kind();
    let inner = *e
        .into_inner()
        .expect("inner error")
        .downcast::<SmuxError>()
        .expect("inner error is a smux_proto::Error");
    assert_eq!(inner.to_string(), by_ref);
    assert_eq!(inner.io_kind(), kind, "{inner}");
    inner
}

/// The protocol violation carried by an `io::Error` (kind `InvalidData`).
fn violation(e: io::Error) -> ProtocolViolation {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    match smux_error(e) {
        SmuxError::Protocol(v) => v,
        other => panic!("expected a protocol violation, got {other:?}"),
    }
}

/// Waits for the session to end; returns its error as `accept` reports it, after checking
/// that `drive` and `connect` report the same.
async fn session_error(mux: &TcpMux) -> io::Error {
    let err = within("accept after the session ended", async {
        loop {
            match mux.accept().await {
                // Streams that arrived before the end stay acceptable; drop them.
                Ok(stream) => drop(stream),
                Err(e) => break e,
            }
        }
    })
    .await;
    assert!(mux.is_closed());
    let driven = within("drive", mux.drive()).await.unwrap_err();
    assert_eq!(driven.kind(), err.kind());
    assert_eq!(driven.to_string(), err.to_string());
    let connect = mux.connect().await.unwrap_err();
    assert_eq!(connect.to_string(), err.to_string());
    err
}

/// Reads the raw socket to its end (EOF or reset, not a hang); returns what our side wrote.
async fn read_until_closed(raw: &mut TcpStream) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    within("the peer's socket to close", async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => wire.extend_from_slice(&buf[..n]),
                // Closing a socket with unread input sends RST instead of FIN.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("peer read failed: {e}"),
            }
        }
    })
    .await;
    wire
}

// ------------------------------------------------------------------------------------------------
// A healthy mux pair that must not notice any of it

struct Healthy {
    client: TcpMux,
    stop: Arc<AtomicBool>,
    background: Option<JoinHandle<usize>>,
    _server: JoinHandle<()>,
}

async fn echo(mut stream: TcpMuxStream) {
    while let Some(chunk) = stream.read_chunk(64 * 1024).await.unwrap() {
        stream.write_chunk(chunk).await.unwrap();
    }
    stream.shutdown().await.unwrap();
}

/// One echo round trip on a fresh stream of `client`.
async fn echo_round(client: &TcpMux, seed: u64) {
    let data = payload(seed, 48 * 1024 + (seed as usize % 1000));
    let stream = client.connect().await.unwrap();
    let (mut r, mut w) = tokio::io::split(stream);
    let write = async {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let read = r.read_to_end(&mut back);
    let ((), n) = tokio::join!(write, read);
    assert_eq!(n.unwrap(), data.len());
    assert!(back == data, "healthy pair: echo corrupted");
}

impl Healthy {
    /// A healthy pair echoing in the background until `finish`.
    async fn start(version: Version) -> Healthy {
        let (a, b, _) = tcp_pair_with(false).await;
        let client = Mux::client(a, config(version)).unwrap();
        let server = Mux::server(b, config(version)).unwrap();
        let server = tokio::spawn(async move {
            while let Ok(stream) = server.accept().await {
                tokio::spawn(echo(stream));
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let background = tokio::spawn({
            let client = client.clone();
            let stop = stop.clone();
            async move {
                let mut rounds = 0;
                loop {
                    echo_round(&client, rounds as u64).await;
                    rounds += 1;
                    if stop.load(Ordering::Relaxed) {
                        return rounds;
                    }
                }
            }
        });
        Healthy {
            client,
            stop,
            background: Some(background),
            _server: server,
        }
    }

    /// Stops the background echo (which must have succeeded throughout) and checks that a
    /// fresh round still works.
    async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let rounds = within("healthy pair", self.background.take().unwrap())
            .await
            .expect("the healthy pair failed during the hostile case");
        assert!(rounds >= 1);
        within("healthy pair after", echo_round(&self.client, 9999)).await;
        assert!(!self.client.is_closed());
    }
}

// ------------------------------------------------------------------------------------------------
// Bad frames: each ends the session with the exact protocol violation

/// Peer opens a stream and sends "before" on it, then `bad`. Our side must: deliver "before",
/// then fail the stream, `accept`, `drive` and `connect` with the same error, and close the
/// transport. Returns the error.
async fn bad_input(side: Side, version: Version, bad: &[u8]) -> io::Error {
    let healthy = Healthy::start(version).await;
    let (mux, mut raw) = hostile_pair(side, config(version)).await;
    let (sid, _) = peer_ids(side);
    let v = ver(version);
    let mut wire = frame(v, SYN, sid, &[]);
    wire.extend(frame(v, PSH, sid, b"before"));
    wire.extend_from_slice(bad);
    raw.write_all(&wire).await.unwrap();

    let mut stream = within("accept", mux.accept()).await.unwrap();
    assert_eq!(stream.id(), StreamId::new(sid));
    let mut got = [0; 6];
    within("read", stream.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"before");
    let on_stream = within("read after", stream.read(&mut [0; 8]))
        .await
        .unwrap_err();
    let err = session_error(&mux).await;
    assert_eq!(on_stream.to_string(), err.to_string());
    assert_eq!(on_stream.kind(), err.kind());
    let write = stream.write(b"x").await.unwrap_err();
    assert_eq!(write.to_string(), err.to_string());

    // The transport is closed by the mux itself, while our handles still exist.
    read_until_closed(&mut raw).await;
    drop(stream);
    healthy.finish().await;
    err
}

const SIDES: [Side; 2] = [Side::Server, Side::Client];
const VERSIONS: [Version; 2] = [Version::V1, Version::V2];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_version_byte() {
    let _serial = SERIAL.lock().await;
    for side in SIDES {
        for version in VERSIONS {
            let expected = ver(version);
            for received in [0, 3 - expected, 0xff] {
                let err = bad_input(side, version, &frame(received, NOP, 0, &[])).await;
                assert_eq!(
                    violation(err),
                    ProtocolViolation::WrongVersion { expected, received },
                    "{side:?} {version:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_command() {
    let _serial = SERIAL.lock().await;
    for side in SIDES {
        for version in VERSIONS {
            for cmd in [5, 0x80, 0xff] {
                let bad = frame(ver(version), cmd, 7, &[]);
                let err = bad_input(side, version, &bad).await;
                assert_eq!(violation(err), ProtocolViolation::UnknownCommand(cmd));
            }
        }
    }
}

/// PROTOCOL.md: SYN, FIN and NOP carry LEN 0 and UPD LEN 8; Go 1.5.16 does not check (and
/// desynchronises), newer Go rejects. We reject, as soon as the header arrives (a NOP claiming
/// 65535 bytes is refused without waiting for them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_frames_with_payload() {
    let _serial = SERIAL.lock().await;
    for side in SIDES {
        for version in VERSIONS {
            let v = ver(version);
            let (_, other) = peer_ids(side);
            let mut cases = vec![
                (frame(v, SYN, other, b"x"), Cmd::Syn, other, 1),
                (frame(v, FIN, other, b"data"), Cmd::Fin, other, 4),
                (frame(v, NOP, 0, b"12345678"), Cmd::Nop, 0, 8),
                (header(v, NOP, 65535, 0), Cmd::Nop, 0, 65535),
            ];
            if version == Version::V2 {
                cases.push((frame(v, UPD, other, &[0; 4]), Cmd::Upd, other, 4));
                cases.push((frame(v, UPD, other, &[0; 16]), Cmd::Upd, other, 16));
                cases.push((header(v, UPD, 0, other), Cmd::Upd, other, 0));
            }
            for (bad, cmd, sid, len) in cases {
                let err = bad_input(side, version, &bad).await;
                assert_eq!(
                    violation(err),
                    ProtocolViolation::BadControlLength {
                        cmd,
                        stream_id: StreamId::new(sid),
                        len,
                    },
                    "{side:?} {version:?} {cmd:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upd_in_version_1() {
    let _serial = SERIAL.lock().await;
    for side in SIDES {
        let (sid, _) = peer_ids(side);
        // A well-formed UPD (LEN 8) on the open stream, but with version byte 1.
        let mut bad = upd(sid, 0, 65536);
        bad[0] = 1;
        let err = bad_input(side, Version::V1, &bad).await;
        assert_eq!(
            violation(err),
            ProtocolViolation::UpdInVersion1 {
                stream_id: StreamId::new(sid)
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_then_eof() {
    let _serial = SERIAL.lock().await;
    for side in SIDES {
        for version in VERSIONS {
            let v = ver(version);
            let (sid, _) = peer_ids(side);
            // Half a header, a header alone, a header and part of its payload, and for
            // comparison the end at a frame boundary.
            let mut partial_payload = header(v, PSH, 100, sid);
            partial_payload.extend_from_slice(&[7; 10]);
            let cases: [(Vec<u8>, Option<usize>); 4] = [
                (header(v, PSH, 100, sid)[..3].to_vec(), Some(3)),
                (header(v, PSH, 100, sid), Some(8)),
                (partial_payload, Some(18)),
                (Vec::new(), None),
            ];
            for (tail, truncated) in cases {
                let healthy = Healthy::start(version).await;
                let (mux, mut raw) = hostile_pair(side, config(version)).await;
                let mut wire = frame(v, SYN, sid, &[]);
                wire.extend(frame(v, PSH, sid, b"before"));
                wire.extend_from_slice(&tail);
                raw.write_all(&wire).await.unwrap();
                raw.shutdown().await.unwrap();

                let mut stream = within("accept", mux.accept()).await.unwrap();
                let mut got = Vec::new();
                let end = within("read", stream.read_to_end(&mut got))
                    .await
                    .unwrap_err();
                assert_eq!(got, b"before");
                let err = session_error(&mux).await;
                assert_eq!(end.to_string(), err.to_string());
                match (truncated, smux_error(err)) {
                    (Some(n), SmuxError::TruncatedFrame { received }) => {
                        assert_eq!(end.kind(), io::ErrorKind::UnexpectedEof);
                        assert_eq!(received, n);
                    }
                    (None, SmuxError::PeerClosed) => {
                        assert_eq!(end.kind(), io::ErrorKind::ConnectionAborted);
                    }
                    (expected, other) => panic!("expected truncation {expected:?}, got {other:?}"),
                }
                read_until_closed(&mut raw).await;
                healthy.finish().await;
            }
        }
    }
}

/// Version 2: a peer that ignores our window. Before our first UPD the peer may send Go's first
/// guess of our window, 256 KiB, whatever max_stream_buffer is; one byte more is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_beyond_the_v2_window() {
    let _serial = SERIAL.lock().await;
    for side in SIDES {
        for max_stream_buffer in [64 * 1024, 1024 * 1024] {
            let limit = 256 * 1024;
            let (_, flooded) = peer_ids(side);
            // The flooded stream is not the one `bad_input` reads: nothing of it is read.
            let mut bad = frame(2, SYN, flooded, &[]);
            let chunk = vec![0xAB; 65535];
            let mut sent = 0;
            while sent + chunk.len() <= limit {
                bad.extend(frame(2, PSH, flooded, &chunk));
                sent += chunk.len();
            }
            bad.extend(frame(2, PSH, flooded, &chunk[..limit - sent]));
            bad.extend(frame(2, PSH, flooded, b"!"));
            let cfg = config(Version::V2).with_max_stream_buffer(max_stream_buffer);
            let healthy = Healthy::start(Version::V2).await;
            let (mux, mut raw) = hostile_pair(side, cfg).await;
            // Nobody accepts the stream (a released stream's data is dropped, not buffered):
            // only `drive` polls until the end.
            raw.write_all(&bad).await.unwrap();
            let driven = within("drive", mux.drive()).await.unwrap_err();
            let err = session_error(&mux).await;
            assert_eq!(driven.to_string(), err.to_string());
            assert_eq!(
                violation(err),
                ProtocolViolation::WindowExceeded {
                    stream_id: StreamId::new(flooded),
                    buffered: limit + 1,
                    limit,
                }
            );
            read_until_closed(&mut raw).await;
            healthy.finish().await;
        }
    }
}

/// Version 2: an UPD claiming more bytes consumed than we sent (Go's `ErrConsumed`). An UPD
/// with consumed == sent just before it is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upd_consumed_beyond_sent() {
    let _serial = SERIAL.lock().await;
    for side in SIDES {
        let healthy = Healthy::start(Version::V2).await;
        let (mux, mut raw) = hostile_pair(side, config(Version::V2)).await;
        let mut stream = mux.connect().await.unwrap();
        let sid = stream.id().as_u32();
        stream.write_all(b"ten bytes!").await.unwrap();
        stream.flush().await.unwrap();
        // Wait until the peer has the SYN and all ten bytes.
        let mut wire = Vec::new();
        let mut got = 0;
        within("our data at the peer", async {
            let mut buf = [0; 1024];
            while got < 10 {
                let n = raw.read(&mut buf).await.unwrap();
                assert!(n > 0);
                wire.extend_from_slice(&buf[..n]);
                for (cmd, id, data) in take_frames(&mut wire) {
                    if cmd == PSH && id == sid {
                        got += data.len();
                    }
                }
            }
        })
        .await;
        assert_eq!(got, 10);
        let mut bad = upd(sid, 10, 65536);
        bad.extend(upd(sid, 11, 65536));
        raw.write_all(&bad).await.unwrap();
        let on_read = within("read", stream.read(&mut [0; 8])).await.unwrap_err();
        let err = session_error(&mux).await;
        assert_eq!(on_read.to_string(), err.to_string());
        assert_eq!(
            violation(err),
            ProtocolViolation::ConsumedBeyondSent {
                stream_id: StreamId::new(sid),
                consumed: 11,
                sent: 10,
            }
        );
        read_until_closed(&mut raw).await;
        healthy.finish().await;
    }
}

/// Odd but harmless frames are ignored as Go ignores them, and the session goes on: a SYN
/// for an open stream, PSH/FIN/UPD for unknown streams, an empty PSH, data after FIN, a NOP
/// with a stream id, and a peer opening a stream with *our* parity (our next id skips it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_frames_are_tolerated() {
    let _serial = SERIAL.lock().await;
    for version in VERSIONS {
        let v = ver(version);
        let healthy = Healthy::start(version).await;
        // Our side is the client (odd ids from 3); the peer squats 3 and 5.
        let (mux, mut raw) = hostile_pair(Side::Client, config(version)).await;
        let mut wire = Vec::new();
        for sid in [3, 5] {
            wire.extend(frame(v, SYN, sid, &[]));
        }
        wire.extend(frame(v, SYN, 3, &[])); // already open
        wire.extend(frame(v, PSH, 3, b"one "));
        wire.extend(frame(v, PSH, 1001, b"nobody")); // unknown stream
        wire.extend(frame(v, FIN, 1003, &[])); // unknown stream
        if version == Version::V2 {
            wire.extend(upd(1005, 0, 65536)); // unknown stream
        }
        wire.extend(frame(v, PSH, 3, &[])); // empty
        wire.extend(frame(v, NOP, 77, &[])); // NOP with a stream id
        wire.extend(frame(v, PSH, 3, b"two"));
        wire.extend(frame(v, FIN, 3, &[]));
        wire.extend(frame(v, PSH, 3, b" after FIN")); // dropped
        raw.write_all(&wire).await.unwrap();

        let mut a = within("accept", mux.accept()).await.unwrap();
        assert_eq!(a.id(), StreamId::new(3));
        let mut got = Vec::new();
        within("read", a.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"one two");
        let b = within("accept", mux.accept()).await.unwrap();
        assert_eq!(b.id(), StreamId::new(5));
        // Our own next stream skips the ids the peer took.
        let mut c = mux.connect().await.unwrap();
        assert_eq!(c.id(), StreamId::new(7));
        c.write_all(b"hi").await.unwrap();
        c.flush().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0; 256];
        within("our frames", async {
            while !take_frames(&mut seen.clone()).contains(&(PSH, 7, b"hi".to_vec())) {
                let n = raw.read(&mut buf).await.unwrap();
                assert!(n > 0);
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(!mux.is_closed());
        let stats = mux.stats();
        assert_eq!(stats.streams_accepted, 2);
        assert_eq!(stats.streams_refused, 0);
        drop((a, b, c));
        healthy.finish().await;
    }
}

/// Version 2: the peer finishes a stream and never grants window again, while staying alive
/// with NOPs. Our writer, blocked on the window, fails after the keepalive timeout with
/// `PeerStoppedReading` (Go would block forever); the session and other streams go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_peer_finishes_and_stops_granting_window() {
    use smux_tokio::proto::WriteError;
    let _serial = SERIAL.lock().await;
    let healthy = Healthy::start(Version::V2).await;
    let keep_alive_timeout = Duration::from_millis(800);
    let cfg = config(Version::V2)
        .with_keep_alive_interval(Duration::from_millis(100))
        .with_keep_alive_timeout(keep_alive_timeout);
    let (mux, raw) = hostile_pair(Side::Client, cfg).await;
    let (mut reader, mut writer) = raw.into_split();
    let mut s = mux.connect().await.unwrap();
    let sid = s.id();
    let blocked = tokio::spawn(async move {
        // Beyond the 256 KiB initial window: blocks once the window is used up.
        let r = s.write_all(&vec![1; 1 << 20]).await;
        (s, r)
    });
    // The peer reads our data (to the window's end), then sends FIN, then only NOPs.
    let mut got = 0;
    let mut wire = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    within("the window's worth of data", async {
        while got < 256 * 1024 {
            let n = reader.read(&mut buf).await.unwrap();
            wire.extend_from_slice(&buf[..n]);
            for (cmd, id, data) in take_frames(&mut wire) {
                if cmd == PSH && id == sid.as_u32() {
                    got += data.len();
                }
            }
        }
    })
    .await;
    assert_eq!(got, 256 * 1024, "we sent beyond the peer's window");
    let start = Instant::now();
    writer
        .write_all(&frame(2, FIN, sid.as_u32(), &[]))
        .await
        .unwrap();
    let nops = tokio::spawn(async move {
        loop {
            if writer.write_all(&frame(2, NOP, 0, &[])).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let drain = tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        while reader.read(&mut buf).await.unwrap_or(0) > 0 {}
    });
    let (mut s, r) = within("blocked writer", blocked).await.unwrap();
    let err = r.unwrap_err();
    assert!(start.elapsed() >= keep_alive_timeout);
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<WriteError>())
        .expect("a WriteError inside");
    assert!(
        matches!(inner, WriteError::PeerStoppedReading(id) if *id == sid),
        "{inner:?}"
    );
    // The stream still reads the peer's FIN; the session is alive and opens streams.
    assert_eq!(s.read(&mut [0; 8]).await.unwrap(), 0);
    assert!(!mux.is_closed());
    let other = mux.connect().await.unwrap();
    assert_ne!(other.id(), sid);
    nops.abort();
    drain.abort();
    healthy.finish().await;
}

// ------------------------------------------------------------------------------------------------
// SYN flood

/// Reads the raw socket in the background, counting the FINs our side sends per stream id.
fn spawn_fin_counter(reader: tokio::net::tcp::OwnedReadHalf) -> JoinHandle<Vec<(u8, u32)>> {
    spawn_fin_counter_with(reader, Arc::default())
}

/// `spawn_fin_counter`, also publishing in `fin_streams` how many distinct streams got a FIN
/// so far (so a test can wait for the refusals to arrive before it ends the connection: a
/// session whose peer closes drops what it had not written yet).
fn spawn_fin_counter_with(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    fin_streams: Arc<AtomicUsize>,
) -> JoinHandle<Vec<(u8, u32)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut finished = std::collections::HashSet::new();
        let mut wire = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => {
                    wire.extend_from_slice(&buf[..n]);
                    for (cmd, sid, _) in take_frames(&mut wire) {
                        if cmd == FIN {
                            finished.insert(sid);
                        }
                        seen.push((cmd, sid));
                    }
                    fin_streams.store(finished.len(), Ordering::SeqCst);
                }
            }
        }
    })
}

/// How many FINs each stream got, from the frames `spawn_fin_counter` saw. A refused stream
/// gets one at once and at most one more (when the peer writes on it, or after a second of
/// silence: the repeat a Go peer may need); more would be a bug, so this checks it.
fn fins_by_stream(frames: &[(u8, u32)]) -> HashMap<u32, usize> {
    let mut fins = HashMap::new();
    for &(_, sid) in frames.iter().filter(|&&(cmd, _)| cmd == FIN) {
        *fins.entry(sid).or_insert(0) += 1;
    }
    if let Some((sid, n)) = fins.iter().find(|&(_, &n)| n > 2) {
        panic!("stream {sid} got {n} FINs");
    }
    fins
}

/// Samples `mux.stream_count()` every millisecond into `peak` until `done`.
fn spawn_stream_table_sampler(
    mux: TcpMux,
    done: Arc<AtomicBool>,
    peak: Arc<AtomicUsize>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while !done.load(Ordering::Relaxed) {
            peak.fetch_max(mux.stream_count(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

/// 200k SYNs with accept_backlog 16 (max_streams at its default, far above the backlog) while
/// nobody accepts: once 16 streams wait, our side stops reading the transport
/// (`InputPause::AcceptBacklog`), so the flooding peer's writes stall; nothing is refused, the
/// stream table holds exactly the backlog, RSS stays flat and a healthy pair alongside keeps
/// working. Accepting then resumes input: every one of the 200k streams is accepted, in order,
/// and none is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syn_flood_pauses_at_the_accept_backlog() {
    const FLOOD: u32 = 200_000;
    const BACKLOG: usize = 16;
    let _serial = SERIAL.lock().await;
    for version in VERSIONS {
        let v = ver(version);
        let healthy = Healthy::start(version).await;
        let cfg = config(version).with_accept_backlog(BACKLOG);
        assert!(cfg.max_streams > 2 * BACKLOG);
        let (ours, raw, kernel) = tcp_pair_with(true).await;
        let mux = Mux::server(ours, cfg).unwrap();
        let (reader, writer) = raw.into_split();
        let fins = spawn_fin_counter(reader);
        let mut wire = Vec::with_capacity(FLOOD as usize * 8);
        for i in 0..FLOOD {
            wire.extend(frame(v, SYN, 1 + 2 * i, &[]));
        }
        let total = wire.len();
        let rss_before = rss_bytes();

        let done = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(0));
        let sampler = spawn_stream_table_sampler(mux.clone(), done.clone(), peak.clone());
        // A task polling the mux, as an application's drive task would; it accepts nothing.
        let driver = tokio::spawn({
            let mux = mux.clone();
            async move { mux.drive().await }
        });
        let (written, writer) = spawn_counting_writer(writer, wire);
        // Input taken while the backlog is full: one transport read (the rest of it waits in
        // the session), the kernel buffers, and 64 KiB of slack for kernel accounting.
        let bound = (64 * 1024 + 8) + kernel + 64 * 1024;
        let settled = settles_below(&written, bound, "SYN flood, nobody accepting").await;
        done.store(true, Ordering::Relaxed);
        sampler.await.unwrap();
        let rss_growth = rss_bytes().saturating_sub(rss_before);
        let snap = mux.snapshot();
        println!(
            "{version:?}: nobody accepting, the flooding peer stalled after {settled} of {total} \
             bytes (bound {bound}); stream table peak {}, RSS growth {} KiB, input pause {:?}",
            peak.load(Ordering::Relaxed),
            rss_growth / 1024,
            snap.input_pause,
        );
        assert!(settled < total);
        assert_eq!(snap.input_pause, Some(InputPause::AcceptBacklog));
        assert_eq!(snap.accept_backlog, BACKLOG);
        assert_eq!(snap.streams.len(), BACKLOG);
        assert!(snap.streams.iter().all(|s| s.unaccepted));
        assert_eq!(peak.load(Ordering::Relaxed), BACKLOG);
        assert_eq!(mux.stream_count(), BACKLOG);
        assert_eq!(snap.stats.streams_refused, 0);
        assert_eq!(snap.stats.streams_accepted, 0);
        assert!(snap.stats.frames_in < u64::from(FLOOD));
        assert!(!mux.is_closed());
        // The paused session takes next to nothing (the margin covers allocator noise and the
        // healthy pair, which kept echoing meanwhile).
        assert!(rss_growth < 16 << 20, "RSS grew by {rss_growth} bytes");

        // Accepting resumes input: every stream arrives, in order, and none is refused. The
        // stream table holds the backlog plus the one stream we hold at a time.
        let done = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(0));
        let sampler = spawn_stream_table_sampler(mux.clone(), done.clone(), peak.clone());
        within("accepting the whole flood", async {
            for i in 0..FLOOD {
                let s = mux.accept().await.unwrap();
                assert_eq!(s.id(), StreamId::new(1 + 2 * i));
            }
        })
        .await;
        let mut writer = within("writer", writer).await.unwrap();
        done.store(true, Ordering::Relaxed);
        sampler.await.unwrap();
        assert!(peak.load(Ordering::Relaxed) <= BACKLOG + 1);
        let stats = mux.stats();
        assert_eq!(stats.streams_accepted, u64::from(FLOOD));
        assert_eq!(stats.streams_refused, 0);
        assert_eq!(stats.frames_in, u64::from(FLOOD));
        assert_eq!(mux.snapshot().input_pause, None);

        // Dropping the accepted streams finished them: the peer sees a FIN for each, and for
        // nothing else.
        writer.shutdown().await.unwrap();
        let err = within("drive", driver).await.unwrap().unwrap_err();
        assert!(matches!(smux_error(err), SmuxError::PeerClosed));
        let frames = within("fin counter", fins).await.unwrap();
        let fin_count = frames.iter().filter(|&&(cmd, _)| cmd == FIN).count();
        assert_eq!(fin_count as u64, u64::from(FLOOD));
        healthy.finish().await;
    }
}

/// 200k SYNs with max_streams 32 and accept_backlog 64 (so the backlog never fills) while
/// nobody accepts: the first 32 wait to be accepted, every other one is refused at
/// max_streams with FIN and counted in `streams_refused`, the stream table never grows beyond
/// max_streams, RSS stays flat, and accepting works afterwards. With the table full of
/// accepted streams further SYNs are refused too, until dropping streams frees slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syn_flood_beyond_max_streams_is_refused_and_counted() {
    const FLOOD: u32 = 200_000;
    const BACKLOG: usize = 64;
    const MAX_STREAMS: usize = 32;
    let _serial = SERIAL.lock().await;
    for version in VERSIONS {
        let v = ver(version);
        let healthy = Healthy::start(version).await;
        let cfg = config(version)
            .with_accept_backlog(BACKLOG)
            .with_max_streams(MAX_STREAMS);
        let (mux, raw) = hostile_pair(Side::Server, cfg).await;
        let (reader, mut writer) = raw.into_split();
        let fin_streams = Arc::new(AtomicUsize::new(0));
        let fins = spawn_fin_counter_with(reader, fin_streams.clone());
        let rss_before = rss_bytes();

        // The flood, written in 64 KiB bursts; meanwhile a task samples the stream table.
        let done = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(0));
        let sampler = spawn_stream_table_sampler(mux.clone(), done.clone(), peak.clone());
        // A task polling the mux, as an application's accept loop or drive task would; it
        // accepts nothing.
        let driver = tokio::spawn({
            let mux = mux.clone();
            async move { mux.drive().await }
        });
        let mut burst = Vec::with_capacity(64 * 1024);
        for i in 0..FLOOD {
            burst.extend(frame(v, SYN, 1 + 2 * i, &[]));
            if burst.len() >= 64 * 1024 || i + 1 == FLOOD {
                within("flood write", writer.write_all(&burst))
                    .await
                    .unwrap();
                burst.clear();
            }
        }
        // All refusals counted once the last SYN was processed.
        let refused = u64::from(FLOOD) - MAX_STREAMS as u64;
        within("refusals", async {
            while mux.stats().streams_refused < refused {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        done.store(true, Ordering::Relaxed);
        sampler.await.unwrap();
        let rss_growth = rss_bytes().saturating_sub(rss_before);
        println!(
            "{version:?}: {FLOOD} SYNs: stream table peak {}, RSS growth {} KiB",
            peak.load(Ordering::Relaxed),
            rss_growth / 1024
        );
        assert!(peak.load(Ordering::Relaxed) <= MAX_STREAMS);
        assert_eq!(mux.stream_count(), MAX_STREAMS);
        let snap = mux.snapshot();
        assert_eq!(snap.accept_backlog, MAX_STREAMS);
        assert_eq!(snap.input_pause, None);
        assert_eq!(snap.stats.streams_refused, refused);
        assert_eq!(snap.stats.streams_accepted, 0);
        assert_eq!(snap.stats.frames_in, u64::from(FLOOD));
        // 200k unbounded streams would take tens of MiB; the bounded session takes next to
        // nothing (the margin covers allocator noise and the healthy pair).
        assert!(rss_growth < 24 << 20, "RSS grew by {rss_growth} bytes");

        // The first 32 streams wait to be accepted; they work.
        let mut kept = Vec::new();
        for i in 0..MAX_STREAMS as u32 {
            let sid = 1 + 2 * i;
            let mut s = within("accept", mux.accept()).await.unwrap();
            assert_eq!(s.id(), StreamId::new(sid));
            writer
                .write_all(&frame(v, PSH, sid, format!("s{sid}").as_bytes()))
                .await
                .unwrap();
            let mut got = vec![0; format!("s{sid}").len()];
            within("read", s.read_exact(&mut got)).await.unwrap();
            assert_eq!(got, format!("s{sid}").as_bytes());
            kept.push(s);
        }
        // The table is full of accepted streams: 100 more SYNs are all refused.
        let mut more = Vec::new();
        for i in 0..100 {
            more.extend(frame(v, SYN, 1_000_001 + 2 * i, &[]));
        }
        writer.write_all(&more).await.unwrap();
        within("refusals", async {
            while mux.stats().streams_refused < refused + 100 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert_eq!(mux.stream_count(), MAX_STREAMS);
        assert_eq!(mux.snapshot().accept_backlog, 0);
        // Dropping streams frees their slots: the next SYN is accepted again.
        kept.truncate(MAX_STREAMS / 2);
        writer
            .write_all(&frame(v, SYN, 2_000_001, &[]))
            .await
            .unwrap();
        let s = within("accept after drop", mux.accept()).await.unwrap();
        assert_eq!(s.id(), StreamId::new(2_000_001));
        let stats = mux.stats();
        assert_eq!(stats.streams_refused, refused + 100);
        assert_eq!(stats.streams_accepted, MAX_STREAMS as u64 + 1);

        // The peer saw a FIN for every refused stream of the flood (waited for before it ends
        // the connection: after its end of input nothing more is written).
        drop((s, kept));
        within("refusal FINs", async {
            while (fin_streams.load(Ordering::SeqCst) as u64) < refused + 100 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        writer.shutdown().await.unwrap();
        assert_eq!(
            within("drive end", driver)
                .await
                .unwrap()
                .unwrap_err()
                .kind(),
            io::ErrorKind::ConnectionAborted
        );
        let fins = fins_by_stream(&within("fin counter", fins).await.unwrap());
        let refused_fins = fins
            .keys()
            .filter(|&&sid| sid > 2 * MAX_STREAMS as u32 && sid < 2 * FLOOD)
            .count();
        assert_eq!(refused_fins as u64, refused);
        let later_fins = fins
            .keys()
            .filter(|&sid| (1_000_001..1_000_201).contains(sid))
            .count();
        assert_eq!(later_fins, 100);
        healthy.finish().await;
    }
}

/// A SYN flood beyond max_streams (4, with accept_backlog 8 so the backlog never fills) from a
/// peer that never reads our refusals: each refused SYN queues an 8-byte FIN for the peer, so
/// once the transport stops taking them our side must stop reading
/// (`InputPause::ControlQueue`: the peer's writes stall) instead of queueing FINs without end.
/// Once the peer reads, the flood resumes and every refusal is sent and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syn_flood_without_reading_stalls_the_peer() {
    const FLOOD: u32 = 250_000;
    const MAX_STREAMS: usize = 4;
    let _serial = SERIAL.lock().await;
    for version in VERSIONS {
        let v = ver(version);
        let healthy = Healthy::start(version).await;
        let cfg = config(version)
            .with_accept_backlog(2 * MAX_STREAMS)
            .with_max_streams(MAX_STREAMS);
        let (ours, raw, kernel) = tcp_pair_with(true).await;
        let mux = Mux::server(ours, cfg).unwrap();
        let (reader, writer) = raw.into_split();
        let mut wire = Vec::with_capacity(FLOOD as usize * 8);
        for i in 0..FLOOD {
            wire.extend(frame(v, SYN, 1 + 2 * i, &[]));
        }
        let total = wire.len();
        let (written, writer) = spawn_counting_writer(writer, wire);
        let driver = tokio::spawn({
            let mux = mux.clone();
            async move { mux.drive().await }
        });
        // Input taken while refusals cannot be sent: one transport read, the control queue
        // limit (4096 frames) and the transmit queue target (256 KiB) of refusals, plus the
        // kernel buffers of both directions, and 64 KiB of slack for kernel accounting.
        let bound = (64 * 1024 + 8) + 4096 * 8 + 256 * 1024 + kernel + 64 * 1024;
        let settled = settles_below(&written, bound, "SYN flood without reading").await;
        let snap = mux.snapshot();
        let refused = snap.stats.streams_refused;
        println!(
            "{version:?}: the flooding peer stalled after {settled} of {total} bytes, \
             {refused} refused (bound {bound}), input pause {:?}",
            snap.input_pause
        );
        assert!(settled < total);
        assert_eq!(snap.input_pause, Some(InputPause::ControlQueue));
        assert_eq!(snap.streams.len(), MAX_STREAMS);
        assert!(refused > 0);
        assert!(refused * 8 <= bound as u64);
        assert_eq!(snap.stats.streams_accepted, 0);

        // The peer reads its FINs: the flood resumes and every SYN beyond max_streams is
        // answered.
        let fin_streams = Arc::new(AtomicUsize::new(0));
        let fins = spawn_fin_counter_with(reader, fin_streams.clone());
        let mut writer = within("writer", writer).await.unwrap();
        let all_refused = u64::from(FLOOD) - MAX_STREAMS as u64;
        within("refusals", async {
            while mux.stats().streams_refused < all_refused {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        // Every refusal reaches the peer before it ends the connection (the refusals counted
        // above may still be queued: after the peer's end of input nothing more is written).
        within("refusal FINs", async {
            while (fin_streams.load(Ordering::SeqCst) as u64) < all_refused {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert_eq!(mux.stream_count(), MAX_STREAMS);
        writer.shutdown().await.unwrap();
        let err = within("drive", driver).await.unwrap().unwrap_err();
        assert!(matches!(smux_error(err), SmuxError::PeerClosed));
        let fins = fins_by_stream(&within("fin counter", fins).await.unwrap());
        assert_eq!(fins.len() as u64, all_refused);
        assert_eq!(mux.stats().streams_refused, all_refused);
        healthy.finish().await;
    }
}

// ------------------------------------------------------------------------------------------------
// Unread input: bounded by max_receive_buffer

/// Writes `frames` to `raw` in the background, counting the bytes the kernel took.
fn spawn_counting_writer(
    mut raw: tokio::net::tcp::OwnedWriteHalf,
    wire: Vec<u8>,
) -> (
    Arc<AtomicUsize>,
    JoinHandle<tokio::net::tcp::OwnedWriteHalf>,
) {
    let written = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn({
        let written = written.clone();
        async move {
            let mut at = 0;
            while at < wire.len() {
                let end = (at + 16 * 1024).min(wire.len());
                let n = raw.write(&wire[at..end]).await.unwrap();
                at += n;
                written.store(at, Ordering::Relaxed);
            }
            raw
        }
    });
    (written, task)
}

/// Waits until `counter` stops moving (unchanged for 600 ms); fails if it passes `bound`
/// first. Returns the value it settled at.
async fn settles_below(counter: &AtomicUsize, bound: usize, what: &str) -> usize {
    within(what, async {
        let mut last = usize::MAX;
        let mut still = 0;
        loop {
            let now = counter.load(Ordering::Relaxed);
            assert!(
                now <= bound,
                "{what}: {now} bytes, beyond the bound {bound}"
            );
            if now == last {
                still += 1;
                if still == 8 {
                    return now;
                }
            } else {
                still = 0;
                last = now;
            }
            tokio::time::sleep(Duration::from_millis(75)).await;
        }
    })
    .await
}

/// A peer pushing data on streams nobody reads: our side stops reading the transport once
/// max_receive_buffer is used up (plus one frame and one transport read), so the peer's
/// writes stall; reading the streams then resumes input and every byte arrives in order.
/// Version 1 with one stream (the budget pauses input); version 2 with 32 streams nobody
/// accepts, each within Go's initial window (version 2 never pauses for the budget, but data
/// waiting in the accept backlog is bounded by it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_input_is_bounded_by_the_receive_buffer() {
    const MAX_RECEIVE_BUFFER: usize = 256 * 1024;
    let _serial = SERIAL.lock().await;
    for (version, streams, per_stream) in [(Version::V1, 1, 8 << 20), (Version::V2, 32, 200_000)] {
        let v = ver(version);
        let healthy = Healthy::start(version).await;
        let cfg = config(version)
            .with_max_receive_buffer(MAX_RECEIVE_BUFFER)
            .with_max_stream_buffer(64 * 1024);
        let (ours, raw, kernel) = tcp_pair_with(true).await;
        let mux = Mux::server(ours, cfg).unwrap();
        let (mut reader, writer) = raw.into_split();
        let mut wire = Vec::new();
        let data: Vec<Vec<u8>> = (0..streams).map(|i| payload(i, per_stream)).collect();
        for i in 0..streams as u32 {
            wire.extend(frame(v, SYN, 3 + 2 * i, &[]));
        }
        // Streams interleaved, 16 KiB frames.
        for off in (0..per_stream).step_by(16 * 1024) {
            for (i, d) in data.iter().enumerate() {
                let end = (off + 16 * 1024).min(per_stream);
                wire.extend(frame(v, PSH, 3 + 2 * i as u32, &d[off..end]));
            }
        }
        let total = wire.len();
        let (written, writer) = spawn_counting_writer(writer, wire);
        // Someone polls the mux (accepts nothing, reads nothing).
        let driver = tokio::spawn({
            let mux = mux.clone();
            async move { mux.drive().await }
        });
        // Received and unread: the budget, one frame beyond it, one 64 KiB transport read
        // with a partial frame, and what the kernel buffers of both ends hold.
        let bound = MAX_RECEIVE_BUFFER + (16 * 1024 + 8) + (64 * 1024 + 16 * 1024 + 8) + kernel;
        let settled = settles_below(&written, bound, "peer writes").await;
        println!(
            "{version:?}: the peer's writes stalled after {settled} of {total} bytes \
             (bound {bound}, kernel buffers {kernel})"
        );
        assert!(settled < total);

        // Reading resumes input: every stream gets all its bytes, in order.
        let mut readers = Vec::new();
        for (i, d) in data.into_iter().enumerate() {
            let mut s = within("accept", mux.accept()).await.unwrap();
            assert_eq!(s.id(), StreamId::new(3 + 2 * i as u32));
            readers.push(tokio::spawn(async move {
                let mut got = vec![0; d.len()];
                s.read_exact(&mut got).await.unwrap();
                assert_eq!(checksum(&got), checksum(&d));
            }));
        }
        for r in readers {
            within("stream data", r).await.unwrap();
        }
        let mut writer = within("writer", writer).await.unwrap();
        assert_eq!(written.load(Ordering::Relaxed), total);
        writer.shutdown().await.unwrap();
        let err = within("drive", driver).await.unwrap().unwrap_err();
        assert!(matches!(smux_error(err), SmuxError::PeerClosed));
        let mut rest = Vec::new();
        within("eof", reader.read_to_end(&mut rest)).await.unwrap();
        healthy.finish().await;
    }
}

/// Unread input costs memory close to its byte count, whatever its framing: one-byte frames
/// (a queue slot and an allocation each, if they were kept one by one) and frames that would
/// pin whole transport reads (one small frame for an unread stream in each 64 KiB read, the
/// rest for a stream that is read) stay within a small multiple of `max_receive_buffer` in RSS.
/// The peer generates its frames as it writes, so the measurement sees our buffers only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_input_memory_whatever_the_framing() {
    let _serial = SERIAL.lock().await;
    for pinning in [None, Some(8192), Some(32 * 1024)] {
        // Smaller for one-byte frames, which take long to send and process.
        let max_receive_buffer: usize = if pinning.is_some() { 4 << 20 } else { 1 << 20 };
        let v = ver(Version::V1);
        let cfg = config(Version::V1).with_max_receive_buffer(max_receive_buffer);
        let (ours, raw, _) = tcp_pair_with(true).await;
        let mux = Mux::server(ours, cfg).unwrap();
        let (reader, mut writer) = raw.into_split();
        let rss_before = rss_bytes();
        let written = Arc::new(AtomicUsize::new(0));
        let flood = tokio::spawn({
            let written = written.clone();
            async move {
                let mut burst = frame(v, SYN, 3, &[]);
                burst.extend(frame(v, SYN, 5, &[]));
                let rest = vec![7; 64 * 1024 - pinning.unwrap_or(0) - 16];
                // Enough to fill the budget twice over, in 64 KiB bursts.
                for _ in 0..(2 * max_receive_buffer) / pinning.unwrap_or(64 * 1024 / 9) {
                    match pinning {
                        Some(small) => {
                            burst.extend(frame(v, PSH, 3, &vec![3; small]));
                            burst.extend(frame(v, PSH, 5, &rest));
                        }
                        None => {
                            for _ in 0..64 * 1024 / 9 {
                                burst.extend(frame(v, PSH, 3, &[1]));
                            }
                        }
                    }
                    if writer.write_all(&burst).await.is_err() {
                        return;
                    }
                    written.fetch_add(burst.len(), Ordering::Relaxed);
                    burst.clear();
                }
            }
        });
        let driver = tokio::spawn({
            let mux = mux.clone();
            async move { mux.drive().await }
        });
        let unread = within("accept", mux.accept()).await.unwrap();
        let mut read = within("accept", mux.accept()).await.unwrap();
        let drain = tokio::spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            while read.read(&mut buf).await.unwrap_or(0) > 0 {}
        });
        // The flood stalls once the budget is used up by stream 3.
        let settled = settles_below(&written, usize::MAX, "peer writes").await;
        let rss_growth = rss_bytes().saturating_sub(rss_before);
        println!(
            "unread frames of {:?} bytes: the peer stalled after {settled} bytes; RSS grew by \
             {} KiB (max_receive_buffer {} KiB)",
            pinning.unwrap_or(1),
            rss_growth / 1024,
            max_receive_buffer / 1024
        );
        assert!(
            rss_growth < 6 * max_receive_buffer,
            "{max_receive_buffer} bytes of unread input cost {rss_growth} bytes of RSS"
        );
        for task in [flood, drain] {
            task.abort();
        }
        driver.abort();
        drop((unread, reader, mux));
    }
}

// ------------------------------------------------------------------------------------------------
// A peer that never reads: our writes block, buffered output stays bounded

/// Bytes queued beyond the send budget: the transmit queue (256 KiB target plus one frame)
/// and a few control frames.
const TRANSMIT_QUEUE: usize = 256 * 1024 + 32 * 1024 + 1024;

/// Writers on `streams` streams against a peer that reads nothing: the writes stall, stay
/// pending, and what they got accepted is within max_send_buffer / max_stream_send_buffer
/// plus the transmit queue and the kernel buffers; once the peer reads, everything arrives.
async fn peer_never_reads(
    version: Version,
    streams: usize,
    send_buffer: usize,
    stream_send: usize,
) {
    let healthy = Healthy::start(version).await;
    let cfg = config(version)
        .with_max_send_buffer(send_buffer)
        .with_max_stream_send_buffer(stream_send);
    let (ours, raw, kernel) = tcp_pair_with(true).await;
    let mux = Mux::client(ours, cfg).unwrap();
    // Far beyond every bound: 2 MiB on one stream, 4 MiB in all on several.
    let per_stream = (4 << 20) / streams.max(2);
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    let mut ids = Vec::new();
    for i in 0..streams {
        let mut s = mux.connect().await.unwrap();
        ids.push(s.id().as_u32());
        let accepted = accepted.clone();
        let data = payload(i as u64, per_stream);
        writers.push(tokio::spawn(async move {
            let mut at = 0;
            while at < data.len() {
                let end = (at + 64 * 1024).min(data.len());
                let n = s.write(&data[at..end]).await.unwrap();
                at += n;
                accepted.fetch_add(n, Ordering::Relaxed);
            }
            s.shutdown().await.unwrap();
        }));
    }
    // Per-stream and session budgets both bound the total.
    let budget = send_buffer.min(stream_send * streams);
    let bound = budget + TRANSMIT_QUEUE + kernel;
    let settled = settles_below(&accepted, bound, "writes accepted").await;
    println!(
        "{version:?} {streams} streams: writes stalled after {settled} bytes accepted \
         (bound {bound}: budget {budget}, kernel {kernel})"
    );
    // The writes stay pending: a fresh write on one more stream does not complete either
    // when the session budget is the limit, and no writer got further.
    if send_buffer <= stream_send * streams {
        let mut extra = mux.connect().await.unwrap();
        let r = timeout(Duration::from_millis(300), extra.write(&[1; 1024])).await;
        assert!(
            r.is_err(),
            "a write completed against a full session budget"
        );
        drop(extra);
    }
    assert_eq!(accepted.load(Ordering::Relaxed), settled);
    assert!(writers.iter().all(|w| !w.is_finished()));

    // The peer starts reading: all data of all streams arrives, in order, then FIN.
    let (mut reader, mut grant_writer) = raw.into_split();
    let mut received: std::collections::HashMap<u32, Vec<u8>> = Default::default();
    let mut fins = 0;
    let mut wire = Vec::new();
    let mut buf = vec![0; 256 * 1024];
    within("peer reads everything", async {
        while fins < streams {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0);
            wire.extend_from_slice(&buf[..n]);
            for (cmd, sid, data) in take_frames(&mut wire) {
                match cmd {
                    PSH => received.entry(sid).or_default().extend(data),
                    FIN if ids.contains(&sid) => fins += 1,
                    _ => {}
                }
            }
            // Version 2: grant window as data arrives, like a reading peer.
            if version == Version::V2 {
                let mut grants = Vec::new();
                for (&sid, data) in &received {
                    grants.extend(upd(sid, data.len() as u32, 1 << 20));
                }
                grant_writer.write_all(&grants).await.unwrap();
            }
        }
    })
    .await;
    for w in writers {
        within("writer", w).await.unwrap();
    }
    for (i, sid) in ids.iter().enumerate() {
        let got = received.get(sid).map_or(&[][..], |d| d.as_slice());
        assert_eq!(got.len(), per_stream, "stream {sid}");
        assert!(
            got == payload(i as u64, per_stream).as_slice(),
            "stream {sid} corrupted"
        );
    }
    healthy.finish().await;
}

/// Tiny writes towards a peer that never reads: the send budgets count bytes, and what they
/// hold costs about that much memory, however small the writes were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_writes_to_a_peer_that_never_reads() {
    const MAX_SEND_BUFFER: usize = 512 * 1024;
    const STREAMS: usize = 4;
    let _serial = SERIAL.lock().await;
    let cfg = config(Version::V1)
        .with_max_send_buffer(MAX_SEND_BUFFER)
        .with_max_stream_send_buffer(MAX_SEND_BUFFER / STREAMS);
    // The peer: connected, and never reading.
    let (ours, raw, _) = tcp_pair_with(true).await;
    let mux = Mux::client(ours, cfg).unwrap();
    let rss_before = rss_bytes();
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..STREAMS {
        let mut s = mux.connect().await.unwrap();
        let accepted = accepted.clone();
        writers.push(tokio::spawn(async move {
            loop {
                let n = s.write(&[0x55; 4]).await.unwrap();
                accepted.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    let settled = settles_below(&accepted, 64 << 20, "tiny writes").await;
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    println!(
        "four-byte writes: {settled} bytes accepted; RSS grew by {} KiB (max_send_buffer {} KiB)",
        rss_growth / 1024,
        MAX_SEND_BUFFER / 1024
    );
    assert!(
        // The budget (merged buffers may be up to twice their content), the transmit queue,
        // and 3 MiB for everything else (one chunk per write took 10 MiB here).
        rss_growth < 3 * MAX_SEND_BUFFER + (3 << 20),
        "{settled} bytes of four-byte writes cost {rss_growth} bytes of RSS"
    );
    for w in writers {
        w.abort();
    }
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_never_reads_stream_budget() {
    let _serial = SERIAL.lock().await;
    for version in VERSIONS {
        peer_never_reads(version, 1, 4 << 20, 64 * 1024).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_never_reads_session_budget() {
    let _serial = SERIAL.lock().await;
    for version in VERSIONS {
        peer_never_reads(version, 8, 256 * 1024, 128 * 1024).await;
    }
}

// ------------------------------------------------------------------------------------------------
// A peer that sends nothing: keepalive timeout

/// A peer that sends nothing at all: NOPs go out, then the keepalive timeout ends the session.
async fn silent_peer(side: Side, version: Version) {
    let interval = Duration::from_millis(100);
    let keep_alive_timeout = Duration::from_secs(1);
    let healthy = Healthy::start(version).await;
    let cfg = config(version)
        .with_keep_alive_interval(interval)
        .with_keep_alive_timeout(keep_alive_timeout);
    let start = Instant::now();
    let (mux, mut raw) = hostile_pair(side, cfg).await;
    let mut stream = mux.connect().await.unwrap();
    let sid = stream.id().as_u32();
    let on_read = within("read", stream.read(&mut [0; 8])).await.unwrap_err();
    assert!(start.elapsed() >= keep_alive_timeout);
    assert_eq!(on_read.kind(), io::ErrorKind::TimedOut);
    let err = session_error(&mux).await;
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    match smux_error(err) {
        SmuxError::KeepAliveTimeout(t) => assert_eq!(t, keep_alive_timeout),
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    // What the silent peer got: our SYN and NOPs on stream 0, then the end.
    let mut wire = read_until_closed(&mut raw).await;
    let frames = take_frames(&mut wire);
    assert!(wire.is_empty());
    assert_eq!(frames[0], (SYN, sid, vec![]));
    assert!(frames.len() >= 2, "no NOP sent");
    assert!(
        frames[1..].iter().all(|f| *f == (NOP, 0, vec![])),
        "{frames:?}"
    );
    drop(stream);
    healthy.finish().await;
}

/// Both roles and versions at once (each waits for its own timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_times_out() {
    let _serial = SERIAL.lock().await;
    let cases = SIDES
        .into_iter()
        .flat_map(|side| VERSIONS.into_iter().map(move |v| silent_peer(side, v)));
    futures::future::join_all(cases).await;
}

/// A peer that trickles a frame one byte at a time never completes it: only complete frames
/// count as signs of life, so the keepalive timeout still ends the session (no slowloris).
async fn trickled_frame(version: Version) {
    let keep_alive_timeout = Duration::from_millis(800);
    let healthy = Healthy::start(version).await;
    let cfg = config(version)
        .with_keep_alive_interval(Duration::from_millis(100))
        .with_keep_alive_timeout(keep_alive_timeout);
    let start = Instant::now();
    let (mux, raw) = hostile_pair(Side::Server, cfg).await;
    let (mut reader, mut writer) = raw.into_split();
    let v = ver(version);
    let trickle = tokio::spawn(async move {
        // A 1000-byte PSH, one byte every 20 ms: it would take 20 s to complete.
        let mut wire = frame(v, SYN, 3, &[]);
        wire.extend(frame(v, PSH, 3, &[5; 1000]));
        for b in wire {
            if writer.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let err = session_error(&mux).await;
    assert!(start.elapsed() >= keep_alive_timeout);
    match smux_error(err) {
        SmuxError::KeepAliveTimeout(t) => assert_eq!(t, keep_alive_timeout),
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    // Only the SYN was a complete frame.
    assert_eq!(mux.stats().frames_in, 1);
    let mut rest = Vec::new();
    let _ = within("eof", reader.read_to_end(&mut rest)).await;
    trickle.abort();
    healthy.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_frame_still_times_out() {
    let _serial = SERIAL.lock().await;
    futures::future::join_all(VERSIONS.map(trickled_frame)).await;
}

// ------------------------------------------------------------------------------------------------
// Abrupt reset in the middle of a frame

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_frame() {
    let _serial = SERIAL.lock().await;
    for side in SIDES {
        for version in VERSIONS {
            let v = ver(version);
            let healthy = Healthy::start(version).await;
            let (mux, mut raw) = hostile_pair(side, config(version)).await;
            let (sid, _) = peer_ids(side);
            let mut wire = frame(v, SYN, sid, &[]);
            wire.extend(frame(v, PSH, sid, b"hello"));
            wire.extend(header(v, PSH, 100, sid));
            wire.extend_from_slice(&[9; 40]);
            raw.write_all(&wire).await.unwrap();
            let mut stream = within("accept", mux.accept()).await.unwrap();
            let mut got = [0; 5];
            within("read", stream.read_exact(&mut got)).await.unwrap();
            assert_eq!(&got, b"hello");
            // Our side now waits for the rest of the frame. RST instead.
            let pending = tokio::spawn(async move {
                let mut buf = [0; 8];
                let r = stream.read(&mut buf).await;
                (stream, r)
            });
            #[allow(deprecated)] // SO_LINGER 0: dropping sends RST (and does not block)
            raw.set_linger(Some(Duration::ZERO)).unwrap();
            drop(raw);
            let (mut stream, r) = within("read after reset", pending).await.unwrap();
            let on_read = r.unwrap_err();
            assert_eq!(on_read.kind(), io::ErrorKind::ConnectionReset, "{on_read}");
            let err = session_error(&mux).await;
            assert_eq!(err.to_string(), on_read.to_string());
            match smux_error(err) {
                SmuxError::Transport(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
                other => panic!("expected a transport error, got {other:?}"),
            }
            let write = stream.write_all(b"more").await.unwrap_err();
            assert_eq!(write.kind(), io::ErrorKind::ConnectionReset);
            healthy.finish().await;
        }
    }
}
