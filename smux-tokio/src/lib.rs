#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::compat::{Compat, FuturesAsyncWriteCompatExt};

/// Tokio's `AsyncRead` for a type whose `inner` field (a `Compat`) wraps a reader with
/// `poll_read_with`: received bytes are copied into the `ReadBuf`'s unfilled part as they
/// are, initialised or not (`tokio_util`'s compat would zero all of it on every call first,
/// which for a 64 KiB buffer costs more than the message).
macro_rules! delegate_async_read {
    ($ty:ident) => {
        impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncRead for $ty<T> {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let max = buf.remaining();
                self.inner
                    .get_ref()
                    .poll_read_with(cx, max, &mut |run| buf.put_slice(run))
                    .map_ok(|_| ())
            }
        }
    };
}

/// Tokio's `AsyncWrite` for a type whose `inner` field (a `Compat`) does the work.
macro_rules! delegate_async_write {
    ($ty:ident) => {
        impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncWrite for $ty<T> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

mod split;
mod transport;
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReuniteError};
use transport::Transport;

#[cfg(unix)]
pub use smux_futures::{limit_unsent, RECOMMENDED_UNSENT_LIMIT};
pub use smux_futures::{
    proto, InputPause, MuxConfig, SessionSnapshot, Side, Stats, StreamId, StreamSnapshot, Version,
};
use smux_proto::ConfigError;

/// The clock and timer of the tokio runtime (honours paused time in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

impl smux_futures::Timer for TokioTimer {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Option<smux_futures::Sleep> {
        tokio::runtime::Handle::try_current().ok()?;
        // Unconstrained: a mux polls its sleeps from wherever it is (inside any task's poll,
        // inside a waker), not as a task of its own, so tokio's cooperative budget, which
        // would make a poll wake at once instead of registering the deadline, does not apply.
        Some(Box::pin(tokio::task::unconstrained(
            tokio::time::sleep_until(deadline.into()),
        )))
    }
}

type Inner<T> = smux_futures::Mux<Transport<T>>;

/// A multiplexed connection over a tokio transport. Cheap to clone; see
/// [`smux_futures::Mux`] for the behaviour.
pub struct Mux<T: AsyncRead + AsyncWrite + Unpin + Send> {
    inner: Inner<T>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Clone for Mux<T> {
    fn clone(&self) -> Self {
        Mux {
            inner: self.inner.clone(),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> std::fmt::Debug for Mux<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Mux<T> {
    /// The client end of a connection (opens odd stream ids).
    pub fn client(io: T, config: MuxConfig) -> Result<Self, ConfigError> {
        Self::new(io, Side::Client, config)
    }

    /// The server end of a connection (opens even stream ids).
    pub fn server(io: T, config: MuxConfig) -> Result<Self, ConfigError> {
        Self::new(io, Side::Server, config)
    }

    /// A mux for `side` of the connection.
    pub fn new(io: T, side: Side, config: MuxConfig) -> Result<Self, ConfigError> {
        let inner = smux_futures::Mux::new(Transport::new(io), side, config, TokioTimer)?;
        Ok(Mux { inner })
    }

    /// Opens a stream.
    pub async fn connect(&self) -> io::Result<MuxStream<T>> {
        self.inner.connect().await.map(MuxStream::new)
    }

    /// Waits for the next stream the peer opens.
    pub async fn accept(&self) -> io::Result<MuxStream<T>> {
        self.inner.accept().await.map(MuxStream::new)
    }

    /// Polls for the next stream the peer opens; only the waker of the latest call is kept
    /// (see [`smux_futures::Mux::poll_accept`]).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<MuxStream<T>>> {
        self.inner.poll_accept(cx).map_ok(MuxStream::new)
    }

    /// The streams the peer opens, as a `futures::Stream` that ends when the session ends
    /// cleanly (see [`smux_futures::Incoming`]).
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// use smux_tokio::{Mux, MuxConfig};
    ///
    /// # async fn run(tcp: tokio::net::TcpStream) -> std::io::Result<()> {
    /// let mux = Mux::server(tcp, MuxConfig::default()).unwrap();
    /// let mut incoming = mux.incoming();
    /// while let Some(stream) = incoming.next().await {
    ///     let mut stream = stream?;
    ///     tokio::spawn(async move {
    ///         let (mut reader, mut writer) = tokio::io::split(&mut stream);
    ///         let _ = tokio::io::copy(&mut reader, &mut writer).await;
    ///     });
    /// }
    /// # Ok(()) }
    /// ```
    pub fn incoming(&self) -> Incoming<T> {
        Incoming {
            inner: self.inner.incoming(),
        }
    }

    /// Closes gracefully: streams are finished after their data, then the transport closes.
    pub async fn close(&self) -> io::Result<()> {
        self.inner.close().await
    }

    /// Drains: refuses new streams from the peer, lets the open ones finish, then closes;
    /// after `timeout` it closes anyway (see [`smux_futures::Mux::drain`]).
    pub async fn drain(&self, timeout: std::time::Duration) -> io::Result<()> {
        self.inner.drain(timeout).await
    }

    /// Drives the connection until it ends (optional: any poll drives it too).
    pub async fn drive(&self) -> io::Result<()> {
        self.inner.drive().await
    }

    /// Streams open on this connection.
    pub fn stream_count(&self) -> usize {
        self.inner.stream_count()
    }

    /// Traffic counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The state of the session and of every stream, for debugging a stall (see
    /// [`smux_futures::Mux::snapshot`]).
    pub fn snapshot(&self) -> SessionSnapshot {
        self.inner.snapshot()
    }
}

/// One stream of a [`Mux`], with tokio's `AsyncRead + AsyncWrite`. `shutdown()` is a
/// half-close (FIN after the data written); dropping the stream sends FIN too.
#[derive(Debug)]
pub struct MuxStream<T: AsyncRead + AsyncWrite + Unpin + Send> {
    inner: Compat<smux_futures::MuxStream<Transport<T>>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> MuxStream<T> {
    fn new(stream: smux_futures::MuxStream<Transport<T>>) -> Self {
        MuxStream {
            inner: stream.compat_write(),
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.inner.get_ref().id()
    }

    /// Reads the next chunk of at most `max` bytes without copying; `None` at the end.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.inner.get_mut().read_chunk(max).await
    }

    /// Writes all of `data` without copying it.
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        self.inner.get_mut().write_chunk(data).await
    }
}

/// The streams the peer opens, from [`Mux::incoming`]: a `futures::Stream` of
/// `io::Result<MuxStream<T>>` that ends when the session ends cleanly.
pub struct Incoming<T: AsyncRead + AsyncWrite + Unpin + Send> {
    inner: smux_futures::Incoming<Transport<T>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> std::fmt::Debug for Incoming<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> futures::Stream for Incoming<T> {
    type Item = io::Result<MuxStream<T>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map(MuxStream::new)))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> futures::stream::FusedStream for Incoming<T> {
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

delegate_async_read!(MuxStream);
delegate_async_write!(MuxStream);

/// The repository README's Rust examples, compiled as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
