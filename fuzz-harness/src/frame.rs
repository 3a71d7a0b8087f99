//! Arbitrary bytes, in arbitrary fragmentation, through `FrameDecoder` (both versions).
//!
//! Input: two bytes seeding the fragmentation, then the byte stream. Checks that decoding never
//! panics, consumes nothing while a frame is incomplete or invalid, re-encodes every frame to
//! exactly the bytes it came from, and gives the same result whatever the fragmentation.

use bytes::BytesMut;
use smux_proto::frame::HEADER_LEN;
use smux_proto::{Frame, FrameDecoder, ProtocolViolation, Version};

use crate::shared::Rng;

/// Decodes `stream` fed in chunks; returns the frames and the error that stopped decoding.
fn decode(
    version: Version,
    stream: &[u8],
    rng: &mut Option<Rng>,
) -> (Vec<Frame>, Option<ProtocolViolation>) {
    let decoder = FrameDecoder::new(version);
    let mut buf = BytesMut::new();
    let (mut fed, mut offset) = (0, 0);
    let mut frames = Vec::new();
    while fed < stream.len() {
        let n = rng
            .as_mut()
            .map_or(usize::MAX, Rng::chunk_len)
            .min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            assert_eq!(&buf[..], &stream[offset..fed]);
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let consumed = before - buf.len();
                    let mut encoded = Vec::new();
                    frame
                        .encode(version, &mut encoded)
                        .expect("a decoded frame encodes");
                    assert_eq!(encoded, &stream[offset..offset + consumed], "{frame:?}");
                    assert_eq!(frame.encoded_len(), consumed);
                    offset += consumed;
                    frames.push(frame);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete frame consumes nothing");
                    let header = decoder.peek_header(&buf).expect("peek agrees with decode");
                    if let Some(h) = header {
                        assert!(buf.len() < HEADER_LEN + usize::from(h.len));
                    } else {
                        assert!(buf.len() < HEADER_LEN);
                    }
                    break;
                }
                Err(e) => {
                    assert_eq!(buf.len(), before, "an invalid frame consumes nothing");
                    assert_eq!(
                        decoder.decode(&mut buf),
                        Err(e.clone()),
                        "errors are stable"
                    );
                    assert!(decoder.peek_header(&buf).is_err());
                    return (frames, Some(e));
                }
            }
        }
    }
    (frames, None)
}

/// Runs one input; panics if an invariant is broken.
pub fn frame(data: &[u8]) {
    let Some((seed, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let seed = u32::from(u16::from_le_bytes(*seed)).wrapping_mul(0x9E37_79B9) | 1;
    for version in [Version::V1, Version::V2] {
        let fragmented = decode(version, stream, &mut Some(Rng(seed)));
        let whole = decode(version, stream, &mut None);
        assert_eq!(fragmented, whole, "fragmentation changed the result");
    }
}
