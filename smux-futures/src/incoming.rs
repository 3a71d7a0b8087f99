//! `Incoming<T>`: the streams the peer opens, as a `futures::Stream`.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};
use futures::stream::{FusedStream, Stream};
use smux_proto::Error;

use crate::mux::Mux;
use crate::stream::MuxStream;
use crate::wakers::Waiter;

/// The streams the peer opens, in order, from [`Mux::incoming`]: each item is what
/// [`Mux::accept`] would return.
///
/// The stream ends (`None`) when the session ends cleanly: closed by this side
/// ([`Mux::close`], or a drain that finished) or by the peer at a frame boundary. Any other
/// end (keepalive timeout, protocol violation, transport error, a connection cut inside a
/// frame) is given once as an error, and then the stream ends.
///
/// ```
/// # futures::executor::block_on(async {
/// use futures::io::AsyncWriteExt;
/// use futures::StreamExt;
/// use smux_futures::{Mux, MuxConfig, NoTimer};
///
/// let (a, b) = smux_futures::test_util::duplex();
/// let client = Mux::client(a, MuxConfig::default(), NoTimer).unwrap();
/// let server = Mux::server(b, MuxConfig::default(), NoTimer).unwrap();
/// for _ in 0..3 {
///     client.connect().await?.write_all(b"hi").await?;
/// }
/// let mut incoming = server.incoming();
/// let mut ids = Vec::new();
/// while let Some(stream) = incoming.next().await {
///     ids.push(stream?.id().as_u32());
///     if ids.len() == 3 {
///         client.close().await?; // the peer closes: the stream of streams ends
///     }
/// }
/// assert_eq!(ids, [3, 5, 7]); // a client opens odd ids from 3, as Go does
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub struct Incoming<T: AsyncRead + AsyncWrite + Unpin + Send> {
    mux: Mux<T>,
    /// Its connection-wide waiter key (unregistered on drop).
    key: u64,
    ended: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Incoming<T> {
    pub(crate) fn new(mux: Mux<T>) -> Self {
        let key = mux.driver().wakers().register_key();
        Incoming {
            mux,
            key,
            ended: false,
        }
    }
}

/// Whether the session error behind an accept error is a clean end.
fn is_clean_end(e: &io::Error) -> bool {
    matches!(
        e.get_ref().and_then(|e| e.downcast_ref::<Error>()),
        Some(Error::LocallyClosed | Error::PeerClosed)
    )
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for Incoming<T> {
    type Item = io::Result<MuxStream<T>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.mux.accept_as(cx, Waiter::Connection(self.key)) {
            Poll::Ready(Ok(stream)) => Poll::Ready(Some(Ok(stream))),
            Poll::Ready(Err(e)) => {
                self.ended = true;
                if is_clean_end(&e) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(e)))
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> FusedStream for Incoming<T> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Drop for Incoming<T> {
    fn drop(&mut self) {
        self.mux.driver().wakers().unregister(self.key);
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> fmt::Debug for Incoming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
