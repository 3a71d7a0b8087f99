//! Owned read and write halves of a stream, for a reader and a writer in two tasks.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::io::{AsyncRead, AsyncWrite};
use smux_proto::StreamId;

use crate::stream::MuxStream;
use crate::wakers::Slot;

impl<T: AsyncRead + AsyncWrite + Unpin> MuxStream<T> {
    /// Splits the stream into a read half and a write half that can move to different tasks
    /// (one reading while the other writes, as a proxy does), without a lock between them:
    /// the two directions of a stream park and wake separately.
    ///
    /// - The write half's `close` is the half-close (FIN after the data written); dropping the
    ///   write half sends FIN too, without waiting for it to be flushed.
    /// - Dropping the read half alone changes nothing: data that arrives stays buffered for
    ///   the stream (and, in version 2, holds the window) until the write half is dropped too.
    /// - Once both halves are dropped, the stream is dropped (see [`MuxStream`]).
    /// - [`OwnedReadHalf::reunite`] puts the halves back together.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use futures::io::{AsyncReadExt, AsyncWriteExt};
    /// use smux_futures::{Mux, MuxConfig, NoTimer};
    ///
    /// let (a, b) = smux_futures::test_util::duplex();
    /// let client = Mux::client(a, MuxConfig::default(), NoTimer).unwrap();
    /// let server = Mux::server(b, MuxConfig::default(), NoTimer).unwrap();
    ///
    /// let (mut reader, mut writer) = client.connect().await?.into_split();
    /// writer.write_all(b"ping").await?;
    /// writer.close().await?; // FIN: the server reads to the end
    ///
    /// let mut s = server.accept().await?;
    /// let mut got = Vec::new();
    /// s.read_to_end(&mut got).await?;
    /// s.write_all(&got).await?;
    /// drop(s); // FIN after the echo
    ///
    /// let mut echo = Vec::new();
    /// reader.read_to_end(&mut echo).await?;
    /// assert_eq!(echo, b"ping");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn into_split(self) -> (OwnedReadHalf<T>, OwnedWriteHalf<T>) {
        let stream = Arc::new(self);
        (
            OwnedReadHalf {
                stream: stream.clone(),
            },
            OwnedWriteHalf {
                stream: Some(stream),
            },
        )
    }
}

/// The read half of a [`MuxStream`], from [`MuxStream::into_split`].
pub struct OwnedReadHalf<T: AsyncRead + AsyncWrite + Unpin> {
    stream: Arc<MuxStream<T>>,
}

/// The write half of a [`MuxStream`], from [`MuxStream::into_split`]. Dropping it sends FIN.
pub struct OwnedWriteHalf<T: AsyncRead + AsyncWrite + Unpin> {
    /// `None` only while [`OwnedReadHalf::reunite`] takes it apart.
    stream: Option<Arc<MuxStream<T>>>,
}

/// The halves given to [`OwnedReadHalf::reunite`] came from different streams; they are
/// handed back.
pub struct ReuniteError<T: AsyncRead + AsyncWrite + Unpin>(
    pub OwnedReadHalf<T>,
    pub OwnedWriteHalf<T>,
);

impl<T: AsyncRead + AsyncWrite + Unpin> fmt::Debug for ReuniteError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReuniteError")
            .field(&self.0)
            .field(&self.1)
            .finish()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> fmt::Display for ReuniteError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tried to reunite halves of different streams ({} and {})",
            self.0.id(),
            self.1.id()
        )
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> std::error::Error for ReuniteError<T> {}

impl<T: AsyncRead + AsyncWrite + Unpin> OwnedReadHalf<T> {
    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.stream.id()
    }

    /// Reads the next chunk of at most `max` bytes without copying it; `None` at the end of
    /// the stream.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.stream.read_chunk_shared(max).await
    }

    /// [`MuxStream::poll_read_with`] for the read half.
    pub fn poll_read_with(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        put: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_read_with(cx, max, put)
    }

    /// Puts the stream back together from its two halves, or hands them back if they belong
    /// to different streams.
    pub fn reunite(self, mut write: OwnedWriteHalf<T>) -> Result<MuxStream<T>, ReuniteError<T>> {
        if !write
            .stream
            .as_ref()
            .is_some_and(|w| Arc::ptr_eq(w, &self.stream))
        {
            return Err(ReuniteError(self, write));
        }
        // The write half goes without its drop (no FIN); the read half's drop only clears
        // what it left parked; the reference taken here is then the only one.
        drop(write.stream.take());
        let stream = self.stream.clone();
        drop(self);
        Ok(Arc::into_inner(stream).expect("both halves were given"))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> OwnedWriteHalf<T> {
    fn stream(&self) -> &MuxStream<T> {
        self.stream.as_ref().expect("a write half has its stream")
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.stream().id()
    }

    /// Writes all of `data` without copying it (the session keeps slices of it).
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        self.stream().write_chunk_shared(data).await
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drop for OwnedWriteHalf<T> {
    fn drop(&mut self) {
        if let Some(stream) = &self.stream {
            stream.forget_waiter(Slot::Write(stream.id()));
            stream.finish_now();
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drop for OwnedReadHalf<T> {
    /// A reader parked on this half is gone: the read duty must not stay with it.
    fn drop(&mut self) {
        self.stream.forget_waiter(Slot::Read(self.stream.id()));
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> fmt::Debug for OwnedReadHalf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedReadHalf")
            .field("id", &self.id())
            .finish()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> fmt::Debug for OwnedWriteHalf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.stream.as_ref().map(|s| s.id());
        f.debug_struct("OwnedWriteHalf").field("id", &id).finish()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for OwnedReadHalf<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_read_shared(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for OwnedWriteHalf<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_shared(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flushed(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_close_shared(cx)
    }
}
