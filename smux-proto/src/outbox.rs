//! Frames waiting to be written to the transport, gathered for vectored writes.
//!
//! Headers and small payloads are appended to one scratch buffer, so runs of control frames or
//! tiny writes become a single slice; large payloads are queued as they are, without a copy.
//! Partial writes are handled by [`Outbox::advance`].

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::frame::{Cmd, Header, Version, HEADER_LEN};
use crate::stream_id::StreamId;

/// Payloads up to this size are copied next to their header instead of taking a slice.
const INLINE_PAYLOAD_MAX: usize = 512;

/// Scratch buffer allocation unit.
const SCRATCH_BLOCK: usize = 8 * 1024;

#[derive(Debug)]
pub(crate) struct Outbox {
    version: Version,
    /// Sealed chunks, in wire order.
    queue: VecDeque<Bytes>,
    /// Bytes after the queue, not sealed yet.
    scratch: BytesMut,
    /// Total bytes in `queue` and `scratch`.
    len: usize,
}

impl Outbox {
    pub(crate) fn new(version: Version) -> Self {
        Outbox {
            version,
            queue: VecDeque::new(),
            scratch: BytesMut::new(),
            len: 0,
        }
    }

    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn header(&mut self, cmd: Cmd, stream_id: StreamId, len: usize, extra: usize) {
        if self.scratch.capacity() - self.scratch.len() < HEADER_LEN + extra {
            self.scratch.reserve(SCRATCH_BLOCK.max(HEADER_LEN + extra));
        }
        Header {
            version: self.version,
            cmd,
            len: len as u16,
            stream_id,
        }
        .encode(&mut self.scratch);
        self.len += HEADER_LEN;
    }

    /// Queues a SYN, FIN or NOP.
    pub(crate) fn push_control(&mut self, cmd: Cmd, stream_id: StreamId) {
        debug_assert!(matches!(cmd, Cmd::Syn | Cmd::Fin | Cmd::Nop));
        self.header(cmd, stream_id, 0, 0);
    }

    /// Queues an UPD.
    pub(crate) fn push_update(&mut self, stream_id: StreamId, consumed: u32, window: u32) {
        debug_assert_eq!(self.version, Version::V2);
        self.header(Cmd::Upd, stream_id, 8, 8);
        self.scratch.put_u32_le(consumed);
        self.scratch.put_u32_le(window);
        self.len += 8;
    }

    /// Queues a PSH; `data` is at most 65535 bytes.
    pub(crate) fn push_data(&mut self, stream_id: StreamId, data: Bytes) {
        debug_assert!(data.len() <= usize::from(u16::MAX));
        let inline = data.len() <= INLINE_PAYLOAD_MAX;
        self.header(
            Cmd::Psh,
            stream_id,
            data.len(),
            if inline { data.len() } else { 0 },
        );
        self.len += data.len();
        if inline {
            self.scratch.put_slice(&data);
        } else {
            self.seal();
            self.queue.push_back(data);
        }
    }

    /// Queues raw wire bytes ahead of everything else (the rest of a frame the transport
    /// took only part of, outside the queue).
    pub(crate) fn push_front(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.queue.push_front(chunk);
    }

    fn seal(&mut self) {
        if !self.scratch.is_empty() {
            self.queue.push_back(self.scratch.split().freeze());
        }
    }

    /// Fills `dst` with the next chunks to write; returns how many slots were filled.
    pub(crate) fn fill<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        self.seal();
        let mut n = 0;
        for (slot, chunk) in dst.iter_mut().zip(self.queue.iter()) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// Moves every queued chunk to `out`, in order; returns the bytes moved.
    pub(crate) fn take(&mut self, out: &mut VecDeque<Bytes>) -> usize {
        self.seal();
        let n = self.len;
        out.extend(self.queue.drain(..));
        self.len = 0;
        n
    }

    /// Drops the first `n` bytes, which the transport accepted.
    pub(crate) fn advance(&mut self, mut n: usize) {
        debug_assert!(
            n <= self.len,
            "advanced {n} bytes past the {} queued",
            self.len
        );
        self.seal();
        n = n.min(self.len);
        self.len -= n;
        advance_chunks(&mut self.queue, n);
    }

    /// Discards everything (the session failed).
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.scratch.clear();
        self.len = 0;
    }
}

/// Drops the first `n` bytes of `chunks` (all of them if they hold fewer): for a driver that
/// took output with [`Session::poll_transmit_chunks`](crate::Session::poll_transmit_chunks)
/// and wrote part of it.
pub fn advance_chunks(chunks: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = chunks.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            chunks.pop_front();
        } else {
            front.advance(n);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(outbox: &mut Outbox, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !outbox.is_empty() {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = outbox.fill(&mut slices);
            assert!(n > 0);
            let mut budget = step;
            let mut taken = 0;
            for s in &slices[..n] {
                let k = s.len().min(budget);
                out.extend_from_slice(&s[..k]);
                budget -= k;
                taken += k;
            }
            outbox.advance(taken);
        }
        out
    }

    #[test]
    fn control_frames_and_tiny_payloads_share_one_slice() {
        let mut o = Outbox::new(Version::V1);
        o.push_control(Cmd::Syn, StreamId::new(3));
        o.push_data(StreamId::new(3), Bytes::from_static(b"abc"));
        o.push_control(Cmd::Fin, StreamId::new(3));
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(o.fill(&mut slices), 1);
        assert_eq!(
            &*slices[0],
            &[
                1, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3, 0, 3, 0, 0, 0, b'a', b'b', b'c', 1, 1, 0, 0, 3, 0,
                0, 0
            ]
        );
    }

    #[test]
    fn large_payloads_are_not_copied() {
        let mut o = Outbox::new(Version::V2);
        let data = Bytes::from(vec![5u8; 4096]);
        let ptr = data.as_ptr();
        o.push_data(StreamId::new(2), data);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(o.fill(&mut slices), 2);
        assert_eq!(slices[1].as_ptr(), ptr);
        assert_eq!(o.len(), 8 + 4096);
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut expected = Vec::new();
        let mut o = Outbox::new(Version::V2);
        for i in 0..20u32 {
            let data = Bytes::from(vec![i as u8; (i as usize) * 300]);
            crate::frame::Frame::Psh {
                stream_id: StreamId::new(i),
                data: data.clone(),
            }
            .encode(Version::V2, &mut expected)
            .unwrap();
            o.push_data(StreamId::new(i), data);
            o.push_update(StreamId::new(i), i, 7);
            crate::frame::Frame::Upd {
                stream_id: StreamId::new(i),
                consumed: i,
                window: 7,
            }
            .encode(Version::V2, &mut expected)
            .unwrap();
        }
        assert_eq!(o.len(), expected.len());
        assert_eq!(drain(&mut o, 333), expected);
        assert_eq!(o.len(), 0);
    }
}
