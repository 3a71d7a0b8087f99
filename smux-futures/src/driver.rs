//! The one piece of code that touches the transport: `Driver::poll_drive` moves bytes between
//! the transport and the session, runs the timers and turns session events into wake-ups.
//! Every entry point (read, write, flush, close, accept, connect, drive) calls it.

use std::io;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use futures::io::{AsyncRead, AsyncWrite};
use smux_proto::{Event, Session};

use crate::timer::{Sleep, Timer};
use crate::wakers::{FanOut, Slot, Wakers};

/// Smallest read asked of the transport. The read size doubles while reads fill it, up to
/// `READ_MAX`, and falls back to twice what the last read returned: a bulk transfer reads in
/// large chunks and a request/response exchange does not zero-fill a large buffer per byte.
const READ_MIN: usize = 4 * 1024;
/// Largest read asked of the transport.
const READ_MAX: usize = 64 * 1024;
/// Reads per drive before yielding, so an always-ready transport cannot monopolise a task.
const READS_PER_DRIVE: usize = 16;
/// Slices per vectored write.
const WRITE_SLICES: usize = 64;

/// The session, the transport and everything needed to drive them, under one lock.
pub(crate) struct Driver<T> {
    pub(crate) session: Session,
    transport: T,
    /// Received bytes not yet consumed by the session (a partial frame at most, unless input
    /// is paused). Frames of 16 KiB or more are split off it without a copy; once they are all
    /// read, its allocation is reused in place.
    read_buf: BytesMut,
    /// Size of the next read.
    read_size: usize,
    /// The transport reported end of input.
    eof: bool,
    /// Input stopped because the session's receive budget was used up: frames may be left in
    /// `read_buf`, and nothing will wake a task when the budget frees (the transport was not
    /// polled).
    input_paused: bool,
    /// Bytes were written since the last transport flush.
    needs_flush: bool,
    /// The transport was closed (after the session ended).
    transport_closed: bool,
    timer: Box<dyn Timer>,
    sleep: Option<(Instant, Sleep)>,
    wakers: Arc<Wakers>,
    fan_out: Waker,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    pub(crate) fn new(session: Session, transport: T, timer: Box<dyn Timer>) -> Self {
        let wakers = Arc::new(Wakers::default());
        let fan_out = Waker::from(Arc::new(FanOut(wakers.clone())));
        Driver {
            session,
            transport,
            read_buf: BytesMut::new(),
            read_size: READ_MIN,
            eof: false,
            input_paused: false,
            needs_flush: false,
            transport_closed: false,
            timer,
            sleep: None,
            wakers,
            fan_out,
        }
    }

    /// One non-blocking turn, for `Drop` impls that have no task context.
    pub(crate) fn drop_drive(&mut self) {
        let mut wake = Vec::new();
        self.drive_turn(&mut wake, false);
        wake.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn wakers(&self) -> &Arc<Wakers> {
        &self.wakers
    }

    /// Moves everything it can without blocking: output to the transport, input from it,
    /// timers, events. Returns whether anything happened; wakers of tasks to wake are appended
    /// to `wake` (wake them after releasing the lock).
    pub(crate) fn poll_drive(&mut self, wake: &mut Vec<Waker>) -> bool {
        self.drive_turn(wake, true)
    }

    /// One turn; `arm_timer` is false when no task will ever be woken by it (in `Drop`, where
    /// a runtime's timer may not even be available).
    fn drive_turn(&mut self, wake: &mut Vec<Waker>, arm_timer: bool) -> bool {
        let fan_out = self.fan_out.clone();
        let mut cx = Context::from_waker(&fan_out);
        let mut progress = false;
        progress |= self.poll_output(&mut cx);
        // Input before timers: after a long stall of the runtime, the peer's frames waiting in
        // the transport prove it alive.
        progress |= self.poll_input(&mut cx);
        let now = self.timer.now();
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        // Input and timers may have produced output (refusals, UPDs, NOP): send it now.
        progress |= self.poll_output(&mut cx);
        if arm_timer {
            self.poll_timer(&mut cx);
        }
        progress |= self.dispatch_events(wake);
        if self.session.is_closed()
            && !self.transport_closed
            && !self.session.wants_write()
            && Pin::new(&mut self.transport).poll_close(&mut cx).is_ready()
        {
            self.transport_closed = true;
            progress = true;
        }
        progress
    }

    /// Writes pending output; flushes the transport once everything is written.
    fn poll_output(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        if self.transport_closed {
            return false;
        }
        loop {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let n = self.session.poll_transmit(&mut slices);
            if n == 0 {
                break;
            }
            match Pin::new(&mut self.transport).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    self.session
                        .handle_transport_error(io::ErrorKind::WriteZero.into());
                    return true;
                }
                Poll::Ready(Ok(written)) => {
                    self.session.transmitted(written);
                    self.needs_flush = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.session.handle_transport_error(e);
                    return true;
                }
                Poll::Pending => return progress,
            }
        }
        if self.needs_flush {
            match Pin::new(&mut self.transport).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => {
                    self.session.handle_transport_error(e);
                    return true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }

    /// Reads input while the session wants it.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        if std::mem::take(&mut self.input_paused) && !self.eof && self.session.wants_read() {
            // Input resumes: first the frames left in the buffer when it paused; the transport
            // may have nothing more to give for a long time.
            progress = self.feed_buffered();
        }
        for _ in 0..READS_PER_DRIVE {
            if !self.session.wants_read() {
                self.input_paused = !self.session.is_closed();
                return progress;
            }
            if self.eof {
                // Frames left in the buffer after a pause, then the end.
                return self.feed_buffered() || progress;
            }
            let len = self.read_buf.len();
            let want = self.read_size;
            self.read_buf.resize(len + want, 0);
            let polled = Pin::new(&mut self.transport).poll_read(cx, &mut self.read_buf[len..]);
            match polled {
                Poll::Ready(Ok(0)) => {
                    self.read_buf.truncate(len);
                    self.eof = true;
                    let _ = self
                        .session
                        .handle_eof(self.timer.now(), &mut self.read_buf);
                    return true;
                }
                Poll::Ready(Ok(n)) => {
                    self.read_buf.truncate(len + n);
                    self.read_size = if n == want {
                        (want * 2).min(READ_MAX)
                    } else {
                        (n * 2).clamp(READ_MIN, READ_MAX)
                    };
                    let _ = self
                        .session
                        .handle_input(self.timer.now(), &mut self.read_buf);
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.read_buf.truncate(len);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    self.session.handle_transport_error(e);
                    return true;
                }
                Poll::Pending => {
                    self.read_buf.truncate(len);
                    return progress;
                }
            }
        }
        // Still readable after many reads: come back soon, without hogging this task.
        cx.waker().wake_by_ref();
        progress
    }

    /// Feeds the frames already in `read_buf` to the session (and, once the transport ended,
    /// the end of input); returns whether anything was consumed or the session ended.
    fn feed_buffered(&mut self) -> bool {
        let before = self.read_buf.len();
        let now = self.timer.now();
        let _ = if self.eof {
            self.session.handle_eof(now, &mut self.read_buf)
        } else {
            self.session.handle_input(now, &mut self.read_buf)
        };
        before != self.read_buf.len() || self.session.is_closed()
    }

    /// Keeps a sleep armed for the session's next deadline, woken through the fan-out waker.
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

    /// Turns session events into the wakers of the tasks that wait for them.
    fn dispatch_events(&mut self, wake: &mut Vec<Waker>) -> bool {
        let mut any = false;
        while let Some(event) = self.session.poll_event() {
            any = true;
            match event {
                Event::StreamOpened { .. } => self.wakers.take_connection(wake),
                Event::StreamReadable { stream_id } => {
                    self.wakers.take(Slot::Read(stream_id), wake)
                }
                Event::StreamWritable { stream_id } => {
                    self.wakers.take(Slot::Write(stream_id), wake)
                }
                Event::Closed(_) => {
                    // Everyone must see the end; the fan-out wakes every parked task.
                    self.fan_out.wake_by_ref();
                }
                _ => {}
            }
        }
        any
    }

    /// Whether a drive is due after an operation completed without driving: output is
    /// pending, or the operation (a read) freed receive budget and paused input can resume.
    pub(crate) fn needs_drive(&self) -> bool {
        self.session.wants_write() || (self.input_paused && self.session.wants_read())
    }

    /// Whether output is fully handed to the transport and flushed.
    pub(crate) fn output_flushed(&self) -> bool {
        !self.session.wants_write() && !self.needs_flush
    }

    /// Whether the transport was closed.
    pub(crate) fn transport_closed(&self) -> bool {
        self.transport_closed
    }
}
