//! The one piece of code that touches the transport, and the locking around it.
//!
//! The state of a connection is split in two, each behind its own lock:
//! - [`Core`]: the session and the timer. Every operation (read, write, accept, ...) takes
//!   this lock for a few microseconds of bookkeeping; no system call happens under it.
//! - `Io`: the transport, the receive buffer and the bytes being written. Driving the
//!   connection (moving bytes between the transport and the session, running timers, turning
//!   session events into wake-ups) needs it. It is only ever *tried*: a task that finds it
//!   taken leaves a note (`again`) and goes on, and the task holding it goes round once more
//!   for it. So tasks never block each other on a system call, and one thread can copy data
//!   into the session while another is in `writev`.

use std::collections::VecDeque;
use std::io;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncWrite};
use smux_proto::{advance_chunks, Error, Event, Session, StreamId, DIRECT_FRAMES};

use crate::recycle::Recycler;
use crate::sync::{lock, AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering, TryLockError};
use crate::timer::{Sleep, Timer};
use crate::wakers::{Duty, Slot, Waiter, Wakers};

/// Smallest read asked of the transport. The read size doubles while reads fill it, up to
/// `READ_MAX`, and falls back to twice what the last read returned: a bulk transfer reads in
/// large chunks and a request/response exchange does not zero-fill a large buffer per byte.
const READ_MIN: usize = 4 * 1024;
/// Largest read asked of the transport.
const READ_MAX: usize = 64 * 1024;
/// Allocation unit of the receive buffer.
const READ_BLOCK: usize = 2 * READ_MAX;
/// Reads per drive before yielding, so an always-ready transport cannot monopolise a task.
const READS_PER_DRIVE: usize = 16;
/// Slices per vectored write.
const WRITE_SLICES: usize = 64;
/// Most bytes taken from the session at once while the transport is full (its last write was
/// `Pending`): frames queued after a batch is taken (a window update, a FIN, an interactive
/// stream's request) wait behind it, so on a slow link it stays short (5 ms at 100 Mbit/s).
/// While the transport takes everything, batches are as large as the session makes them.
const CONGESTED_BATCH: usize = 64 * 1024;
/// Writes at least this big try the zero-copy path (smaller ones gather better in the queue).
const DIRECT_MIN: usize = 16 * 1024;

impl Core {
    /// The time on the mux's clock.
    pub(crate) fn now(&self) -> Instant {
        self.timer.now()
    }
}

/// The session and what goes with it; guarded by the short lock.
pub(crate) struct Core {
    pub(crate) session: Session,
    timer: Arc<dyn Timer>,
    sleep: Option<(Instant, Sleep)>,
    /// Input stopped because the session did not want it (`Session::input_pause`: the v1
    /// receive budget used up, the accept backlog full, ...): frames may be left in the
    /// receive buffer, and nothing will wake a task when the reason goes away (the transport
    /// was not polled), so the operation that removes it (a read, an accept) drives.
    input_paused: bool,
    /// Nothing taken from the session is waiting in the driver (unwritten or unflushed).
    out_idle: bool,
    /// How much of the session's output (an offset, see `Session::output_offset`) the
    /// transport took and then flushed.
    flushed: u64,
    /// Streams whose flush (or close) found their output framed, with the offset it ends at,
    /// not yet written and flushed: no session event will wake them; the drive that gets
    /// `flushed` past their end does. One entry per stream.
    flush_waiters: Vec<(StreamId, u64)>,
    /// The smallest end in `flush_waiters` (`u64::MAX`: none), shared with the driver's
    /// output loop, which reads it without this lock.
    flush_barrier: Arc<AtomicU64>,
    /// The transport was closed (after the session ended).
    transport_closed: bool,
}

impl Core {
    /// Whether a drive is due after an operation completed without driving: output is
    /// pending, or the operation (a read, an accept) lifted the pause of input.
    fn needs_drive(&self) -> bool {
        self.session.wants_write() || (self.input_paused && self.session.wants_read())
    }

    /// Whether a drive would have nothing to do but read input: no output anywhere, input
    /// not paused, the session open and the timer set for its next deadline. (Whether the
    /// transport is watched for input is the wakers' to say: `Wakers::input_watched`.)
    fn is_quiet(&self) -> bool {
        let timer_set = match (self.session.poll_timeout(), &self.sleep) {
            (None, _) => true,
            (Some(deadline), Some((at, _))) => *at == deadline,
            (Some(_), None) => false,
        };
        self.output_flushed()
            && !self.input_paused
            && !self.session.is_closed()
            && self.session.wants_read()
            && timer_set
    }

    /// Whether output is fully handed to the transport and flushed.
    fn output_flushed(&self) -> bool {
        !self.session.wants_write() && self.out_idle
    }

    /// Whether the session's output up to offset `end` was written to the transport and a
    /// transport flush completed after it.
    pub(crate) fn flushed_to(&self, end: u64) -> bool {
        end <= self.flushed
    }

    /// Stream `id` waits until [`flushed_to`](Self::flushed_to)`(end)`.
    pub(crate) fn wait_flushed_to(&mut self, id: StreamId, end: u64) {
        match self.flush_waiters.iter_mut().find(|(w, _)| *w == id) {
            Some(entry) => entry.1 = end,
            None => self.flush_waiters.push((id, end)),
        }
        self.flush_barrier.fetch_min(end, Ordering::SeqCst);
    }

    /// Whether the session ended with an error (not by closing): what was still to be
    /// written is dropped.
    pub(crate) fn failed(&self) -> bool {
        self.session
            .error()
            .is_some_and(|e| !matches!(e, Error::LocallyClosed))
    }

    /// Whether the transport was closed.
    pub(crate) fn transport_closed(&self) -> bool {
        self.transport_closed
    }

    /// Keeps a sleep armed for the session's next deadline, woken through the duty waker.
    fn poll_timer(&mut self, cx: &mut Context<'_>) {
        let Some(deadline) = self.session.poll_timeout() else {
            self.sleep = None;
            return;
        };
        if self.sleep.as_ref().map(|(at, _)| *at) != Some(deadline) {
            self.sleep = self.timer.sleep_until(deadline).map(|s| (deadline, s));
        }
        if let Some((_, sleep)) = &mut self.sleep {
            if sleep.as_mut().poll(cx).is_ready() {
                self.sleep = None;
                // The deadline passed: run the timers on the next turn, right away.
                cx.waker().wake_by_ref();
            }
        }
    }

    /// Feeds the frames already in `buf` to the session (and, once the transport ended, the
    /// end of input), at `now`; returns whether anything was consumed or the session ended.
    fn feed(&mut self, buf: &mut BytesMut, eof: bool, now: Instant) -> bool {
        let before = buf.len();
        let _ = if eof {
            self.session.handle_eof(now, buf)
        } else {
            self.session.handle_input(now, buf)
        };
        before != buf.len() || self.session.is_closed()
    }
}

/// The transport and its buffers; guarded by the lock that is only tried.
struct Io<T> {
    transport: T,
    /// Received bytes not yet consumed by the session (a partial frame at most, unless input
    /// is paused). Large frames are split off it without a copy; its blocks are recycled once
    /// their frames are read.
    read_buf: Recycler,
    /// Size of the next read.
    read_size: usize,
    /// The transport reported end of input.
    eof: bool,
    /// Bytes taken from the session, not yet accepted by the transport.
    out: VecDeque<Bytes>,
    /// Bytes of the session's output the transport took (an offset, as `Core::flushed`).
    written: u64,
    /// `written` when the last transport flush completed.
    flushed: u64,
    /// The transport's last write was `Pending`, and output has been waiting since: take
    /// [`CONGESTED_BATCH`]es from the session.
    congested: bool,
    closed: bool,
}

impl<T> Io<T> {
    /// Bytes were written since the last transport flush.
    fn needs_flush(&self) -> bool {
        self.written > self.flushed
    }
}

/// Everything one connection shares between its handles and streams.
pub(crate) struct Driver<T: AsyncRead + AsyncWrite + Unpin> {
    core: Mutex<Core>,
    io: Mutex<Io<T>>,
    /// Set by a task that wanted to drive while another held the I/O: the holder goes round
    /// once more before it lets go.
    again: AtomicBool,
    /// `Core::flush_barrier`: the output offset a flush waits for, if any.
    flush_barrier: Arc<AtomicU64>,
    wakers: Arc<Wakers>,
    /// The mux's clock (also the core's), read once per drive turn.
    timer: Arc<dyn Timer>,
    /// Wakes the holder of the read duty; given to the transport and the timer.
    duty: Waker,
    /// Acquisitions of the core lock (tests measure them per round trip).
    #[cfg(test)]
    core_locks: std::sync::atomic::AtomicUsize,
    /// The session's span, for the driver's own events (feature `tracing`).
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    pub(crate) fn new(session: Session, transport: T, timer: Box<dyn Timer>) -> Self {
        // Receive blocks set aside while their frames are unread: as many as a full receive
        // budget of unread frames can pin.
        let read_spare = session.config().max_receive_buffer / READ_BLOCK + 2;
        let timer: Arc<dyn Timer> = Arc::from(timer);
        let wakers = Wakers::new(timer.clone());
        let duty = Waker::from(Arc::new(Duty(wakers.clone())));
        let flush_barrier = Arc::new(AtomicU64::new(u64::MAX));
        #[cfg(feature = "tracing")]
        let span = session.span().clone();
        Driver {
            #[cfg(feature = "tracing")]
            span,
            core: Mutex::new(Core {
                session,
                timer: timer.clone(),
                sleep: None,
                input_paused: false,
                out_idle: true,
                flushed: 0,
                flush_waiters: Vec::new(),
                flush_barrier: flush_barrier.clone(),
                transport_closed: false,
            }),
            io: Mutex::new(Io {
                transport,
                read_buf: Recycler::new(READ_BLOCK, read_spare),
                read_size: READ_MIN,
                eof: false,
                out: VecDeque::new(),
                written: 0,
                flushed: 0,
                congested: false,
                closed: false,
            }),
            again: AtomicBool::new(false),
            flush_barrier,
            wakers,
            timer,
            duty,
            #[cfg(test)]
            core_locks: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub(crate) fn wakers(&self) -> &Wakers {
        &self.wakers
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        #[cfg(test)]
        self.core_locks.fetch_add(1, Ordering::Relaxed);
        lock(&self.core)
    }

    /// Acquisitions of the core lock so far.
    #[cfg(test)]
    pub(crate) fn core_lock_count(&self) -> usize {
        self.core_locks.load(Ordering::Relaxed)
    }

    /// Runs `f` on the core, without driving.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut self.core())
    }

    /// The loop behind every poll: try `op`; when it cannot complete, park the task with
    /// `park` (under the same lock, so no wake-up is lost) and drive the connection; repeat
    /// while driving makes progress. After `op` completes, output it produced is pushed out,
    /// and input paused for want of receive budget resumes if `op` freed some.
    pub(crate) fn poll_op<R>(
        &self,
        cx: &Context<'_>,
        waiter: Waiter,
        mut op: impl FnMut(&mut Core) -> Poll<R>,
    ) -> Poll<R> {
        let mut parked = false;
        loop {
            let done = {
                let mut core = self.core();
                match op(&mut core) {
                    Poll::Ready(result) => Ok((result, core.needs_drive())),
                    Poll::Pending => {
                        self.wakers.park_waiter(waiter, cx.waker());
                        parked = true;
                        Err(core.is_quiet())
                    }
                }
            };
            match done {
                Ok((result, needs_drive)) => {
                    if parked {
                        self.wakers.unpark_waiter(waiter, cx.waker());
                    }
                    // A task woken to read the transport for everyone drives even when its
                    // own operation completed without it, or that readiness is lost.
                    if needs_drive || self.wakers.duty_woken() {
                        self.drive(None);
                    }
                    return Poll::Ready(result);
                }
                // Nothing to write, the timer set and the transport watched for input: a
                // drive now would find nothing, and the readiness that ends the wait wakes
                // the holder of the read duty (this task, the last to park, if nobody is in
                // `drive()`).
                Err(true) if self.wakers.input_watched() => return Poll::Pending,
                // The same while another task is in a drive turn that served every readiness
                // so far (no task woken for the duty is still to drive): that turn reads the
                // transport until it is watched again, or hands the duty on. So a deputy
                // woken beside a live holder (see `wakers.rs`) costs the holder no extra turn.
                Err(true) if !self.wakers.duty_pending() && self.io.try_lock().is_err() => {
                    return Poll::Pending
                }
                Err(_) => {
                    if !self.drive(Some((waiter, cx.waker()))) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// Writes a prefix of `data` on stream `id` straight from the caller's buffer to the
    /// transport, when the transport is free, nothing waits to be sent before it, and the
    /// transport takes bytes right now. Returns how many bytes were written to the stream, or
    /// `None` when the normal path (copy into the session) must be taken.
    pub(crate) fn try_write_direct(&self, id: StreamId, data: &[u8]) -> Option<usize> {
        if data.len() < DIRECT_MIN {
            return None;
        }
        let mut io = self.io.try_lock().ok()?;
        if !io.out.is_empty() || io.closed {
            drop(io);
            self.drive_if_asked();
            return None;
        }
        let begun = self.core().session.begin_direct_write(id, data);
        let Ok(Some(write)) = begun else {
            drop(io);
            self.drive_if_asked();
            return None;
        };
        let mut slices = [IoSlice::new(&[]); 2 * DIRECT_FRAMES];
        let n = write.slices(&mut slices);
        let mut cx = Context::from_waker(&self.duty);
        let (written, failed) =
            match Pin::new(&mut io.transport).poll_write_vectored(&mut cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => (0, Some(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => (written, None),
                Poll::Ready(Err(e)) => (0, Some(e)),
                Poll::Pending => (0, None),
            };
        let accepted = {
            let mut core = self.core();
            let accepted = core.session.end_direct_write(write, written);
            if let Some(e) = failed {
                core.session.handle_transport_error(e);
            }
            if written > 0 {
                core.out_idle = false;
            }
            accepted
        };
        io.written += written as u64;
        drop(io);
        if accepted == 0 {
            self.drive_if_asked();
            return None;
        }
        // Flush, and send the rest of a frame the transport took only part of.
        self.drive(None);
        Some(accepted)
    }

    /// After holding the I/O lock outside [`drive`](Self::drive): a task that wanted to drive
    /// meanwhile found it taken and left it to the holder (`again`, and maybe an I/O wait), so
    /// the holder drives now, or that task would wait for nothing.
    fn drive_if_asked(&self) {
        if self.again.load(Ordering::SeqCst) {
            self.drive(None);
        }
    }

    /// Drives the connection if no other task is doing it; otherwise makes sure the task that
    /// is goes round again (and, with `waiter`, wakes the waiter when it is done; one entry
    /// per waiter, whatever waker it brings). Returns whether anything happened.
    pub(crate) fn drive(&self, waiter: Option<(Waiter, &Waker)>) -> bool {
        let mut progress = false;
        let mut waiting = false;
        self.again.store(true, Ordering::SeqCst);
        loop {
            let mut io = match self.io.try_lock() {
                Ok(io) => io,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => match waiter {
                    // Wait for the holder's turn to end; it might have ended just before the
                    // waker was registered, so try once more after registering.
                    Some((who, w)) if !waiting => {
                        self.wakers.park_io(who, w);
                        waiting = true;
                        continue;
                    }
                    _ => return progress,
                },
            };
            self.again.store(false, Ordering::SeqCst);
            let mut wake = Vec::new();
            progress |= self.drive_turn(&mut io, &mut wake, true, waiter.map(|(who, _)| who));
            drop(io);
            self.wakers.take_io(&mut wake);
            wake.into_iter().for_each(Waker::wake);
            if !self.again.load(Ordering::SeqCst) {
                return progress;
            }
        }
    }

    /// One turn, for `Drop` impls: there is no task to wake later, and a runtime's timer may
    /// not even be available.
    pub(crate) fn drop_drive(&self) {
        let mut wake = Vec::new();
        self.drive_turn(&mut lock(&self.io), &mut wake, false, None);
        wake.into_iter().for_each(Waker::wake);
    }

    /// Moves everything it can without blocking: output to the transport, input from it,
    /// timers, events. Returns whether anything happened. `me`, the waiter driving, is not
    /// woken by its own events: it looks again once the drive returns.
    fn drive_turn(
        &self,
        io: &mut Io<T>,
        wake: &mut Vec<Waker>,
        arm_timer: bool,
        me: Option<Waiter>,
    ) -> bool {
        self.wakers.duty_served();
        // One clock read per turn, for the input and the timers alike (a turn is short, and
        // keepalive and path sizing need no finer time).
        let now = self.timer.now();
        let mut cx = Context::from_waker(&self.duty);
        let mut progress = self.pump_output(io, &mut cx, false);
        // Input before timers: after a long stall of the runtime, the peer's frames waiting in
        // the transport prove it alive.
        progress |= self.pump_input(io, &mut cx, now);
        // One lock for the timers, the output that input and timers produced (refusals, UPDs,
        // NOP), the timer's next deadline and the events so far.
        let (close_transport, polled) = {
            let mut core = self.core();
            if core.session.poll_timeout().is_some_and(|t| t <= now) {
                core.session.handle_timeout(now);
            }
            let polled = io.out.is_empty() && !io.closed;
            if polled && core.session.poll_transmit_chunks(&mut io.out) > 0 {
                core.out_idle = false;
            }
            let polled = polled && !core.session.wants_write();
            if arm_timer {
                core.poll_timer(&mut cx);
            }
            progress |= self.dispatch_events(&mut core, wake, me);
            (
                core.session.is_closed() && !core.session.wants_write(),
                polled,
            )
        };
        progress |= self.pump_output(io, &mut cx, polled);
        if close_transport
            && !io.closed
            && io.out.is_empty()
            && Pin::new(&mut io.transport).poll_close(&mut cx).is_ready()
        {
            // Closing flushes.
            io.closed = true;
            io.flushed = io.written;
            progress = true;
        }
        let mut core = self.core();
        // Taking more output may have made events (room in a stream's send queue).
        progress |= self.dispatch_events(&mut core, wake, me);
        core.out_idle = io.out.is_empty() && !io.needs_flush();
        core.transport_closed = io.closed;
        core.flushed = io.flushed;
        if !core.flush_waiters.is_empty() {
            // What a flush waits for raises no session event: its waiters are woken here,
            // and the drive of a waiter that is one of them counts as progress, so its
            // `poll_op` looks again instead of waiting for a wake-up nobody will send.
            let done = core.failed() || io.closed;
            let flushed = core.flushed;
            let mut i = 0;
            let mut barrier = u64::MAX;
            while i < core.flush_waiters.len() {
                let (id, end) = core.flush_waiters[i];
                if done || end <= flushed {
                    core.flush_waiters.swap_remove(i);
                    self.wakers.take(Slot::Write(id), me, wake);
                    progress = true;
                } else {
                    barrier = barrier.min(end);
                    i += 1;
                }
            }
            core.flush_barrier.store(barrier, Ordering::SeqCst);
        }
        progress
    }

    /// Writes pending output, and flushes the transport after it: once everything is written,
    /// and also when the transport takes no more (so the output of a stream that waits for
    /// its flush is flushed while other streams keep the transport busy). With
    /// `session_polled`, the caller just took the session's output (under a lock it held for
    /// more), so there is no need to ask again before `io.out` is written.
    fn pump_output(&self, io: &mut Io<T>, cx: &mut Context<'_>, session_polled: bool) -> bool {
        if io.closed {
            return false;
        }
        if !io.out.is_empty() && self.core().failed() {
            // The session failed: like its own queue, what it handed over is dropped.
            io.out.clear();
        }
        let mut progress = false;
        // Whether the session may hold output not taken yet. A task that queues more while
        // this one writes asks for another turn (`again`), so it is not missed.
        let mut more = !session_polled;
        loop {
            let barrier = self.flush_barrier.load(Ordering::SeqCst);
            if io.flushed < barrier && barrier <= io.written {
                // A stream's flush waits for bytes written already: flush them before writing
                // more. A transport that buffers (TLS) is done flushing only once its buffer
                // is empty, which more writes behind a busy stream's would never let happen.
                match self.flush_transport(io, cx) {
                    Some(true) => {}
                    Some(false) => return progress,
                    None => return true,
                }
            }
            if io.out.is_empty() {
                if !more {
                    io.congested = false;
                    break;
                }
                let mut core = self.core();
                let batch = if io.congested {
                    CONGESTED_BATCH
                } else {
                    usize::MAX
                };
                if core.session.poll_transmit_chunks_up_to(&mut io.out, batch) == 0 {
                    io.congested = false;
                    break;
                }
                more = core.session.wants_write();
                core.out_idle = false;
            }
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let n = slices.len().min(io.out.len());
            for (slot, chunk) in slices.iter_mut().zip(io.out.iter()) {
                *slot = IoSlice::new(chunk);
            }
            let failed = match Pin::new(&mut io.transport).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => io::ErrorKind::WriteZero.into(),
                Poll::Ready(Ok(written)) => {
                    advance_chunks(&mut io.out, written);
                    io.written += written as u64;
                    progress = true;
                    continue;
                }
                Poll::Ready(Err(e)) => e,
                Poll::Pending => {
                    io.congested = true;
                    #[cfg(feature = "tracing")]
                    tracing::trace!(
                        parent: &self.span,
                        waiting = io.out.iter().map(|c| c.len()).sum::<usize>(),
                        "transport full: output waits"
                    );
                    break;
                }
            };
            io.out.clear();
            self.core().session.handle_transport_error(failed);
            return true;
        }
        // A flush that completes is not progress by itself (a transport whose flush does
        // nothing completes one on every turn): the flush waiters it releases are, in
        // `drive_turn`.
        if io.needs_flush() && self.flush_transport(io, cx).is_none() {
            return true;
        }
        progress
    }

    /// Flushes the transport: `Some(true)` once done (everything written so far is flushed),
    /// `Some(false)` while `Pending`, `None` if it failed (the session then has failed too).
    fn flush_transport(&self, io: &mut Io<T>, cx: &mut Context<'_>) -> Option<bool> {
        match Pin::new(&mut io.transport).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                io.flushed = io.written;
                Some(true)
            }
            Poll::Ready(Err(e)) => {
                io.out.clear();
                self.core().session.handle_transport_error(e);
                None
            }
            Poll::Pending => Some(false),
        }
    }

    /// Reads input while the session wants it. The core lock is taken once per read: the
    /// feed of one read and the check before the next share it.
    fn pump_input(&self, io: &mut Io<T>, cx: &mut Context<'_>, now: Instant) -> bool {
        // Watched again only by a read that returns `Pending` below.
        self.wakers.watch_input(false);
        let mut progress = false;
        let mut core = self.core();
        let was_paused = std::mem::take(&mut core.input_paused);
        if (was_paused || !io.read_buf.buf().is_empty()) && !io.eof && core.session.wants_read() {
            // First the frames left in the buffer when input paused (or when the last read of
            // a turn was fed to a session that then stopped wanting input): the transport may
            // have nothing more to give for a long time.
            progress = core.feed(io.read_buf.buf(), false, now);
        }
        for _ in 0..READS_PER_DRIVE {
            if !core.session.wants_read() {
                core.input_paused = !core.session.is_closed();
                return progress;
            }
            if io.eof {
                // Frames left in the buffer after a pause, then the end.
                return core.feed(io.read_buf.buf(), true, now) || progress;
            }
            drop(core);
            let want = io.read_size;
            let space = io.read_buf.read_space(want);
            // Before the read: a readiness that comes right after it unsets this again.
            self.wakers.watch_input(true);
            let polled = Pin::new(&mut io.transport).poll_read(cx, space);
            if polled.is_ready() {
                self.wakers.watch_input(false);
            }
            let n = match polled {
                Poll::Ready(Ok(n)) => n.min(want),
                Poll::Ready(Err(e)) => {
                    if e.kind() == io::ErrorKind::Interrupted {
                        core = self.core();
                        continue;
                    }
                    self.core().session.handle_transport_error(e);
                    return true;
                }
                Poll::Pending => return progress,
            };
            io.read_buf.filled(n);
            if n == 0 {
                io.eof = true;
                self.core().feed(io.read_buf.buf(), true, now);
                return true;
            }
            io.read_size = if n == want {
                (want * 2).min(READ_MAX)
            } else {
                (n * 2).clamp(READ_MIN, READ_MAX)
            };
            core = self.core();
            core.feed(io.read_buf.buf(), false, now);
            progress = true;
        }
        // Still readable after many reads: come back soon, without hogging this task. If the
        // last read paused the session, the operation that lifts the pause must drive: frames
        // may be waiting in the buffer and the transport was not left registered.
        if !core.session.wants_read() {
            core.input_paused = !core.session.is_closed();
        }
        drop(core);
        cx.waker().wake_by_ref();
        progress
    }

    /// Turns session events into the wakers of the tasks that wait for them.
    fn dispatch_events(&self, core: &mut Core, wake: &mut Vec<Waker>, me: Option<Waiter>) -> bool {
        let mut any = false;
        while let Some(event) = core.session.poll_event() {
            any = true;
            match event {
                Event::StreamOpened { .. } => self.wakers.take_connection(me, wake),
                Event::StreamReadable { stream_id } => {
                    self.wakers.take(Slot::Read(stream_id), me, wake)
                }
                Event::StreamWritable { stream_id } => {
                    self.wakers.take(Slot::Write(stream_id), me, wake)
                }
                Event::Closed(_) => {
                    // Everyone must see the end.
                    self.wakers.wake_all();
                }
                _ => {}
            }
        }
        any
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drop for Driver<T> {
    fn drop(&mut self) {
        // Last handle gone: close gracefully as far as the transport takes it without waiting.
        self.with(|core| core.session.close());
        self.drop_drive();
    }
}
