//! Golden vectors: bytes Go smux 1.5.16 itself wrote, stored in `testdata/` (produced by
//! `go-peer -mode vectors -out testdata`; `go_interop.rs` checks that a freshly built Go peer
//! still produces exactly these files). See `testdata/README.md` for what each file holds.
//!
//! For every file: the frames we expect encode (with `Frame::encode`) to exactly the file,
//! the file decodes (with `FrameDecoder`, fed in many fragmentations) to exactly those frames,
//! and a `smux_proto::Session` doing what the Go program did emits exactly the same bytes.
//! No Go toolchain is needed at run time.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smux_proto::{Config, Frame, FrameDecoder, Session, Side, StreamId, Version};

const V1_CLIENT: &[u8] = include_bytes!("../testdata/v1_client.bin");
const V2_CLIENT: &[u8] = include_bytes!("../testdata/v2_client.bin");
const V1_SERVER: &[u8] = include_bytes!("../testdata/v1_server.bin");
const V2_SERVER: &[u8] = include_bytes!("../testdata/v2_server.bin");
const V1_SERVER_INPUT: &[u8] = include_bytes!("../testdata/v1_server_input.bin");
const V2_SERVER_INPUT: &[u8] = include_bytes!("../testdata/v2_server_input.bin");
const V1_NOP: &[u8] = include_bytes!("../testdata/v1_nop.bin");
const V2_NOP: &[u8] = include_bytes!("../testdata/v2_nop.bin");
const V1_MAXFRAME: &[u8] = include_bytes!("../testdata/v1_maxframe.bin");

/// The large writes of the vectors: byte i is (31 i + 7) mod 251 (as in the Go peer).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((31 * i + 7) % 251) as u8).collect()
}

fn sid(n: u32) -> StreamId {
    StreamId::new(n)
}

fn psh(id: u32, data: &[u8]) -> Frame {
    Frame::Psh {
        stream_id: sid(id),
        data: Bytes::copy_from_slice(data),
    }
}

fn encode(frames: &[Frame], version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        frame.encode(version, &mut out).unwrap();
    }
    out
}

/// Decodes `bytes` fed `chunk` bytes at a time.
fn decode(bytes: &[u8], version: Version, chunk: usize) -> Vec<Frame> {
    let decoder = FrameDecoder::new(version);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(frame) = decoder.decode(&mut buf).expect("Go's bytes must decode") {
            frames.push(frame);
        }
    }
    assert!(buf.is_empty(), "{} trailing bytes", buf.len());
    frames
}

/// Our encoder produces exactly Go's bytes, and our decoder reads them back as `expected`, in
/// any fragmentation.
fn check_codec(go_bytes: &[u8], version: Version, expected: &[Frame]) {
    assert_same_bytes(
        &encode(expected, version),
        go_bytes,
        version,
        "Frame::encode",
    );
    for chunk in [1, 3, 7, 8, 9, 4096, usize::MAX] {
        assert_eq!(
            decode(go_bytes, version, chunk),
            expected,
            "decoding in chunks of {chunk}"
        );
    }
}

fn version_byte_is_everywhere(go_bytes: &[u8], version: Version) {
    // Every header of Go's output carries the session version.
    let mut rest = go_bytes;
    while !rest.is_empty() {
        assert_eq!(rest[0], version.as_u8());
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        rest = &rest[8 + len..];
    }
}

/// Fails with the first difference and both frame lists unless `ours == go`.
fn assert_same_bytes(ours: &[u8], go: &[u8], version: Version, what: &str) {
    if ours == go {
        return;
    }
    let at = ours.iter().zip(go).position(|(a, b)| a != b);
    let summary = |bytes: &[u8]| -> Vec<String> {
        let decoder = FrameDecoder::new(version);
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            frames.push(match frame {
                Frame::Psh { stream_id, data } => format!("Psh({stream_id}, {} bytes)", data.len()),
                other => format!("{other:?}"),
            });
        }
        if !buf.is_empty() {
            frames.push(format!("{} undecodable bytes", buf.len()));
        }
        frames
    };
    panic!(
        "{what}: {} bytes differ from Go's {} bytes (first difference at offset {at:?})\n\
         ours: {:?}\n  go: {:?}",
        ours.len(),
        go.len(),
        summary(ours),
        summary(go)
    );
}

/// Everything the session wants to send now.
fn drain(session: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = session.poll_transmit(&mut slices);
        if n == 0 {
            return out;
        }
        let before = out.len();
        for slice in &slices[..n] {
            out.extend_from_slice(slice);
        }
        let written = out.len() - before;
        session.transmitted(written);
    }
}

/// Go's default configuration (the vectors were written with it; our default window is
/// larger), without keepalive.
fn quiet_config(version: Version) -> Config {
    Config::default()
        .with_version(version)
        .with_keep_alive_disabled(true)
        .with_max_stream_buffer(64 * 1024)
}

// ------------------------------------------------------------------------------------------
// Client: SYN 3, PSH 3 "hello", SYN 5, PSH 5 (33000 bytes as 32768 + 232), FIN 3, FIN 5

fn client_frames() -> Vec<Frame> {
    let big = pattern(33_000);
    vec![
        Frame::Syn { stream_id: sid(3) },
        psh(3, b"hello"),
        Frame::Syn { stream_id: sid(5) },
        psh(5, &big[..32_768]),
        psh(5, &big[32_768..]),
        Frame::Fin { stream_id: sid(3) },
        Frame::Fin { stream_id: sid(5) },
    ]
}

fn client_session_bytes(version: Version) -> Vec<u8> {
    let mut s = Session::new(Side::Client, quiet_config(version), Instant::now()).unwrap();
    let mut out = Vec::new();
    let a = s.open_stream().unwrap();
    assert_eq!(a, sid(3));
    assert_eq!(s.write(a, b"hello").unwrap(), 5);
    out.extend(drain(&mut s));
    let b = s.open_stream().unwrap();
    assert_eq!(b, sid(5));
    let big = pattern(33_000);
    assert_eq!(s.write(b, &big).unwrap(), big.len());
    out.extend(drain(&mut s));
    s.finish(a).unwrap();
    out.extend(drain(&mut s));
    s.finish(b).unwrap();
    out.extend(drain(&mut s));
    out
}

#[test]
fn v1_client_codec() {
    version_byte_is_everywhere(V1_CLIENT, Version::V1);
    check_codec(V1_CLIENT, Version::V1, &client_frames());
}

#[test]
fn v2_client_codec() {
    version_byte_is_everywhere(V2_CLIENT, Version::V2);
    check_codec(V2_CLIENT, Version::V2, &client_frames());
}

#[test]
fn v1_client_session_matches_go() {
    let ours = client_session_bytes(Version::V1);
    assert_same_bytes(&ours, V1_CLIENT, Version::V1, "client session");
}

#[test]
fn v2_client_session_matches_go() {
    let ours = client_session_bytes(Version::V2);
    assert_same_bytes(&ours, V2_CLIENT, Version::V2, "client session");
}

// ------------------------------------------------------------------------------------------
// Server: gets SYN 3 + PSH 3 "hello"; reads 5 bytes (v2: UPD 3 consumed 5 window 65536), writes
// "world", opens 2, writes "hi", FIN 2, FIN 3

fn server_input_frames() -> Vec<Frame> {
    vec![Frame::Syn { stream_id: sid(3) }, psh(3, b"hello")]
}

fn server_frames(version: Version) -> Vec<Frame> {
    let mut frames = Vec::new();
    if version == Version::V2 {
        frames.push(Frame::Upd {
            stream_id: sid(3),
            consumed: 5,
            window: 65_536,
        });
    }
    frames.extend([
        psh(3, b"world"),
        Frame::Syn { stream_id: sid(2) },
        psh(2, b"hi"),
        Frame::Fin { stream_id: sid(2) },
        Frame::Fin { stream_id: sid(3) },
    ]);
    frames
}

fn server_session_bytes(version: Version, input: &[u8]) -> Vec<u8> {
    let now = Instant::now();
    let mut s = Session::new(Side::Server, quiet_config(version), now).unwrap();
    let mut buf = BytesMut::from(input);
    s.handle_input(now, &mut buf).unwrap();
    assert!(buf.is_empty());
    let mut out = drain(&mut s);
    let a = s.accept_stream().expect("stream 3 was opened");
    assert_eq!(a, sid(3));
    let mut hello = [0; 5];
    assert_eq!(s.read(a, &mut hello).unwrap(), 5);
    assert_eq!(&hello, b"hello");
    out.extend(drain(&mut s));
    assert_eq!(s.write(a, b"world").unwrap(), 5);
    out.extend(drain(&mut s));
    let b = s.open_stream().unwrap();
    assert_eq!(b, sid(2));
    assert_eq!(s.write(b, b"hi").unwrap(), 2);
    out.extend(drain(&mut s));
    s.finish(b).unwrap();
    out.extend(drain(&mut s));
    s.finish(a).unwrap();
    out.extend(drain(&mut s));
    out
}

#[test]
fn v1_server_codec() {
    version_byte_is_everywhere(V1_SERVER, Version::V1);
    check_codec(V1_SERVER_INPUT, Version::V1, &server_input_frames());
    check_codec(V1_SERVER, Version::V1, &server_frames(Version::V1));
}

#[test]
fn v2_server_codec() {
    version_byte_is_everywhere(V2_SERVER, Version::V2);
    check_codec(V2_SERVER_INPUT, Version::V2, &server_input_frames());
    check_codec(V2_SERVER, Version::V2, &server_frames(Version::V2));
}

#[test]
fn v1_server_session_matches_go() {
    let ours = server_session_bytes(Version::V1, V1_SERVER_INPUT);
    assert_same_bytes(&ours, V1_SERVER, Version::V1, "server session");
}

#[test]
fn v2_server_session_matches_go() {
    let ours = server_session_bytes(Version::V2, V2_SERVER_INPUT);
    assert_same_bytes(&ours, V2_SERVER, Version::V2, "server session");
}

// ------------------------------------------------------------------------------------------
// NOP: the first frame of an idle session with keepalive on

fn nop_session_bytes(version: Version) -> Vec<u8> {
    let start = Instant::now();
    let interval = Duration::from_millis(10);
    let config = Config::default()
        .with_version(version)
        .with_keep_alive_interval(interval)
        .with_keep_alive_timeout(Duration::from_secs(3600));
    let mut s = Session::new(Side::Client, config, start).unwrap();
    assert!(
        drain(&mut s).is_empty(),
        "nothing before the first interval"
    );
    s.handle_timeout(start + interval);
    drain(&mut s)
}

#[test]
fn v1_nop() {
    check_codec(V1_NOP, Version::V1, &[Frame::Nop { stream_id: sid(0) }]);
    assert_same_bytes(
        &nop_session_bytes(Version::V1),
        V1_NOP,
        Version::V1,
        "session NOP",
    );
}

#[test]
fn v2_nop() {
    check_codec(V2_NOP, Version::V2, &[Frame::Nop { stream_id: sid(0) }]);
    assert_same_bytes(
        &nop_session_bytes(Version::V2),
        V2_NOP,
        Version::V2,
        "session NOP",
    );
}

// ------------------------------------------------------------------------------------------
// Largest frame: max_frame_size 65535, 65536 bytes go out as 65535 + 1 (LEN = ff ff)

#[test]
fn v1_max_frame() {
    let big = pattern(65_536);
    let frames = [
        Frame::Syn { stream_id: sid(3) },
        psh(3, &big[..65_535]),
        psh(3, &big[65_535..]),
        Frame::Fin { stream_id: sid(3) },
    ];
    assert_eq!(&V1_MAXFRAME[8..12], &[1, 2, 0xff, 0xff]);
    check_codec(V1_MAXFRAME, Version::V1, &frames);

    let config = quiet_config(Version::V1).with_max_frame_size(65_535);
    let mut s = Session::new(Side::Client, config, Instant::now()).unwrap();
    let id = s.open_stream().unwrap();
    assert_eq!(s.write(id, &big).unwrap(), big.len());
    let mut out = drain(&mut s);
    s.finish(id).unwrap();
    out.extend(drain(&mut s));
    assert_same_bytes(&out, V1_MAXFRAME, Version::V1, "max-frame session");
}

// ------------------------------------------------------------------------------------------
// The decoder rejects what does not belong to the session's version

#[test]
fn go_bytes_of_the_other_version_are_rejected() {
    let decoder = FrameDecoder::new(Version::V1);
    assert!(decoder.decode(&mut BytesMut::from(V2_NOP)).is_err());
    let decoder = FrameDecoder::new(Version::V2);
    assert!(decoder.decode(&mut BytesMut::from(V1_NOP)).is_err());
    // Go's version 2 UPD cannot appear in a version 1 session.
    let mut upd = V2_SERVER[..16].to_vec();
    upd[0] = 1;
    let decoder = FrameDecoder::new(Version::V1);
    assert!(decoder.decode(&mut BytesMut::from(&upd[..])).is_err());
}
