//! The session: one connection's protocol state, driven by the caller.
//!
//! Reading top to bottom: construction and getters; inputs (`handle_input`, `handle_eof`,
//! `handle_timeout`, `handle_transport_error`); stream commands (open, accept, read, write,
//! finish, release, close); outputs (`poll_transmit`, `poll_event`, `poll_timeout`). The
//! machinery behind them has a file per concern: [`receive`] (frames in, reads, receive
//! credit), [`send`] (writes, scheduling, control frames), [`timers`] (keepalive and the
//! deadlines of stalls, early FINs and holds), [`lifecycle`] (reaping streams, closing,
//! failing) and [`direct`] (zero-copy writes).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::Config;
use crate::credit::Credit;
use crate::early_fins::EarlyFins;
use crate::error::{Error, OpenError, ProtocolViolation, ReadError, WriteError};
use crate::event::{Event, Stats};
use crate::frame::{Cmd, Frame, FrameDecoder, Version};
use crate::path::PathEstimate;
use crate::schedule::ReadyQueue;
use crate::snapshot::{InputPause, SessionSnapshot, StreamSnapshot};
use crate::stream::{Stall, Stream, WriteHalf};
use crate::stream_id::{Side, StreamId, StreamIdAllocator};
use crate::trace::event;

pub(crate) mod direct;
mod lifecycle;
mod receive;
mod send;
mod timers;

/// Frames are moved from stream queues into the transmit queue until it holds this much, so a
/// burst of data never delays a control frame by more than this.
const TRANSMIT_TARGET: usize = 256 * 1024;
/// Allocation unit of the buffer [`Session::write`] copies into.
const WRITE_ARENA: usize = 256 * 1024;
/// Writes shorter than this get an allocation of their own: a chunk that keeps an arena
/// alive (its stream blocked, say) is at least 1/16 of it.
const WRITE_ARENA_MIN: usize = WRITE_ARENA / 16;

/// Control frames waiting (refusal FINs above all) before the session stops reading input: a
/// peer that floods SYNs and never reads our answers gets backpressure, not our memory.
const CONTROL_QUEUE_LIMIT: usize = 4096;

/// How long a version 2 stream waits for window after the peer's FIN when keepalive, whose
/// timeout is used otherwise, is disabled (Go's default keepalive timeout).
const STALL_TIMEOUT_WITHOUT_KEEPALIVE: Duration = Duration::from_secs(30);

/// A control frame waiting to be emitted ahead of data.
#[derive(Debug, Clone, Copy)]
enum Control {
    Syn(StreamId),
    Fin(StreamId),
    /// Carries the stream's latest consumed count when emitted.
    Upd(StreamId),
    Nop,
}

/// A drain in progress (see [`Session::drain`]).
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// When the session closes even with streams left.
    deadline: Option<Instant>,
}

#[derive(Debug, Clone)]
enum State {
    Open,
    /// `close` was called: streams are finishing and the transmit queue draining.
    Closing,
    Closed(Error),
}

/// The protocol state of one smux connection, client or server side.
///
/// See the [crate documentation](crate) for the driving contract.
#[derive(Debug)]
pub struct Session {
    side: Side,
    config: Config,
    decoder: FrameDecoder,
    state: State,
    ids: StreamIdAllocator,
    /// Boxed: the table keeps a slot per stream and then some (it doubles as it grows), and a
    /// slot is 16 bytes this way, not the size of a stream.
    streams: HashMap<StreamId, Box<Stream>, crate::id_hash::RandomIdState>,
    /// Peer-opened streams not accepted yet.
    backlog: VecDeque<StreamId>,
    /// Unread bytes of the streams in the backlog.
    backlog_buffered: usize,
    events: VecDeque<Event>,
    control: VecDeque<Control>,
    nop_queued: bool,
    ready: ReadyQueue,
    outbox: crate::outbox::Outbox,
    /// Unread bytes of all streams (the receive budget in use).
    recv_buffered: usize,
    /// Version 2: the windows granted to the peer, carved out of the receive budget.
    credit: Credit,
    /// Version 2: the round trip, to size those windows to the path.
    path: PathEstimate,
    /// Written, unframed bytes of all streams.
    send_buffered: usize,
    /// Where [`write`](Self::write) copies data: chunks are split off it, and once they are
    /// all sent its allocation is reused, so steady writing neither allocates nor touches
    /// cold memory.
    write_arena: BytesMut,
    /// Streams whose writes were refused because the session send budget was full.
    send_waiters: Vec<StreamId>,
    /// End of input was reported; the session ends once the input buffer is used up.
    input_ended: bool,
    /// Reading was paused (budget used up): the keepalive timeout does not run meanwhile.
    input_paused: bool,
    now: Instant,
    last_input: Instant,
    next_keepalive: Instant,
    /// Streams whose FIN sits in the transmit queue.
    fins_in_outbox: Vec<StreamId>,
    /// Version 2 streams waiting for window after the peer's FIN, in deadline order; a
    /// stream is in it once (see `Stall`), with the deadline it had when queued:
    /// one that stalled again since is queued again at its new deadline when the old one
    /// comes, so a peer granting a few bytes at a time cannot grow this per frame.
    stall_deadlines: VecDeque<(Instant, StreamId)>,
    /// A direct write was begun and not ended yet: no other output until it is.
    direct_in_flight: bool,
    /// Set by [`drain`](Self::drain).
    drain: Option<Drain>,
    /// Streams whose FIN went out before the peer sent anything on them: it goes again if
    /// the peer may have missed it (see `early_fins`).
    early_fins: EarlyFins,
    /// Streams the peer opened whose output is held (`Stream::held`), with the deadline of
    /// the hold, in deadline order (every hold is as long).
    holds: VecDeque<(Instant, StreamId)>,
    /// The span of this session's log events.
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    stats: Stats,
}

impl Session {
    /// A session for one end of a connection, starting at `now`.
    pub fn new(side: Side, config: Config, now: Instant) -> Result<Session, crate::ConfigError> {
        config.validate()?;
        let credit = Credit::new(config.max_receive_buffer, config.max_stream_buffer);
        #[cfg(feature = "tracing")]
        let span = crate::trace::session_span(side, config.version);
        #[cfg(feature = "tracing")]
        tracing::debug!(parent: &span, "session started");
        Ok(Session {
            side,
            decoder: FrameDecoder::new(config.version),
            outbox: crate::outbox::Outbox::new(config.version),
            next_keepalive: now + config.keep_alive_interval,
            config,
            state: State::Open,
            ids: StreamIdAllocator::new(side),
            streams: HashMap::default(),
            backlog: VecDeque::new(),
            backlog_buffered: 0,
            events: VecDeque::new(),
            control: VecDeque::new(),
            nop_queued: false,
            ready: ReadyQueue::default(),
            recv_buffered: 0,
            credit,
            path: PathEstimate::default(),
            send_buffered: 0,
            write_arena: BytesMut::new(),
            send_waiters: Vec::new(),
            input_ended: false,
            input_paused: false,
            now,
            last_input: now,
            fins_in_outbox: Vec::new(),
            stall_deadlines: VecDeque::new(),
            direct_in_flight: false,
            drain: None,
            early_fins: EarlyFins::default(),
            holds: VecDeque::new(),
            #[cfg(feature = "tracing")]
            span,
            stats: Stats::default(),
        })
    }

    // ----------------------------------------------------------------------------------------
    // Getters

    /// The `tracing` span of this session's log events (feature `tracing`): a driver can
    /// enter it, or use it as the parent of its own events.
    #[cfg(feature = "tracing")]
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Which end this session is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Streams the session tracks: open, waiting in the backlog, or released and still sending.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Unread bytes buffered across all streams.
    pub fn buffered_input(&self) -> usize {
        self.recv_buffered
    }

    /// Written bytes not yet framed, across all streams.
    pub fn buffered_output(&self) -> usize {
        self.send_buffered
    }

    /// Why the session ended, once it has.
    pub fn error(&self) -> Option<&Error> {
        match &self.state {
            State::Closed(e) => Some(e),
            _ => None,
        }
    }

    /// True once the session has ended (failed, or finished closing).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// True once [`close`](Self::close) was called or the session ended.
    pub fn is_closing(&self) -> bool {
        !matches!(self.state, State::Open)
    }

    /// Whether the caller should read more input and pass it to
    /// [`handle_input`](Self::handle_input): true unless [`input_pause`](Self::input_pause)
    /// gives a reason not to.
    pub fn wants_read(&self) -> bool {
        self.input_pause().is_none()
    }

    /// Why input is paused, if it is: in version 1 while the receive budget is used up (until
    /// the application reads; version 2 bounds it with windows instead and never pauses for
    /// it), while `accept_backlog` streams wait to be accepted or the streams waiting hold a
    /// whole receive budget of data (until the application accepts), while too many control
    /// frames wait to be sent (until the transport takes them), and once the session ended.
    pub fn input_pause(&self) -> Option<InputPause> {
        if self.is_closed() {
            Some(InputPause::Closed)
        } else if self.backlog.len() >= self.config.accept_backlog
            || self.backlog_buffered >= self.config.max_receive_buffer
        {
            Some(InputPause::AcceptBacklog)
        } else if self.control.len() >= CONTROL_QUEUE_LIMIT {
            Some(InputPause::ControlQueue)
        } else if self.config.version == Version::V1
            && self.recv_buffered >= self.config.max_receive_buffer
        {
            Some(InputPause::ReceiveBudget)
        } else {
            None
        }
    }

    /// The state of the session and of every stream, for debugging (O(streams)).
    pub fn snapshot(&self) -> SessionSnapshot {
        let mut streams: Vec<StreamSnapshot> =
            self.streams.iter().map(|(&id, s)| s.snapshot(id)).collect();
        streams.sort_by_key(|s| s.id);
        SessionSnapshot {
            side: self.side,
            version: self.config.version,
            input_pause: self.input_pause(),
            closing: self.is_closing(),
            draining: self.is_draining(),
            error: self.error().cloned(),
            buffered_input: self.recv_buffered,
            buffered_output: self.send_buffered,
            receive_credit: if self.config.version == Version::V2 {
                self.credit.reserved()
            } else {
                0
            },
            accept_backlog: self.backlog.len(),
            queued_control: self.control.len() + usize::from(self.nop_queued),
            queued_transmit: self.outbox.len(),
            round_trip: self.round_trip(),
            stats: self.stats,
            streams,
        }
    }

    /// Version 2: the round-trip time the receive windows are sized for (the least recent
    /// sample; see [`Config::max_stream_buffer`]); `None` in version 1 and until measured.
    pub fn round_trip(&self) -> Option<Duration> {
        self.path.round_trip()
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has bytes to give.
    pub fn wants_write(&self) -> bool {
        !self.direct_in_flight
            && (!self.outbox.is_empty()
                || !self.control.is_empty()
                || self.nop_queued
                || !self.ready.is_empty())
    }

    // ----------------------------------------------------------------------------------------
    // Inputs

    /// Takes every complete frame from the front of `buf` and acts on it. Payloads are split
    /// off without copying. Stops early, leaving frames in `buf`, when
    /// [`wants_read`](Self::wants_read) turns false; call again once it is true.
    ///
    /// An `Err` means the session has ended (it is also reported as [`Event::Closed`]).
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), Error> {
        self.observe_time(now);
        if let State::Closed(e) = &self.state {
            return Err(e.clone());
        }
        loop {
            if !self.wants_read() {
                if !self.input_paused {
                    event!(
                        self,
                        debug,
                        reason = %self.input_pause().map(|p| p.to_string()).unwrap_or_default(),
                        "input paused"
                    );
                }
                self.input_paused = true;
                return Ok(());
            }
            let before = buf.len();
            let frame = match self.decoder.decode(buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(violation) => return Err(self.fail(violation.into())),
            };
            self.stats.frames_in += 1;
            self.stats.bytes_in += (before - buf.len()) as u64;
            self.last_input = now;
            if let Err(violation) = self.handle_frame(frame) {
                return Err(self.fail(violation.into()));
            }
        }
        if self.input_ended {
            let error = if buf.is_empty() {
                Error::PeerClosed
            } else {
                Error::TruncatedFrame {
                    received: buf.len(),
                }
            };
            return Err(self.fail(error));
        }
        Ok(())
    }

    /// Reports the end of input: the transport will deliver nothing more. `buf` holds what
    /// [`handle_input`](Self::handle_input) has not consumed yet. Complete frames in it are
    /// still processed (now, or by later `handle_input` calls if reading is paused); then the
    /// session ends with [`Error::PeerClosed`], or [`Error::TruncatedFrame`] if a partial frame
    /// remains.
    pub fn handle_eof(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), Error> {
        self.input_ended = true;
        self.handle_input(now, buf)
    }

    /// Ends the session because the transport failed.
    pub fn handle_transport_error(&mut self, error: io::Error) {
        self.fail(Error::Transport(Arc::new(error)));
    }

    /// Advances time: sends keepalives, enforces the keepalive timeout and fails version 2
    /// writes stalled after the peer's FIN. Call it when [`poll_timeout`](Self::poll_timeout)
    /// is reached (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe_time(now);
        if self.is_closed() {
            return;
        }
        if !self.config.keep_alive_disabled {
            self.keep_alive(now);
            if self.is_closed() {
                return;
            }
        }
        self.expire_stream_deadlines(now);
        self.check_drain();
    }

    // ----------------------------------------------------------------------------------------
    // Stream commands

    /// Opens a stream. Its SYN is queued at once; data can be written immediately.
    pub fn open_stream(&mut self) -> Result<StreamId, OpenError> {
        match &self.state {
            State::Open => {}
            State::Closing => return Err(OpenError::SessionClosed(Error::LocallyClosed)),
            State::Closed(e) => return Err(OpenError::SessionClosed(e.clone())),
        }
        if self.drain.is_some() {
            return Err(OpenError::Draining);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(OpenError::TooManyStreams {
                limit: self.config.max_streams,
            });
        }
        // Skip ids a misbehaving peer may already have opened with our parity.
        let id = loop {
            let id = self.ids.next().ok_or(OpenError::GoAway)?;
            if !self.streams.contains_key(&id) {
                break id;
            }
        };
        // A new stream starts read-blocked, so its first data is reported as readable.
        self.control.push_back(Control::Syn(id));
        self.create_stream(id);
        self.narrow_initial_window(id);
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.syn_pending = true;
        }
        self.stats.streams_opened += 1;
        event!(self, debug, stream = id.as_u32(), "stream opened");
        Ok(id)
    }

    /// The next stream the peer opened, if one waits in the backlog. Streams that arrived
    /// before the session ended can still be accepted (and read to the end of what arrived);
    /// after [`close`](Self::close) the backlog is gone.
    pub fn accept_stream(&mut self) -> Option<StreamId> {
        let id = self.backlog.pop_front()?;
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.unaccepted = false;
            self.backlog_buffered -= stream.recv_len();
        }
        self.stats.streams_accepted += 1;
        event!(self, debug, stream = id.as_u32(), "stream accepted");
        Some(id)
    }

    /// Copies received data into `buf`.
    ///
    /// `Ok(0)` with a non-empty `buf` means the peer finished the stream and everything was
    /// read (an empty `buf` always gives `Ok(0)`). [`ReadError::Blocked`] means nothing is buffered yet; a
    /// [`Event::StreamReadable`] follows when something is.
    pub fn read(&mut self, stream_id: StreamId, buf: &mut [u8]) -> Result<usize, ReadError> {
        let mut at = 0;
        self.read_with(stream_id, buf.len(), &mut |run| {
            buf[at..at + run.len()].copy_from_slice(run);
            at += run.len();
        })
    }

    /// Like [`read`](Self::read), for a destination that is not an initialised slice (spare
    /// capacity of a buffer, tokio's `ReadBuf`): up to `max` received bytes are handed to
    /// `put` in order, as one or more runs, and their count is returned. `Ok(0)` with
    /// `max > 0` means the peer finished the stream and everything was read.
    ///
    /// ```
    /// # use smux_proto::{Config, ReadError, Session, Side};
    /// # let mut session = Session::new(Side::Client, Config::default(), std::time::Instant::now()).unwrap();
    /// # let id = session.open_stream().unwrap();
    /// let mut received = Vec::new();
    /// match session.read_with(id, 4096, &mut |run| received.extend_from_slice(run)) {
    ///     Ok(n) => assert_eq!(n, received.len()),
    ///     Err(ReadError::Blocked) => {} // nothing yet: `StreamReadable` follows
    ///     Err(e) => panic!("{e}"),
    /// }
    /// ```
    pub fn read_with(
        &mut self,
        stream_id: StreamId,
        max: usize,
        put: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, ReadError> {
        let stream = self.readable_stream(stream_id)?;
        if max == 0 {
            return Ok(0);
        }
        if stream.recv_len() > 0 {
            let n = stream.read_with(max, put);
            self.on_consumed(stream_id, n);
            return Ok(n);
        }
        self.read_end(stream_id).map(|()| 0)
    }

    /// Takes up to `max` received bytes without copying. `Ok(None)` means the peer finished the
    /// stream and everything was read (`max == 0` always gives an empty chunk); errors as
    /// [`read`](Self::read).
    pub fn read_chunk(
        &mut self,
        stream_id: StreamId,
        max: usize,
    ) -> Result<Option<Bytes>, ReadError> {
        let stream = self.readable_stream(stream_id)?;
        if max == 0 {
            return Ok(Some(Bytes::new()));
        }
        if let Some(chunk) = stream.read_chunk(max) {
            self.on_consumed(stream_id, chunk.len());
            return Ok(Some(chunk));
        }
        self.read_end(stream_id).map(|()| None)
    }

    /// Copies as much of `data` as the send buffers take; returns the count.
    ///
    /// [`WriteError::Blocked`] means no room; a [`Event::StreamWritable`] follows when there
    /// is. Writing an empty slice returns `Ok(0)`.
    pub fn write(&mut self, stream_id: StreamId, data: &[u8]) -> Result<usize, WriteError> {
        let n = self.write_room(stream_id, data.len())?;
        if n >= WRITE_ARENA_MIN {
            if self.write_arena.capacity() < n {
                // Reclaims the allocation in place when every chunk cut from it was sent.
                self.write_arena.reserve(n.max(WRITE_ARENA));
            }
            self.write_arena.extend_from_slice(&data[..n]);
            let chunk = self.write_arena.split().freeze();
            self.enqueue(stream_id, chunk);
        } else if n > 0 {
            self.enqueue(stream_id, Bytes::copy_from_slice(&data[..n]));
        }
        Ok(n)
    }

    /// Like [`write`](Self::write) without copying: takes a prefix of `data` (a cheap slice of
    /// it) and returns its length; the caller keeps the rest.
    pub fn write_chunk(&mut self, stream_id: StreamId, data: &Bytes) -> Result<usize, WriteError> {
        let n = self.write_room(stream_id, data.len())?;
        if n > 0 {
            self.enqueue(stream_id, data.slice(..n));
        }
        Ok(n)
    }

    /// Where the stream's output stands: `Ok(Some(end))` once everything written to it (and
    /// its FIN, once [finished](Self::finish)) has left the stream's queues for the transmit
    /// queue; it is on the wire once the first `end` bytes of the session's output are (see
    /// [`output_offset`](Self::output_offset)), whatever other streams queue after it.
    /// `Ok(None)` while some of it waits (for its turn, for window, for the end of the
    /// early-reply hold); this registers interest, like a `poll_*` method: a
    /// [`Event::StreamWritable`] follows when it has left (or when it never can).
    ///
    /// A driver flushes a stream by waiting for `Some(end)`, then for the transport to take
    /// `end` bytes of output and complete a flush after them.
    ///
    /// Once the stream's FIN was handed to the transport this is `Ok(Some(_))` for good, even
    /// after the session ended: everything written, FIN included, went out.
    pub fn poll_flushed(&mut self, stream_id: StreamId) -> Result<Option<u64>, WriteError> {
        let closed = self.error().cloned();
        let queued_end = self.queued_end();
        let stream = self.live_stream(stream_id)?;
        let end = output_end(queued_end, stream.output_end);
        if stream.fin_transmitted {
            return Ok(Some(end));
        }
        if stream.peer_stopped_reading {
            return Err(WriteError::PeerStoppedReading(stream_id));
        }
        let framed = stream.output_framed();
        if let Some(e) = closed {
            return Err(WriteError::SessionClosed(e));
        }
        if !framed {
            stream.flush_wanted = true;
            return Ok(None);
        }
        Ok(Some(end))
    }

    /// Bytes of output handed to the transport so far (by [`transmitted`](Self::transmitted),
    /// [`poll_transmit_chunks`](Self::poll_transmit_chunks) and direct writes): the offset
    /// the ends given by [`poll_flushed`](Self::poll_flushed) are measured in. Equal to
    /// [`Stats::bytes_out`].
    pub fn output_offset(&self) -> u64 {
        self.stats.bytes_out
    }

    /// The output offset just past the end of the transmit queue.
    pub(super) fn queued_end(&self) -> u64 {
        self.stats.bytes_out + self.outbox.len() as u64
    }

    /// Half-closes the stream: FIN is sent after the data already written, and reading goes on
    /// until the peer's FIN. Calling it again does nothing.
    pub fn finish(&mut self, stream_id: StreamId) -> Result<(), WriteError> {
        if self.live_stream(stream_id)?.write_half != WriteHalf::Open {
            return Ok(());
        }
        if let State::Closed(e) = &self.state {
            return Err(WriteError::SessionClosed(e.clone()));
        }
        self.finish_stream(stream_id);
        Ok(())
    }

    /// The application no longer uses the stream: unread data is dropped, data already written
    /// is still sent and followed by FIN, and the id is forgotten after that. Unknown ids are
    /// ignored.
    pub fn release_stream(&mut self, stream_id: StreamId) {
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return;
        };
        if stream.released {
            return;
        }
        stream.released = true;
        let dropped = stream.discard_recv();
        if dropped > 0 {
            self.on_consumed(stream_id, dropped);
        }
        if !self.is_closed() {
            self.finish_stream(stream_id);
        }
        self.reap(stream_id);
    }

    /// Closes the session gracefully: no new streams, every stream is finished after its data,
    /// and once everything is handed to the transport the session ends with
    /// [`Error::LocallyClosed`] (reported as [`Event::Closed`]); then close the transport.
    /// Data already received stays readable.
    pub fn close(&mut self) {
        if !matches!(self.state, State::Open) {
            return;
        }
        event!(self, debug, streams = self.streams.len(), "closing");
        self.state = State::Closing;
        // The end of the connection ends the refused streams too.
        self.early_fins.clear();
        for id in std::mem::take(&mut self.backlog) {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.unaccepted = false;
            }
            self.release_stream(id);
        }
        self.backlog_buffered = 0;
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            self.finish_stream(id);
        }
        self.check_close_complete();
    }

    // ----------------------------------------------------------------------------------------
    // Outputs

    /// Fills `dst` with the next bytes to write to the transport, in order, as slices for one
    /// vectored write; returns how many slots were used (0: nothing to send). After writing,
    /// report how many bytes the transport took with [`transmitted`](Self::transmitted).
    #[must_use]
    pub fn poll_transmit<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        if self.direct_in_flight {
            return 0;
        }
        self.prepare_transmit(TRANSMIT_TARGET);
        self.outbox.fill(dst)
    }

    /// Frames what is ready into the transmit queue, up to about `target` bytes; with nothing
    /// to send, a closing session may be done.
    fn prepare_transmit(&mut self, target: usize) {
        if !self.is_closed() {
            self.fill_outbox(target.clamp(1, TRANSMIT_TARGET));
            if self.outbox.is_empty() {
                self.check_close_complete();
            }
        }
    }

    /// Appends everything waiting to be sent to `out` and returns the byte count: the same as
    /// calling [`poll_transmit`](Self::poll_transmit), copying the slices and calling
    /// [`transmitted`](Self::transmitted) until nothing is left. For in-memory transports,
    /// tests, and drivers that copy into a buffer of their own anyway.
    pub fn transmit_into(&mut self, out: &mut BytesMut) -> usize {
        let mut total = 0;
        loop {
            let mut slices = [IoSlice::new(&[]); 32];
            let n = self.poll_transmit(&mut slices);
            if n == 0 {
                return total;
            }
            let mut written = 0;
            for slice in &slices[..n] {
                out.extend_from_slice(slice);
                written += slice.len();
            }
            self.transmitted(written);
            total += written;
        }
    }

    /// Moves the next bytes to write out of the session, as owned chunks appended to `out` in
    /// wire order, and returns their total length (0: nothing to send). The session counts
    /// them as handed to the transport (as [`transmitted`](Self::transmitted) would): writing
    /// them all, in order, before anything taken later is the caller's job.
    ///
    /// For drivers that write outside whatever guards the session, so other tasks can use
    /// the session during the system call. The chunks are no longer counted against
    /// [`Config::max_send_buffer`], so take more only once the previous ones are written.
    #[must_use]
    pub fn poll_transmit_chunks(&mut self, out: &mut VecDeque<Bytes>) -> usize {
        self.poll_transmit_chunks_up_to(out, TRANSMIT_TARGET)
    }

    /// [`poll_transmit_chunks`](Self::poll_transmit_chunks), framing only about `max` bytes
    /// (whole frames: at least one, and possibly one frame more than `max`; at most 256 KiB).
    ///
    /// What is taken is out of the scheduler's hands: frames queued later (a window update, a
    /// FIN, an interactive stream's request) go on the wire after it. A driver whose transport
    /// is full (its last write was `Pending`) should take small batches, so such frames wait
    /// behind little: at 100 Mbit/s a 256 KiB batch is 21 ms on the wire, a 32 KiB one 2.6 ms.
    #[must_use]
    pub fn poll_transmit_chunks_up_to(&mut self, out: &mut VecDeque<Bytes>, max: usize) -> usize {
        if self.direct_in_flight {
            return 0;
        }
        self.prepare_transmit(max);
        let n = self.outbox.take(out);
        if n > 0 {
            self.account_transmitted(n);
        }
        n
    }

    /// Records that the transport accepted the first `n` bytes given by
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn transmitted(&mut self, n: usize) {
        self.outbox.advance(n);
        self.account_transmitted(n);
    }

    fn account_transmitted(&mut self, n: usize) {
        self.stats.bytes_out += n as u64;
        if self.outbox.is_empty() {
            for id in self.fins_in_outbox.drain(..) {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.fin_transmitted = true;
                }
            }
            self.check_close_complete();
        }
    }

    /// The next thing the application should know about.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let mut next = self.next_stream_deadline();
        if let Some(Drain { deadline: Some(at) }) = self.drain {
            if matches!(self.state, State::Open) {
                next = min_instant(next, at);
            }
        }
        if !self.config.keep_alive_disabled {
            next = min_instant(next, self.next_keepalive);
            if !self.input_paused && self.wants_read() {
                next = min_instant(next, self.last_input + self.config.keep_alive_timeout);
            }
        }
        next
    }
}

/// A stream's output end from the low 32 bits it keeps (`Stream::output_end`), given the end
/// of the transmit queue, which is never before it. Exact while the stream's last frame is
/// less than 4 GiB behind; older than that, it reads as later than it was (a flush then waits
/// for output queued after it, which the transport takes anyway): never as earlier.
fn output_end(queued_end: u64, low: u32) -> u64 {
    let behind = (queued_end as u32).wrapping_sub(low);
    queued_end.saturating_sub(u64::from(behind))
}

pub(super) fn min_instant(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}
