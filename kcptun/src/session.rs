//! One KCP session over UDP: the state shared by the user's [`KcpStream`] and the session's
//! driver task.
//!
//! ```text
//!  KcpStream (poll_read / poll_write)      driver task (one per session)
//!        \                                  /  timer: kcp.update at KCP's next deadline
//!         +---- Mutex<State> { Kcp, ... } -+   notified: flush now (a write, acks to send)
//!        /                                  \  client: reads the connected UDP socket
//!  KcpListener's task: datagrams of a       then sends what KCP put in the outbox
//!  server session go straight to `input`
//! ```
//!
//! KCP itself (`kcp` crate) never touches a socket: its output callback puts finished
//! datagrams (kcp-go's header already prepended) in an outbox, and the driver sends them with
//! no lock held. Writes are accepted while KCP's queue holds fewer segments than the send
//! window and the peer's receive window allow (kcp-go's rule), so a fast writer waits instead
//! of buffering without bound.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use kcp::Kcp;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::config::KcpConfig;
use crate::error::{KcpError, PacketError};
use crate::packet::{self, NONCE_LEN};

/// KCP's command number for an ack (`IKCP_CMD_ACK`).
const CMD_ACK: u8 = 82;
/// An ack whose echoed timestamp is older than this (or from the future) is dropped before
/// KCP sees it: KCP's round-trip arithmetic would overflow on it. KCP's own largest
/// retransmission timeout is 60 s.
const MAX_ACK_AGE_MS: u32 = 60_000;
/// How long a dropped or shut-down session keeps retransmitting what the peer has not yet
/// acknowledged.
const LINGER: Duration = Duration::from_secs(10);
/// At most this many segments' worth of bytes per write (KCP refuses one `send` of 128
/// segments or more).
const MAX_SEGMENTS_PER_WRITE: usize = 64;

/// Where the driver sends datagrams.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    /// A client's connected socket: `send`, and read it too.
    Connected,
    /// A server session on the listener's socket: `send_to` the peer.
    To(SocketAddr),
}

/// KCP's output callback: wraps each datagram in kcp-go's header and queues it.
struct Outbox {
    queue: Arc<Mutex<VecDeque<Vec<u8>>>>,
    rng: fastrand::Rng,
}

impl io::Write for Outbox {
    fn write(&mut self, kcp: &[u8]) -> io::Result<usize> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce);
        let mut datagram = Vec::new();
        packet::encode(kcp, nonce, &mut datagram);
        lock(&self.queue).push_back(datagram);
        Ok(kcp.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them half-updated in a way that matters
    // more than stopping would: take the data either way.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct State {
    kcp: Kcp<Outbox>,
    /// Bytes of a segment larger than the reader's buffer, not yet read.
    leftover: Vec<u8>,
    leftover_at: usize,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    shutdown_waker: Option<Waker>,
    error: Option<KcpError>,
    /// A write or an input wants KCP flushed now rather than at its next tick.
    flush_now: bool,
    /// `poll_shutdown` was called: no more writes.
    shut_down: bool,
    /// The `KcpStream` is gone: the driver ends once the peer has everything.
    dropped: bool,
    /// The driver has ended.
    finished: bool,
    /// Datagrams dropped for failing the checks, by reason (for diagnostics and tests).
    dropped_datagrams: u64,
}

impl State {
    fn write_limit(&self) -> usize {
        usize::from(self.kcp.snd_wnd().min(self.kcp.rmt_wnd())).max(1)
    }

    fn wake_all(&mut self) {
        for w in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.shutdown_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    outbox: Arc<Mutex<VecDeque<Vec<u8>>>>,
    driver: Notify,
    conv: u32,
    peer: SocketAddr,
    start: Instant,
    ack_nodelay: bool,
    dead_link: u32,
}

impl Shared {
    pub(crate) fn new(conv: u32, peer: SocketAddr, config: &KcpConfig) -> io::Result<Arc<Self>> {
        config.validate().map_err(io::Error::other)?;
        let outbox = Arc::new(Mutex::new(VecDeque::new()));
        let mut seed = [0u8; 8];
        getrandom::getrandom(&mut seed).map_err(io::Error::other)?;
        let mut kcp = Kcp::new_stream(
            conv,
            Outbox {
                queue: outbox.clone(),
                rng: fastrand::Rng::with_seed(u64::from_le_bytes(seed)),
            },
        );
        kcp.set_mtu(config.mtu - packet::HEADER_LEN)
            .map_err(io::Error::other)?;
        kcp.set_wndsize(config.snd_wnd, config.rcv_wnd);
        kcp.set_nodelay(
            config.nodelay,
            i32::try_from(config.interval).unwrap_or(i32::MAX),
            i32::try_from(config.resend).unwrap_or(i32::MAX),
            config.no_congestion,
        );
        kcp.set_maximum_resend_times(config.dead_link);
        // KCP refuses to flush before its first update.
        kcp.update(0).map_err(io::Error::from)?;
        Ok(Arc::new(Shared {
            state: Mutex::new(State {
                kcp,
                leftover: Vec::new(),
                leftover_at: 0,
                read_waker: None,
                write_waker: None,
                shutdown_waker: None,
                error: None,
                flush_now: false,
                shut_down: false,
                dropped: false,
                finished: false,
                dropped_datagrams: 0,
            }),
            outbox,
            driver: Notify::new(),
            conv,
            peer,
            start: Instant::now(),
            ack_nodelay: config.ack_nodelay,
            dead_link: config.dead_link,
        }))
    }

    fn now_ms(&self) -> u32 {
        // KCP's clock is 32-bit milliseconds and wraps; so does this.
        self.start.elapsed().as_millis() as u32
    }

    pub(crate) fn conv(&self) -> u32 {
        self.conv
    }

    pub(crate) fn is_finished(&self) -> bool {
        lock(&self.state).finished
    }

    /// Ends the session with `e` (the first error wins) and wakes everyone.
    pub(crate) fn fail(&self, e: KcpError) {
        let mut st = lock(&self.state);
        if st.error.is_none() {
            st.error = Some(e);
        }
        st.wake_all();
        drop(st);
        self.driver.notify_one();
    }

    /// Takes one datagram from the peer. A datagram that fails the checks is dropped (and
    /// counted); one that makes KCP itself fail ends the session.
    pub(crate) fn input(&self, datagram: &[u8]) -> Result<(), PacketError> {
        let d = packet::decode(datagram)?;
        if d.first.conv != self.conv {
            lock(&self.state).dropped_datagrams += 1;
            return Err(PacketError::WrongConversation {
                expected: self.conv,
                found: d.first.conv,
            });
        }
        let now = self.now_ms();
        let mut stale_ack = false;
        packet::for_each_segment(d.kcp, |h| {
            if h.cmd == CMD_ACK && now.wrapping_sub(h.ts) > MAX_ACK_AGE_MS {
                stale_ack = true;
            }
        });
        let mut st = lock(&self.state);
        if stale_ack {
            st.dropped_datagrams += 1;
            return Err(PacketError::Segment(
                "an ack echoing a timestamp this session never sent",
            ));
        }
        if st.error.is_some() {
            return Ok(());
        }
        let kcp = &mut st.kcp;
        match catch_unwind(AssertUnwindSafe(|| kcp.input(d.kcp))) {
            Ok(Ok(_)) => {}
            // KCP refused the datagram (a command or size it rejects): drop it.
            Ok(Err(_)) => st.dropped_datagrams += 1,
            Err(_) => {
                st.error = Some(KcpError::Malformed {
                    peer: self.peer,
                    reason: "sequence numbers outside the session's range".into(),
                });
                st.wake_all();
                drop(st);
                self.driver.notify_one();
                return Ok(());
            }
        }
        if st.kcp.peeksize().is_ok() {
            if let Some(w) = st.read_waker.take() {
                w.wake();
            }
        }
        if st.kcp.wait_snd() < st.write_limit() {
            if let Some(w) = st.write_waker.take() {
                w.wake();
            }
        }
        if st.kcp.wait_snd() == 0 {
            if let Some(w) = st.shutdown_waker.take() {
                w.wake();
            }
        }
        if self.ack_nodelay {
            st.flush_now = true;
            drop(st);
            self.driver.notify_one();
        }
        Ok(())
    }

    /// Datagrams dropped so far for failing the checks.
    pub(crate) fn dropped_datagrams(&self) -> u64 {
        lock(&self.state).dropped_datagrams
    }

    /// One turn of the driver: update/flush KCP, collect what to send, and say when to come
    /// back (`None`: the session is over).
    fn turn(&self, linger_until: &mut Option<Instant>) -> (Vec<Vec<u8>>, Option<Duration>) {
        let now = self.now_ms();
        let mut st = lock(&self.state);
        let mut done = st.error.is_some();
        if !done {
            let flush_now = std::mem::take(&mut st.flush_now);
            let kcp = &mut st.kcp;
            let r = catch_unwind(AssertUnwindSafe(|| {
                kcp.update(now)?;
                if flush_now {
                    kcp.flush()?;
                }
                Ok::<_, kcp::Error>(())
            }));
            let failure = match r {
                Ok(Ok(())) if st.kcp.is_dead_link() => Some(KcpError::DeadLink {
                    peer: self.peer,
                    limit: self.dead_link,
                }),
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(KcpError::socket(&io::Error::from(e))),
                Err(_) => Some(KcpError::Malformed {
                    peer: self.peer,
                    reason: "KCP's state went out of range while flushing".into(),
                }),
            };
            if let Some(e) = failure {
                st.error = Some(e);
                st.wake_all();
                done = true;
            }
        }
        if st.dropped || st.shut_down {
            let until = *linger_until.get_or_insert_with(|| Instant::now() + LINGER);
            let unacked = st.kcp.wait_snd();
            if (st.dropped && unacked == 0) || (unacked > 0 && Instant::now() >= until) {
                done = true;
            }
        }
        let wait = if done {
            st.finished = true;
            st.wake_all();
            None
        } else {
            let next = st.kcp.check(now);
            Some(Duration::from_millis(u64::from(
                next.wrapping_sub(now).min(5_000),
            )))
        };
        drop(st);
        let packets = lock(&self.outbox).drain(..).collect();
        (packets, wait)
    }
}

/// Runs a session: KCP's timer, flushes, sending; on a client, reading the socket too.
pub(crate) async fn drive(shared: Arc<Shared>, socket: Arc<UdpSocket>, route: Route) {
    let mut linger_until = None;
    let mut buf = vec![0u8; 65_536];
    loop {
        let (packets, wait) = shared.turn(&mut linger_until);
        for p in &packets {
            let sent = match route {
                Route::Connected => socket.send(p).await,
                Route::To(addr) => socket.send_to(p, addr).await,
            };
            if let Err(e) = sent {
                shared.fail(socket_error(&e, shared.peer));
            }
        }
        let Some(wait) = wait else { break };
        match route {
            Route::Connected => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.driver.notified() => {}
                    r = socket.recv(&mut buf) => {
                        let mut r = r;
                        // Take everything already queued before flushing once.
                        loop {
                            match r {
                                Ok(n) => { let _ = shared.input(&buf[..n]); }
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(e) => { shared.fail(socket_error(&e, shared.peer)); break; }
                            }
                            r = socket.try_recv(&mut buf);
                        }
                    }
                }
            }
            Route::To(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.driver.notified() => {}
                }
            }
        }
    }
}

fn socket_error(e: &io::Error, peer: SocketAddr) -> KcpError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        KcpError::PeerUnreachable { peer }
    } else {
        KcpError::socket(e)
    }
}

/// One KCP session as a byte stream (tokio's `AsyncRead` + `AsyncWrite`), in kcp-go's packet
/// format with `--crypt none`, so that a `smux_tokio::Mux` runs over it unchanged.
///
/// Make one with [`KcpStream::connect`] (the client side: a random conversation id, as
/// kcp-go's `DialWithOptions`) or take one from [`KcpListener::accept`](crate::KcpListener::accept).
///
/// - Reading waits for the peer's bytes; KCP has no end of stream, so a read never returns 0
///   (the smux layer above says when a stream ends), only an error when the session fails
///   (see [`KcpError`]).
/// - Writing hands bytes to KCP and returns once KCP's queue has room (backpressure: at most
///   the send window, or the peer's receive window if smaller, in segments are queued).
/// - `poll_shutdown` waits until the peer has acknowledged everything written (bounded by
///   KCP's retransmission limit), then refuses further writes; reading goes on.
/// - Dropping the stream lets the session retransmit what the peer still lacks for up to
///   10 s in the background, then ends it.
pub struct KcpStream {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpStream")
            .field("conv", &self.shared.conv)
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl KcpStream {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        KcpStream { shared }
    }

    /// Opens a KCP session to `peer` (a kcptun server, or a [`KcpListener`](crate::KcpListener))
    /// from a new UDP socket. KCP has no handshake: this returns at once, and the first bytes
    /// written open the conversation on the far side.
    pub async fn connect(peer: SocketAddr, config: &KcpConfig) -> io::Result<KcpStream> {
        let local: SocketAddr = if peer.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = crate::udp_socket(local, config.sockbuf)?;
        socket.connect(peer).await?;
        let mut conv = [0u8; 4];
        getrandom::getrandom(&mut conv).map_err(io::Error::other)?;
        let shared = Shared::new(u32::from_le_bytes(conv), peer, config)?;
        tokio::spawn(drive(shared.clone(), Arc::new(socket), Route::Connected));
        Ok(KcpStream { shared })
    }

    /// The conversation id (the first field of every KCP segment).
    pub fn conv(&self) -> u32 {
        self.shared.conv
    }

    /// The peer's UDP address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Datagrams from the peer's address dropped so far for failing the checks (checksum,
    /// segment layout, conversation).
    pub fn dropped_datagrams(&self) -> u64 {
        self.shared.dropped_datagrams()
    }

    /// Segments written but not yet acknowledged by the peer.
    pub fn unacknowledged(&self) -> usize {
        lock(&self.shared.state).kcp.wait_snd()
    }
}

impl Drop for KcpStream {
    fn drop(&mut self) {
        lock(&self.shared.state).dropped = true;
        self.shared.driver.notify_one();
    }
}

impl AsyncRead for KcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = lock(&self.shared.state);
        let before = buf.filled().len();
        if st.leftover_at < st.leftover.len() {
            let n = buf.remaining().min(st.leftover.len() - st.leftover_at);
            let at = st.leftover_at;
            buf.put_slice(&st.leftover[at..at + n]);
            st.leftover_at += n;
        }
        while buf.remaining() > 0 {
            let Ok(size) = st.kcp.peeksize() else { break };
            if size <= buf.remaining() {
                let dst = &mut buf.initialize_unfilled()[..size];
                match st.kcp.recv(dst) {
                    Ok(n) => buf.advance(n),
                    Err(_) => break,
                }
            } else {
                let mut seg = vec![0u8; size];
                match st.kcp.recv(&mut seg) {
                    Ok(n) => {
                        seg.truncate(n);
                        let take = buf.remaining();
                        buf.put_slice(&seg[..take]);
                        st.leftover = seg;
                        st.leftover_at = take;
                    }
                    Err(_) => break,
                }
            }
        }
        if buf.filled().len() > before {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &st.error {
            return Poll::Ready(Err(e.clone().into()));
        }
        if st.finished {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        }
        st.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for KcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = lock(&self.shared.state);
        if let Some(e) = &st.error {
            return Poll::Ready(Err(e.clone().into()));
        }
        if st.shut_down || st.finished {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let limit = st.write_limit();
        let queued = st.kcp.wait_snd();
        if queued >= limit {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let room = (limit - queued).min(MAX_SEGMENTS_PER_WRITE) * st.kcp.mss();
        let n = buf.len().min(room);
        match st.kcp.send(&buf[..n]) {
            Ok(n) => {
                st.flush_now = true;
                drop(st);
                self.shared.driver.notify_one();
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io::Error::from(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are in KCP's queue and the driver has been told to send them; KCP
        // retransmits until they are acknowledged, so there is nothing more to wait for here.
        match &lock(&self.shared.state).error {
            Some(e) => Poll::Ready(Err(e.clone().into())),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = lock(&self.shared.state);
        if !st.shut_down {
            st.shut_down = true;
            st.flush_now = true;
            self.shared.driver.notify_one();
        }
        if let Some(e) = &st.error {
            return Poll::Ready(Err(e.clone().into()));
        }
        if st.kcp.wait_snd() == 0 {
            return Poll::Ready(Ok(()));
        }
        if st.finished {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        st.shutdown_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
