//! Interactive traffic beside bulk traffic (issue 19: no stream waits on another, and no
//! wake-up is lost), protocol versions 1 and 2:
//!
//! - request/response with `Framed` (every `send` flushes) and a `copy_bidirectional` proxy
//!   beside never-stopping bulk streams, over a slow link on tokio's paused clock: each
//!   exchange must finish within a number of link ticks derived from the link's rate and the
//!   buffers on the way (a flush used to wait for the output of every stream, so beside bulk
//!   writers it never finished);
//! - the same, and a `shutdown()` after an upload, and `close()`, over TLS (tokio-rustls) on
//!   real loopback TCP, with the kernel's buffers as they are and with small ones (then the
//!   socket is the bottleneck and the TLS stream holds records it could not write yet);
//! - a read cancelled by a timeout on one stream while another task waits to read another
//!   stream: the data for the second stream must reach it (the cancelled read held the "read
//!   duty", and nothing else would drive the connection);
//! - the request/response and upload of the TLS test, deterministically: over the slow link
//!   behind a transport that buffers writes and flushes as a TLS stream does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use smux_futures::test_util::{slow_link, LinkClock, LinkEnd};
use smux_test_support::link::{round_trip_ticks, LINK_BUFFER, RATE};
use smux_test_support::payload;
use smux_tokio::{Mux, MuxConfig, MuxStream, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

// ------------------------------------------------------------------------------------------------
// The slow link and the bounds (`smux_test_support::link`); the link ticks once per (virtual)
// millisecond of tokio's paused clock.

/// Requests and responses: up to this many bytes of payload.
const MESSAGE_MAX: usize = 3200;
/// Request/response exchanges per test.
const EXCHANGES: usize = 20;
/// The bulk streams run this long (virtual time) before the measured traffic starts, so
/// that every queue on the way is full.
const WARM_UP: Duration = Duration::from_millis(50);

type SlowIo = Compat<LinkEnd>;

fn config(version: Version) -> MuxConfig {
    MuxConfig::default().with_version(version)
}

/// A transport the tests' generic helpers take.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The link's clock, ticked once per millisecond of tokio's clock (paused in these tests: the
/// runtime runs every task until all wait, then moves time to the next timer).
fn start_clock(clock: LinkClock) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            clock.tick();
        }
    });
}

/// A connection over a slow link, with `bulk` bulk streams running: even ones written by the
/// client (the server reads and discards), odd ones written by the server (the client reads
/// and discards).
struct Slow<T: Io = SlowIo> {
    client: Mux<T>,
    clock: LinkClock,
    /// Bytes the bulk readers read, both ways.
    bulk_read: Arc<AtomicU64>,
    /// Bulk streams writing towards the server and towards the client.
    up: usize,
    down: usize,
}

impl Slow {
    async fn new(version: Version, bulk: usize) -> Slow {
        Slow::with(version, bulk, |end| end).await
    }
}

impl<T: Io> Slow<T> {
    /// A slow link whose ends are wrapped in `wrap`.
    async fn with(version: Version, bulk: usize, wrap: impl Fn(SlowIo) -> T) -> Slow<T> {
        let (a, b, clock) = slow_link(RATE, LINK_BUFFER);
        let client = Mux::client(wrap(a.compat()), config(version)).unwrap();
        let server = Mux::server(wrap(b.compat()), config(version)).unwrap();
        let bulk_read = Arc::new(AtomicU64::new(0));
        tokio::spawn(serve(server, bulk_read.clone()));
        start_clock(clock.clone());
        let (mut up, mut down) = (0, 0);
        for i in 0..bulk {
            if i % 2 == 0 {
                up += 1;
                start_bulk(&client, Role::Upload, bulk_read.clone()).await;
            } else {
                down += 1;
                start_bulk(&client, Role::Download, bulk_read.clone()).await;
            }
        }
        tokio::time::sleep(WARM_UP).await;
        assert!(clock.queued() > 0, "the bulk streams are not running");
        Slow {
            client,
            clock,
            bulk_read,
            up,
            down,
        }
    }

    /// Ticks and bulk bytes so far.
    fn mark(&self) -> (u64, u64) {
        (self.clock.now(), self.bulk_read.load(Ordering::Relaxed))
    }

    /// The bulk streams kept the link busy since `mark`: they moved at least half of what
    /// the link could carry their way.
    fn assert_bulk_kept_going(&self, mark: (u64, u64)) {
        let (ticks, bytes) = (self.clock.now() - mark.0, self.bulk_read(mark));
        let ways = u64::from(self.up > 0) + u64::from(self.down > 0);
        let floor = ticks * ways * RATE as u64 / 2;
        assert!(
            bytes >= floor,
            "the bulk streams moved {bytes} bytes in {ticks} ticks (expected {floor} at least)"
        );
    }

    fn bulk_read(&self, mark: (u64, u64)) -> u64 {
        self.bulk_read.load(Ordering::Relaxed) - mark.1
    }

    /// Runs `f`; fails the test unless it is done within `bound` ticks (one tick per virtual
    /// millisecond: the timeout ends what never would). Returns its output and its ticks.
    async fn within<F: Future>(&self, bound: u64, what: &str, f: F) -> (F::Output, u64) {
        let start = self.clock.now();
        let done = timeout(Duration::from_millis(bound + 1), f).await;
        let took = self.clock.now() - start;
        match done {
            Ok(out) if took <= bound => (out, took),
            _ => panic!("{what} not done after {took} ticks (bound {bound})"),
        }
    }

    /// `EXCHANGES` exchanges on `framed`, each within `bound` ticks; returns the longest.
    async fn exchanges(
        &self,
        framed: &mut Framed<MuxStream<T>, LengthDelimitedCodec>,
        bound: u64,
        what: &str,
    ) -> u64 {
        let mut worst = 0;
        for i in 0..EXCHANGES {
            let what = format!("{what}: exchange {i}");
            let ((), took) = self.within(bound, &what, exchange(framed, i)).await;
            worst = worst.max(took);
        }
        worst
    }
}

// ------------------------------------------------------------------------------------------------
// The server's side and the bulk streams

/// What a stream is for: its first byte, written by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Role {
    /// `Framed` requests; the server answers each with `response(request)`.
    Request = b'R',
    /// The client writes forever; the server reads and discards.
    Upload = b'U',
    /// The server writes forever; the client reads and discards.
    Download = b'D',
    /// The server reads to the end, writes it all back, then closes.
    Echo = b'E',
    /// The server reads to the end, answers with the byte count (8 bytes LE), then closes.
    Count = b'C',
}

impl Role {
    fn of(tag: u8) -> Role {
        [
            Role::Request,
            Role::Upload,
            Role::Download,
            Role::Echo,
            Role::Count,
        ]
        .into_iter()
        .find(|r| *r as u8 == tag)
        .unwrap_or_else(|| panic!("unknown role {tag}"))
    }
}

/// Accepts streams until the connection ends, each in a task of its own.
async fn serve<T: Io>(server: Mux<T>, bulk_read: Arc<AtomicU64>) {
    while let Ok(mut s) = server.accept().await {
        let bulk_read = bulk_read.clone();
        tokio::spawn(async move {
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
                    s.shutdown().await.unwrap();
                }
                Role::Count => {
                    let mut n = 0u64;
                    let mut buf = vec![0; 64 * 1024];
                    loop {
                        match s.read(&mut buf).await.unwrap() {
                            0 => break,
                            k => n += k as u64,
                        }
                    }
                    s.write_all(&n.to_le_bytes()).await.unwrap();
                    s.shutdown().await.unwrap();
                }
            }
        });
    }
}

/// The server side of `Role::Request`.
async fn answer<T: Io>(s: MuxStream<T>) {
    let mut framed = Framed::new(s, LengthDelimitedCodec::new());
    while let Some(Ok(request)) = framed.next().await {
        if framed.send(response(&request)).await.is_err() {
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
async fn open<T: Io>(client: &Mux<T>, role: Role) -> MuxStream<T> {
    let mut s = client.connect().await.unwrap();
    s.write_all(&[role as u8]).await.unwrap();
    s
}

/// Opens a bulk stream (`Upload` or `Download`) and runs the client's side of it in a task.
async fn start_bulk<T: Io>(client: &Mux<T>, role: Role, bulk_read: Arc<AtomicU64>) {
    let s = open(client, role).await;
    match role {
        Role::Upload => tokio::spawn(write_forever(s)),
        Role::Download => tokio::spawn(discard(s, bulk_read)),
        _ => unreachable!("not a bulk role"),
    };
}

fn request(i: usize) -> Bytes {
    let len = 100 + (i * 997) % (MESSAGE_MAX - 100);
    payload(i as u64, len).into()
}

fn response(request: &[u8]) -> Bytes {
    request.iter().rev().map(|b| !b).collect()
}

/// A `Role::Request` stream in a `Framed`.
async fn framed<T: Io>(client: &Mux<T>) -> Framed<MuxStream<T>, LengthDelimitedCodec> {
    Framed::new(
        open(client, Role::Request).await,
        LengthDelimitedCodec::new(),
    )
}

/// Request `i` and its response.
async fn exchange<T: Io>(framed: &mut Framed<MuxStream<T>, LengthDelimitedCodec>, i: usize) {
    let req = request(i);
    framed.send(req.clone()).await.unwrap();
    let got = framed.next().await.expect("the stream ended").unwrap();
    assert!(got == response(&req), "exchange {i}: wrong response");
}

// ------------------------------------------------------------------------------------------------
// 1a. Framed request/response beside bulk streams, over the slow link

async fn framed_beside_bulk(version: Version, bulk: usize) {
    let slow = Slow::new(version, bulk).await;
    let bound = round_trip_ticks(slow.up, slow.down, MESSAGE_MAX, MESSAGE_MAX);
    let mut framed = framed(&slow.client).await;
    let mark = slow.mark();
    let what = format!("{version:?}, {bulk} bulk");
    let worst = slow.exchanges(&mut framed, bound, &what).await;
    slow.assert_bulk_kept_going(mark);
    eprintln!(
        "{what}: worst exchange {worst} ticks (bound {bound}), bulk moved {} bytes meanwhile",
        slow.bulk_read(mark)
    );
}

// ------------------------------------------------------------------------------------------------
// 1b. A copy_bidirectional proxy beside bulk streams, over the slow link

/// What the application sends through the proxy (and gets back).
const PROXIED: usize = 100 * 1024;

async fn proxy_beside_bulk(version: Version, bulk: usize) {
    let slow = Slow::new(version, bulk).await;
    // The data through the proxy to the far end and back, plus the FINs each way.
    let bound = round_trip_ticks(slow.up, slow.down, PROXIED, PROXIED) + 2;
    let mark = slow.mark();
    let mut stream = open(&slow.client, Role::Echo).await;
    let (app, mut app_far) = tokio::io::duplex(16 * 1024);
    let proxy =
        tokio::spawn(async move { tokio::io::copy_bidirectional(&mut stream, &mut app_far).await });
    let data = payload(99, PROXIED);
    let (mut app_read, mut app_write) = tokio::io::split(app);
    let run = async {
        let ((), echoed) = tokio::join!(
            async {
                app_write.write_all(&data).await.unwrap();
                app_write.shutdown().await.unwrap();
            },
            async {
                // The far end closes after its echo; the proxy passes the end on.
                let mut echoed = Vec::new();
                app_read.read_to_end(&mut echoed).await.unwrap();
                echoed
            }
        );
        let counts = proxy.await.unwrap().unwrap();
        (echoed, counts)
    };
    let what = format!("{version:?}, {bulk} bulk: the proxy");
    let ((echoed, counts), took) = slow.within(bound, &what, run).await;
    assert!(echoed == data, "the echo differs from the data");
    assert_eq!(counts, (PROXIED as u64, PROXIED as u64));
    slow.assert_bulk_kept_going(mark);
    eprintln!(
        "{what}: done in {took} ticks (bound {bound}), bulk moved {} bytes meanwhile",
        slow.bulk_read(mark)
    );
}

// ------------------------------------------------------------------------------------------------
// The test matrix

macro_rules! slow_link_tests {
    ($scenario:ident, $bulk:expr, $v1:ident, $v2:ident) => {
        #[tokio::test(start_paused = true)]
        async fn $v1() {
            $scenario(Version::V1, $bulk).await
        }

        #[tokio::test(start_paused = true)]
        async fn $v2() {
            $scenario(Version::V2, $bulk).await
        }
    };
}

slow_link_tests!(
    framed_beside_bulk,
    1,
    framed_beside_1_bulk_v1,
    framed_beside_1_bulk_v2
);
slow_link_tests!(
    framed_beside_bulk,
    8,
    framed_beside_8_bulk_v1,
    framed_beside_8_bulk_v2
);
slow_link_tests!(
    proxy_beside_bulk,
    1,
    proxy_beside_1_bulk_v1,
    proxy_beside_1_bulk_v2
);
slow_link_tests!(
    proxy_beside_bulk,
    8,
    proxy_beside_8_bulk_v1,
    proxy_beside_8_bulk_v2
);

// ------------------------------------------------------------------------------------------------
// 1c. Framed request/response and a shutdown after an upload, over TLS on loopback TCP

/// Hang guard of the real-time tests (not a bound: these tests assert completion only).
const HANG: Duration = Duration::from_secs(20);

/// Bytes uploaded before the `shutdown()` of 1c.
const UPLOAD: usize = 1 << 20;

mod tls {
    use std::sync::Arc;

    use tokio::net::{TcpListener, TcpSocket, TcpStream};
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

    pub type ClientIo = client::TlsStream<TcpStream>;
    pub type ServerIo = server::TlsStream<TcpStream>;

    /// Both ends of a TLS connection over loopback TCP, with a certificate for `localhost`
    /// made now (as in examples/tls.rs); `kernel_buffer` sets the sockets' buffers.
    pub async fn pair(kernel_buffer: Option<u32>) -> (ClientIo, ServerIo) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let cert = certified.cert.der().clone();
        let server_config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let [listen, connect] = [(); 2].map(|()| {
            let s = TcpSocket::new_v4().unwrap();
            if let Some(size) = kernel_buffer {
                s.set_send_buffer_size(size).unwrap();
                s.set_recv_buffer_size(size).unwrap();
            }
            s
        });
        listen.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listen.local_addr().unwrap();
        let listener: TcpListener = listen.listen(1).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            acceptor.accept(tcp).await.unwrap()
        });
        let tcp = connect.connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let client = TlsConnector::from(Arc::new(client_config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        (client, server.await.unwrap())
    }
}

async fn over_tls_beside_bulk(version: Version) {
    over_tls(version, None).await
}

/// The sockets' kernel buffers of `over_tls_small_buffers_beside_bulk`, each way, each end.
const KERNEL_BUFFER: u32 = 16 * 1024;

/// With small kernel buffers the connection, not the bulk writer, is the bottleneck, so the
/// mux always has output waiting (as over a real network), and the TLS stream holds records
/// the socket did not take yet (its flush is `Pending` until it took them all).
async fn over_tls_small_buffers_beside_bulk(version: Version) {
    over_tls(version, Some(KERNEL_BUFFER)).await
}

async fn over_tls(version: Version, kernel_buffer: Option<u32>) {
    let (client_io, server_io) = tls::pair(kernel_buffer).await;
    let client = Mux::client(client_io, config(version)).unwrap();
    let server = Mux::server(server_io, config(version)).unwrap();
    let bulk_read = Arc::new(AtomicU64::new(0));
    tokio::spawn(serve(server, bulk_read.clone()));
    start_bulk(&client, Role::Upload, bulk_read.clone()).await;
    while bulk_read.load(Ordering::Relaxed) < 1 << 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let mut framed = framed(&client).await;
    for i in 0..EXCHANGES {
        exchange(&mut framed, i).await;
    }

    // An upload, then shutdown(): done once our FIN is written and flushed, although the
    // bulk stream keeps the connection busy.
    let data = payload(7, UPLOAD);
    let mut upload = open(&client, Role::Count).await;
    upload.write_all(&data).await.unwrap();
    upload.shutdown().await.unwrap();
    let mut count = [0; 8];
    upload.read_exact(&mut count).await.unwrap();
    assert_eq!(u64::from_le_bytes(count), UPLOAD as u64);
    assert_eq!(upload.read(&mut [0; 8]).await.unwrap(), 0);

    // The request stream still answers, and close() completes (TLS's flush may be Pending).
    exchange(&mut framed, EXCHANGES).await;
    client.close().await.unwrap();
}

macro_rules! real_time_tests {
    ($scenario:ident) => {
        mod $scenario {
            use smux_tokio::Version;

            async fn guarded(version: Version) {
                if tokio::time::timeout(super::HANG, super::$scenario(version))
                    .await
                    .is_err()
                {
                    panic!("{version:?}: not done within {:?}", super::HANG);
                }
            }

            #[tokio::test(flavor = "current_thread")]
            async fn v1_current_thread() {
                guarded(Version::V1).await
            }

            #[tokio::test(flavor = "current_thread")]
            async fn v2_current_thread() {
                guarded(Version::V2).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v1_multi_thread() {
                guarded(Version::V1).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v2_multi_thread() {
                guarded(Version::V2).await
            }
        }
    };
}

real_time_tests!(over_tls_beside_bulk);
real_time_tests!(over_tls_small_buffers_beside_bulk);

// ------------------------------------------------------------------------------------------------
// 1d. A cancelled read strands no other reader

/// Rounds of: B's reader waits, a read on A is cancelled, the peer sends to B.
const ROUNDS: u64 = 50;
/// How long one round may take for B's reader to get its message (a hang guard).
const ROUND_GUARD: Duration = Duration::from_secs(5);

/// A client mux and a server mux over loopback TCP.
async fn tcp_pair(config: MuxConfig) -> (Mux<TcpStream>, Mux<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (a, (b, _)) = (a.unwrap(), b.unwrap());
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (
        Mux::client(a, config.clone()).unwrap(),
        Mux::server(b, config).unwrap(),
    )
}

async fn cancelled_read_strands_no_reader(version: Version) {
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
    let (got, mut messages) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut message = [0; 8];
        while peer_b.read_exact(&mut message).await.is_ok() {
            let _ = got.send(u64::from_le_bytes(message));
        }
    });

    let mut buf = [0; 64];
    for round in 0..ROUNDS {
        // B's reader parks first; A's read parks last, so it is woken for the connection's
        // next input (the read duty), and then it is cancelled.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let cancelled = if round % 2 == 0 {
            timeout(Duration::from_millis(2), peer_a.read(&mut buf))
                .await
                .is_err()
        } else {
            timeout(Duration::from_millis(2), peer_a.read_chunk(64))
                .await
                .is_err()
        };
        assert!(cancelled, "round {round}: A's read found data");
        // The peer sends to B; B's reader must get it.
        b.write_all(&round.to_le_bytes()).await.unwrap();
        b.flush().await.unwrap();
        match timeout(ROUND_GUARD, messages.recv()).await {
            Ok(Some(m)) => assert_eq!(m, round),
            Ok(None) => panic!("round {round}: B's reader failed"),
            Err(_) => panic!(
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

real_time_tests!(cancelled_read_strands_no_reader);

// ------------------------------------------------------------------------------------------------
// 1e. The slow link behind a transport that buffers as TLS does

/// What [`Buffering`] holds at most (rustls' default limit on unsent TLS data).
const TLS_BUFFER: usize = 64 * 1024;

/// A transport that takes writes into a buffer of its own while the connection is full, up to
/// `TLS_BUFFER` bytes, and whose flush is done only once that buffer has gone out: what a TLS
/// stream does (tokio-rustls's `poll_write` returns `Ready(n)` when rustls took the bytes,
/// whether or not the socket took the records; its `poll_flush` is `Pending` until the socket
/// took every record).
struct Buffering<T> {
    inner: T,
    buf: Vec<u8>,
}

impl<T: AsyncWrite + Unpin> Buffering<T> {
    fn new(inner: T) -> Self {
        Buffering {
            inner,
            buf: Vec::new(),
        }
    }

    /// Writes the buffer to the inner transport: `Ready` once it is empty, `Pending` (the
    /// inner transport wakes the task) while the inner transport is full.
    fn push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => drop(self.buf.drain(..n)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Buffering<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Buffering<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Poll::Ready(Err(e)) = self.push(cx) {
            return Poll::Ready(Err(e));
        }
        let n = (TLS_BUFFER - self.buf.len()).min(data.len());
        if n == 0 {
            // Full, and `push` found the inner transport full: it wakes us.
            return Poll::Pending;
        }
        self.buf.extend_from_slice(&data[..n]);
        if let Poll::Ready(Err(e)) = self.push(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.push(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.push(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Uploaded before the `shutdown()` of 1e.
const SMALL_UPLOAD: usize = 256 * 1024;

/// 1a and the upload of 1c, deterministically: beside one bulk stream, over the slow link
/// behind `Buffering`. The bounds are 1a's with the transport's buffer added each way.
async fn buffering_beside_bulk(version: Version) {
    let slow = Slow::with(version, 1, Buffering::new).await;
    let extra = 2 * 2 * TLS_BUFFER.div_ceil(RATE) as u64;
    let bound = round_trip_ticks(slow.up, slow.down, MESSAGE_MAX, MESSAGE_MAX) + extra;
    let mut framed = framed(&slow.client).await;
    let mark = slow.mark();
    let what = format!("{version:?}, behind a buffering transport");
    slow.exchanges(&mut framed, bound, &what).await;
    slow.assert_bulk_kept_going(mark);

    // The upload, then shutdown(): its bytes, one frame of the bulk stream per frame of it,
    // and the count coming back.
    let bound = round_trip_ticks(slow.up, slow.down, SMALL_UPLOAD, 8) + extra;
    let data = payload(8, SMALL_UPLOAD);
    let upload = async {
        let mut upload = open(&slow.client, Role::Count).await;
        upload.write_all(&data).await.unwrap();
        upload.shutdown().await.unwrap();
        let mut count = [0; 8];
        upload.read_exact(&mut count).await.unwrap();
        u64::from_le_bytes(count)
    };
    let what = format!("{what}: the upload and its shutdown");
    let (count, _) = slow.within(bound, &what, upload).await;
    assert_eq!(count, SMALL_UPLOAD as u64);
}

#[tokio::test(start_paused = true)]
async fn buffering_beside_bulk_v1() {
    buffering_beside_bulk(Version::V1).await
}

#[tokio::test(start_paused = true)]
async fn buffering_beside_bulk_v2() {
    buffering_beside_bulk(Version::V2).await
}

// ------------------------------------------------------------------------------------------------
// Several reads cancelled unseen

/// Four tasks' reads are cancelled by `timeout` while parked (the mux cannot see it: the
/// future dropped is tokio's `read`, not ours), and the tasks live on without polling the mux
/// again; another task waits to read stream B. Then the peer writes to B. The last cancelled
/// read holds the read duty (the last to park), and a single deputy would most often be
/// another cancelled one: B must get its data anyway, through the watchdog that hands the
/// duty on when nobody drives within `DUTY_GRACE` (10 ms), once per task gone. Keepalive is
/// off, so nothing else would wake anybody. Paused tokio time: the bound (100 ms of virtual
/// time, for up to five hand-offs) is arithmetic, not a wall-clock guess.
#[tokio::test(start_paused = true)]
async fn reads_cancelled_unseen_strand_no_reader() {
    for version in [Version::V1, Version::V2] {
        for round in 0..20 {
            let config = MuxConfig::default()
                .with_version(version)
                .with_keep_alive_disabled(true);
            let (a, b) = tokio::io::duplex(256 * 1024);
            let client = Mux::client(a, config.clone()).unwrap();
            let server = Mux::server(b, config).unwrap();
            let mut streams = Vec::new();
            for _ in 0..5 {
                let mut s = client.connect().await.unwrap();
                s.write_all(b"!").await.unwrap();
                s.flush().await.unwrap();
                let mut t = server.accept().await.unwrap();
                let mut one = [0u8; 1];
                t.read_exact(&mut one).await.unwrap();
                streams.push((s, t));
            }
            let (mut sb, tb) = streams.remove(0);
            let (tx, got) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let mut tb = tb;
                let mut buf = [0u8; 16];
                let n = tb.read(&mut buf).await.unwrap();
                let _ = tx.send(buf[..n].to_vec());
            });
            let mut keep = Vec::new();
            for (s, t) in streams {
                keep.push(s);
                tokio::spawn(async move {
                    let mut t = t;
                    let mut buf = [0u8; 16];
                    let cancelled = timeout(Duration::from_millis(5), t.read(&mut buf)).await;
                    assert!(cancelled.is_err(), "nothing was sent on this stream");
                    // Alive, holding the stream, never polling the mux again.
                    std::future::pending::<()>().await;
                });
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            sb.write_all(b"for B").await.unwrap();
            sb.flush().await.unwrap();
            let got = timeout(Duration::from_millis(100), got).await;
            assert_eq!(
                got.ok().and_then(Result::ok).as_deref(),
                Some(&b"for B"[..]),
                "{version:?} round {round}: B's reader was never woken"
            );
            drop(keep);
        }
    }
}
