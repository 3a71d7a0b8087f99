//! Interactive traffic beside bulk traffic with smol (issue 19: no stream waits on another,
//! and no wake-up is lost), protocol versions 1 and 2:
//!
//! - request/response (a 4-byte length and the payload, flushed by hand) and a proxy
//!   (`futures::io::copy` on the owned halves) beside never-stopping bulk streams, over a slow
//!   link: each exchange must finish within a number of link ticks derived from the link's
//!   rate and the buffers on the way (a flush used to wait for the output of every stream, so
//!   beside bulk writers it never finished). The tasks run on one `LocalExecutor`; the link
//!   ticks only when every task waits, so a count of ticks is deterministic;
//! - a read cancelled by a timer (`select`) on one stream while another task waits to read
//!   another stream, over loopback TCP: the data for the second stream must reach it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::future::{select, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Timer};
use smux_futures::test_util::{duplex_with_capacity, slow_link, LinkClock, LinkEnd};
use smux_smol::{Mux, MuxConfig, MuxStream, Version};
use smux_test_support::link::{round_trip_ticks, LINK_BUFFER, RATE};
use smux_test_support::payload;

// ---------------------------------------------------------------------------------------------
// The slow link and the bounds (`smux_test_support::link`)

/// Requests and responses: up to this many bytes of payload (and the 4-byte length).
const MESSAGE_MAX: usize = 3200;
/// Request/response exchanges per test.
const EXCHANGES: usize = 20;
/// Ticks the bulk streams run before the measured traffic starts, so that every queue on the
/// way is full.
const WARM_UP: u64 = 50;
/// Ticks a test may take in all, whatever it does (a hang guard; the bounds are per exchange).
const TOTAL_TICKS: u64 = 5_000;

type SlowMux = Mux<LinkEnd>;

fn config(version: Version) -> MuxConfig {
    MuxConfig::default().with_version(version)
}

/// Sets a flag when woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A connection over a slow link, its tasks on one executor, and a deadline in ticks.
struct Slow {
    ex: LocalExecutor<'static>,
    clock: LinkClock,
    client: SlowMux,
    /// Bytes the bulk readers read, both ways.
    bulk_read: Arc<AtomicU64>,
    /// Bulk streams writing towards the server and towards the client.
    up: Cell<usize>,
    down: Cell<usize>,
    /// The tick after which the test fails, and what it waits for then.
    deadline: Cell<u64>,
    waiting_for: RefCell<String>,
}

impl Slow {
    fn new(version: Version) -> Slow {
        let (a, b, clock) = slow_link(RATE, LINK_BUFFER);
        let client = smux_smol::client(a, config(version)).unwrap();
        let server = smux_smol::server(b, config(version)).unwrap();
        let ex = LocalExecutor::new();
        let bulk_read = Arc::new(AtomicU64::new(0));
        ex.spawn(serve(server, bulk_read.clone())).detach();
        Slow {
            ex,
            clock,
            client,
            bulk_read,
            up: Cell::new(0),
            down: Cell::new(0),
            deadline: Cell::new(TOTAL_TICKS),
            waiting_for: RefCell::new("the test".to_owned()),
        }
    }

    /// Runs `body` and every task until all of them wait, then ticks the link, and again,
    /// until `body` is done; fails when the deadline passes.
    fn run<F: Future>(&self, body: F) -> F::Output {
        let mut body = pin!(body);
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            loop {
                let mut ran = false;
                if flag.0.swap(false, Ordering::SeqCst) {
                    if let Poll::Ready(out) = body.as_mut().poll(&mut cx) {
                        return out;
                    }
                    ran = true;
                }
                while self.ex.try_tick() {
                    ran = true;
                }
                if !ran {
                    break;
                }
            }
            assert!(
                self.clock.now() < self.deadline.get(),
                "{} not done after tick {}",
                self.waiting_for.borrow(),
                self.deadline.get()
            );
            self.clock.tick();
            // The body may wait for ticks (`until`).
            flag.0.store(true, Ordering::SeqCst);
        }
    }

    /// The test fails if `what` is not done within `ticks` from now.
    fn expect_within(&self, ticks: u64, what: String) {
        self.deadline.set(self.clock.now() + ticks);
        *self.waiting_for.borrow_mut() = what;
    }

    /// Done at tick `tick` (for the body only: the runner polls it after every tick).
    async fn until(&self, tick: u64) {
        futures::future::poll_fn(|_| {
            if self.clock.now() >= tick {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Starts `bulk` bulk streams: even ones written by the client (the server reads and
    /// discards), odd ones written by the server (the client reads and discards); lets them
    /// run `WARM_UP` ticks.
    async fn start_bulk(&self, bulk: usize) {
        for i in 0..bulk {
            let role = if i % 2 == 0 {
                self.up.set(self.up.get() + 1);
                Role::Upload
            } else {
                self.down.set(self.down.get() + 1);
                Role::Download
            };
            let s = open(&self.client, role).await;
            let task = match role {
                Role::Upload => self.ex.spawn(write_forever(s)),
                _ => self.ex.spawn(discard(s, self.bulk_read.clone())),
            };
            task.detach();
        }
        self.until(self.clock.now() + WARM_UP).await;
        assert!(self.clock.queued() > 0, "the bulk streams are not running");
    }

    /// Ticks and bulk bytes so far.
    fn mark(&self) -> (u64, u64) {
        (self.clock.now(), self.bulk_read.load(Ordering::Relaxed))
    }

    fn bulk_read(&self, mark: (u64, u64)) -> u64 {
        self.bulk_read.load(Ordering::Relaxed) - mark.1
    }

    /// The bulk streams kept the link busy since `mark`: they moved at least half of what
    /// the link could carry their way.
    fn assert_bulk_kept_going(&self, mark: (u64, u64)) {
        let (ticks, bytes) = (self.clock.now() - mark.0, self.bulk_read(mark));
        let ways = u64::from(self.up.get() > 0) + u64::from(self.down.get() > 0);
        let floor = ticks * ways * RATE as u64 / 2;
        assert!(
            bytes >= floor,
            "the bulk streams moved {bytes} bytes in {ticks} ticks (expected {floor} at least)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The server's side and the bulk streams

/// What a stream is for: its first byte, written by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Role {
    /// Length-prefixed requests; the server answers each with `response(request)`.
    Request = b'R',
    /// The client writes forever; the server reads and discards.
    Upload = b'U',
    /// The server writes forever; the client reads and discards.
    Download = b'D',
    /// The server reads to the end, writes it all back, then closes.
    Echo = b'E',
}

impl Role {
    fn of(tag: u8) -> Role {
        [Role::Request, Role::Upload, Role::Download, Role::Echo]
            .into_iter()
            .find(|r| *r as u8 == tag)
            .unwrap_or_else(|| panic!("unknown role {tag}"))
    }
}

/// Accepts streams until the connection ends, each in a task of its own (on the executor
/// this runs on).
async fn serve(server: SlowMux, bulk_read: Arc<AtomicU64>) {
    let tasks = LocalExecutor::new();
    let accept = async {
        while let Ok(mut s) = server.accept().await {
            let bulk_read = bulk_read.clone();
            tasks
                .spawn(async move {
                    let mut tag = [0];
                    if s.read_exact(&mut tag).await.is_err() {
                        return;
                    }
                    match Role::of(tag[0]) {
                        Role::Request => answer(s).await,
                        Role::Upload => discard(s, bulk_read).await,
                        Role::Download => write_forever(s).await,
                        Role::Echo => {
                            let mut data = Vec::new();
                            s.read_to_end(&mut data).await.unwrap();
                            s.write_all(&data).await.unwrap();
                            s.close().await.unwrap();
                        }
                    }
                })
                .detach();
        }
    };
    tasks.run(accept).await;
}

/// Writes a message: its length (4 bytes LE), the payload; then flushes.
async fn send_message<W: AsyncWrite + Unpin>(w: &mut W, message: &[u8]) -> std::io::Result<()> {
    w.write_all(&(message.len() as u32).to_le_bytes()).await?;
    w.write_all(message).await?;
    w.flush().await
}

/// Reads a message written by `send_message`.
async fn receive_message<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut len = [0; 4];
    r.read_exact(&mut len).await?;
    let mut message = vec![0; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut message).await?;
    Ok(message)
}

/// The server side of `Role::Request`.
async fn answer(mut s: MuxStream<LinkEnd>) {
    while let Ok(request) = receive_message(&mut s).await {
        if send_message(&mut s, &response(&request)).await.is_err() {
            return;
        }
    }
}

/// Reads and discards until the end or an error, counting.
async fn discard<R: AsyncRead + Unpin>(mut s: R, read: Arc<AtomicU64>) {
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = s.read(&mut buf).await {
        read.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Writes until an error (never flushes: a bulk writer leaves that to the mux).
async fn write_forever<W: AsyncWrite + Unpin>(mut s: W) {
    let chunk = vec![0x5a; 64 * 1024];
    while s.write_all(&chunk).await.is_ok() {}
}

/// Opens a stream for `role` and writes its tag.
async fn open(client: &SlowMux, role: Role) -> MuxStream<LinkEnd> {
    let mut s = client.connect().await.unwrap();
    s.write_all(&[role as u8]).await.unwrap();
    s
}

fn request(i: usize) -> Vec<u8> {
    let len = 100 + (i * 997) % (MESSAGE_MAX - 100);
    payload(i as u64, len)
}

fn response(request: &[u8]) -> Vec<u8> {
    request.iter().rev().map(|b| !b).collect()
}

// ---------------------------------------------------------------------------------------------
// Request/response beside bulk streams

fn requests_beside_bulk(version: Version, bulk: usize) {
    let slow = Slow::new(version);
    slow.run(async {
        slow.start_bulk(bulk).await;
        let bound = round_trip_ticks(
            slow.up.get(),
            slow.down.get(),
            MESSAGE_MAX + 4,
            MESSAGE_MAX + 4,
        );
        let mut s = open(&slow.client, Role::Request).await;
        let mark = slow.mark();
        let mut worst = 0;
        for i in 0..EXCHANGES {
            let start = slow.clock.now();
            slow.expect_within(
                bound,
                format!("{version:?}, {bulk} bulk: exchange {i} (bound {bound} ticks)"),
            );
            let req = request(i);
            send_message(&mut s, &req).await.unwrap();
            let got = receive_message(&mut s).await.unwrap();
            assert!(got == response(&req), "exchange {i}: wrong response");
            let took = slow.clock.now() - start;
            assert!(took <= bound, "exchange {i}: {took} ticks (bound {bound})");
            worst = worst.max(took);
        }
        slow.expect_within(TOTAL_TICKS, "the rest of the test".to_owned());
        slow.assert_bulk_kept_going(mark);
        eprintln!(
            "{version:?}, {bulk} bulk: worst exchange {worst} ticks (bound {bound}), \
             bulk moved {} bytes meanwhile",
            slow.bulk_read(mark)
        );
    });
}

#[test]
fn requests_beside_1_bulk_v1() {
    requests_beside_bulk(Version::V1, 1);
}

#[test]
fn requests_beside_1_bulk_v2() {
    requests_beside_bulk(Version::V2, 1);
}

#[test]
fn requests_beside_8_bulk_v1() {
    requests_beside_bulk(Version::V1, 8);
}

#[test]
fn requests_beside_8_bulk_v2() {
    requests_beside_bulk(Version::V2, 8);
}

// ---------------------------------------------------------------------------------------------
// A proxy beside bulk streams

/// What the application sends through the proxy (and gets back).
const PROXIED: usize = 100 * 1024;

fn proxy_beside_bulk(version: Version, bulk: usize) {
    let slow = Slow::new(version);
    slow.run(async {
        slow.start_bulk(bulk).await;
        // The data through the proxy to the far end and back, plus the FINs each way.
        let bound = round_trip_ticks(slow.up.get(), slow.down.get(), PROXIED, PROXIED) + 2;
        let mark = slow.mark();
        slow.expect_within(
            bound,
            format!("{version:?}, {bulk} bulk: the proxy (bound {bound} ticks)"),
        );
        // The proxy: a mux stream <-> the application's socket, a copy each way on the halves,
        // each passing the end of its input on.
        let (stream_read, mut stream_write) = open(&slow.client, Role::Echo).await.into_split();
        let (app, app_far) = duplex_with_capacity(16 * 1024);
        let (far_read, mut far_write) = app_far.split();
        let proxy = slow.ex.spawn(async move {
            futures::future::join(
                async {
                    let n = futures::io::copy(far_read, &mut stream_write).await?;
                    stream_write.close().await?;
                    Ok::<_, std::io::Error>(n)
                },
                async {
                    let n = futures::io::copy(stream_read, &mut far_write).await?;
                    far_write.close().await?;
                    Ok::<_, std::io::Error>(n)
                },
            )
            .await
        });
        let data = payload(99, PROXIED);
        let (mut app_read, mut app_write) = app.split();
        let ((), echoed) = futures::future::join(
            async {
                app_write.write_all(&data).await.unwrap();
                app_write.close().await.unwrap();
            },
            async {
                // The far end closes after its echo; the proxy passes the end on.
                let mut echoed = Vec::new();
                app_read.read_to_end(&mut echoed).await.unwrap();
                echoed
            },
        )
        .await;
        let (up, down) = proxy.await;
        let took = slow.clock.now() - mark.0;
        assert!(took <= bound, "the proxy took {took} ticks (bound {bound})");
        assert!(echoed == data, "the echo differs from the data");
        assert_eq!(
            (up.unwrap(), down.unwrap()),
            (PROXIED as u64, PROXIED as u64)
        );
        slow.expect_within(TOTAL_TICKS, "the rest of the test".to_owned());
        slow.assert_bulk_kept_going(mark);
        eprintln!(
            "{version:?}, {bulk} bulk: proxy done in {took} ticks (bound {bound}), \
             bulk moved {} bytes meanwhile",
            slow.bulk_read(mark)
        );
    });
}

#[test]
fn proxy_beside_1_bulk_v1() {
    proxy_beside_bulk(Version::V1, 1);
}

#[test]
fn proxy_beside_1_bulk_v2() {
    proxy_beside_bulk(Version::V2, 1);
}

#[test]
fn proxy_beside_8_bulk_v1() {
    proxy_beside_bulk(Version::V1, 8);
}

#[test]
fn proxy_beside_8_bulk_v2() {
    proxy_beside_bulk(Version::V2, 8);
}

// ---------------------------------------------------------------------------------------------
// A cancelled read strands no other reader

/// Rounds of: B's reader waits, a read on A is cancelled, the peer sends to B.
const ROUNDS: u64 = 50;
/// How long one round may take for B's reader to get its message (a hang guard).
const ROUND_GUARD: Duration = Duration::from_secs(5);

/// A client mux and a server mux over loopback TCP.
async fn tcp_pair(config: MuxConfig) -> (Mux<TcpStream>, Mux<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, (b, _)) = futures::future::try_join(TcpStream::connect(addr), listener.accept())
        .await
        .unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (
        smux_smol::client(a, config.clone()).unwrap(),
        smux_smol::server(b, config).unwrap(),
    )
}

/// `spawn` runs B's reader: on another thread (smol's global executor) or on the test's own.
async fn cancelled_read_strands_no_reader(
    version: Version,
    spawn: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>),
) {
    // No keepalive: no timer wakes anybody to read the connection again.
    let config = config(version).with_keep_alive_disabled(true);
    let (client, server) = tcp_pair(config).await;
    let mut a = client.connect().await.unwrap();
    let mut b = client.connect().await.unwrap();
    for s in [&mut a, &mut b] {
        s.write_all(b"hi").await.unwrap();
        s.flush().await.unwrap();
    }
    let mut peer_a = server.accept().await.unwrap();
    let mut peer_b = server.accept().await.unwrap();
    for s in [&mut peer_a, &mut peer_b] {
        let mut hi = [0; 2];
        s.read_exact(&mut hi).await.unwrap();
        assert_eq!(&hi, b"hi");
    }

    // B's reader, in a task of its own, reports each message.
    let (got, messages) = smol::channel::unbounded();
    spawn(Box::pin(async move {
        let mut message = [0; 8];
        while peer_b.read_exact(&mut message).await.is_ok() {
            let _ = got.send(u64::from_le_bytes(message)).await;
        }
    }));

    let mut buf = [0; 64];
    for round in 0..ROUNDS {
        // B's reader parks first; A's read parks last, so it is woken for the connection's
        // next input (the read duty), and then it is cancelled.
        Timer::after(Duration::from_millis(2)).await;
        let timer = Timer::after(Duration::from_millis(2));
        let cancelled = if round % 2 == 0 {
            matches!(select(peer_a.read(&mut buf), timer).await, Either::Right(_))
        } else {
            matches!(
                select(pin!(peer_a.read_chunk(64)), timer).await,
                Either::Right(_)
            )
        };
        assert!(cancelled, "round {round}: A's read found data");
        // The peer sends to B; B's reader must get it.
        b.write_all(&round.to_le_bytes()).await.unwrap();
        b.flush().await.unwrap();
        match select(pin!(messages.recv()), Timer::after(ROUND_GUARD)).await {
            Either::Left((Ok(m), _)) => assert_eq!(m, round),
            Either::Left((Err(_), _)) => panic!("round {round}: B's reader failed"),
            Either::Right(_) => panic!(
                "{version:?}, round {round}: B's reader never got the message (a read cancelled \
                 on A stranded it) after {ROUND_GUARD:?}"
            ),
        }
    }
    // A still reads.
    a.write_all(b"A still reads").await.unwrap();
    a.flush().await.unwrap();
    let mut end = [0; 13];
    peer_a.read_exact(&mut end).await.unwrap();
    assert_eq!(&end, b"A still reads");
}

/// B's reader on smol's global executor (another thread), the test on this one.
fn cancelled_read_two_threads(version: Version) {
    smol::block_on(cancelled_read_strands_no_reader(version, |f| {
        smol::spawn(f).detach()
    }));
}

/// Everything on one thread.
fn cancelled_read_one_thread(version: Version) {
    let ex = Rc::new(LocalExecutor::new());
    let spawner = ex.clone();
    smol::block_on(ex.run(cancelled_read_strands_no_reader(version, move |f| {
        spawner.spawn(f).detach()
    })));
}

#[test]
fn cancelled_read_strands_no_reader_v1_two_threads() {
    cancelled_read_two_threads(Version::V1);
}

#[test]
fn cancelled_read_strands_no_reader_v2_two_threads() {
    cancelled_read_two_threads(Version::V2);
}

#[test]
fn cancelled_read_strands_no_reader_v1_one_thread() {
    cancelled_read_one_thread(Version::V1);
}

#[test]
fn cancelled_read_strands_no_reader_v2_one_thread() {
    cancelled_read_one_thread(Version::V2);
}
