//! `Mux<T>`: one multiplexed connection, shared by every handle and stream.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};
use smux_proto::{Config, ConfigError, Error, OpenError, Session, SessionSnapshot, Side, Stats};

use crate::driver::Driver;
use crate::incoming::Incoming;
use crate::stream::MuxStream;
use crate::timer::Timer;
use crate::wakers::{Waiter, POLL_ACCEPT};

/// The session error as an `io::Error`, with the smux error as its source.
pub(crate) fn io_error(error: Error) -> io::Error {
    io::Error::new(error.io_kind(), error)
}

/// A multiplexed connection over the transport `T`.
///
/// Cheap to clone: every clone is a handle to the same connection, so many tasks can open and
/// accept streams at once. The mux spawns nothing: every poll of the mux or of one of its
/// streams (read, write, flush, close, accept, connect) drives the connection. A stream that is
/// the only thing being polled still makes progress.
///
/// Keepalive runs while anything polls; when every task waits, the timer (given by the runtime
/// adapter) wakes them at the next deadline. If nothing polls at all, nothing happens: no NOP
/// goes out and a dead peer is not noticed. Keep one task in [`Mux::drive`] (or in an accept
/// loop) when that matters.
///
/// ```
/// # futures::executor::block_on(async {
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
/// use smux_futures::{Mux, MuxConfig, NoTimer};
///
/// // An in-memory transport; `NoTimer`: keepalive only while polled, fine for a test.
/// let (a, b) = smux_futures::test_util::duplex();
/// let client = Mux::client(a, MuxConfig::default(), NoTimer).unwrap();
/// let server = Mux::server(b, MuxConfig::default(), NoTimer).unwrap();
///
/// let mut s = client.connect().await?;
/// s.write_all(b"hello").await?;
/// s.close().await?; // half-close: FIN after "hello"; reading goes on
///
/// let mut t = server.accept().await?;
/// let mut got = Vec::new();
/// t.read_to_end(&mut got).await?;
/// assert_eq!(got, b"hello");
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub struct Mux<T: AsyncRead + AsyncWrite + Unpin> {
    shared: Arc<Driver<T>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Clone for Mux<T> {
    fn clone(&self) -> Self {
        Mux {
            shared: self.shared.clone(),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> std::fmt::Debug for Mux<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux").finish_non_exhaustive()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Mux<T> {
    /// The client end of a connection (opens odd stream ids), with the clock and timer of a
    /// runtime (see [`Timer`]).
    pub fn client(io: T, config: Config, timer: impl Timer) -> Result<Self, ConfigError> {
        Self::new(io, Side::Client, config, timer)
    }

    /// The server end of a connection (opens even stream ids), with the clock and timer of a
    /// runtime (see [`Timer`]).
    pub fn server(io: T, config: Config, timer: impl Timer) -> Result<Self, ConfigError> {
        Self::new(io, Side::Server, config, timer)
    }

    /// A mux for `side` of the connection, with the clock and timer of a runtime: the one of
    /// a runtime adapter, [`AsyncIoTimer`](crate::AsyncIoTimer) (feature `async-io`, any
    /// executor), or your own. [`NoTimer`](crate::NoTimer) is the explicit choice of no
    /// timer: keepalive then runs only while something polls, and
    /// [`Config::early_reply_hold`] is turned off.
    pub fn new(io: T, side: Side, config: Config, timer: impl Timer) -> Result<Self, ConfigError> {
        let config = if timer.can_sleep() {
            config
        } else {
            config.with_early_reply_hold(std::time::Duration::ZERO)
        };
        let session = Session::new(side, config, timer.now())?;
        Ok(Mux {
            shared: Arc::new(Driver::new(session, io, Box::new(timer))),
        })
    }

    /// Opens a stream. The SYN goes out with the first data (or the next poll).
    pub async fn connect(&self) -> io::Result<MuxStream<T>> {
        let id = self.shared.with(|core| {
            core.session.open_stream().map_err(|e| match e {
                OpenError::SessionClosed(e) => io_error(e),
                other => io::Error::other(other),
            })
        })?;
        self.shared.drive(None);
        Ok(MuxStream::new(self.shared.clone(), id))
    }

    /// Waits for the next stream the peer opens. Any number of tasks can wait at once; each
    /// is woken when a stream arrives.
    pub async fn accept(&self) -> io::Result<MuxStream<T>> {
        let registration = self.shared.wakers().register();
        poll_fn(|cx| self.accept_as(cx, registration.waiter())).await
    }

    /// The streams the peer opens, as a `futures::Stream` that ends when the session ends
    /// cleanly (see [`Incoming`]).
    pub fn incoming(&self) -> Incoming<T> {
        Incoming::new(self.clone())
    }

    pub(crate) fn driver(&self) -> &Driver<T> {
        &self.shared
    }

    /// Polls for the next stream the peer opens.
    ///
    /// Only the waker of the most recent call is woken when a stream arrives (like the
    /// `poll_*` methods of tokio's listeners): a task polling this replaces the waker an
    /// earlier call left, whatever task it came from, so repeated polls cost no memory. Tasks
    /// that accept concurrently should each use [`accept`](Self::accept).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<MuxStream<T>>> {
        self.accept_as(cx, Waiter::Connection(POLL_ACCEPT))
    }

    pub(crate) fn accept_as(
        &self,
        cx: &Context<'_>,
        waiter: Waiter,
    ) -> Poll<io::Result<MuxStream<T>>> {
        let polled = self.shared.poll_op(cx, waiter, |core| {
            if let Some(id) = core.session.accept_stream() {
                return Poll::Ready(Ok(id));
            }
            if let Some(e) = core.session.error() {
                return Poll::Ready(Err(io_error(e.clone())));
            }
            if core.session.is_closing() || core.session.is_draining() {
                return Poll::Ready(Err(io_error(Error::LocallyClosed)));
            }
            Poll::Pending
        });
        polled.map_ok(|id| MuxStream::new(self.shared.clone(), id))
    }

    /// Closes the connection gracefully: no new streams; every stream is finished after the
    /// data already written; once all of it is handed to the transport, the transport is
    /// closed. Streams can still read what had arrived. Waits as long as the peer takes to
    /// accept the data (in version 2, to grant window); wrap it in a timeout if needed.
    pub async fn close(&self) -> io::Result<()> {
        self.shared.with(|core| core.session.close());
        self.drive().await
    }

    /// Drains the connection, the graceful shutdown of a server that stops taking work:
    /// streams the peer opens from now on are refused, the open ones go on until the
    /// application is done with them, and then the connection closes as with
    /// [`close`](Self::close). After `timeout` it closes anyway, finishing the streams left
    /// after the data written to them. Returns when the connection has ended, like
    /// [`drive`](Self::drive).
    ///
    /// What the peer sees: a stream it opens during the drain gets a FIN at once (smux has no
    /// reset), so its reads end right away and what it writes is discarded; Go's smux reports
    /// `io.EOF` on such a stream. (Go can miss a FIN that comes this quickly; it is sent once
    /// more, see [`Session::drain`](smux_proto::Session::drain).) `connect` on this side
    /// fails; `accept` (and [`Incoming`]) still give the streams that arrived before the
    /// drain, and then end.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::time::Duration;
    /// use futures::io::{AsyncReadExt, AsyncWriteExt};
    /// use smux_futures::{Mux, MuxConfig, NoTimer};
    ///
    /// let (a, b) = smux_futures::test_util::duplex();
    /// let client = Mux::client(a, MuxConfig::default(), NoTimer).unwrap();
    /// let server = Mux::server(b, MuxConfig::default(), NoTimer).unwrap();
    /// let mut s = client.connect().await?;
    /// s.write_all(b"work").await?;
    /// let mut t = server.accept().await?;
    ///
    /// let drain = server.drain(Duration::from_secs(30));
    /// let finish = async move {
    ///     let mut work = [0u8; 4];
    ///     t.read_exact(&mut work).await?;
    ///     t.write_all(b"done").await?;
    ///     drop(t); // the last stream: the drain closes the connection
    ///     let mut reply = Vec::new();
    ///     s.read_to_end(&mut reply).await?;
    ///     assert_eq!(reply, b"done");
    ///     Ok::<_, std::io::Error>(())
    /// };
    /// let (drained, finished) = futures::join!(drain, finish);
    /// drained?;
    /// finished?;
    /// assert!(server.is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn drain(&self, timeout: std::time::Duration) -> io::Result<()> {
        self.shared.with(|core| {
            let deadline = core.now() + timeout;
            core.session.drain(Some(deadline));
        });
        self.drive().await
    }

    /// Drives the connection until it ends: run it in a task of its own to keep keepalive and
    /// reading going while nothing else polls. Returns `Ok(())` when the connection was closed
    /// by this side, and the error that ended it otherwise.
    pub async fn drive(&self) -> io::Result<()> {
        let registration = self.shared.wakers().register_driver();
        poll_fn(|cx| {
            self.shared.poll_op(cx, registration.waiter(), |core| {
                if !core.session.is_closed() || !core.transport_closed() {
                    return Poll::Pending;
                }
                Poll::Ready(match core.session.error() {
                    Some(Error::LocallyClosed) | None => Ok(()),
                    Some(e) => Err(io_error(e.clone())),
                })
            })
        })
        .await
    }

    /// Streams open on this connection (including ones waiting to be accepted and dropped ones
    /// still sending).
    pub fn stream_count(&self) -> usize {
        self.shared.with(|core| core.session.stream_count())
    }

    /// Traffic counters.
    pub fn stats(&self) -> Stats {
        self.shared.with(|core| core.session.stats())
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.with(|core| core.session.is_closed())
    }

    /// The state of the session and of every stream (buffered bytes, windows granted and
    /// available, flags, and whether input is paused and why), for debugging a stall. Walks
    /// every stream; it takes the session lock briefly and never drives the connection.
    pub fn snapshot(&self) -> SessionSnapshot {
        self.shared.with(|core| core.session.snapshot())
    }

    /// Tasks parked on this connection (stream slots and connection-wide waiters).
    #[cfg(test)]
    pub(crate) fn parked_count(&self) -> usize {
        self.shared.wakers().parked_count()
    }

    /// Acquisitions of the core lock so far (tests).
    #[cfg(test)]
    pub(crate) fn core_lock_count(&self) -> usize {
        self.shared.core_lock_count()
    }
}
