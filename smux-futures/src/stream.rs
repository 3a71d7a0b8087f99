//! `MuxStream<T>`: one stream of a mux, an `AsyncRead + AsyncWrite` byte stream.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::io::{AsyncRead, AsyncWrite};
use smux_proto::{ReadError, StreamId, WriteError};

use crate::driver::Driver;
use crate::mux::io_error;
use crate::wakers::{Slot, Waiter};

/// One stream of a [`Mux`](crate::Mux).
///
/// - Reads return data in order; `Ok(0)` once the peer finished the stream (its FIN) and
///   everything was read. If the connection ends first, reads fail with its error after the
///   data already received.
/// - Writes return once the session accepted the data (bounded by
///   [`Config::max_stream_send_buffer`](smux_proto::Config::max_stream_send_buffer));
///   `flush` returns once this stream's data is written to the transport and a transport
///   flush completed after it. It waits for this stream's bytes only: other streams that keep
///   writing delay it by their turn in the round robin, not until they stop.
/// - `close` is a half-close: it sends FIN after the data written and flushes (the same way);
///   reading goes on until the peer's FIN.
/// - Dropping the stream sends FIN (after any data still queued) and frees its buffers; data
///   that arrives for it afterwards is discarded.
pub struct MuxStream<T: AsyncRead + AsyncWrite + Unpin> {
    shared: Arc<Driver<T>>,
    id: StreamId,
}

impl<T: AsyncRead + AsyncWrite + Unpin> std::fmt::Debug for MuxStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxStream").field("id", &self.id).finish()
    }
}

fn read_error(e: ReadError) -> Poll<io::Result<usize>> {
    Poll::Ready(Err(match e {
        ReadError::SessionClosed(e) => io_error(e),
        other => io::Error::new(io::ErrorKind::NotConnected, other),
    }))
}

fn write_error(e: WriteError) -> io::Error {
    match e {
        WriteError::SessionClosed(e) => io_error(e),
        other => io::Error::new(io::ErrorKind::BrokenPipe, other),
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> MuxStream<T> {
    pub(crate) fn new(shared: Arc<Driver<T>>, id: StreamId) -> Self {
        MuxStream { shared, id }
    }

    /// The stream id (odd when the client opened it, even for the server).
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Reads the next chunk of at most `max` bytes without copying it; `None` at the end of
    /// the stream.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.read_chunk_shared(max).await
    }

    pub(crate) async fn read_chunk_shared(&self, max: usize) -> io::Result<Option<Bytes>> {
        let id = self.id;
        let waiter = Waiter::Stream(Slot::Read(id));
        let _cancel = self.shared.wakers().guard(waiter);
        poll_fn(|cx| {
            self.shared
                .poll_op(cx, waiter, |core| match core.session.read_chunk(id, max) {
                    Ok(chunk) => Poll::Ready(Ok(chunk)),
                    Err(ReadError::Blocked) => Poll::Pending,
                    Err(e) => read_error(e).map_ok(|_| None),
                })
        })
        .await
    }

    /// Writes all of `data` without copying it (the session keeps slices of it).
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        self.write_chunk_shared(data).await
    }

    pub(crate) async fn write_chunk_shared(&self, mut data: Bytes) -> io::Result<()> {
        let id = self.id;
        let waiter = Waiter::Stream(Slot::Write(id));
        let _cancel = self.shared.wakers().guard(waiter);
        poll_fn(|cx| {
            self.shared.poll_op(cx, waiter, |core| loop {
                if data.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                match core.session.write_chunk(id, &data) {
                    Ok(n) => {
                        let _ = data.split_to(n);
                    }
                    Err(WriteError::Blocked) => return Poll::Pending,
                    Err(e) => return Poll::Ready(Err(write_error(e))),
                }
            })
        })
        .await
    }

    /// Flush (and the end of close): done once this stream's output, FIN included when it
    /// was finished, is written to the transport and a transport flush completed after it,
    /// whatever other streams queue meanwhile.
    pub(crate) fn poll_flushed(&self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        self.shared
            .poll_op(cx, Waiter::Stream(Slot::Write(id)), |core| {
                match core.session.poll_flushed(id) {
                    // After the session failed, `Some` means the FIN had been handed over
                    // (what the driver still held was dropped with the transport).
                    Ok(Some(end)) if core.flushed_to(end) || core.failed() => Poll::Ready(Ok(())),
                    Ok(framed) => {
                        // A session closed by `Mux::close` still writes what it framed.
                        if let Some(e) = core.session.error() {
                            if framed.is_none() || core.failed() {
                                return Poll::Ready(Err(io_error(e.clone())));
                            }
                        }
                        if core.transport_closed() {
                            // Nothing more can be written; `end` was not reached.
                            return Poll::Ready(Err(io_error(smux_proto::Error::LocallyClosed)));
                        }
                        if let Some(end) = framed {
                            // Framed: only the driver's writing and flushing are left, and
                            // their end raises no session event.
                            core.wait_flushed_to(id, end);
                        }
                        Poll::Pending
                    }
                    Err(e) => Poll::Ready(Err(write_error(e))),
                }
            })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> MuxStream<T> {
    /// `poll_read` through a shared reference (the owned read half uses it too).
    pub(crate) fn poll_read_shared(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut at = 0;
        self.poll_read_with(cx, buf.len(), &mut |run| {
            buf[at..at + run.len()].copy_from_slice(run);
            at += run.len();
        })
    }

    /// `poll_read` for a destination that is not an initialised slice (tokio's `ReadBuf`,
    /// the spare capacity of a `BytesMut`): up to `max` received bytes are handed to `put`,
    /// in order, as one or more runs; the count is returned. `Ok(0)` with `max > 0` is the
    /// end of the stream. So a reader with a large buffer pays for the bytes it receives, not
    /// for zeroing the buffer on every call.
    pub fn poll_read_with(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        put: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        let id = self.id;
        self.shared
            .poll_op(cx, Waiter::Stream(Slot::Read(id)), |core| {
                match core.session.read_with(id, max, put) {
                    Ok(n) => Poll::Ready(Ok(n)),
                    Err(ReadError::Blocked) => Poll::Pending,
                    Err(e) => read_error(e),
                }
            })
    }

    /// `poll_write` through a shared reference (the owned write half uses it too).
    pub(crate) fn poll_write_shared(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let id = self.id;
        if let Some(n) = self.shared.try_write_direct(id, buf) {
            return Poll::Ready(Ok(n));
        }
        self.shared
            .poll_op(cx, Waiter::Stream(Slot::Write(id)), |core| {
                match core.session.write(id, buf) {
                    Ok(n) => Poll::Ready(Ok(n)),
                    Err(WriteError::Blocked) => Poll::Pending,
                    Err(e) => Poll::Ready(Err(write_error(e))),
                }
            })
    }

    /// `poll_close` through a shared reference: FIN after the data written, then flush.
    pub(crate) fn poll_close_shared(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        let finished = self
            .shared
            .with(|core| core.session.finish(id).map_err(write_error));
        finished?;
        self.poll_flushed(cx)
    }

    /// The owner of one direction (an owned half) is gone: what it left parked goes, and the
    /// read duty passes on if it held it.
    pub(crate) fn forget_waiter(&self, slot: Slot) {
        self.shared.wakers().cancel(Waiter::Stream(slot));
    }

    /// Sends FIN after the data written, without waiting (the owned write half's drop).
    pub(crate) fn finish_now(&self) {
        let id = self.id;
        // An error means the stream is already finished or the session gone: nothing to do.
        let _ = self.shared.with(|core| core.session.finish(id));
        self.shared.drive(None);
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for MuxStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_shared(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MuxStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_shared(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flushed(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_close_shared(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drop for MuxStream<T> {
    fn drop(&mut self) {
        let id = self.id;
        self.shared.with(|core| core.session.release_stream(id));
        self.shared.wakers().forget_stream(id);
        self.shared.drive(None);
    }
}
