//! Zero-copy writes: data framed straight from the caller's buffer to the transport.
//!
//! [`Session::write`] copies data into the session, where it waits its turn. When nothing
//! else waits to be sent, that copy buys nothing: a driver that can write to the transport at
//! once asks [`Session::begin_direct_write`] to frame a prefix of the data, writes the frame
//! headers and the caller's own bytes in one vectored write, and reports what the transport
//! took with [`Session::end_direct_write`]. A frame the transport took only part of is
//! finished from the caller's bytes (its remainder is copied to the front of the transmit
//! queue), so the byte stream stays well formed whatever the transport accepts.
//!
//! The contract is kept by the types and the session, not by the caller's care:
//! - the [`DirectWrite`] borrows the data it framed, so the slices written and the bytes
//!   settled at the end are the same bytes;
//! - while a direct write is begun and not ended, the session gives no other output
//!   ([`Session::poll_transmit`] and friends give nothing, [`Session::wants_write`] is false)
//!   and begins no second direct write, so nothing can get on the wire ahead of it. A
//!   `DirectWrite` dropped without being ended therefore stalls the session's output: end it,
//!   with `written` 0 if nothing was written.

use std::io::IoSlice;

use bytes::{Bytes, BytesMut};

use crate::frame::{Cmd, Header, HEADER_LEN};
use crate::session::Session;
use crate::stream_id::StreamId;

/// Most frames one direct write carries.
pub const DIRECT_FRAMES: usize = 16;

/// A write framed by [`Session::begin_direct_write`]; complete it with
/// [`Session::end_direct_write`].
#[derive(Debug)]
#[must_use = "a direct write must be ended with Session::end_direct_write"]
pub struct DirectWrite<'d> {
    /// The data given to `begin_direct_write`; its prefix of `len` bytes is framed.
    data: &'d [u8],
    pub(crate) stream_id: StreamId,
    /// Payload bytes framed.
    pub(crate) len: usize,
    /// Payload bytes per frame (the last one may be shorter).
    pub(crate) frame_len: usize,
    headers: [[u8; HEADER_LEN]; DIRECT_FRAMES],
}

impl<'d> DirectWrite<'d> {
    pub(crate) fn new(header: Header, data: &'d [u8], len: usize, frame_len: usize) -> Self {
        let mut headers = [[0u8; HEADER_LEN]; DIRECT_FRAMES];
        let frames = len.div_ceil(frame_len);
        for (i, slot) in headers.iter_mut().take(frames).enumerate() {
            let payload = frame_len.min(len - i * frame_len);
            let mut bytes = &mut slot[..];
            Header {
                cmd: Cmd::Psh,
                len: payload as u16,
                ..header
            }
            .encode(&mut bytes);
        }
        DirectWrite {
            data,
            stream_id: header.stream_id,
            len,
            frame_len,
            headers,
        }
    }

    /// Payload bytes framed: the prefix of the data this write carries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is framed (never the case for a write that was begun).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes on the wire: headers and payloads.
    pub fn wire_len(&self) -> usize {
        self.len + self.frames() * HEADER_LEN
    }

    fn frames(&self) -> usize {
        self.len.div_ceil(self.frame_len)
    }

    /// Fills `out` with the slices to write, in order (each header, then its part of the
    /// data given to `begin_direct_write`); returns how many were used. `out` needs
    /// `2 * DIRECT_FRAMES` slots.
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let data = self.data;
        let mut n = 0;
        for (i, header) in self.headers.iter().take(self.frames()).enumerate() {
            let start = i * self.frame_len;
            let end = (start + self.frame_len).min(self.len);
            out[n] = IoSlice::new(header);
            out[n + 1] = IoSlice::new(&data[start..end]);
            n += 2;
        }
        n
    }

    /// For `written` wire bytes taken by the transport: the payload bytes of the frames it
    /// started (fully or partly), the number of those frames, and the unwritten remainder
    /// of a frame it took only part of.
    pub(crate) fn settle(&self, written: usize) -> (usize, u64, Option<Bytes>) {
        let data = self.data;
        let mut left = written;
        let mut accepted = 0;
        let mut frames = 0;
        for (i, header) in self.headers.iter().take(self.frames()).enumerate() {
            if left == 0 {
                break;
            }
            let start = i * self.frame_len;
            let end = (start + self.frame_len).min(self.len);
            let payload = &data[start..end];
            frames += 1;
            accepted = end;
            if left >= HEADER_LEN + payload.len() {
                left -= HEADER_LEN + payload.len();
                continue;
            }
            let mut rest = BytesMut::with_capacity(HEADER_LEN + payload.len() - left);
            if left < HEADER_LEN {
                rest.extend_from_slice(&header[left..]);
                rest.extend_from_slice(payload);
            } else {
                rest.extend_from_slice(&payload[left - HEADER_LEN..]);
            }
            return (accepted, frames, Some(rest.freeze()));
        }
        (accepted, frames, None)
    }
}

impl Session {
    /// Starts a zero-copy write of `data` on `stream_id`, for a driver about to write to the
    /// transport: when nothing else waits to be sent and the stream may send, frames a prefix
    /// of the data (window and [`DIRECT_FRAMES`] frames permitting). Write the
    /// [`slices`](DirectWrite::slices) of the returned [`DirectWrite`] to the transport in one
    /// go, then call [`end_direct_write`](Self::end_direct_write), even if the transport took
    /// nothing.
    ///
    /// `Ok(None)`: a direct write is not possible now; use [`write`](Self::write). Errors are
    /// those of `write`.
    ///
    /// Until `end_direct_write`, the session gives no other output
    /// ([`poll_transmit`](Self::poll_transmit) and friends give nothing): the direct write's
    /// bytes come first on the wire.
    ///
    /// ```
    /// # use std::io::{IoSlice, Write};
    /// # use std::time::Instant;
    /// # use smux_proto::{Config, Session, Side, DIRECT_FRAMES};
    /// let mut client = Session::new(Side::Client, Config::default(), Instant::now()).unwrap();
    /// let id = client.open_stream().unwrap();
    /// let mut wire = Vec::new();
    /// client.transmit_into(&mut bytes::BytesMut::new()); // the SYN goes first
    /// let data = vec![7u8; 100_000];
    /// if let Some(write) = client.begin_direct_write(id, &data).unwrap() {
    ///     let mut slices = [IoSlice::new(&[]); 2 * DIRECT_FRAMES];
    ///     let n = write.slices(&mut slices);
    ///     let written = wire.write_vectored(&slices[..n]).unwrap();
    ///     let accepted = client.end_direct_write(write, written);
    ///     assert!(accepted > 0 && accepted <= data.len());
    /// }
    /// ```
    pub fn begin_direct_write<'d>(
        &mut self,
        stream_id: StreamId,
        data: &'d [u8],
    ) -> Result<Option<DirectWrite<'d>>, crate::WriteError> {
        let ready = self.writable(stream_id)? && !self.streams[&stream_id].held;
        if !ready || data.is_empty() || self.wants_write() || self.direct_in_flight {
            return Ok(None);
        }
        let len = data.len();
        let frame_len = self.config().max_frame_size;
        let mut n = len.min(DIRECT_FRAMES * frame_len);
        if let Some(window) = self.send_window_available(stream_id) {
            n = n.min(window);
        }
        if n == 0 || self.lacks_reply_room(stream_id, n) {
            // The UPD that gives the peer room to answer must go before the data: the queued
            // path sends it first.
            return Ok(None);
        }
        let header = Header {
            version: self.config().version,
            cmd: Cmd::Psh,
            len: 0,
            stream_id,
        };
        self.direct_in_flight = true;
        Ok(Some(DirectWrite::new(header, data, n, frame_len)))
    }

    /// Completes a direct write after the transport took `written` bytes of its slices
    /// (0 if it took none or failed). Returns how many bytes of the data were written to the
    /// stream: those of every frame the transport started, a frame it took only part of
    /// being finished from the transmit queue. The session's other output flows again.
    pub fn end_direct_write(&mut self, write: DirectWrite<'_>, written: usize) -> usize {
        debug_assert!(written <= write.wire_len());
        let written = written.min(write.wire_len());
        let (accepted, frames, rest) = write.settle(written);
        self.direct_in_flight = false;
        self.record_direct_write(write.stream_id, accepted, frames, written, rest);
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Version;

    fn dw(data: &[u8], frame_len: usize) -> DirectWrite<'_> {
        let header = Header {
            version: Version::V1,
            cmd: Cmd::Psh,
            len: 0,
            stream_id: StreamId::new(3),
        };
        DirectWrite::new(header, data, data.len(), frame_len)
    }

    #[test]
    fn slices_interleave_headers_and_payload() {
        let data: Vec<u8> = (0..250u8).collect();
        let d = dw(&data, 100);
        let mut out = [IoSlice::new(&[]); 2 * DIRECT_FRAMES];
        assert_eq!(d.slices(&mut out), 6);
        assert_eq!(&*out[0], &[1, 2, 100, 0, 3, 0, 0, 0]);
        assert_eq!(&*out[1], &data[..100]);
        assert_eq!(&*out[4], &[1, 2, 50, 0, 3, 0, 0, 0]);
        assert_eq!(&*out[5], &data[200..]);
        assert_eq!(d.wire_len(), 250 + 24);
    }

    #[test]
    fn settle_finishes_a_partly_written_frame() {
        let data: Vec<u8> = (0..250u8).collect();
        let d = dw(&data, 100);
        // Nothing written.
        assert_eq!(d.settle(0), (0, 0, None));
        // Inside the first header: the rest of the header and the whole payload remain.
        let (accepted, frames, rest) = d.settle(3);
        assert_eq!((accepted, frames), (100, 1));
        let rest = rest.unwrap();
        assert_eq!(&rest[..5], &[0, 3, 0, 0, 0]);
        assert_eq!(&rest[5..], &data[..100]);
        // Inside the second payload.
        let (accepted, frames, rest) = d.settle(108 + 8 + 30);
        assert_eq!((accepted, frames), (200, 2));
        assert_eq!(&rest.unwrap()[..], &data[130..200]);
        // Exactly two frames.
        assert_eq!(d.settle(216), (200, 2, None));
        // Everything.
        assert_eq!(d.settle(274), (250, 3, None));
    }
}
