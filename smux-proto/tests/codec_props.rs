//! Property tests of the frame codec: round trips, any fragmentation, arbitrary input, and the
//! little-endian header layout of PROTOCOL.md.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use smux_proto::frame::{HEADER_LEN, MAX_PAYLOAD_LEN, UPD_PAYLOAD_LEN};
use smux_proto::{
    Cmd, EncodeError, Frame, FrameDecoder, Header, ProtocolViolation, StreamId, Version,
};

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

// ------------------------------------------------------------------------------------------
// Strategies

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1), Just(Version::V2)]
}

/// PSH payload sizes: mostly small, sometimes a few KiB (around the decoder's zero-copy
/// threshold), rarely anything up to the 65535 maximum, and the extremes.
fn payload() -> impl Strategy<Value = Bytes> {
    let len = prop_oneof![
        8 => 0usize..64,
        4 => 0usize..8192,
        1 => 0usize..=MAX_PAYLOAD_LEN,
        1 => Just(MAX_PAYLOAD_LEN),
        1 => Just(0usize),
    ];
    (len, any::<u64>()).prop_map(|(len, seed)| Bytes::from(pattern(seed, len)))
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

fn stream_id() -> impl Strategy<Value = StreamId> {
    prop_oneof![
        3 => 0u32..16,
        2 => any::<u32>(),
        1 => Just(u32::MAX),
    ]
    .prop_map(StreamId::new)
}

/// Any frame that is valid in `version` (UPD only in version 2).
fn frame(version: Version) -> BoxedStrategy<Frame> {
    let syn = stream_id().prop_map(|stream_id| Frame::Syn { stream_id });
    let fin = stream_id().prop_map(|stream_id| Frame::Fin { stream_id });
    let nop = stream_id().prop_map(|stream_id| Frame::Nop { stream_id });
    let psh = (stream_id(), payload()).prop_map(|(stream_id, data)| Frame::Psh { stream_id, data });
    match version {
        Version::V1 => prop_oneof![1 => syn, 1 => fin, 1 => nop, 3 => psh].boxed(),
        Version::V2 => {
            let upd = (stream_id(), any::<u32>(), any::<u32>()).prop_map(
                |(stream_id, consumed, window)| Frame::Upd {
                    stream_id,
                    consumed,
                    window,
                },
            );
            prop_oneof![1 => syn, 1 => fin, 1 => nop, 3 => psh, 2 => upd].boxed()
        }
    }
}

fn version_and_frames(max: usize) -> impl Strategy<Value = (Version, Vec<Frame>)> {
    version().prop_flat_map(move |v| (Just(v), proptest::collection::vec(frame(v), 0..max)))
}

fn encode(frame: &Frame, version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    frame
        .encode(version, &mut out)
        .expect("valid frame encodes");
    out
}

fn encode_all(frames: &[Frame], version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(version, &mut out).expect("valid frame encodes");
    }
    out
}

/// The header fields a frame should have on the wire.
fn expected_header(frame: &Frame, version: Version) -> [u8; 8] {
    let (cmd, len) = match frame {
        Frame::Syn { .. } => (0u8, 0u16),
        Frame::Fin { .. } => (1, 0),
        Frame::Psh { data, .. } => (2, data.len() as u16),
        Frame::Nop { .. } => (3, 0),
        Frame::Upd { .. } => (4, 8),
    };
    let sid = frame.stream_id().as_u32();
    let ver = match version {
        Version::V1 => 1,
        Version::V2 => 2,
    };
    [
        ver,
        cmd,
        (len & 0xff) as u8,
        (len >> 8) as u8,
        (sid & 0xff) as u8,
        (sid >> 8 & 0xff) as u8,
        (sid >> 16 & 0xff) as u8,
        (sid >> 24) as u8,
    ]
}

/// What a decoder for `version` must say about a complete header, computed independently of
/// the crate: `Ok(payload_len)` or the violation.
fn judge_header(h: &[u8], version: Version) -> Result<usize, ProtocolViolation> {
    let ver = match version {
        Version::V1 => 1u8,
        Version::V2 => 2,
    };
    if h[0] != ver {
        return Err(ProtocolViolation::WrongVersion {
            expected: ver,
            received: h[0],
        });
    }
    let len = u16::from(h[2]) | u16::from(h[3]) << 8;
    let sid = StreamId::new(
        u32::from(h[4]) | u32::from(h[5]) << 8 | u32::from(h[6]) << 16 | u32::from(h[7]) << 24,
    );
    let cmd = match h[1] {
        0 => Cmd::Syn,
        1 => Cmd::Fin,
        2 => Cmd::Psh,
        3 => Cmd::Nop,
        4 => Cmd::Upd,
        c => return Err(ProtocolViolation::UnknownCommand(c)),
    };
    if cmd == Cmd::Upd && version == Version::V1 {
        return Err(ProtocolViolation::UpdInVersion1 { stream_id: sid });
    }
    let fixed = match cmd {
        Cmd::Syn | Cmd::Fin | Cmd::Nop => Some(0),
        Cmd::Upd => Some(8),
        Cmd::Psh => None,
    };
    match fixed {
        Some(f) if len != f => Err(ProtocolViolation::BadControlLength {
            cmd,
            stream_id: sid,
            len,
        }),
        _ => Ok(usize::from(len)),
    }
}

/// Byte soup with structure: random runs, and headers that are nearly valid (right version,
/// commands around the valid range, small lengths) followed by some payload, so decoding gets
/// past the first header often.
fn soup() -> impl Strategy<Value = (Version, Vec<u8>)> {
    let segment = prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..40),
        3 => (
            prop_oneof![4 => 1u8..=2, 1 => any::<u8>()],
            prop_oneof![6 => 0u8..=4, 1 => 5u8..=8, 1 => any::<u8>()],
            prop_oneof![3 => Just(0u16), 3 => Just(8u16), 3 => 0u16..40, 1 => any::<u16>()],
            any::<u32>(),
            0usize..48,
            any::<u64>(),
        )
            .prop_map(|(ver, cmd, len, sid, payload_len, seed)| {
                let mut v = vec![ver, cmd];
                v.extend_from_slice(&len.to_le_bytes());
                v.extend_from_slice(&sid.to_le_bytes());
                v.extend(pattern(seed, payload_len));
                v
            }),
    ];
    (version(), proptest::collection::vec(segment, 0..12)).prop_map(|(v, segs)| (v, segs.concat()))
}

// ------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(proptest_config(256))]

    /// Every valid frame encodes to its documented size and decodes to itself, consuming
    /// exactly its bytes.
    #[test]
    fn frame_roundtrip((v, frames) in version_and_frames(2)) {
        for f in frames {
            let bytes = encode(&f, v);
            prop_assert_eq!(bytes.len(), f.encoded_len());
            let mut buf = BytesMut::from(&bytes[..]);
            let decoded = FrameDecoder::new(v).decode(&mut buf);
            prop_assert_eq!(decoded, Ok(Some(f.clone())));
            prop_assert!(buf.is_empty(), "{} trailing bytes", buf.len());
            // Followed by more bytes, only the frame is taken.
            let mut buf = BytesMut::from(&bytes[..]);
            buf.put_slice(&[0xAA, 0xBB, 0xCC]);
            prop_assert_eq!(FrameDecoder::new(v).decode(&mut buf), Ok(Some(f)));
            prop_assert_eq!(&buf[..], &[0xAA, 0xBB, 0xCC][..]);
        }
    }

    /// The header is VER, CMD, LEN (u16 LE), SID (u32 LE); UPD's payload is consumed then
    /// window, both u32 LE; a PSH payload follows the header verbatim.
    #[test]
    fn header_fields_are_little_endian((v, frames) in version_and_frames(4)) {
        for f in frames {
            let bytes = encode(&f, v);
            prop_assert_eq!(&bytes[..HEADER_LEN], &expected_header(&f, v)[..]);
            match &f {
                Frame::Psh { data, .. } => prop_assert_eq!(&bytes[HEADER_LEN..], &data[..]),
                Frame::Upd { consumed, window, .. } => {
                    prop_assert_eq!(bytes.len(), HEADER_LEN + UPD_PAYLOAD_LEN);
                    prop_assert_eq!(&bytes[8..12], &consumed.to_le_bytes()[..]);
                    prop_assert_eq!(&bytes[12..16], &window.to_le_bytes()[..]);
                }
                _ => prop_assert_eq!(bytes.len(), HEADER_LEN),
            }
        }
    }

    /// `Header::encode` and `Header::decode` agree with the documented layout for any field
    /// values, and decode accepts exactly what the rules allow.
    #[test]
    fn raw_header_layout(v in version(), ver in 1u8..=2, cmd in 0u8..=4, len in any::<u16>(), sid in any::<u32>()) {
        let mut raw = [0u8; 8];
        raw[0] = ver;
        raw[1] = cmd;
        raw[2..4].copy_from_slice(&len.to_le_bytes());
        raw[4..8].copy_from_slice(&sid.to_le_bytes());
        let judged = judge_header(&raw, v);
        let decoded = Header::decode(&raw, v);
        match (&judged, &decoded) {
            (Ok(l), Ok(h)) => {
                prop_assert_eq!(usize::from(h.len), *l);
                prop_assert_eq!(h.stream_id, StreamId::new(sid));
                prop_assert_eq!(h.cmd as u8, cmd);
                prop_assert_eq!(h.version, v);
                let mut again = Vec::new();
                h.encode(&mut again);
                prop_assert_eq!(&again[..], &raw[..]);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "judged {:?}, decoded {:?}", judged, decoded),
        }
    }

    /// The concatenated encoding of many frames, delivered in arbitrary fragments, decodes to
    /// the same frames; an incomplete frame is never partially consumed.
    #[test]
    fn any_fragmentation_yields_the_same_frames(
        (v, frames) in version_and_frames(24),
        cuts in proptest::collection::vec(prop_oneof![3 => 1usize..16, 2 => 1usize..2000, 1 => 1usize..70_000], 0..64),
    ) {
        let bytes = encode_all(&frames, v);
        let decoder = FrameDecoder::new(v);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let mut cuts = cuts.into_iter();
        while fed < bytes.len() {
            let step = cuts.next().unwrap_or(bytes.len() - fed).min(bytes.len() - fed);
            buf.put_slice(&bytes[fed..fed + step]);
            fed += step;
            loop {
                let before = buf.len();
                match decoder.decode(&mut buf) {
                    Ok(Some(f)) => {
                        prop_assert_eq!(before - buf.len(), f.encoded_len());
                        out.push(f);
                    }
                    Ok(None) => {
                        prop_assert_eq!(buf.len(), before, "None consumed bytes");
                        break;
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("valid stream rejected: {e}"))),
                }
            }
            // Whatever is left is a strict prefix of the next frame.
            if let Some(next) = frames.get(out.len()) {
                prop_assert!(buf.len() < next.encoded_len());
            } else {
                prop_assert!(buf.is_empty());
            }
        }
        prop_assert_eq!(out, frames);
        prop_assert!(buf.is_empty());
    }

    /// Frames encoded for one version are rejected by a decoder for the other, from the
    /// header alone.
    #[test]
    fn other_version_is_rejected((v, frames) in version_and_frames(4)) {
        let other = match v {
            Version::V1 => Version::V2,
            Version::V2 => Version::V1,
        };
        for f in frames {
            let bytes = encode(&f, v);
            let mut buf = BytesMut::from(&bytes[..HEADER_LEN]);
            prop_assert_eq!(
                FrameDecoder::new(other).decode(&mut buf),
                Err(ProtocolViolation::WrongVersion { expected: other.as_u8(), received: v.as_u8() })
            );
        }
    }

    /// Arbitrary bytes never make the decoder panic. It either rejects a header exactly when
    /// the rules say so, or yields frames whose re-encoding is exactly the bytes consumed, or
    /// waits (consuming nothing) for the rest of an incomplete frame.
    #[test]
    fn arbitrary_bytes_decode_consistently((v, bytes) in soup(), step in 1usize..64) {
        check_arbitrary(v, &bytes, step)?;
    }

    /// Pure noise, any version byte.
    #[test]
    fn pure_noise_decodes_consistently(v in version(), bytes in proptest::collection::vec(any::<u8>(), 0..200), step in 1usize..64) {
        check_arbitrary(v, &bytes, step)?;
    }

    /// Encoding refuses what the wire cannot carry, writing nothing.
    #[test]
    fn unencodable_frames_write_nothing(extra in 1usize..5000, sid in any::<u32>(), consumed in any::<u32>(), window in any::<u32>()) {
        let len = MAX_PAYLOAD_LEN + extra;
        let big = Frame::Psh { stream_id: StreamId::new(sid), data: Bytes::from(vec![1u8; len]) };
        for v in [Version::V1, Version::V2] {
            let mut out = Vec::new();
            prop_assert_eq!(big.encode(v, &mut out), Err(EncodeError::PayloadTooLarge { len }));
            prop_assert!(out.is_empty());
        }
        let upd = Frame::Upd { stream_id: StreamId::new(sid), consumed, window };
        let mut out = Vec::new();
        prop_assert_eq!(upd.encode(Version::V1, &mut out), Err(EncodeError::UpdInVersion1));
        prop_assert!(out.is_empty());
    }
}

fn check_arbitrary(v: Version, bytes: &[u8], step: usize) -> Result<(), TestCaseError> {
    let decoder = FrameDecoder::new(v);
    let mut buf = BytesMut::new();
    // Offset in `bytes` of the front of `buf`.
    let mut consumed = 0;
    let mut fed = 0;
    while fed < bytes.len() {
        let n = step.min(bytes.len() - fed);
        buf.put_slice(&bytes[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            let at = consumed;
            let judged = (buf.len() >= HEADER_LEN).then(|| judge_header(&buf[..HEADER_LEN], v));
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => {
                    let taken = before - buf.len();
                    let Some(Ok(payload)) = judged else {
                        return Err(TestCaseError::fail(format!(
                            "decoded {f:?} from an invalid header at {at}: {judged:?}"
                        )));
                    };
                    prop_assert_eq!(taken, HEADER_LEN + payload);
                    let mut again = Vec::new();
                    f.encode(v, &mut again).expect("decoded frame re-encodes");
                    prop_assert_eq!(&again[..], &bytes[at..at + taken]);
                    consumed += taken;
                }
                Ok(None) => {
                    prop_assert_eq!(buf.len(), before, "None consumed bytes");
                    match judged {
                        None => {}
                        Some(Ok(payload)) => prop_assert!(
                            buf.len() < HEADER_LEN + payload,
                            "complete frame not decoded"
                        ),
                        Some(Err(e)) => {
                            return Err(TestCaseError::fail(format!(
                                "invalid header accepted: {e}"
                            )))
                        }
                    }
                    break;
                }
                Err(e) => {
                    prop_assert_eq!(judged, Some(Err(e)));
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
