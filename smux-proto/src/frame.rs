//! The frame codec: the 8-byte header and the five commands.
//!
//! ```text
//! VER(1) CMD(1) LEN(2, little-endian) SID(4, little-endian) DATA(LEN)
//! ```
//!
//! Encoding writes into any [`BufMut`]; decoding takes bytes from a [`BytesMut`] that the caller
//! keeps appending to, in any fragmentation, and splits complete frames off it without copying
//! the payload.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{EncodeError, ProtocolViolation};
use crate::stream_id::StreamId;

/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// Length of an UPD payload: `consumed: u32 LE` then `window: u32 LE`.
pub const UPD_PAYLOAD_LEN: usize = 8;

/// The largest payload one frame can carry (LEN is a `u16`).
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;

/// Payloads shorter than this are copied out of the read buffer instead of sharing it, so that
/// a small unread frame never pins a large receive buffer in memory: with the 64 KiB reads of
/// the drivers, an unread zero-copy payload pins at most a few times its size. Go's default
/// 32 KiB frames, and larger ones, stay zero-copy.
pub(crate) const ZERO_COPY_MIN: usize = 32 * 1024;

/// Protocol version. Both ends must be configured with the same one; there is no negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Version {
    /// Version 1: no per-stream flow control, one session-wide receive budget.
    #[default]
    V1,
    /// Version 2: per-stream sliding windows, carried by UPD frames.
    V2,
}

impl Version {
    /// The VER byte on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }

    /// The version for a VER byte, if it is one this crate speaks.
    pub const fn from_u8(v: u8) -> Option<Version> {
        match v {
            1 => Some(Version::V1),
            2 => Some(Version::V2),
            _ => None,
        }
    }
}

/// The CMD byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmd {
    /// Open a stream. LEN is 0.
    Syn = 0,
    /// The sender will send no more data on the stream. LEN is 0.
    Fin = 1,
    /// Stream data.
    Psh = 2,
    /// Keepalive. SID 0, LEN 0.
    Nop = 3,
    /// Per-stream window update (version 2 only). LEN is 8.
    Upd = 4,
}

impl Cmd {
    /// The command for a CMD byte, if it is known.
    pub const fn from_u8(v: u8) -> Option<Cmd> {
        match v {
            0 => Some(Cmd::Syn),
            1 => Some(Cmd::Fin),
            2 => Some(Cmd::Psh),
            3 => Some(Cmd::Nop),
            4 => Some(Cmd::Upd),
            _ => None,
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// VER.
    pub version: Version,
    /// CMD.
    pub cmd: Cmd,
    /// LEN: the number of payload bytes that follow the header.
    pub len: u16,
    /// SID.
    pub stream_id: StreamId,
}

impl Header {
    /// Writes the 8 header bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.version.as_u8());
        dst.put_u8(self.cmd as u8);
        dst.put_u16_le(self.len);
        dst.put_u32_le(self.stream_id.as_u32());
    }

    /// Parses and validates a header for a session speaking `version`.
    ///
    /// Checks everything that can be checked before the payload arrives: the version, the
    /// command, UPD only in version 2, and the fixed lengths of control frames.
    pub fn decode(bytes: &[u8; HEADER_LEN], version: Version) -> Result<Header, ProtocolViolation> {
        let ver = bytes[0];
        if ver != version.as_u8() {
            return Err(ProtocolViolation::WrongVersion {
                expected: version.as_u8(),
                received: ver,
            });
        }
        let cmd = Cmd::from_u8(bytes[1]).ok_or(ProtocolViolation::UnknownCommand(bytes[1]))?;
        let len = u16::from_le_bytes([bytes[2], bytes[3]]);
        let stream_id = StreamId::new(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
        if cmd == Cmd::Upd && version == Version::V1 {
            return Err(ProtocolViolation::UpdInVersion1 { stream_id });
        }
        let expected_len = match cmd {
            Cmd::Syn | Cmd::Fin | Cmd::Nop => Some(0),
            Cmd::Upd => Some(UPD_PAYLOAD_LEN as u16),
            Cmd::Psh => None,
        };
        if let Some(expected) = expected_len {
            if len != expected {
                return Err(ProtocolViolation::BadControlLength {
                    cmd,
                    stream_id,
                    len,
                });
            }
        }
        Ok(Header {
            version,
            cmd,
            len,
            stream_id,
        })
    }
}

/// One frame, with its payload decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// SYN: the sender opens `stream_id`.
    Syn {
        /// The new stream.
        stream_id: StreamId,
    },
    /// FIN: the sender will send no more data on `stream_id`.
    Fin {
        /// The finished stream.
        stream_id: StreamId,
    },
    /// PSH: data for `stream_id`.
    Psh {
        /// The stream the data belongs to.
        stream_id: StreamId,
        /// The payload, at most [`MAX_PAYLOAD_LEN`] bytes.
        data: Bytes,
    },
    /// NOP: keepalive. Sent with stream id 0; any id is accepted.
    Nop {
        /// The stream id field (0 when sent by this crate or by Go).
        stream_id: StreamId,
    },
    /// UPD (version 2): the receiver of `stream_id` has read `consumed` bytes in total
    /// (wrapping) and has a buffer of `window` bytes.
    Upd {
        /// The stream whose window is updated.
        stream_id: StreamId,
        /// Total bytes of the stream read by the peer so far, wrapping at 2^32.
        consumed: u32,
        /// The peer's stream buffer size.
        window: u32,
    },
}

impl Frame {
    /// The stream id field.
    pub fn stream_id(&self) -> StreamId {
        match *self {
            Frame::Syn { stream_id }
            | Frame::Fin { stream_id }
            | Frame::Psh { stream_id, .. }
            | Frame::Nop { stream_id }
            | Frame::Upd { stream_id, .. } => stream_id,
        }
    }

    /// The command.
    pub fn cmd(&self) -> Cmd {
        match self {
            Frame::Syn { .. } => Cmd::Syn,
            Frame::Fin { .. } => Cmd::Fin,
            Frame::Psh { .. } => Cmd::Psh,
            Frame::Nop { .. } => Cmd::Nop,
            Frame::Upd { .. } => Cmd::Upd,
        }
    }

    /// The number of bytes this frame takes on the wire, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Frame::Psh { data, .. } => data.len(),
                Frame::Upd { .. } => UPD_PAYLOAD_LEN,
                _ => 0,
            }
    }

    /// Appends the frame, header and payload, to `dst`.
    ///
    /// Fails, writing nothing, for a PSH payload over [`MAX_PAYLOAD_LEN`] bytes or an UPD in
    /// version 1.
    pub fn encode(&self, version: Version, dst: &mut impl BufMut) -> Result<(), EncodeError> {
        let len = match self {
            Frame::Psh { data, .. } => u16::try_from(data.len())
                .map_err(|_| EncodeError::PayloadTooLarge { len: data.len() })?,
            Frame::Upd { .. } if version == Version::V1 => return Err(EncodeError::UpdInVersion1),
            Frame::Upd { .. } => UPD_PAYLOAD_LEN as u16,
            _ => 0,
        };
        Header {
            version,
            cmd: self.cmd(),
            len,
            stream_id: self.stream_id(),
        }
        .encode(dst);
        match self {
            Frame::Psh { data, .. } => dst.put_slice(data),
            Frame::Upd {
                consumed, window, ..
            } => {
                dst.put_u32_le(*consumed);
                dst.put_u32_le(*window);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Splits frames off a growing byte buffer.
///
/// The decoder holds no bytes itself: the caller appends whatever the transport delivered to a
/// [`BytesMut`] and calls [`decode`](Self::decode) until it returns `Ok(None)`. A header is
/// validated as soon as its 8 bytes are present, before its payload has arrived.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    version: Version,
}

impl FrameDecoder {
    /// A decoder for a session speaking `version`.
    pub fn new(version: Version) -> Self {
        FrameDecoder { version }
    }

    /// Validates the header at the front of `buf`, if all 8 of its bytes are there.
    pub fn peek_header(&self, buf: &[u8]) -> Result<Option<Header>, ProtocolViolation> {
        match buf.first_chunk::<HEADER_LEN>() {
            Some(bytes) => Header::decode(bytes, self.version).map(Some),
            None => Ok(None),
        }
    }

    /// Removes one complete frame from the front of `buf`.
    ///
    /// Returns `Ok(None)`, consuming nothing, while the frame is incomplete. Large payloads
    /// share `buf`'s memory; small ones are copied so they do not keep it alive.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolViolation> {
        let Some(header) = self.peek_header(buf)? else {
            return Ok(None);
        };
        let len = usize::from(header.len);
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let stream_id = header.stream_id;
        Ok(Some(match header.cmd {
            Cmd::Syn => Frame::Syn { stream_id },
            Cmd::Fin => Frame::Fin { stream_id },
            Cmd::Nop => Frame::Nop { stream_id },
            Cmd::Upd => Frame::Upd {
                stream_id,
                consumed: buf.get_u32_le(),
                window: buf.get_u32_le(),
            },
            Cmd::Psh => {
                let data = if len < ZERO_COPY_MIN {
                    let data = Bytes::copy_from_slice(&buf[..len]);
                    buf.advance(len);
                    data
                } else {
                    buf.split_to(len).freeze()
                };
                Frame::Psh { stream_id, data }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u32) -> StreamId {
        StreamId::new(n)
    }

    fn encode(frame: &Frame, version: Version) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(version, &mut out).unwrap();
        out
    }

    fn decode_all(bytes: &[u8], version: Version) -> Result<Vec<Frame>, ProtocolViolation> {
        let decoder = FrameDecoder::new(version);
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf)? {
            frames.push(frame);
        }
        assert!(buf.is_empty(), "trailing bytes: {buf:?}");
        Ok(frames)
    }

    #[test]
    fn syn_encodes_as_go_does() {
        let frame = Frame::Syn { stream_id: sid(3) };
        assert_eq!(encode(&frame, Version::V1), [1, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(encode(&frame, Version::V2), [2, 0, 0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn fin_encodes_as_go_does() {
        let frame = Frame::Fin {
            stream_id: sid(0x0102_0304),
        };
        assert_eq!(encode(&frame, Version::V1), [1, 1, 0, 0, 4, 3, 2, 1]);
    }

    #[test]
    fn psh_length_and_stream_id_are_little_endian() {
        let frame = Frame::Psh {
            stream_id: sid(3),
            data: Bytes::from_static(b"hello"),
        };
        assert_eq!(
            encode(&frame, Version::V1),
            [1, 2, 5, 0, 3, 0, 0, 0, b'h', b'e', b'l', b'l', b'o']
        );
        let big = Frame::Psh {
            stream_id: sid(0xfffffffe),
            data: Bytes::from(vec![7u8; 0x1234]),
        };
        let bytes = encode(&big, Version::V2);
        assert_eq!(&bytes[..8], &[2, 2, 0x34, 0x12, 0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(bytes.len(), 8 + 0x1234);
    }

    #[test]
    fn nop_encodes_with_stream_zero() {
        let frame = Frame::Nop { stream_id: sid(0) };
        assert_eq!(encode(&frame, Version::V1), [1, 3, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn upd_payload_is_consumed_then_window_little_endian() {
        let frame = Frame::Upd {
            stream_id: sid(5),
            consumed: 0x0a0b_0c0d,
            window: 65536,
        };
        assert_eq!(
            encode(&frame, Version::V2),
            [2, 4, 8, 0, 5, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a, 0, 0, 1, 0]
        );
    }

    #[test]
    fn upd_cannot_be_encoded_in_version_1() {
        let frame = Frame::Upd {
            stream_id: sid(5),
            consumed: 1,
            window: 2,
        };
        let mut out = Vec::new();
        assert_eq!(
            frame.encode(Version::V1, &mut out),
            Err(EncodeError::UpdInVersion1)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn oversized_psh_cannot_be_encoded() {
        let frame = Frame::Psh {
            stream_id: sid(3),
            data: Bytes::from(vec![0u8; MAX_PAYLOAD_LEN + 1]),
        };
        let mut out = Vec::new();
        assert_eq!(
            frame.encode(Version::V1, &mut out),
            Err(EncodeError::PayloadTooLarge {
                len: MAX_PAYLOAD_LEN + 1
            })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn largest_psh_round_trips() {
        let frame = Frame::Psh {
            stream_id: sid(7),
            data: Bytes::from(vec![0xa5; MAX_PAYLOAD_LEN]),
        };
        let bytes = encode(&frame, Version::V1);
        assert_eq!(&bytes[2..4], &[0xff, 0xff]);
        assert_eq!(decode_all(&bytes, Version::V1).unwrap(), vec![frame]);
    }

    #[test]
    fn decodes_every_command() {
        let bytes = [
            1, 0, 0, 0, 3, 0, 0, 0, // SYN 3
            1, 2, 2, 0, 3, 0, 0, 0, b'h', b'i', // PSH 3 "hi"
            1, 3, 0, 0, 0, 0, 0, 0, // NOP
            1, 1, 0, 0, 3, 0, 0, 0, // FIN 3
        ];
        assert_eq!(
            decode_all(&bytes, Version::V1).unwrap(),
            vec![
                Frame::Syn { stream_id: sid(3) },
                Frame::Psh {
                    stream_id: sid(3),
                    data: Bytes::from_static(b"hi")
                },
                Frame::Nop { stream_id: sid(0) },
                Frame::Fin { stream_id: sid(3) },
            ]
        );
        let upd = [2, 4, 8, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(
            decode_all(&upd, Version::V2).unwrap(),
            vec![Frame::Upd {
                stream_id: sid(2),
                consumed: 1,
                window: 65536
            }]
        );
    }

    #[test]
    fn decoding_one_byte_at_a_time_yields_the_same_frames() {
        let mut bytes = Vec::new();
        let frames = vec![
            Frame::Syn { stream_id: sid(3) },
            Frame::Psh {
                stream_id: sid(3),
                data: Bytes::from(vec![1u8; 9000]),
            },
            Frame::Upd {
                stream_id: sid(3),
                consumed: 9,
                window: 10,
            },
            Frame::Fin { stream_id: sid(3) },
        ];
        for f in &frames {
            f.encode(Version::V2, &mut bytes).unwrap();
        }
        let decoder = FrameDecoder::new(Version::V2);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in bytes {
            buf.put_u8(b);
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
    }

    #[test]
    fn incomplete_frame_consumes_nothing() {
        let decoder = FrameDecoder::new(Version::V1);
        let mut buf = BytesMut::from(&[1u8, 2, 4, 0, 3, 0, 0, 0, b'a', b'b'][..]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 10);
    }

    #[test]
    fn wrong_version_is_rejected_from_the_header_alone() {
        let decoder = FrameDecoder::new(Version::V1);
        let mut buf = BytesMut::from(&[2u8, 2, 0xff, 0xff, 3, 0, 0, 0][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ProtocolViolation::WrongVersion {
                expected: 1,
                received: 2
            })
        );
    }

    #[test]
    fn unknown_command_is_rejected() {
        assert_eq!(
            decode_all(&[2, 5, 0, 0, 3, 0, 0, 0], Version::V2),
            Err(ProtocolViolation::UnknownCommand(5))
        );
        assert_eq!(
            decode_all(&[1, 0xff, 0, 0, 3, 0, 0, 0], Version::V1),
            Err(ProtocolViolation::UnknownCommand(0xff))
        );
    }

    #[test]
    fn upd_in_version_1_is_rejected() {
        assert_eq!(
            decode_all(
                &[1, 4, 8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                Version::V1
            ),
            Err(ProtocolViolation::UpdInVersion1 { stream_id: sid(3) })
        );
    }

    #[test]
    fn control_frames_with_a_payload_are_rejected() {
        for (cmd, c) in [(0u8, Cmd::Syn), (1, Cmd::Fin), (3, Cmd::Nop)] {
            assert_eq!(
                decode_all(&[1, cmd, 1, 0, 9, 0, 0, 0, 0], Version::V1),
                Err(ProtocolViolation::BadControlLength {
                    cmd: c,
                    stream_id: sid(9),
                    len: 1
                })
            );
        }
        for len in [0u8, 7, 9] {
            assert_eq!(
                decode_all(&[2, 4, len, 0, 9, 0, 0, 0], Version::V2),
                Err(ProtocolViolation::BadControlLength {
                    cmd: Cmd::Upd,
                    stream_id: sid(9),
                    len: u16::from(len)
                })
            );
        }
    }

    #[test]
    fn empty_psh_is_accepted() {
        assert_eq!(
            decode_all(&[1, 2, 0, 0, 3, 0, 0, 0], Version::V1).unwrap(),
            vec![Frame::Psh {
                stream_id: sid(3),
                data: Bytes::new()
            }]
        );
    }

    /// Decodes one PSH of `len` bytes; returns whether its payload shares the read buffer.
    fn payload_shares_buffer(len: usize) -> bool {
        let mut bytes = Vec::new();
        Frame::Psh {
            stream_id: sid(3),
            data: Bytes::from(vec![9u8; len]),
        }
        .encode(Version::V1, &mut bytes)
        .unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let start = buf.as_ptr() as usize;
        let Some(Frame::Psh { data, .. }) =
            FrameDecoder::new(Version::V1).decode(&mut buf).unwrap()
        else {
            panic!("expected PSH")
        };
        assert_eq!(data, vec![9u8; len]);
        data.as_ptr() as usize == start + HEADER_LEN
    }

    #[test]
    fn large_payloads_share_the_read_buffer() {
        // Go's default frame size and above: zero-copy.
        assert!(payload_shares_buffer(32_768));
        assert!(payload_shares_buffer(65_535));
    }

    #[test]
    fn smaller_payloads_are_copied() {
        // Shared, an unread 16 KiB frame would keep a whole 64 KiB transport read alive.
        assert!(!payload_shares_buffer(16_384));
        assert!(!payload_shares_buffer(32_767));
        assert!(!payload_shares_buffer(10));
    }
}
