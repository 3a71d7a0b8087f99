//! One direction of an emulated path: reader → bottleneck queue → delay line → writer.
//!
//! [`run`] is two futures joined in one task: the sender side ([`Bottleneck`]: reads into the
//! queue and serializes chunks out of it into the delay line) and the receiver side
//! ([`deliver`]: waits for each chunk's arrival time and writes it). The delay line between
//! them is a channel whose bytes are counted by a semaphore: a chunk takes permits for its
//! bytes before it starts to leave the queue and gives them back once written.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep_until, Instant};

use super::{LinkSpec, CHUNK};

/// A chunk in the delay line.
struct InFlight {
    /// When it reaches the far side.
    arrives: Instant,
    data: Vec<u8>,
    /// Its bytes' share of the delay line, given back once written.
    _permit: OwnedSemaphorePermit,
}

/// Relays `from` to `to` through the path `spec` until `from` ends, then shuts down `to`
/// (after every byte before the end was written). Adds the bytes written to `relayed`.
///
/// Returns the first read or write error; the caller then closes both connections.
pub(super) async fn run<R, W>(from: R, to: W, spec: LinkSpec, relayed: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let line = Arc::new(Semaphore::new(spec.delay_line_capacity()));
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = Bottleneck::new(spec, line).run(from, tx);
    tokio::try_join!(sender, deliver(rx, to, relayed))?;
    Ok(())
}

/// Writes every chunk of the delay line to `to` at its arrival time; shuts `to` down when the
/// line is closed (the sender side saw the end of its input).
async fn deliver<W: AsyncWrite + Unpin>(
    mut line: mpsc::UnboundedReceiver<InFlight>,
    mut to: W,
    relayed: &AtomicU64,
) -> io::Result<()> {
    while let Some(chunk) = line.recv().await {
        // A due chunk goes at once: a sleep, even one already past, waits for the timer's
        // next turn.
        if chunk.arrives > Instant::now() {
            sleep_until(chunk.arrives).await;
        }
        to.write_all(&chunk.data).await?;
        relayed.fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
    }
    to.shutdown().await
}

/// The sender side of the path: the bottleneck queue and the serializer draining it.
struct Bottleneck {
    spec: LinkSpec,
    /// Chunks read and not yet departed, each with the time it was read.
    queue: VecDeque<(Instant, Vec<u8>)>,
    /// Bytes in `queue`.
    queued: usize,
    /// The delay line's free bytes.
    line: Arc<Semaphore>,
    /// The head of the queue being serialized: when it has left the queue, and its share of
    /// the delay line.
    departing: Option<(Instant, OwnedSemaphorePermit)>,
    /// When the link finished (or finishes) serializing the last chunk that started.
    link_free: Instant,
    /// When a full queue got room again (the departure that made it), while the reader has
    /// not yet looked whether the sender had bytes waiting.
    room_since: Option<Instant>,
}

impl Bottleneck {
    fn new(spec: LinkSpec, line: Arc<Semaphore>) -> Bottleneck {
        Bottleneck {
            spec,
            queue: VecDeque::new(),
            queued: 0,
            line,
            departing: None,
            link_free: Instant::now(),
            room_since: None,
        }
    }

    /// Reads `from` into the queue and moves the chunks into the delay line `tx` at the link's
    /// rate, until `from` ended and everything departed.
    async fn run<R: AsyncRead + Unpin>(
        mut self,
        mut from: R,
        tx: mpsc::UnboundedSender<InFlight>,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let mut ended = false;
        loop {
            self.start_head_if_room();
            if ended && self.queue.is_empty() {
                // Dropping `tx` tells the writer to forward the end.
                return Ok(());
            }
            let room = self
                .spec
                .queue
                .max(1)
                .saturating_sub(self.queued)
                .min(CHUNK);
            if !ended && room > 0 && self.room_since.is_some() {
                // A sender held back by a full queue sends again the moment the queue has
                // room, not when this task gets around to it (timers fire up to a millisecond
                // late, which at 1 Gbit/s is a whole 128 KiB queue): bytes already waiting
                // count as arrived then, until the queue is full again or none are waiting.
                let since = self.room_since.expect("checked");
                match poll_once(&mut from, &mut buf[..room]) {
                    Poll::Ready(Ok(0)) => ended = true,
                    Poll::Ready(Ok(n)) => self.enqueue(since, &buf[..n]),
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => self.room_since = None,
                }
                continue;
            }
            let head_len = self.queue.front().map_or(0, |(_, data)| data.len());
            let departs = self.departing.as_ref().map(|(at, _)| *at);
            if departs.is_some_and(|at| at <= Instant::now()) {
                // Behind schedule: no waiting for the timer's next turn.
                self.depart(room == 0, &tx);
                continue;
            }
            tokio::select! {
                () = sleep_until(departs.unwrap_or_else(Instant::now)), if departs.is_some() => {
                    self.depart(room == 0, &tx);
                }
                // The delay line was full and has room for the head now.
                permit = self.line.clone().acquire_many_owned(head_len as u32),
                    if departs.is_none() && head_len > 0 =>
                {
                    let permit = permit.expect("the delay line's semaphore is never closed");
                    self.start_head(Instant::now(), permit);
                }
                read = from.read(&mut buf[..room]), if !ended && room > 0 => {
                    let n = read?;
                    if n == 0 {
                        ended = true;
                    } else {
                        self.enqueue(Instant::now(), &buf[..n]);
                    }
                }
            }
        }
    }

    /// The head has left the queue: into the delay line. `was_full`: the queue had no room
    /// before, so it has since the head's departure.
    fn depart(&mut self, was_full: bool, tx: &mpsc::UnboundedSender<InFlight>) {
        let (at, permit) = self.departing.take().expect("departing");
        let (_, data) = self.queue.pop_front().expect("a departing head");
        if was_full {
            self.room_since = Some(at);
        }
        self.queued -= data.len();
        let arrives = at + self.spec.one_way_delay;
        // The writer is gone only if it failed, and then `run` returns its error.
        let _ = tx.send(InFlight {
            arrives,
            data,
            _permit: permit,
        });
    }

    /// Adds `data`, arrived at `at`, to the queue.
    fn enqueue(&mut self, at: Instant, data: &[u8]) {
        self.queue.push_back((at, data.to_vec()));
        self.queued += data.len();
    }

    /// Starts serializing the head of the queue if none is departing and the delay line has
    /// room for it now.
    fn start_head_if_room(&mut self) {
        if self.departing.is_some() {
            return;
        }
        let Some((_, data)) = self.queue.front() else {
            return;
        };
        if let Ok(permit) = self.line.clone().try_acquire_many_owned(data.len() as u32) {
            // The head could start as soon as it was read and the link was free, even if
            // this task runs later: timing comes from those instants, not from wake-ups.
            let arrived = self.queue.front().expect("a head").0;
            self.start_head(arrived, permit);
        }
    }

    /// The head starts leaving the queue at `ready` or when the link is free, whichever is
    /// later, and has left it `len / rate` after that.
    fn start_head(&mut self, ready: Instant, permit: OwnedSemaphorePermit) {
        let (arrived, data) = self.queue.front().expect("a head");
        let start = ready.max(*arrived).max(self.link_free);
        let departs = start + self.spec.serialization(data.len());
        self.link_free = departs;
        self.departing = Some((departs, permit));
    }
}

/// Reads into `buf` only if bytes (or the end, or an error) are there now.
fn poll_once<R: AsyncRead + Unpin>(from: &mut R, buf: &mut [u8]) -> Poll<io::Result<usize>> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut read = ReadBuf::new(buf);
    match Pin::new(from).poll_read(&mut cx, &mut read) {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}
