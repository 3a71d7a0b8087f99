//! Slow transports, for tests that must see what loopback hides: a link with a byte rate on
//! a virtual clock, and a transport whose flush is not done at once.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use futures::io::{AsyncRead, AsyncWrite};

#[derive(Debug, Default)]
struct Direction {
    /// Written by the sender, not delivered yet (the sender's socket buffer and the wire).
    in_flight: BytesMut,
    /// Delivered, not read yet (the receiver's socket buffer).
    delivered: BytesMut,
    /// Most bytes `in_flight` holds; writes return `Pending` beyond it.
    send_buffer: usize,
    /// Most bytes `delivered` holds; delivery waits beyond it.
    receive_buffer: usize,
    /// Bytes moved from `in_flight` to `delivered` per tick.
    bytes_per_tick: usize,
    closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

type Shared = Arc<Mutex<Direction>>;

fn lock(d: &Shared) -> std::sync::MutexGuard<'_, Direction> {
    crate::sync::lock(d)
}

impl Direction {
    /// Delivers one tick's worth; returns the wakers to wake.
    fn tick(&mut self) -> [Option<Waker>; 2] {
        let room = self.receive_buffer.saturating_sub(self.delivered.len());
        let n = self.bytes_per_tick.min(self.in_flight.len()).min(room);
        if n == 0 {
            return [None, None];
        }
        let moved = self.in_flight.split_to(n);
        self.delivered.extend_from_slice(&moved);
        [self.reader.take(), self.writer.take()]
    }
}

/// The clock of a [`slow_link`]: nothing crosses the link until it ticks.
#[derive(Debug, Clone)]
pub struct LinkClock {
    directions: [Shared; 2],
    ticks: Arc<Mutex<u64>>,
}

impl LinkClock {
    /// One tick: each direction delivers up to its rate, as far as the receiver's buffer
    /// takes it, and wakes the tasks waiting on either end.
    pub fn tick(&self) {
        for d in &self.directions {
            let wakers = lock(d).tick();
            wakers.into_iter().flatten().for_each(Waker::wake);
        }
        *crate::sync::lock(&self.ticks) += 1;
    }

    /// Ticks so far.
    pub fn now(&self) -> u64 {
        *crate::sync::lock(&self.ticks)
    }

    /// Bytes written and not yet read, both directions.
    pub fn queued(&self) -> usize {
        self.directions
            .iter()
            .map(|d| {
                let d = lock(d);
                d.in_flight.len() + d.delivered.len()
            })
            .sum()
    }
}

/// One end of a [`slow_link`].
#[derive(Debug)]
pub struct LinkEnd {
    incoming: Shared,
    outgoing: Shared,
}

/// A link that carries `bytes_per_tick` bytes each way per tick of its [`LinkClock`]. Each
/// end's writes take up to `send_buffer` bytes not yet delivered (then return `Pending`, as
/// a full socket does), and each end holds up to `send_buffer` delivered bytes it has not
/// read. Dropping an end closes it: the peer reads what was delivered, then end of file.
///
/// Nothing moves between ticks, so a test that runs its tasks until they stall, then ticks,
/// is deterministic: how long an exchange took is a count of ticks.
pub fn slow_link(bytes_per_tick: usize, send_buffer: usize) -> (LinkEnd, LinkEnd, LinkClock) {
    let direction = || {
        Arc::new(Mutex::new(Direction {
            send_buffer,
            receive_buffer: send_buffer,
            bytes_per_tick,
            ..Direction::default()
        }))
    };
    let (a, b) = (direction(), direction());
    (
        LinkEnd {
            incoming: a.clone(),
            outgoing: b.clone(),
        },
        LinkEnd {
            incoming: b.clone(),
            outgoing: a.clone(),
        },
        LinkClock {
            directions: [a, b],
            ticks: Arc::default(),
        },
    )
}

impl LinkEnd {
    fn close(&self) {
        for d in [&self.incoming, &self.outgoing] {
            let wakers = {
                let mut d = lock(d);
                d.closed = true;
                [d.reader.take(), d.writer.take()]
            };
            wakers.into_iter().flatten().for_each(Waker::wake);
        }
    }
}

impl Drop for LinkEnd {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsyncRead for LinkEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut d = lock(&self.incoming);
        if d.delivered.is_empty() {
            if d.closed && d.in_flight.is_empty() {
                return Poll::Ready(Ok(0));
            }
            d.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = d.delivered.len().min(buf.len());
        buf[..n].copy_from_slice(&d.delivered[..n]);
        d.delivered.advance(n);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for LinkEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut d = lock(&self.outgoing);
        if d.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = d.send_buffer.saturating_sub(d.in_flight.len());
        if room == 0 {
            d.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        d.in_flight.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let reader = {
            let mut d = lock(&self.outgoing);
            d.closed = true;
            d.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

/// A transport whose flush, after bytes were written, is `Pending` once (its task woken at
/// once) and done on the next call: what a TLS stream, a `BufWriter` or a compressing
/// transport does when it has more to push.
#[derive(Debug)]
pub struct PendingFlush<T> {
    inner: T,
    /// Bytes were written since the last flush that returned `Pending`.
    owes_pending: bool,
    /// Flushes that returned `Pending`.
    pendings: u64,
}

impl<T> PendingFlush<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        PendingFlush {
            inner,
            owes_pending: false,
            pendings: 0,
        }
    }

    /// How many flushes returned `Pending` so far.
    pub fn pendings(&self) -> u64 {
        self.pendings
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PendingFlush<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PendingFlush<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.owes_pending = true;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if std::mem::take(&mut self.owes_pending) {
            self.pendings += 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
