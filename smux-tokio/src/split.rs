//! Owned read and write halves of a [`MuxStream`], for a reader and a writer in two tasks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use crate::transport::Transport;
use crate::{MuxStream, StreamId};

impl<T: AsyncRead + AsyncWrite + Unpin + Send> MuxStream<T> {
    /// Splits the stream into owned read and write halves for two tasks, with no lock between
    /// them (see [`smux_futures::MuxStream::into_split`]): `shutdown()` on the write half is
    /// the half-close, dropping the write half sends FIN, and dropping both drops the stream.
    ///
    /// ```no_run
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # async fn run(stream: smux_tokio::MuxStream<tokio::net::TcpStream>) -> std::io::Result<()> {
    /// let (mut reader, mut writer) = stream.into_split();
    /// let sender = tokio::spawn(async move {
    ///     writer.write_all(b"request").await?;
    ///     writer.shutdown().await // FIN; the reader goes on
    /// });
    /// let mut reply = Vec::new();
    /// reader.read_to_end(&mut reply).await?;
    /// sender.await??;
    /// # Ok(()) }
    /// ```
    pub fn into_split(self) -> (OwnedReadHalf<T>, OwnedWriteHalf<T>) {
        let (read, write) = self.inner.into_inner().into_split();
        (
            OwnedReadHalf {
                inner: read.compat(),
            },
            OwnedWriteHalf {
                inner: write.compat_write(),
            },
        )
    }
}

/// The read half of a [`MuxStream`], from [`MuxStream::into_split`].
pub struct OwnedReadHalf<T: AsyncRead + AsyncWrite + Unpin + Send> {
    inner: Compat<smux_futures::OwnedReadHalf<Transport<T>>>,
}

/// The write half of a [`MuxStream`], from [`MuxStream::into_split`]. Dropping it sends FIN.
pub struct OwnedWriteHalf<T: AsyncRead + AsyncWrite + Unpin + Send> {
    inner: Compat<smux_futures::OwnedWriteHalf<Transport<T>>>,
}

/// The halves given to [`OwnedReadHalf::reunite`] came from different streams; they are
/// handed back.
pub struct ReuniteError<T: AsyncRead + AsyncWrite + Unpin + Send>(
    pub OwnedReadHalf<T>,
    pub OwnedWriteHalf<T>,
);

impl<T: AsyncRead + AsyncWrite + Unpin + Send> std::fmt::Display for ReuniteError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tried to reunite halves of different streams ({} and {})",
            self.0.id(),
            self.1.id()
        )
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> std::error::Error for ReuniteError<T> {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> std::fmt::Debug for ReuniteError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReuniteError")
            .field(&self.0)
            .field(&self.1)
            .finish()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> std::fmt::Debug for OwnedReadHalf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.get_ref().fmt(f)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> std::fmt::Debug for OwnedWriteHalf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.get_ref().fmt(f)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> OwnedReadHalf<T> {
    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.inner.get_ref().id()
    }

    /// Reads the next chunk of at most `max` bytes without copying; `None` at the end.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.inner.get_mut().read_chunk(max).await
    }

    /// Puts the stream back together, or hands the halves back if they belong to different
    /// streams.
    pub fn reunite(self, write: OwnedWriteHalf<T>) -> Result<MuxStream<T>, ReuniteError<T>> {
        match self.inner.into_inner().reunite(write.inner.into_inner()) {
            Ok(stream) => Ok(MuxStream::new(stream)),
            Err(smux_futures::ReuniteError(read, write)) => Err(ReuniteError(
                OwnedReadHalf {
                    inner: read.compat(),
                },
                OwnedWriteHalf {
                    inner: write.compat_write(),
                },
            )),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> OwnedWriteHalf<T> {
    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.inner.get_ref().id()
    }

    /// Writes all of `data` without copying it.
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        self.inner.get_mut().write_chunk(data).await
    }
}

delegate_async_read!(OwnedReadHalf);
delegate_async_write!(OwnedWriteHalf);
