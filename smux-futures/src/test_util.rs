//! In-memory transports for tests and examples.
//!
//! [`duplex`] returns two connected ends; what one writes the other reads. Each direction
//! holds at most a fixed number of bytes (writes return `Pending` beyond it), and either end
//! can be told to answer `Pending` to every read and write until released, to simulate a
//! stalled network. Dropping an end closes it, as dropping a socket does.
//!
//! [`slow_link`] carries a fixed number of bytes per tick of a virtual clock each way, with
//! bounded buffers at both ends: a slow path, where output queues up as it does on a real
//! link. [`PendingFlush`] wraps a transport so that a flush after writes is `Pending` once,
//! or until a [`FlushGate`] is opened, as a TLS stream's can be.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use futures::io::{AsyncRead, AsyncWrite};

mod slow;
pub use slow::{slow_link, FlushGate, LinkClock, LinkEnd, PendingCount, PendingFlush};

/// Bytes each direction buffers by default.
pub const DEFAULT_CAPACITY: usize = 256 * 1024;

#[derive(Debug, Default)]
struct Pipe {
    buf: BytesMut,
    capacity: usize,
    /// The writer closed its end.
    closed: bool,
    /// Artificial stall: every operation returns Pending while set.
    stalled: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

type Shared = Arc<Mutex<Pipe>>;

fn lock(p: &Shared) -> std::sync::MutexGuard<'_, Pipe> {
    crate::sync::lock(p)
}

/// One end of an in-memory duplex connection.
#[derive(Debug)]
pub struct DuplexEnd {
    incoming: Shared,
    outgoing: Shared,
}

/// Two connected ends, each direction buffering [`DEFAULT_CAPACITY`] bytes.
pub fn duplex() -> (DuplexEnd, DuplexEnd) {
    duplex_with_capacity(DEFAULT_CAPACITY)
}

/// Two connected ends, each direction buffering `capacity` bytes.
pub fn duplex_with_capacity(capacity: usize) -> (DuplexEnd, DuplexEnd) {
    let a: Shared = Arc::new(Mutex::new(Pipe {
        capacity,
        ..Pipe::default()
    }));
    let b: Shared = Arc::new(Mutex::new(Pipe {
        capacity,
        ..Pipe::default()
    }));
    (
        DuplexEnd {
            incoming: a.clone(),
            outgoing: b.clone(),
        },
        DuplexEnd {
            incoming: b,
            outgoing: a,
        },
    )
}

impl DuplexEnd {
    /// While `stalled`, this end's reads and writes return `Pending`; releasing wakes them.
    pub fn set_stalled(&self, stalled: bool) {
        for pipe in [&self.incoming, &self.outgoing] {
            let wakers = {
                let mut p = lock(pipe);
                p.stalled = stalled;
                // Stalling keeps the registered wakers: tasks that waited before the stall
                // must still be woken after it.
                if stalled {
                    continue;
                }
                [p.reader.take(), p.writer.take()]
            };
            wakers.into_iter().flatten().for_each(Waker::wake);
        }
    }

    /// Bytes written by this end and not yet read by the other.
    pub fn unread_outgoing(&self) -> usize {
        lock(&self.outgoing).buf.len()
    }

    /// Closes this end abruptly: the peer reads end of file, writes fail.
    pub fn shutdown(&self) {
        for pipe in [&self.incoming, &self.outgoing] {
            let wakers = {
                let mut p = lock(pipe);
                p.closed = true;
                [p.reader.take(), p.writer.take()]
            };
            wakers.into_iter().flatten().for_each(Waker::wake);
        }
    }
}

impl Drop for DuplexEnd {
    /// Like a socket, a dropped end is closed: the peer reads what was buffered, then end of
    /// file; its writes fail.
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl AsyncRead for DuplexEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let (n, writer) = {
            let mut p = lock(&self.incoming);
            if p.stalled || (p.buf.is_empty() && !p.closed) {
                p.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = p.buf.len().min(buf.len());
            buf[..n].copy_from_slice(&p.buf[..n]);
            p.buf.advance(n);
            (n, p.writer.take())
        };
        if let Some(w) = writer {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for DuplexEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let (n, reader) = {
            let mut p = lock(&self.outgoing);
            if p.closed {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let room = p.capacity - p.buf.len();
            if p.stalled || room == 0 {
                p.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = room.min(buf.len());
            p.buf.extend_from_slice(&buf[..n]);
            (n, p.reader.take())
        };
        if let Some(w) = reader {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let reader = {
            let mut p = lock(&self.outgoing);
            p.closed = true;
            p.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}
