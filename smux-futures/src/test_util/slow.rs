//! Slow transports, for tests that must see what loopback hides: a link with a byte rate on
//! a virtual clock, and a transport whose flush is not done at once.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A transport whose flush, after bytes were written, is not done at once: what a TLS
/// stream, a `BufWriter` or a compressing transport does when it has more to push.
///
/// - [`PendingFlush::new`]: the flush is `Pending` once, its task woken at once, and done on
///   the next call.
/// - [`PendingFlush::gated`]: the flush is `Pending` (as often as it is polled) until the
///   [`FlushGate`] is opened, which wakes the task that polled it last: the record the
///   transport holds goes out when the socket under it takes it, which can be much later,
///   with no other readiness meanwhile. A write closes the gate again.
#[derive(Debug)]
pub struct PendingFlush<T> {
    inner: T,
    /// Bytes were written since the last flush that was done (or, without a gate, that
    /// returned `Pending`).
    owes_pending: bool,
    /// Flushes that returned `Pending`.
    pendings: PendingCount,
    gate: Option<FlushGate>,
}

/// How many flushes of a [`PendingFlush`] returned `Pending`, readable after the transport
/// moved into a mux (a test checks that the path it means to exercise was taken).
#[derive(Debug, Clone, Default)]
pub struct PendingCount(Arc<AtomicU64>);

impl PendingCount {
    /// Flushes that returned `Pending` so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Lets the flushes of a [`PendingFlush::gated`] transport complete.
#[derive(Debug, Clone, Default)]
pub struct FlushGate(Arc<Mutex<Gate>>);

#[derive(Debug, Default)]
struct Gate {
    open: bool,
    /// The task whose flush is waiting.
    flusher: Option<Waker>,
}

impl FlushGate {
    /// Opens the gate: the flush waiting (if any) and the next ones are done, until the next
    /// write. Wakes the task that polled the flush last.
    pub fn open(&self) {
        let flusher = {
            let mut gate = crate::sync::lock(&self.0);
            gate.open = true;
            gate.flusher.take()
        };
        if let Some(w) = flusher {
            w.wake();
        }
    }

    /// Whether a flush is waiting for the gate.
    pub fn is_waited_on(&self) -> bool {
        crate::sync::lock(&self.0).flusher.is_some()
    }
}

impl<T> PendingFlush<T> {
    /// Wraps `inner`: a flush after writes is `Pending` once, its task woken at once.
    pub fn new(inner: T) -> Self {
        PendingFlush {
            inner,
            owes_pending: false,
            pendings: PendingCount::default(),
            gate: None,
        }
    }

    /// Wraps `inner`: a flush after writes is `Pending` until the gate returned is opened.
    pub fn gated(inner: T) -> (Self, FlushGate) {
        let gate = FlushGate::default();
        let transport = PendingFlush {
            gate: Some(gate.clone()),
            ..PendingFlush::new(inner)
        };
        (transport, gate)
    }

    /// How many flushes returned `Pending` so far.
    pub fn pendings(&self) -> u64 {
        self.pendings.get()
    }

    /// A handle on the count of [`pendings`](Self::pendings) that stays readable after the
    /// transport is moved away.
    pub fn pending_count(&self) -> PendingCount {
        self.pendings.clone()
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
            if let Some(gate) = &self.gate {
                crate::sync::lock(&gate.0).open = false;
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.owes_pending {
            match &self.gate {
                None => self.owes_pending = false,
                Some(gate) => {
                    let mut gate = crate::sync::lock(&gate.0);
                    if gate.open {
                        drop(gate);
                        self.owes_pending = false;
                        return Pin::new(&mut self.inner).poll_flush(cx);
                    }
                    gate.flusher = Some(cx.waker().clone());
                    drop(gate);
                    self.pendings.0.fetch_add(1, Ordering::SeqCst);
                    return Poll::Pending;
                }
            }
            self.pendings.0.fetch_add(1, Ordering::SeqCst);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
