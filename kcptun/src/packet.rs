//! kcp-go's datagram: a crypt header, then KCP segments.
//!
//! ```text
//! | nonce: 16 bytes | crc32: 4 bytes, little endian | KCP segment | KCP segment | ...
//!                    \_ IEEE CRC32 of everything after it
//! ```
//!
//! With a cipher (`--crypt` other than `none`) the whole datagram, nonce included, is then
//! encrypted; with `--crypt none` kcp-go keeps the header and its cipher does nothing, which
//! is the format here. The nonce only feeds the cipher: with `none` it is random filler.
//! With FEC (`--datashard`/`--parityshard` not 0) a 6-byte FEC header would follow the CRC;
//! kcptun must run with both at 0 to talk to this crate.
//!
//! Each KCP segment (the layout of the original C KCP, which kcp-go keeps):
//!
//! ```text
//! | conv u32 | cmd u8 | frg u8 | wnd u16 | ts u32 | sn u32 | una u32 | len u32 | data: len bytes |
//! ```
//! all little endian; `cmd` is 81 push, 82 ack, 83 window probe, 84 window size.

use crate::error::PacketError;

/// The random nonce kcp-go puts first in every datagram (`nonceSize` in kcp-go's sess.go).
pub const NONCE_LEN: usize = 16;
/// The CRC32 after the nonce (`crcSize` in kcp-go).
pub const CRC_LEN: usize = 4;
/// Bytes of kcp-go's crypt header before the KCP segments (`cryptHeaderSize`).
pub const HEADER_LEN: usize = NONCE_LEN + CRC_LEN;
/// A KCP segment's header (`IKCP_OVERHEAD`).
pub const SEGMENT_HEADER_LEN: usize = 24;

/// kcp-go's FEC type tags, which sit where a segment's `cmd` and `frg` would be (the FEC header
/// is `seqid u32, flag u16`): 0xf1 data, 0xf2 parity.
const FEC_DATA: u16 = 0xf1;
const FEC_PARITY: u16 = 0xf2;

const CMD_PUSH: u8 = 81;
const CMD_WINS: u8 = 84;

/// One KCP segment header, as read from a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Conversation id.
    pub conv: u32,
    /// Command: 81 push, 82 ack, 83 window probe, 84 window size.
    pub cmd: u8,
    /// Timestamp (an ack echoes the pushed segment's).
    pub ts: u32,
    /// Sequence number.
    pub sn: u32,
    /// Payload length.
    pub len: u32,
}

/// A datagram that passed the checks: its KCP bytes and the first segment's header.
#[derive(Debug)]
pub struct Datagram<'a> {
    /// The KCP segments, header stripped.
    pub kcp: &'a [u8],
    /// The first segment's header (every segment has the same `conv`).
    pub first: SegmentHeader,
}

/// Wraps KCP bytes (`kcp`) into a kcp-go datagram with crypt `none`, appended to `out`.
pub fn encode(kcp: &[u8], nonce: [u8; NONCE_LEN], out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + kcp.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&crc32fast::hash(kcp).to_le_bytes());
    out.extend_from_slice(kcp);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

/// Reads one segment header at the start of `b` (which holds at least a header).
fn header(b: &[u8]) -> SegmentHeader {
    SegmentHeader {
        conv: u32_at(b, 0),
        cmd: b[4],
        ts: u32_at(b, 8),
        sn: u32_at(b, 12),
        len: u32_at(b, 20),
    }
}

/// Checks a datagram (crypt `none`): its CRC, and that it is a whole number of well-formed KCP
/// segments of one conversation. Never panics, whatever the bytes.
pub fn decode(datagram: &[u8]) -> Result<Datagram<'_>, PacketError> {
    if datagram.len() < HEADER_LEN + SEGMENT_HEADER_LEN {
        return Err(PacketError::TooShort {
            len: datagram.len(),
        });
    }
    let crc = u32_at(datagram, NONCE_LEN);
    let kcp = &datagram[HEADER_LEN..];
    if crc32fast::hash(kcp) != crc {
        return Err(PacketError::Checksum);
    }
    let tag = u16::from_le_bytes([kcp[4], kcp[5]]);
    if tag == FEC_DATA || tag == FEC_PARITY {
        return Err(PacketError::Segment(
            "a FEC header: the peer runs with FEC shards (use --datashard 0 --parityshard 0)",
        ));
    }
    let first = header(kcp);
    let mut rest = kcp;
    while !rest.is_empty() {
        if rest.len() < SEGMENT_HEADER_LEN {
            return Err(PacketError::Segment("trailing bytes shorter than a header"));
        }
        let h = header(rest);
        if !(CMD_PUSH..=CMD_WINS).contains(&h.cmd) {
            return Err(PacketError::Segment("unknown command"));
        }
        if h.conv != first.conv {
            return Err(PacketError::WrongConversation {
                expected: first.conv,
                found: h.conv,
            });
        }
        let len = usize::try_from(h.len).unwrap_or(usize::MAX);
        if len > rest.len() - SEGMENT_HEADER_LEN {
            return Err(PacketError::Segment(
                "payload length past the datagram's end",
            ));
        }
        rest = &rest[SEGMENT_HEADER_LEN + len..];
    }
    Ok(Datagram { kcp, first })
}

/// Calls `f` with each segment header of an already [`decode`]d datagram's KCP bytes.
pub fn for_each_segment(mut kcp: &[u8], mut f: impl FnMut(&SegmentHeader)) {
    while kcp.len() >= SEGMENT_HEADER_LEN {
        let h = header(kcp);
        f(&h);
        let len = usize::try_from(h.len).unwrap_or(usize::MAX);
        let end = SEGMENT_HEADER_LEN.saturating_add(len).min(kcp.len());
        kcp = &kcp[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(conv: u32, cmd: u8, sn: u32, data: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&conv.to_le_bytes());
        s.push(cmd);
        s.push(0);
        s.extend_from_slice(&128u16.to_le_bytes());
        s.extend_from_slice(&7u32.to_le_bytes());
        s.extend_from_slice(&sn.to_le_bytes());
        s.extend_from_slice(&0u32.to_le_bytes());
        s.extend_from_slice(&(data.len() as u32).to_le_bytes());
        s.extend_from_slice(data);
        s
    }

    #[test]
    fn a_datagram_round_trips_and_its_crc_covers_the_segments() {
        let mut kcp = segment(0x1234, CMD_PUSH, 0, b"hello");
        kcp.extend(segment(0x1234, 82, 3, b""));
        let mut d = Vec::new();
        encode(&kcp, [9; NONCE_LEN], &mut d);
        assert_eq!(&d[..NONCE_LEN], &[9; NONCE_LEN]);
        assert_eq!(d.len(), HEADER_LEN + kcp.len());
        let got = decode(&d).unwrap();
        assert_eq!(got.kcp, &kcp[..]);
        assert_eq!(got.first.conv, 0x1234);
        let mut cmds = Vec::new();
        for_each_segment(got.kcp, |h| cmds.push((h.cmd, h.sn)));
        assert_eq!(cmds, [(CMD_PUSH, 0), (82, 3)]);
        let last = d.len() - 1;
        d[last] ^= 1;
        assert_eq!(decode(&d).unwrap_err(), PacketError::Checksum);
    }

    #[test]
    fn malformed_datagrams_are_typed_errors() {
        let wrap = |kcp: &[u8]| {
            let mut d = Vec::new();
            encode(kcp, [0; NONCE_LEN], &mut d);
            d
        };
        assert!(matches!(
            decode(&[0; 30]),
            Err(PacketError::TooShort { len: 30 })
        ));
        let mut long = segment(1, CMD_PUSH, 0, b"abc");
        long[20] = 200; // claims 200 bytes of payload
        assert!(matches!(decode(&wrap(&long)), Err(PacketError::Segment(_))));
        let bad_cmd = segment(1, 80, 0, b"");
        assert!(matches!(
            decode(&wrap(&bad_cmd)),
            Err(PacketError::Segment(_))
        ));
        let mut two = segment(1, CMD_PUSH, 0, b"");
        two.extend(segment(2, CMD_PUSH, 1, b""));
        assert!(matches!(
            decode(&wrap(&two)),
            Err(PacketError::WrongConversation {
                expected: 1,
                found: 2
            })
        ));
        let mut fec = segment(1, CMD_PUSH, 0, b"");
        fec[4] = 0xf1;
        fec[5] = 0;
        assert!(matches!(decode(&wrap(&fec)), Err(PacketError::Segment(_))));
        let mut trailing = segment(1, CMD_PUSH, 0, b"");
        trailing.extend_from_slice(&[0; 5]);
        assert!(matches!(
            decode(&wrap(&trailing)),
            Err(PacketError::Segment(_))
        ));
        // Any bytes at all: an error or a datagram, never a panic.
        let mut seed = 1u64;
        for len in 0..400 {
            let mut kcp = vec![0u8; len];
            for b in &mut kcp {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                *b = (seed >> 33) as u8;
            }
            let _ = decode(&wrap(&kcp));
            let _ = decode(&kcp);
        }
    }
}
