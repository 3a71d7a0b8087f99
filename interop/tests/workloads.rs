//! The workload matrix: the traffic shapes of proxies and tunnels (many concurrent, mostly idle,
//! bidirectional streams), run against every kind of peer, with every byte checked and a stall
//! detector. A pass/fail test, not a benchmark.
//!
//! # Shapes
//!
//! - **echo**: the opener writes its payload in random-sized pieces while reading the echo
//!   concurrently, then half-closes and checks the echo byte for byte; the acceptor runs one
//!   task per stream that reads a chunk and `write_all`s it back until EOF, then half-closes.
//! - **proxy**: `tokio::io::copy_bidirectional` between a real TCP socket and a mux stream on
//!   both ends: an application connects to a local TCP listener of the client side, which opens
//!   a mux stream for it; the server side dials a local TCP echo target for every stream it
//!   accepts. The application does what the echo opener does, over its TCP socket.
//! - **request/response**: every stream sends many small requests (1 to 512 bytes) one after
//!   the other, each echoed and checked before the next; then half-closes.
//! - **burst**: one task opens the streams back to back and gives each a framed request (a
//!   4-byte little-endian length, then 1 to 64 bytes) and its FIN without waiting; a task per
//!   stream reads the reply. The acceptor is slow: it accepts one stream, reads its request,
//!   writes the payload back and half-closes, and only then accepts the next. With the small
//!   buffers our accept backlog is 128, so most bursts fill it (input then pauses until the
//!   acceptor catches up; nothing may be lost).
//! - **idle**: the streams are opened one after the other, each writes one byte and reads its
//!   echo, then sits idle while 4 busy streams echo a bulk payload (written in random pieces
//!   while reading); then every idle stream must still work: it echoes 100 bytes and closes.
//! - **interactive**: one interactive stream beside N bulk streams (1, 4, 8; N is the case's
//!   stream count, so `4x` is "the 4-bulk mixed case" of issue 19). The interactive stream is
//!   opened first and makes one exchange before the bulk streams open (so the acceptor knows
//!   it as the first stream it accepts); then it goes on with small request/response
//!   exchanges (1 to 512 bytes): `write_all` and `flush` after each request, the echo read
//!   back and checked before the next. Meanwhile every bulk stream echoes rounds of its
//!   payload (the case's size), as in echo: written in random pieces while the echo is read
//!   and checked, each round announced by a byte (1: a round follows; 0: the end). The bulk
//!   streams go on until the interactive stream made [`INTERACTIVE_MIN`] exchanges (a
//!   tenth in debug builds), so that all of them happen beside bulk traffic: a flush that
//!   waited for the other streams' output would never complete. The acceptor echoes the
//!   interactive stream with a `flush` after every write, the bulk streams without. The
//!   interactive stream is a [`Lane`] of the stall detector (on both ends): it must not stand
//!   still for [`STALL`] while the bulk traffic moves. The opener prints its exchange count
//!   and slowest exchange.
//! - **cancel** (cancelled reads): N cancelling streams echo a payload as in echo, but every
//!   read of both ends is raced against a timer of 0 to 2 ms and dropped when the timer wins
//!   (often while parked: a bare `poll_read` inside a `select`, whose cancellation the mux
//!   cannot see), then retried; the echoing end also pauses 0 to 3 ms before half of its
//!   writes, so reads park and expire, and each cancelling stream begins with a read that must
//!   expire (nothing was sent yet). Beside them [`PATIENT`] patient streams read normally:
//!   each sends small requests (flushed) that the acceptor echoes after a delay of 1 to 20 ms,
//!   so their readers are parked when the data comes. When the cancelling streams are done,
//!   the quiet phase: the patient streams make [`PATIENT_MIN`] more rounds, while each of the
//!   [`QUITTERS`] (streams opened at the start, idle since) cancels one parked read and then
//!   waits, away from the mux, until the patient streams are done; then it echoes 100 bytes
//!   and closes. A patient reader must get its data even when the task woken for the
//!   transport was a quitter's (issue 19). A one-byte tag opening every stream tells the
//!   acceptor which kind it is. Keepalive is off on both ends: no NOP may rescue a stranded
//!   reader. Every byte is checked (nothing lost, nothing duplicated), each patient stream is
//!   a [`Lane`], and the opener prints how many reads expired.
//!
//! # Peers
//!
//! - both ends ours on tokio (`smux-tokio`, a two-worker runtime), and both ends ours on smol
//!   (`smux-smol`, an executor with two workers);
//! - both ends ours on tokio over TLS (tokio-rustls on ring, a self-signed certificate made at
//!   run time, as in `smux-tokio/examples/tls.rs`): a transport whose flush may be `Pending`.
//!   Tokio only (tokio-rustls), for the interactive shape;
//! - Go smux 1.5.16 (`go-peer`, see `go-peer/workload.go`) as the client opening the streams
//!   toward our tokio server, and as the server accepting the streams our tokio client opens.
//!   Not for the cancel shape (its tags and delays are ours).
//!
//! Each runs protocol versions 1 and 2, with default buffers and with small ones (see
//! [`Buffers`]), at stream counts of 1 to 4096 (see [`sizes`]). When Go is the client it
//! cannot half-close (Go's `Close` ends both directions), so it reads the whole echo before it
//! closes; its burst requests are framed for the same reason (and our acceptor's flush after
//! the last interactive reply may see Go's session end first: Go checked that reply). When Go
//! is a version 2 server, we half-close only after the whole echo arrived: a Go 1.5.16 writer
//! blocked on the window gives up with EOF when our FIN arrives.
//!
//! # Stalls
//!
//! Every read and write of the test's own endpoints counts the bytes it moved. A case that
//! moves nothing for [`STALL`] (10 s) fails, and so does a busy [`Lane`] (the interactive
//! stream, a patient reader) that moves nothing for as long, whatever the other streams do.
//! The message shows the [`snapshot`](smux_tokio::Mux::snapshot) of each of our sessions and,
//! with a Go peer, what Go printed on stderr plus a summary of its goroutines (Go is sent
//! SIGQUIT for the dump). A stall is a bug to report, not a timeout to raise. A case also
//! fails after [`CASE_LIMIT`] in all, in case it keeps trickling.
//!
//! Each test runs all its cases even when one fails and then lists the failures. In debug
//! builds (`cargo test --workspace` in CI) the payloads are smaller and the largest counts are
//! left out (see [`sizes`]), except for the headline case, which runs in full in both:
//! `go_v2_client_echoes_64_streams_of_1_mib_through_our_tokio_server`.
//!
//! # Stress
//!
//! `SMUX_STRESS_RUNS=N` runs every selected case N times (with a different seed each time)
//! and ends with a line per case: `stress CASE: N runs in T, slowest S: K stalls, F other
//! failures`. The stress tests, `stress_interactive_beside_4_bulk_streams_on_tokio` and
//! `..._on_smol`, run the 4-bulk interactive case (default buffers, versions 1 and 2)
//! [`STRESS_DEFAULT`] times each in CI; the 200-run stress of issue 19:
//!
//! ```text
//! SMUX_STRESS_RUNS=200 cargo test --release -p smux-interop --test workloads stress_ -- --nocapture --test-threads=1
//! ```
//!
//! (`--nocapture` shows the per-case lines of passing runs too.) It takes about half an hour
//! on two cores, mostly version 1: with no per-stream window, each interactive exchange waits
//! behind the bulk data already queued (some 10 to 50 ms in release builds, against some 5 ms
//! in version 2).
//!
//! Any other case repeats the same way: pick its test and its case with [`FILTER_VAR`], e.g.
//! `SMUX_STRESS_RUNS=100 SMUX_WORKLOAD_FILTER="cancel smol<->smol v2 small" cargo test
//! --release -p smux-interop --test workloads cancelled_reads_between_our_smol_peers`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Either};
use smux_interop::go::{self, GoOutput, GoPeer};
use smux_interop::runtime::{Runtime, Smol, Tokio};
use smux_interop::workload::{tail, Buffers, Diagnostics, Lane, Progress, STALL};
use smux_interop::{payload, XorShift};
use smux_proto::{Config as MuxConfig, Side, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Longest a case may take in all, even while it makes progress.
const CASE_LIMIT: Duration = Duration::from_secs(240);
/// Longest the Go peer may take to exit once we are done.
const GO_EXIT: Duration = Duration::from_secs(30);
/// Runs only the cases whose names contain this variable's value (for debugging one case,
/// e.g. `SMUX_WORKLOAD_FILTER="proxy tokio<->tokio v1 small 1024x"`).
const FILTER_VAR: &str = "SMUX_WORKLOAD_FILTER";
/// Keepalive interval of both ends (timeout: three times as long). The default (10 s) would
/// hide a lost wakeup: a NOP every 10 s drives the connection and wakes the stuck task just
/// before the stall detector fires, and the case only looks slow.
const KEEPALIVE: Duration = Duration::from_secs(60);
/// Busy streams beside the idle ones of the idle shape.
const BUSY: usize = 4;
/// Bytes every idle stream echoes at the end of the idle shape.
const IDLE_END: usize = 100;
/// Largest request of the request/response shape.
const REQUEST_MAX: usize = 512;
/// Largest payload of a burst request.
const BURST_MAX: usize = 64;
/// The read buffer of an echo task.
const ECHO_CHUNK: usize = 32 * 1024;
/// Fewest exchanges of the interactive stream in release builds (a tenth in debug builds):
/// the bulk streams go on until it made them.
const INTERACTIVE_MIN: usize = 200;
/// Streams reading normally beside the cancelling ones (cancel shape).
const PATIENT: usize = 4;
/// Rounds of a patient stream once the cancelling streams are done (the quiet phase); before,
/// it goes on as long as they run.
const PATIENT_MIN: usize = 20;
/// Longest delay of the acceptor before it echoes a patient stream's request, in ms.
const PATIENT_DELAY_MS: usize = 20;
/// Largest request of a patient stream.
const PATIENT_REQUEST_MAX: usize = 64;
/// The first byte of a stream of the cancel shape: a cancelling stream, a patient one, a
/// quitter.
const TAG_CANCELLING: u8 = b'c';
const TAG_PATIENT: u8 = b'p';
const TAG_QUITTER: u8 = b'q';
/// Streams that cancel one parked read in the quiet phase of the cancel shape and then wait
/// for the patient streams, without touching the mux.
const QUITTERS: usize = 2;
/// Longest a quitter waits, once the quiet phase began, before its cancelled read, in ms.
const QUITTER_WAIT_MS: usize = 50;
/// Bytes a quitter echoes at the end.
const QUITTER_END: usize = 100;
/// Runs every selected case this many times (see the module docs, "Stress").
const STRESS_VAR: &str = "SMUX_STRESS_RUNS";
/// Runs of each case of the stress tests when [`STRESS_VAR`] is not set (CI).
const STRESS_DEFAULT: usize = 3;

// ------------------------------------------------------------------------------------------------
// The runtime abstraction

/// A runtime with its smux adapter (see `smux_interop::runtime`), its streams and sockets seen
/// through tokio's traits (smol's through `tokio_util::compat`), so that
/// `copy_bidirectional` works on both.
trait Env: Runtime {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    type Listener: Send + Sync + 'static;

    fn connect(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>>;
    fn accept(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>>;
    /// A TCP listener on a free loopback port (called on the runtime).
    fn listen() -> (Arc<Self::Listener>, SocketAddr);
    fn tcp_accept(listener: &Arc<Self::Listener>) -> BoxFuture<'static, io::Result<Self::Tcp>>;
    fn tcp_connect(addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>>;

    /// Our client and server over the two ends of a loopback connection (called on the
    /// runtime).
    fn mux_pair(
        client: std::net::TcpStream,
        server: std::net::TcpStream,
        config: MuxConfig,
    ) -> BoxFuture<'static, (Self::Mux, Self::Mux)> {
        let pair = (
            Self::new_mux(client, Side::Client, config.clone()),
            Self::new_mux(server, Side::Server, config),
        );
        Box::pin(async move { pair })
    }
}

/// A non-blocking loopback listener with a backlog of 4096: std's 128 overflows when a
/// thousand proxy connections arrive at once, and Linux then drops SYNs, which come back only
/// after seconds of retransmission backoff (a stall of the test's making).
fn std_listener() -> (std::net::TcpListener, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(4096).unwrap();
    socket.set_nonblocking(true).unwrap();
    let listener: std::net::TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

impl Env for Tokio {
    type Stream = smux_tokio::MuxStream<tokio::net::TcpStream>;
    type Tcp = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    fn connect(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        let mux = mux.clone();
        Box::pin(async move { mux.connect().await })
    }

    fn accept(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        let mux = mux.clone();
        Box::pin(async move { mux.accept().await })
    }

    fn listen() -> (Arc<Self::Listener>, SocketAddr) {
        let (std, addr) = std_listener();
        (
            Arc::new(tokio::net::TcpListener::from_std(std).unwrap()),
            addr,
        )
    }

    fn tcp_accept(listener: &Arc<Self::Listener>) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        let listener = listener.clone();
        Box::pin(async move {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            Ok(tcp)
        })
    }

    fn tcp_connect(addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp)
        })
    }
}

type Compat<T> = tokio_util::compat::Compat<T>;

impl Env for Smol {
    type Stream = Compat<smux_smol::MuxStream<smol::net::TcpStream>>;
    type Tcp = Compat<smol::net::TcpStream>;
    type Listener = smol::net::TcpListener;

    fn connect(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        let mux = mux.clone();
        Box::pin(async move { mux.connect().await.map(|s| s.compat()) })
    }

    fn accept(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        let mux = mux.clone();
        Box::pin(async move { mux.accept().await.map(|s| s.compat()) })
    }

    fn listen() -> (Arc<Self::Listener>, SocketAddr) {
        let (std, addr) = std_listener();
        (
            Arc::new(smol::net::TcpListener::try_from(std).unwrap()),
            addr,
        )
    }

    fn tcp_accept(listener: &Arc<Self::Listener>) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        let listener = listener.clone();
        Box::pin(async move {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            Ok(tcp.compat())
        })
    }

    fn tcp_connect(addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        Box::pin(async move {
            let tcp = smol::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp.compat())
        })
    }
}

/// Tokio with both ends of the connection wrapped in TLS (tokio-rustls): a transport whose
/// `poll_flush` may be `Pending`. Only [`Env::mux_pair`] makes its muxes (the handshake is
/// async); the rest is [`Tokio`]'s.
struct TokioTls;

type TlsTcp = tokio_rustls::TlsStream<tokio::net::TcpStream>;

/// The TLS configurations of both ends: a self-signed certificate for `localhost`, made once.
fn tls_configs() -> &'static (Arc<ServerConfig>, Arc<ClientConfig>) {
    static CONFIGS: OnceLock<(Arc<ServerConfig>, Arc<ClientConfig>)> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
        let cert = certified.cert.der().clone();
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.into())
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    })
}

impl Runtime for TokioTls {
    const NAME: &'static str = "tokio+tls";
    type Mux = smux_tokio::Mux<TlsTcp>;

    fn block_on<F: Future>(future: F) -> F::Output {
        Tokio::block_on(future)
    }

    fn spawn<F>(future: F) -> BoxFuture<'static, F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Tokio::spawn(future)
    }

    fn detach<F>(future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Tokio::detach(future)
    }

    fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
        Tokio::sleep(duration)
    }

    fn unblock<R, F>(f: F) -> BoxFuture<'static, R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        Tokio::unblock(f)
    }

    fn new_mux(_: std::net::TcpStream, _: Side, _: MuxConfig) -> Self::Mux {
        unreachable!("a TLS mux needs an async handshake: Env::mux_pair makes them")
    }

    smux_interop::mux_methods!();
}

impl Env for TokioTls {
    type Stream = smux_tokio::MuxStream<TlsTcp>;
    type Tcp = <Tokio as Env>::Tcp;
    type Listener = <Tokio as Env>::Listener;

    fn connect(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        let mux = mux.clone();
        Box::pin(async move { mux.connect().await })
    }

    fn accept(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        let mux = mux.clone();
        Box::pin(async move { mux.accept().await })
    }

    fn listen() -> (Arc<Self::Listener>, SocketAddr) {
        Tokio::listen()
    }

    fn tcp_accept(listener: &Arc<Self::Listener>) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Tokio::tcp_accept(listener)
    }

    fn tcp_connect(addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Tokio::tcp_connect(addr)
    }

    /// Both handshakes at once, then a mux on each end.
    fn mux_pair(
        client: std::net::TcpStream,
        server: std::net::TcpStream,
        config: MuxConfig,
    ) -> BoxFuture<'static, (Self::Mux, Self::Mux)> {
        Box::pin(async move {
            let tokio_tcp = |tcp: std::net::TcpStream| {
                tcp.set_nonblocking(true).unwrap();
                tcp.set_nodelay(true).unwrap();
                tokio::net::TcpStream::from_std(tcp).unwrap()
            };
            let (client, server) = (tokio_tcp(client), tokio_tcp(server));
            let (server_config, client_config) = tls_configs().clone();
            let name = ServerName::try_from("localhost").unwrap();
            let (client, server) = futures::join!(
                TlsConnector::from(client_config).connect(name, client),
                TlsAcceptor::from(server_config).accept(server),
            );
            let client = TlsTcp::from(client.expect("TLS handshake (client)"));
            let server = TlsTcp::from(server.expect("TLS handshake (server)"));
            (
                smux_tokio::Mux::new(client, Side::Client, config.clone()).unwrap(),
                smux_tokio::Mux::new(server, Side::Server, config).unwrap(),
            )
        })
    }
}

// ------------------------------------------------------------------------------------------------
// The matrix

/// A traffic shape (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Echo,
    Proxy,
    RequestResponse,
    Burst,
    Idle,
    Interactive,
    Cancel,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Echo => "echo",
            Shape::Proxy => "proxy",
            Shape::RequestResponse => "reqresp",
            Shape::Burst => "burst",
            Shape::Idle => "idle",
            Shape::Interactive => "interactive",
            Shape::Cancel => "cancel",
        }
    }
}

/// Who is at the other end of our session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// Both ends ours, on the same runtime.
    Ours,
    /// Go's smux opens the streams; we are the server.
    GoClient,
    /// We open the streams; Go's smux is the server.
    GoServer,
}

/// One case of the matrix.
#[derive(Debug, Clone, Copy)]
struct Case {
    shape: Shape,
    peer: Peer,
    version: Version,
    buffers: Buffers,
    /// Streams opened (idle: the idle ones, beside [`BUSY`] busy ones; interactive: the bulk
    /// ones, beside the interactive one; cancel: the cancelling ones, beside [`PATIENT`]
    /// patient ones).
    streams: usize,
    /// Bytes per stream (echo, proxy, cancel), per busy stream (idle), per bulk stream
    /// (interactive); largest request (reqresp, burst).
    size: usize,
    /// Which run of the case this is (0 but in stress runs: it changes the seed).
    run: usize,
}

impl Case {
    fn name<E: Env>(&self) -> String {
        let peer = match self.peer {
            Peer::Ours => format!("{0}<->{0}", E::NAME),
            Peer::GoClient => format!("go->{}", E::NAME),
            Peer::GoServer => format!("{}->go", E::NAME),
        };
        format!(
            "{} {peer} v{} {} {}x{}",
            self.shape.name(),
            self.version.as_u8(),
            self.buffers.name(),
            self.streams,
            human(self.size)
        )
    }

    /// Streams the acceptor sees.
    fn total_streams(&self) -> usize {
        match self.shape {
            Shape::Idle => self.streams + BUSY,
            Shape::Interactive => self.streams + 1,
            Shape::Cancel => self.streams + PATIENT + QUITTERS,
            _ => self.streams,
        }
    }

    /// Requests per stream of the request/response shape: about 8192 (2048 in debug builds)
    /// in all, 4 to 1000 per stream.
    fn requests(&self) -> usize {
        let total = if cfg!(debug_assertions) { 2048 } else { 8192 };
        (total / self.streams).clamp(4, 1000)
    }

    /// Whether our opener sends FIN only after the whole reply arrived (Go 1.5.16 version 2
    /// writers blocked on the window give up when FIN arrives; see the module docs).
    fn fin_after_reply(&self) -> bool {
        self.peer == Peer::GoServer && self.version == Version::V2
    }

    /// Our configuration: the case's buffers, and a keepalive slower than the stall detector
    /// (see [`KEEPALIVE`]), or none at all (cancel).
    fn config(&self) -> MuxConfig {
        let config = self.buffers.config(self.version);
        if self.shape == Shape::Cancel {
            return config.with_keep_alive_disabled(true);
        }
        config
            .with_keep_alive_interval(KEEPALIVE)
            .with_keep_alive_timeout(3 * KEEPALIVE)
    }

    fn seed(&self) -> u64 {
        ((self.streams as u64) << 32)
            ^ ((self.size as u64) << 8)
            ^ u64::from(self.version.as_u8())
            ^ ((self.run as u64) << 56)
    }
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

/// The (streams, size) pairs of a shape. Release builds go up to 4096 streams (1024 through
/// the proxy, which costs four sockets per stream) and 4 MiB per stream; debug builds use
/// smaller payloads and fewer streams (no 4096 idle streams, no 64 x 1 MiB echo except the
/// headline test), for CI time.
fn sizes(shape: Shape) -> &'static [(usize, usize)] {
    const MIB: usize = 1 << 20;
    const KIB: usize = 1 << 10;
    let release = !cfg!(debug_assertions);
    match shape {
        Shape::Echo if release => &[
            (1, 4 * MIB),
            (16, MIB),
            (64, MIB),
            (256, 64 * KIB),
            (4096, 4 * KIB),
        ],
        Shape::Echo => &[(1, MIB), (16, 256 * KIB), (256, 16 * KIB), (4096, KIB)],
        Shape::Proxy if release => &[(1, 4 * MIB), (16, MIB), (256, 64 * KIB), (1024, 4 * KIB)],
        Shape::Proxy => &[(1, MIB), (16, 256 * KIB), (256, 4 * KIB)],
        Shape::RequestResponse => &[
            (1, REQUEST_MAX),
            (16, REQUEST_MAX),
            (256, REQUEST_MAX),
            (4096, REQUEST_MAX),
        ],
        // 1000: just below Go's accept backlog of 1024 (see `known_go_deadlock`).
        Shape::Burst => &[
            (16, BURST_MAX),
            (256, BURST_MAX),
            (1000, BURST_MAX),
            (4096, BURST_MAX),
        ],
        Shape::Idle if release => &[(16, 4 * MIB), (256, 4 * MIB), (4096, 4 * MIB)],
        // 1024, not 4096: every exchange with our server costs time in proportion to the
        // streams parked on it (a 4096-stream idle case takes about a minute in debug).
        Shape::Idle => &[(16, MIB), (256, MIB), (1024, 256 * KIB)],
        Shape::Interactive if release => &[(1, 4 * MIB), (4, MIB), (8, MIB)],
        Shape::Interactive => &[(1, 512 * KIB), (4, 128 * KIB), (8, 64 * KIB)],
        Shape::Cancel if release => &[(1, MIB), (16, 64 * KIB), (64, 4 * KIB)],
        Shape::Cancel => &[(1, 256 * KIB), (16, 16 * KIB), (64, KIB)],
    }
}

/// Runs every case of `shape` against `peer` on `E` (both versions, both buffer sizes, every
/// size), then fails listing the cases that failed.
fn run_matrix<E: Env>(shape: Shape, peer: Peer) {
    let mut cases = Vec::new();
    for version in [Version::V1, Version::V2] {
        for buffers in [Buffers::Default, Buffers::Small] {
            for &(streams, size) in sizes(shape) {
                cases.push(Case {
                    shape,
                    peer,
                    version,
                    buffers,
                    streams,
                    size,
                    run: 0,
                });
            }
        }
    }
    run_cases::<E>(&cases);
}

/// Runs `cases` once each, or [`STRESS_VAR`] times.
fn run_cases<E: Env>(cases: &[Case]) {
    run_cases_times::<E>(cases, stress_runs().unwrap_or(1));
}

/// The value of [`STRESS_VAR`], if set.
fn stress_runs() -> Option<usize> {
    let value = std::env::var(STRESS_VAR).ok()?;
    let runs = value
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{STRESS_VAR}={value}: {e}"));
    assert!(runs > 0, "{STRESS_VAR} must be at least 1");
    Some(runs)
}

/// Runs each case `runs` times (each run with its own seed), all of them even when some fail,
/// then fails listing the failures. With more than one run, a line per case counts the runs,
/// the stalls among the failures and the time.
fn run_cases_times<E: Env>(cases: &[Case], runs: usize) {
    if cases.iter().any(|c| c.peer != Peer::Ours) {
        go_binary(); // built before any stall clock runs
    }
    let filter = std::env::var(FILTER_VAR).unwrap_or_default();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut stress = Vec::new();
    let mut ran = 0;
    for case in cases {
        let name = case.name::<E>();
        if !name.contains(filter.as_str()) {
            continue;
        }
        if let Some(reason) = known_go_deadlock(case) {
            eprintln!("case {name}: NOT RUN: known Go smux 1.5.16 deadlock: {reason}");
            continue;
        }
        ran += runs;
        let (mut stalls, mut failed, mut slowest) = (0, 0, Duration::ZERO);
        let case_started = Instant::now();
        for run in 0..runs {
            let label = match runs {
                1 => name.clone(),
                _ => format!("{name} (run {} of {runs})", run + 1),
            };
            let case = Case { run, ..*case };
            let run_started = Instant::now();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| run_case::<E>(case, &label)));
            let elapsed = run_started.elapsed();
            slowest = slowest.max(elapsed);
            match result {
                Ok(()) => eprintln!("case {label}: ok in {elapsed:.2?}"),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "(no message)".into());
                    eprintln!("case {label}: FAILED after {elapsed:.2?}");
                    if message.contains("STALL in ") {
                        stalls += 1;
                    } else {
                        failed += 1;
                    }
                    failures.push((label, message));
                }
            }
        }
        if runs > 1 {
            stress.push(format!(
                "stress {name}: {runs} runs in {:.1?}, slowest {slowest:.2?}: {stalls} stalls, \
                 {failed} other failures",
                case_started.elapsed()
            ));
        }
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("workloads")
        .to_owned();
    for line in &stress {
        eprintln!("{line}");
    }
    eprintln!("timing {test}: {ran} cases in {:.2?}", started.elapsed());
    if !failures.is_empty() {
        let list: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
        let details: Vec<String> = failures
            .iter()
            .map(|(n, m)| format!("==== {n}\n{m}"))
            .collect();
        panic!(
            "{} of {ran} cases failed: {}\n{}\n\n{}",
            failures.len(),
            list.join(", "),
            stress.join("\n"),
            details.join("\n\n")
        );
    }
}

/// Cases that Go smux 1.5.16 cannot pass whoever its peer is: the same workload deadlocks
/// between two Go peers. They are listed in the output as not run, with the reason, and stay
/// here as documentation; everything else must pass.
fn known_go_deadlock(case: &Case) -> Option<&'static str> {
    if case.peer == Peer::GoServer && case.shape == Shape::Burst && case.streams > 1024 {
        // session.go (1.5.16) recvLoop, cmdSYN: it holds streamLock while it blocks on the
        // full accept channel (1024 streams); the acceptor's Stream.Close -> streamClosed needs
        // streamLock: the acceptor and the reader wait for each other for ever (goroutine dump:
        // recvLoop in select, streamClosed in semacquire). Go to Go: `go-peer -mode server
        // -serial -framed` against `go-peer -mode client -workload burst -streams 4096
        // -openers 16` hangs in both versions (64 openers also hang).
        return Some("Go's reader holds streamLock while blocked on its full accept backlog");
    }
    None
}

fn run_case<E: Env>(case: Case, name: &str) {
    match case.peer {
        Peer::Ours => ours_both_ends::<E>(case, name),
        Peer::GoClient => go_client::<E>(case, name),
        Peer::GoServer => go_server::<E>(case, name),
    }
}

// ------------------------------------------------------------------------------------------------
// The stall detector

/// Runs `case` and fails when `progress`, or one of its busy lanes, stands still for
/// [`STALL`], or after [`CASE_LIMIT`].
async fn guarded<E: Env>(
    name: &str,
    progress: &Progress,
    diagnostics: &Diagnostics,
    case: impl Future<Output = ()>,
) {
    let started = Instant::now();
    let watchdog = async {
        let mut last = progress.get();
        let mut since = Instant::now();
        // Per busy lane: the bytes it had moved when last seen moving, and since when.
        let mut lanes: HashMap<usize, (u64, Instant)> = HashMap::new();
        loop {
            E::sleep(Duration::from_millis(100)).await;
            let now = progress.get();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= STALL {
                break;
            }
            for (id, lane, bytes) in progress.busy_lanes() {
                let seen = lanes.entry(id).or_insert((bytes, Instant::now()));
                if seen.0 != bytes {
                    *seen = (bytes, Instant::now());
                } else if seen.1.elapsed() >= STALL {
                    let report = diagnostics.report();
                    panic!(
                        "STALL in {name}: {lane} moved no byte for {STALL:?} while busy ({bytes} \
                         bytes moved before; {now} bytes in the whole case, {:.1?} into it)\n\
                         {report}",
                        started.elapsed()
                    );
                }
            }
            if started.elapsed() >= CASE_LIMIT {
                let report = diagnostics.report();
                panic!("{name}: not done within {CASE_LIMIT:?} ({now} bytes moved)\n{report}");
            }
        }
        let report = diagnostics.report();
        panic!(
            "STALL in {name}: no byte moved for {STALL:?} ({last} bytes moved before, {:.1?} \
             into the case)\n{report}",
            started.elapsed()
        );
    };
    let case = std::pin::pin!(case);
    let watchdog = std::pin::pin!(watchdog);
    match futures::future::select(case, watchdog).await {
        Either::Left(((), _)) => {}
        Either::Right(((), _)) => unreachable!("the watchdog only ends by panicking"),
    }
}

// ------------------------------------------------------------------------------------------------
// Checking helpers

/// Errors that say the connection ended (the peer closed or reset it).
fn is_connection_end(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotConnected
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

fn mismatch(got: &[u8], want: &[u8]) -> usize {
    got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0)
}

/// Piece sizes of our writes and reads: half up to 1 KiB, a third up to 32 KiB, the rest up
/// to 256 KiB.
fn piece(rng: &mut XorShift) -> usize {
    match rng.range(0, 99) {
        0..=49 => rng.range(1, 1024),
        50..=84 => rng.range(1, 32 * 1024),
        _ => rng.range(32 * 1024, 256 * 1024),
    }
}

/// What counts the bytes a helper moves: the case's [`Progress`], or one of its [`Lane`]s.
trait Meter: Send + Sync {
    fn add(&self, n: usize);
}

impl Meter for Progress {
    fn add(&self, n: usize) {
        Progress::add(self, n);
    }
}

impl Meter for Lane {
    fn add(&self, n: usize) {
        Lane::add(self, n);
    }
}

/// The reads and pauses of a cancelling stream (cancel shape): every read races a timer of 0
/// to 2 ms and is dropped when the timer wins, then retried. The read is often parked by then:
/// a bare `poll_read` through `tokio::io::split` or our own loop, whose cancellation the mux
/// cannot see.
struct Cancelling {
    sleep: fn(Duration) -> BoxFuture<'static, ()>,
    rng: XorShift,
    /// Reads dropped when their timer won (shared by the streams of one end).
    expired: Arc<AtomicU64>,
}

impl Cancelling {
    fn new<E: Env>(seed: u64, expired: &Arc<AtomicU64>) -> Self {
        Cancelling {
            sleep: E::sleep,
            rng: XorShift::new(seed),
            expired: expired.clone(),
        }
    }

    /// Reads into `buf`, through as many cancelled reads as it takes.
    async fn read<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        loop {
            let timer = (self.sleep)(Duration::from_micros(self.rng.up_to(2000) as u64));
            let read = std::pin::pin!(reader.read(&mut *buf));
            match futures::future::select(read, timer).await {
                Either::Left((result, _)) => return result,
                Either::Right(((), _)) => {
                    self.expired.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Whether one read of `reader` expires (its timer wins, and the read is dropped): it
    /// must when the peer sends nothing meanwhile.
    async fn expires<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> bool {
        let mut buf = [0; 16];
        let read = std::pin::pin!(reader.read(&mut buf));
        let timer = (self.sleep)(Duration::from_micros(self.rng.up_to(2000) as u64));
        match futures::future::select(read, timer).await {
            Either::Left(_) => false,
            Either::Right(_) => {
                self.expired.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// Before half of the writes, a pause of 0 to 3 ms: the other end's reads park and
    /// expire meanwhile.
    async fn pause(&mut self) {
        if self.rng.up_to(1) == 0 {
            (self.sleep)(Duration::from_micros(self.rng.up_to(3000) as u64)).await;
        }
    }
}

/// Reads until EOF, which must come at once.
async fn expect_eof<R: AsyncRead + Unpin>(r: &mut R, what: &str) -> Result<(), String> {
    let mut buf = [0; 64];
    match r.read(&mut buf).await {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!("{what}: {n} unexpected bytes instead of the end")),
        Err(e) => Err(format!("{what}: error instead of the end: {e}")),
    }
}

/// Writes `data` in random pieces while reading the echo concurrently and checking every
/// byte; half-closes after the data, or after the whole echo with `fin_after_echo`; then the
/// echo must end.
async fn echo_check<S>(
    stream: S,
    data: &[u8],
    seed: u64,
    fin_after_echo: bool,
    progress: &Progress,
    mut cancelling: Option<Cancelling>,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let len = data.len();
    let write = async {
        let mut rng = XorShift::new(seed);
        let mut done = 0;
        while done < len {
            let n = piece(&mut rng).min(len - done);
            writer
                .write_all(&data[done..done + n])
                .await
                .map_err(|e| format!("write at {done} of {len}: {e}"))?;
            progress.add(n);
            done += n;
        }
        if !fin_after_echo {
            writer
                .shutdown()
                .await
                .map_err(|e| format!("half-close after {len} bytes: {e}"))?;
        }
        Ok::<_, String>(())
    };
    let read = async {
        let mut rng = XorShift::new(!seed);
        let mut buf = vec![0; len.clamp(1, 256 * 1024)];
        let mut got = 0;
        while got < len {
            let want = piece(&mut rng).min(buf.len());
            let n = match cancelling.as_mut() {
                Some(cancelling) => cancelling.read(&mut reader, &mut buf[..want]).await,
                None => reader.read(&mut buf[..want]).await,
            }
            .map_err(|e| format!("read after {got} of {len} echoed bytes: {e}"))?;
            if n == 0 {
                return Err(format!("echo ended after {got} of {len} bytes"));
            }
            let end = (got + n).min(len);
            if buf[..end - got] != data[got..end] || end - got != n {
                return Err(format!(
                    "echo differs from what was sent at byte {} of {len}",
                    got + mismatch(&buf[..n], &data[got..end])
                ));
            }
            progress.add(n);
            got = end;
        }
        Ok(())
    };
    futures::try_join!(write, read)?;
    if fin_after_echo {
        writer
            .shutdown()
            .await
            .map_err(|e| format!("half-close after the echo: {e}"))?;
    }
    expect_eof(&mut reader, "after the echo").await
}

/// Writes `request` (and flushes, with `flush`) and reads exactly as many bytes back, which
/// must equal it.
async fn exchange<S, M: Meter>(
    stream: &mut S,
    request: &[u8],
    progress: &M,
    flush: bool,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write of {} bytes: {e}", request.len()))?;
    progress.add(request.len());
    if flush {
        stream
            .flush()
            .await
            .map_err(|e| format!("flush after a request of {} bytes: {e}", request.len()))?;
    }
    let mut reply = vec![0; request.len()];
    let mut got = 0;
    while got < reply.len() {
        match stream.read(&mut reply[got..]).await {
            Ok(0) => {
                return Err(format!(
                    "reply ended after {got} of {} bytes",
                    request.len()
                ))
            }
            Ok(n) => {
                progress.add(n);
                got += n;
            }
            Err(e) => return Err(format!("reply: read after {got} bytes: {e}")),
        }
    }
    if reply != request {
        return Err(format!(
            "reply differs from the request of {} bytes at byte {}",
            request.len(),
            mismatch(&reply, request)
        ));
    }
    Ok(())
}

/// Joins tasks that give `Result<u64, String>`; sums the oks and collects the errors.
async fn join_counted(tasks: Vec<BoxFuture<'static, Result<u64, String>>>) -> (u64, Vec<String>) {
    let mut total = 0;
    let mut errors = Vec::new();
    for result in futures::future::join_all(tasks).await {
        match result {
            Ok(n) => total += n,
            Err(e) => errors.push(e),
        }
    }
    (total, errors)
}

fn errors_text(errors: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut text = errors
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n  ");
    if errors.len() > SHOWN {
        text += &format!("\n  ... and {} more", errors.len() - SHOWN);
    }
    text
}

// ------------------------------------------------------------------------------------------------
// Our acceptor side

/// What our acceptor saw.
struct Served {
    /// Streams accepted.
    accepted: usize,
    /// Payload bytes echoed (by the echo target in the proxy shape).
    bytes: u64,
    /// Streams that failed, with why.
    errors: Vec<String>,
    /// The error that ended `accept`.
    end: io::Error,
}

/// One task per stream: reads a chunk, `write_all`s it back (and flushes, with `flush`), until
/// EOF; then half-closes. With `cancelling`, reads are cancelled and writes paused as its docs
/// say.
async fn echo<S: AsyncRead + AsyncWrite + Unpin, M: Meter>(
    mut stream: S,
    progress: &M,
    echoed: &AtomicU64,
    late_close_ok: bool,
    flush: bool,
    mut cancelling: Option<Cancelling>,
) -> Result<u64, String> {
    let mut buf = vec![0; ECHO_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match cancelling.as_mut() {
            Some(cancelling) => cancelling.read(&mut stream, &mut buf).await,
            None => stream.read(&mut buf).await,
        }
        .map_err(|e| format!("echo: read after {total} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        progress.add(n);
        if let Some(cancelling) = cancelling.as_mut() {
            cancelling.pause().await;
        }
        stream
            .write_all(&buf[..n])
            .await
            .map_err(|e| format!("echo: write after {total} bytes: {e}"))?;
        progress.add(n);
        echoed.fetch_add(n as u64, Ordering::Relaxed);
        total += n as u64;
        if flush {
            match stream.flush().await {
                Ok(()) => {}
                // Go closes its session as soon as it checked the last echo (so these bytes
                // went out), and our flush may see the session end before it sees them
                // flushed.
                Err(e) if late_close_ok && is_connection_end(&e) => return Ok(total),
                Err(e) => return Err(format!("echo: flush after {total} bytes: {e}")),
            }
        }
    }
    match stream.shutdown().await {
        // Go forgets a stream once it closed it, and closes its session once it checked
        // the last echo: our FIN may find the connection gone.
        Err(e) if !(late_close_ok && is_connection_end(&e)) => {
            Err(format!("echo: half-close after {total} bytes: {e}"))
        }
        _ => Ok(total),
    }
}

/// The slow acceptor's handling of one burst stream: reads the framed request, writes the
/// payload back and half-closes.
async fn serve_framed<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    progress: &Progress,
    echoed: &AtomicU64,
    late_close_ok: bool,
) -> Result<u64, String> {
    let mut head = [0; 4];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| format!("burst: request header: {e}"))?;
    let len = u32::from_le_bytes(head) as usize;
    if len > BURST_MAX {
        return Err(format!("burst: request of {len} bytes announced"));
    }
    let mut request = vec![0; len];
    stream
        .read_exact(&mut request)
        .await
        .map_err(|e| format!("burst: request of {len} bytes: {e}"))?;
    progress.add(4 + len);
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("burst: reply: {e}"))?;
    progress.add(len);
    echoed.fetch_add(len as u64, Ordering::Relaxed);
    match stream.shutdown().await {
        Err(e) if !(late_close_ok && is_connection_end(&e)) => {
            Err(format!("burst: half-close: {e}"))
        }
        _ => Ok(len as u64),
    }
}

/// A patient stream's acceptor (cancel shape): reads what comes, waits 1 to
/// [`PATIENT_DELAY_MS`] ms, writes it back and flushes; until EOF, then half-closes. The
/// opener's reader is parked by the time the echo comes.
async fn delayed_echo<E: Env>(
    mut stream: E::Stream,
    progress: &Progress,
    echoed: &AtomicU64,
    seed: u64,
) -> Result<u64, String> {
    let mut rng = XorShift::new(seed);
    let mut buf = vec![0; PATIENT_REQUEST_MAX];
    let mut total = 0u64;
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("patient echo: read after {total} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        progress.add(n);
        E::sleep(Duration::from_millis(rng.range(1, PATIENT_DELAY_MS) as u64)).await;
        stream
            .write_all(&buf[..n])
            .await
            .map_err(|e| format!("patient echo: write after {total} bytes: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("patient echo: flush after {total} bytes: {e}"))?;
        progress.add(n);
        echoed.fetch_add(n as u64, Ordering::Relaxed);
        total += n as u64;
    }
    stream
        .shutdown()
        .await
        .map_err(|e| format!("patient echo: half-close after {total} bytes: {e}"))?;
    Ok(total)
}

/// A plain TCP echo server (the proxy's target); every connection echoed by [`echo`].
fn spawn_echo_target<E: Env>(progress: &Progress, echoed: Arc<AtomicU64>) -> SocketAddr {
    let (listener, addr) = E::listen();
    let progress = progress.clone();
    E::detach(async move {
        while let Ok(tcp) = E::tcp_accept(&listener).await {
            let progress = progress.clone();
            let echoed = echoed.clone();
            E::detach(async move {
                // A failed connection shows as a failed stream at the opener.
                let _ = echo(tcp, &progress, &echoed, false, false, None).await;
            });
        }
    });
    addr
}

/// Accepts streams until `accept` fails and serves them as `case.shape` wants: in a task each,
/// or one at a time (burst).
async fn serve<E: Env>(case: Case, mux: E::Mux, progress: Progress) -> Served {
    // Bytes echoed, counted as soon as they are written back (by the echo target in the
    // proxy shape, which the opener's reads wait for).
    let echoed = Arc::new(AtomicU64::new(0));
    let target =
        (case.shape == Shape::Proxy).then(|| spawn_echo_target::<E>(&progress, echoed.clone()));
    // Go closes streams and then its session without waiting for our FIN.
    let late_close_ok = case.peer == Peer::GoClient;
    // Reads of ours that expired (cancel shape).
    let expired = Arc::new(AtomicU64::new(0));
    let mut tasks: Vec<BoxFuture<'static, Result<u64, String>>> = Vec::new();
    let mut accepted = 0;
    let end = loop {
        let stream = match E::accept(&mux).await {
            Ok(stream) => stream,
            Err(e) => break e,
        };
        accepted += 1;
        let (progress, echoed) = (progress.clone(), echoed.clone());
        match case.shape {
            Shape::Burst => {
                let result = serve_framed(stream, &progress, &echoed, late_close_ok).await;
                tasks.push(Box::pin(async move { result }));
            }
            Shape::Proxy => {
                let target = target.expect("proxy target");
                tasks.push(E::spawn(async move {
                    let mut stream = stream;
                    let mut tcp = E::tcp_connect(target)
                        .await
                        .map_err(|e| format!("proxy: dialing the target: {e}"))?;
                    match tokio::io::copy_bidirectional(&mut stream, &mut tcp).await {
                        // The last step is our FIN, which may find Go's session gone (see
                        // `echo`); what was echoed is counted by the target all the same.
                        Err(e) if !(late_close_ok && is_connection_end(&e)) => {
                            Err(format!("proxy (server side): {e}"))
                        }
                        _ => Ok(0),
                    }
                }));
            }
            Shape::Echo | Shape::RequestResponse | Shape::Idle => {
                tasks.push(E::spawn(async move {
                    echo(stream, &progress, &echoed, late_close_ok, false, None).await
                }));
            }
            // The first stream is the interactive one (it made an exchange before the bulk
            // streams opened): echoed with a flush after every write.
            Shape::Interactive if accepted == 1 => {
                let lane = progress.lane("the interactive stream (the acceptor's echo)");
                tasks.push(E::spawn(async move {
                    echo(stream, &lane, &echoed, late_close_ok, true, None).await
                }));
            }
            Shape::Interactive => {
                tasks.push(E::spawn(async move {
                    echo(stream, &progress, &echoed, late_close_ok, false, None).await
                }));
            }
            Shape::Cancel => {
                let seed = case.seed() ^ (accepted as u64) << 20;
                let expired = expired.clone();
                tasks.push(E::spawn(async move {
                    let mut stream = stream;
                    let mut tag = [0];
                    stream
                        .read_exact(&mut tag)
                        .await
                        .map_err(|e| format!("cancel: the tag: {e}"))?;
                    progress.add(1);
                    match tag[0] {
                        TAG_CANCELLING => {
                            let cancelling = Cancelling::new::<E>(seed, &expired);
                            echo(stream, &progress, &echoed, false, false, Some(cancelling)).await
                        }
                        TAG_PATIENT => delayed_echo::<E>(stream, &progress, &echoed, seed).await,
                        TAG_QUITTER => echo(stream, &progress, &echoed, false, true, None).await,
                        tag => Err(format!("cancel: unknown tag {tag}")),
                    }
                }));
            }
        }
    };
    let (_, errors) = join_counted(tasks).await;
    Served {
        accepted,
        bytes: echoed.load(Ordering::Relaxed),
        errors,
        end,
    }
}

// ------------------------------------------------------------------------------------------------
// Our opener side

/// Runs `case.shape`'s opener over `mux`; gives the payload bytes sent (and checked on their
/// way back).
async fn open<E: Env>(case: Case, mux: E::Mux, progress: Progress) -> Result<u64, String> {
    let fin_after = case.fin_after_reply();
    let seed = case.seed();
    let (total, errors) = match case.shape {
        Shape::Echo => {
            let tasks = (0..case.streams)
                .map(|i| {
                    let (mux, progress) = (mux.clone(), progress.clone());
                    E::spawn(async move {
                        let data = payload(seed + i as u64, case.size);
                        let stream = E::connect(&mux)
                            .await
                            .map_err(|e| format!("connect #{i}: {e}"))?;
                        echo_check(stream, &data, seed ^ i as u64, fin_after, &progress, None)
                            .await
                            .map_err(|e| format!("stream #{i}: {e}"))?;
                        Ok(data.len() as u64)
                    })
                })
                .collect();
            join_counted(tasks).await
        }
        Shape::Proxy => proxy_client::<E>(case, mux, progress).await,
        Shape::RequestResponse => {
            let tasks = (0..case.streams)
                .map(|i| {
                    let (mux, progress) = (mux.clone(), progress.clone());
                    E::spawn(async move {
                        let mut stream = E::connect(&mux)
                            .await
                            .map_err(|e| format!("connect #{i}: {e}"))?;
                        let mut rng = XorShift::new(seed ^ (i as u64) << 16);
                        let mut total = 0;
                        for k in 0..case.requests() {
                            let mut request = vec![0; rng.range(1, case.size)];
                            rng.fill(&mut request);
                            exchange(&mut stream, &request, &progress, false)
                                .await
                                .map_err(|e| format!("stream #{i}, request {k}: {e}"))?;
                            total += request.len() as u64;
                        }
                        stream
                            .shutdown()
                            .await
                            .map_err(|e| format!("stream #{i}: half-close: {e}"))?;
                        expect_eof(&mut stream, &format!("stream #{i}")).await?;
                        Ok(total)
                    })
                })
                .collect();
            join_counted(tasks).await
        }
        Shape::Burst => burst::<E>(case, mux, progress).await,
        Shape::Idle => idle::<E>(case, mux, progress).await,
        Shape::Interactive => interactive::<E>(case, mux, progress).await,
        Shape::Cancel => cancel::<E>(case, mux, progress).await,
    };
    if errors.is_empty() {
        Ok(total)
    } else {
        Err(format!(
            "{} streams failed:\n  {}",
            errors.len(),
            errors_text(&errors)
        ))
    }
}

/// The client half of the proxy: applications connect to a local listener; each connection is
/// given a mux stream and `copy_bidirectional` joins them.
async fn proxy_client<E: Env>(case: Case, mux: E::Mux, progress: Progress) -> (u64, Vec<String>) {
    let (listener, addr) = E::listen();
    let streams = case.streams;
    let proxy = {
        let mux = mux.clone();
        E::spawn(async move {
            let mut tasks: Vec<BoxFuture<'static, Result<u64, String>>> = Vec::new();
            for _ in 0..streams {
                let mut tcp = match E::tcp_accept(&listener).await {
                    Ok(tcp) => tcp,
                    Err(e) => {
                        tasks.push(Box::pin(async move { Err(format!("proxy: accept: {e}")) }));
                        break;
                    }
                };
                let mux = mux.clone();
                tasks.push(E::spawn(async move {
                    let mut stream = E::connect(&mux)
                        .await
                        .map_err(|e| format!("proxy: connect: {e}"))?;
                    tokio::io::copy_bidirectional(&mut tcp, &mut stream)
                        .await
                        .map_err(|e| format!("proxy (client side): {e}"))?;
                    Ok(0)
                }));
            }
            join_counted(tasks).await
        })
    };
    let fin_after = case.fin_after_reply();
    let seed = case.seed();
    let apps: Vec<_> = (0..streams)
        .map(|i| {
            let progress = progress.clone();
            E::spawn(async move {
                let data = payload(seed + i as u64, case.size);
                let tcp = E::tcp_connect(addr)
                    .await
                    .map_err(|e| format!("app #{i}: connect to the proxy: {e}"))?;
                echo_check(tcp, &data, seed ^ i as u64, fin_after, &progress, None)
                    .await
                    .map_err(|e| format!("app #{i}: {e}"))?;
                Ok(data.len() as u64)
            })
        })
        .collect();
    let (total, app_errors) = join_counted(apps).await;
    // The proxy's errors first: they say why an application failed.
    let (_, mut errors) = proxy.await;
    errors.extend(app_errors);
    (total, errors)
}

/// The burst opener: one task opens every stream and sends its framed request and FIN without
/// waiting; a task per stream reads the reply.
async fn burst<E: Env>(case: Case, mux: E::Mux, progress: Progress) -> (u64, Vec<String>) {
    let mut rng = XorShift::new(case.seed());
    let mut readers: Vec<BoxFuture<'static, Result<u64, String>>> = Vec::new();
    let mut errors = Vec::new();
    for i in 0..case.streams {
        let data = payload(case.seed() + i as u64, rng.range(1, case.size));
        let mut request = (data.len() as u32).to_le_bytes().to_vec();
        request.extend_from_slice(&data);
        let opened = async {
            let mut stream = E::connect(&mux)
                .await
                .map_err(|e| format!("connect #{i}: {e}"))?;
            stream
                .write_all(&request)
                .await
                .map_err(|e| format!("stream #{i}: request: {e}"))?;
            progress.add(request.len());
            stream
                .shutdown()
                .await
                .map_err(|e| format!("stream #{i}: half-close: {e}"))?;
            Ok::<_, String>(stream)
        };
        let mut stream = match opened.await {
            Ok(stream) => stream,
            Err(e) => {
                errors.push(e);
                break;
            }
        };
        let progress = progress.clone();
        readers.push(E::spawn(async move {
            let mut reply = Vec::new();
            let mut buf = [0; 256];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        progress.add(n);
                        reply.extend_from_slice(&buf[..n]);
                    }
                    Err(e) => {
                        return Err(format!(
                            "stream #{i}: reply after {} bytes: {e}",
                            reply.len()
                        ))
                    }
                }
            }
            if reply != data {
                return Err(format!(
                    "stream #{i}: reply of {} bytes differs from the {}-byte request",
                    reply.len(),
                    data.len()
                ));
            }
            Ok(data.len() as u64)
        }));
    }
    let (total, more) = join_counted(readers).await;
    errors.extend(more);
    (total, errors)
}

/// The idle opener: idle streams opened one by one (one byte echoed each), then busy ones
/// beside them, then one more echo on every idle stream.
async fn idle<E: Env>(case: Case, mux: E::Mux, progress: Progress) -> (u64, Vec<String>) {
    let mut idle = Vec::with_capacity(case.streams);
    for i in 0..case.streams {
        let opened = async {
            let mut stream = E::connect(&mux)
                .await
                .map_err(|e| format!("connect idle #{i}: {e}"))?;
            exchange(&mut stream, &[i as u8], &progress, false)
                .await
                .map_err(|e| format!("idle #{i}: first byte: {e}"))?;
            Ok::<_, String>(stream)
        };
        match opened.await {
            Ok(stream) => idle.push(stream),
            Err(e) => return (0, vec![e]),
        }
    }
    let fin_after = case.fin_after_reply();
    let seed = case.seed();
    let busy: Vec<_> = (0..BUSY)
        .map(|i| {
            let (mux, progress) = (mux.clone(), progress.clone());
            E::spawn(async move {
                let data = payload(seed + 1000 + i as u64, case.size);
                let stream = E::connect(&mux)
                    .await
                    .map_err(|e| format!("connect busy #{i}: {e}"))?;
                echo_check(stream, &data, seed ^ i as u64, fin_after, &progress, None)
                    .await
                    .map_err(|e| format!("busy #{i}: {e}"))?;
                Ok(data.len() as u64)
            })
        })
        .collect();
    let (busy_total, mut errors) = join_counted(busy).await;
    let wake: Vec<_> = idle
        .into_iter()
        .enumerate()
        .map(|(i, mut stream)| {
            let progress = progress.clone();
            E::spawn(async move {
                let data = payload(seed + 100_000 + i as u64, IDLE_END);
                exchange(&mut stream, &data, &progress, false)
                    .await
                    .map_err(|e| format!("idle #{i}: at the end: {e}"))?;
                stream
                    .shutdown()
                    .await
                    .map_err(|e| format!("idle #{i}: half-close: {e}"))?;
                expect_eof(&mut stream, &format!("idle #{i}")).await?;
                Ok(1 + IDLE_END as u64)
            })
        })
        .collect();
    let (idle_total, more) = join_counted(wake).await;
    errors.extend(more);
    (busy_total + idle_total, errors)
}

/// The interactive opener: the interactive stream makes its first exchange, then the bulk
/// streams echo rounds of their payloads (see [`bulk_check`]) while it goes on exchanging
/// (each request flushed); once it made [`interactive_min`] exchanges the bulk streams finish
/// their rounds, and it exchanges on until they are done.
async fn interactive<E: Env>(case: Case, mux: E::Mux, progress: Progress) -> (u64, Vec<String>) {
    let lane = progress.lane("the interactive stream (the opener)");
    let mut stream = match E::connect(&mux).await {
        Ok(stream) => stream,
        Err(e) => return (0, vec![format!("connect the interactive stream: {e}")]),
    };
    let seed = case.seed();
    let mut exchanges = Exchanges::new(seed ^ 0x1e);
    if let Err(e) = exchanges.one(&mut stream, &lane).await {
        return (0, vec![e]);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let bulk_done = Arc::new(AtomicBool::new(false));
    let fin_after = case.fin_after_reply();
    let tasks = (0..case.streams)
        .map(|i| {
            let (mux, progress, stop) = (mux.clone(), progress.clone(), stop.clone());
            E::spawn(async move {
                let data = payload(seed + i as u64, case.size);
                let stream = E::connect(&mux)
                    .await
                    .map_err(|e| format!("connect bulk #{i}: {e}"))?;
                bulk_check(stream, &data, seed ^ i as u64, fin_after, &progress, &stop)
                    .await
                    .map_err(|e| format!("bulk #{i}: {e}"))
            })
        })
        .collect();
    let bulk = {
        let bulk_done = bulk_done.clone();
        E::spawn(async move {
            let result = join_counted(tasks).await;
            bulk_done.store(true, Ordering::Relaxed);
            result
        })
    };
    let mut errors = Vec::new();
    let mut result = Ok(());
    // Exchanges begun while the bulk streams ran.
    let mut beside_bulk = 0;
    loop {
        let bulk_running = !bulk_done.load(Ordering::Relaxed);
        if exchanges.done >= interactive_min() {
            stop.store(true, Ordering::Relaxed);
            if !bulk_running {
                break;
            }
        }
        beside_bulk += usize::from(bulk_running);
        result = exchanges.one(&mut stream, &lane).await;
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    let result = match result {
        Ok(()) => {
            async {
                stream
                    .shutdown()
                    .await
                    .map_err(|e| format!("interactive stream: half-close: {e}"))?;
                expect_eof(&mut stream, "interactive stream").await
            }
            .await
        }
        Err(e) => Err(e),
    };
    drop(lane);
    errors.extend(result.err());
    eprintln!(
        "  interactive stream: {} exchanges ({beside_bulk} while {} bulk streams ran), slowest \
         {:.1?}",
        exchanges.done, case.streams, exchanges.slowest
    );
    let (bulk_total, more) = bulk.await;
    errors.extend(more);
    (exchanges.bytes + bulk_total, errors)
}

/// Fewest exchanges of the interactive stream: the bulk streams go on until it made them.
fn interactive_min() -> usize {
    if cfg!(debug_assertions) {
        INTERACTIVE_MIN / 10
    } else {
        INTERACTIVE_MIN
    }
}

/// A bulk stream of the interactive shape: echoes `data` in rounds until `stop` (at least
/// one), each round announced by a byte (1: a round follows, 0: the end) and written in random
/// pieces while the echo is read and checked concurrently; half-closes after the end byte, or
/// after the whole echo with `fin_after_echo`; then the echo must end. Gives the bytes echoed
/// (end bytes included).
async fn bulk_check<S>(
    stream: S,
    data: &[u8],
    seed: u64,
    fin_after_echo: bool,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<u64, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let len = data.len();
    let write = async {
        let mut rng = XorShift::new(seed);
        let mut rounds = 0;
        loop {
            let more = rounds == 0 || !stop.load(Ordering::Relaxed);
            writer
                .write_all(&[u8::from(more)])
                .await
                .map_err(|e| format!("write of the byte before round {rounds}: {e}"))?;
            progress.add(1);
            if !more {
                break;
            }
            let mut done = 0;
            while done < len {
                let n = piece(&mut rng).min(len - done);
                writer
                    .write_all(&data[done..done + n])
                    .await
                    .map_err(|e| format!("round {rounds}: write at {done} of {len}: {e}"))?;
                progress.add(n);
                done += n;
            }
            rounds += 1;
        }
        if !fin_after_echo {
            writer
                .shutdown()
                .await
                .map_err(|e| format!("half-close after {rounds} rounds: {e}"))?;
        }
        Ok::<_, String>(())
    };
    let read = async {
        let mut rng = XorShift::new(!seed);
        let mut buf = vec![0; len.clamp(1, 256 * 1024)];
        let mut total = 0u64;
        for round in 0.. {
            let mut head = [0];
            reader
                .read_exact(&mut head)
                .await
                .map_err(|e| format!("the echo of the byte before round {round}: {e}"))?;
            progress.add(1);
            total += 1;
            match head[0] {
                0 => break,
                1 => {}
                other => return Err(format!("echo of the byte before round {round}: {other}")),
            }
            let mut got = 0;
            while got < len {
                let want = piece(&mut rng).min(buf.len()).min(len - got);
                let n = reader.read(&mut buf[..want]).await.map_err(|e| {
                    format!("round {round}: read after {got} of {len} echoed bytes: {e}")
                })?;
                if n == 0 {
                    return Err(format!(
                        "round {round}: echo ended after {got} of {len} bytes"
                    ));
                }
                if buf[..n] != data[got..got + n] {
                    return Err(format!(
                        "round {round}: echo differs from what was sent at byte {} of {len}",
                        got + mismatch(&buf[..n], &data[got..got + n])
                    ));
                }
                progress.add(n);
                got += n;
            }
            total += len as u64;
        }
        Ok(total)
    };
    let ((), total) = futures::try_join!(write, read)?;
    if fin_after_echo {
        writer
            .shutdown()
            .await
            .map_err(|e| format!("half-close after the echo: {e}"))?;
    }
    expect_eof(&mut reader, "after the echo").await?;
    Ok(total)
}

/// The exchanges of the interactive stream: requests of 1 to [`REQUEST_MAX`] bytes, each
/// flushed and its echo checked before the next.
struct Exchanges {
    rng: XorShift,
    /// Exchanges done.
    done: usize,
    /// Request bytes echoed and checked.
    bytes: u64,
    /// The slowest exchange.
    slowest: Duration,
}

impl Exchanges {
    fn new(seed: u64) -> Self {
        Exchanges {
            rng: XorShift::new(seed),
            done: 0,
            bytes: 0,
            slowest: Duration::ZERO,
        }
    }

    async fn one<S>(&mut self, stream: &mut S, lane: &Lane) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut request = vec![0; self.rng.range(1, REQUEST_MAX)];
        self.rng.fill(&mut request);
        let started = Instant::now();
        exchange(stream, &request, lane, true)
            .await
            .map_err(|e| format!("interactive stream, exchange {}: {e}", self.done))?;
        self.slowest = self.slowest.max(started.elapsed());
        self.done += 1;
        self.bytes += request.len() as u64;
        Ok(())
    }
}

/// The cancelled-reads opener: [`PATIENT`] patient streams, the cancelling ones beside them,
/// then the quiet phase: the patient streams make [`PATIENT_MIN`] more rounds while the
/// [`QUITTERS`] each cancel a parked read and wait for them.
async fn cancel<E: Env>(case: Case, mux: E::Mux, progress: Progress) -> (u64, Vec<String>) {
    let seed = case.seed();
    let expired = Arc::new(AtomicU64::new(0));
    let cancelling_done = Arc::new(AtomicBool::new(false));
    let patients_done = Arc::new(AtomicU64::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    let patient: Vec<_> = (0..PATIENT)
        .map(|i| {
            let (mux, progress) = (mux.clone(), progress.clone());
            let (cancelling_done, patients_done) = (cancelling_done.clone(), patients_done.clone());
            let all_rounds = rounds.clone();
            E::spawn(async move {
                let lane = progress.lane(format!("patient stream #{i} (the opener)"));
                let result = async {
                    let mut stream = E::connect(&mux)
                        .await
                        .map_err(|e| format!("connect patient #{i}: {e}"))?;
                    stream
                        .write_all(&[TAG_PATIENT])
                        .await
                        .map_err(|e| format!("patient #{i}: tag: {e}"))?;
                    lane.add(1);
                    let mut rng = XorShift::new(seed ^ 0xbad ^ (i as u64) << 24);
                    let (mut rounds, mut quiet_rounds, mut total) = (0, 0, 0u64);
                    while quiet_rounds < PATIENT_MIN {
                        if cancelling_done.load(Ordering::Relaxed) {
                            quiet_rounds += 1;
                        }
                        let mut request = vec![0; rng.range(1, PATIENT_REQUEST_MAX)];
                        rng.fill(&mut request);
                        exchange(&mut stream, &request, &lane, true)
                            .await
                            .map_err(|e| format!("patient #{i}, round {rounds}: {e}"))?;
                        rounds += 1;
                        total += request.len() as u64;
                    }
                    all_rounds.fetch_add(rounds, Ordering::Relaxed);
                    stream
                        .shutdown()
                        .await
                        .map_err(|e| format!("patient #{i}: half-close: {e}"))?;
                    expect_eof(&mut stream, &format!("patient #{i}")).await?;
                    Ok(total)
                }
                .await;
                drop(lane);
                patients_done.fetch_add(1, Ordering::Relaxed);
                result
            })
        })
        .collect();
    let quitters: Vec<_> = (0..QUITTERS)
        .map(|i| {
            let (mux, progress, expired) = (mux.clone(), progress.clone(), expired.clone());
            let (cancelling_done, patients_done) = (cancelling_done.clone(), patients_done.clone());
            E::spawn(async move {
                let mut stream = E::connect(&mux)
                    .await
                    .map_err(|e| format!("connect quitter #{i}: {e}"))?;
                stream
                    .write_all(&[TAG_QUITTER])
                    .await
                    .map_err(|e| format!("quitter #{i}: tag: {e}"))?;
                progress.add(1);
                while !cancelling_done.load(Ordering::Relaxed) {
                    E::sleep(Duration::from_millis(1)).await;
                }
                let seed = seed ^ 0x9017 ^ (i as u64) << 24;
                let mut rng = XorShift::new(seed);
                E::sleep(Duration::from_millis(rng.up_to(QUITTER_WAIT_MS) as u64)).await;
                // Nothing comes before we write: the read parks, and the timer wins.
                if !Cancelling::new::<E>(seed, &expired)
                    .expires(&mut stream)
                    .await
                {
                    return Err(format!("quitter #{i}: read before anything was sent"));
                }
                // Away: waits for something else than the mux.
                while patients_done.load(Ordering::Relaxed) < PATIENT as u64 {
                    E::sleep(Duration::from_millis(5)).await;
                }
                let data = payload(seed ^ 0x9017 ^ i as u64, QUITTER_END);
                exchange(&mut stream, &data, &progress, true)
                    .await
                    .map_err(|e| format!("quitter #{i}: at the end: {e}"))?;
                stream
                    .shutdown()
                    .await
                    .map_err(|e| format!("quitter #{i}: half-close: {e}"))?;
                expect_eof(&mut stream, &format!("quitter #{i}")).await?;
                Ok(QUITTER_END as u64)
            })
        })
        .collect();
    let cancelling = (0..case.streams)
        .map(|i| {
            let (mux, progress, expired) = (mux.clone(), progress.clone(), expired.clone());
            E::spawn(async move {
                let data = payload(seed + i as u64, case.size);
                let mut stream = E::connect(&mux)
                    .await
                    .map_err(|e| format!("connect cancelling #{i}: {e}"))?;
                stream
                    .write_all(&[TAG_CANCELLING])
                    .await
                    .map_err(|e| format!("cancelling #{i}: tag: {e}"))?;
                progress.add(1);
                let mut cancelling = Cancelling::new::<E>(!seed ^ i as u64, &expired);
                // The first read must expire: nothing was sent yet.
                if !cancelling.expires(&mut stream).await {
                    return Err(format!("cancelling #{i}: read before anything was sent"));
                }
                echo_check(
                    stream,
                    &data,
                    seed ^ i as u64,
                    false,
                    &progress,
                    Some(cancelling),
                )
                .await
                .map_err(|e| format!("cancelling #{i}: {e}"))?;
                Ok(data.len() as u64)
            })
        })
        .collect();
    let (cancelling_total, mut errors) = join_counted(cancelling).await;
    let cancelling_expired = expired.load(Ordering::Relaxed);
    cancelling_done.store(true, Ordering::Relaxed);
    let (patient_total, more) = join_counted(patient).await;
    errors.extend(more);
    let (quitters_total, more) = join_counted(quitters).await;
    errors.extend(more);
    eprintln!(
        "  cancel: {cancelling_expired} reads of the cancelling streams expired; {} patient \
         rounds",
        rounds.load(Ordering::Relaxed)
    );
    (cancelling_total + patient_total + quitters_total, errors)
}

// ------------------------------------------------------------------------------------------------
// The three kinds of peers

/// Both ends ours: the client opens, the server accepts.
fn ours_both_ends<E: Env>(case: Case, name: &str) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client_tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server_tcp, _) = listener.accept().unwrap();
    let config = case.config();
    E::block_on(async move {
        let (client, server) = E::mux_pair(client_tcp, server_tcp, config).await;
        let progress = Progress::new();
        let mut diagnostics = Diagnostics::default();
        diagnostics.session::<E>("client", &client);
        diagnostics.session::<E>("server", &server);
        guarded::<E>(name, &progress, &diagnostics, async {
            let acceptor = E::spawn(serve::<E>(case, server.clone(), progress.clone()));
            let sent = open::<E>(case, client.clone(), progress.clone())
                .await
                .unwrap_or_else(|e| panic!("{name}: our client: {e}"));
            E::close(&client).await.expect("our client's close");
            let served = acceptor.await;
            assert!(
                served.errors.is_empty(),
                "{name}: our server: {} streams failed:\n  {}",
                served.errors.len(),
                errors_text(&served.errors)
            );
            assert_eq!(
                served.accepted,
                case.total_streams(),
                "{name}: streams accepted"
            );
            assert_eq!(served.bytes, sent, "{name}: bytes echoed by the server");
            assert!(
                is_connection_end(&served.end),
                "{name}: accept ended with {:?}: {}",
                served.end.kind(),
                served.end
            );
            let (c, s) = (E::stats(&client), E::stats(&server));
            assert_eq!(c.streams_opened, case.total_streams() as u64, "{name}");
            assert_eq!(s.streams_accepted, case.total_streams() as u64, "{name}");
            assert_eq!((c.streams_refused, s.streams_refused), (0, 0), "{name}");
        })
        .await;
    });
}

fn go_binary() -> &'static Path {
    go::peer_binary(env!("CARGO_TARGET_TMPDIR"))
}

/// The Go peer's flags common to every case.
fn go_common(case: &Case) -> Vec<String> {
    let mut args: Vec<String> = ["-version", &case.version.as_u8().to_string()]
        .map(String::from)
        .to_vec();
    args.extend(case.buffers.go_args());
    let interval = KEEPALIVE.as_millis();
    args.extend([
        "-keepalive-interval".to_string(),
        interval.to_string(),
        "-keepalive-timeout".to_string(),
        (3 * interval).to_string(),
    ]);
    // Our stall detector reports first; this only keeps a lost peer from running for ever.
    args.extend(["-deadline", "600000"].map(String::from));
    args
}

/// Waits (off the runtime) for the Go peer to exit; it must succeed.
fn finish_go(peer: GoPeer, name: &str) -> GoOutput {
    let output = peer.finish(GO_EXIT);
    assert!(output.success(), "{name}: the Go peer failed\n{output}");
    output
}

/// Go opens the streams (client mode), we serve them on `E`.
fn go_client<E: Env>(case: Case, name: &str) {
    let mut args = go_common(&case);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    args.extend(["-mode", "client", "-addr", &addr.to_string()].map(String::from));
    let n = case.streams.to_string();
    let size = case.size.to_string();
    let seed = case.seed().to_string();
    let (request_max, interactive_min) = (REQUEST_MAX.to_string(), interactive_min().to_string());
    let more: Vec<&str> = match case.shape {
        // Writes in odd pieces while reading, checks the echo, then closes the stream; closes
        // the session when all are done.
        Shape::Echo | Shape::Proxy => {
            vec![
                "-streams", &n, "-sizes", &size, "-odd", "-close", "-seed", &seed,
            ]
        }
        Shape::RequestResponse => vec![
            "-workload",
            "reqresp",
            "-streams",
            &n,
            "-req-max",
            &size,
            "-seed",
            &seed,
        ],
        Shape::Burst => vec![
            "-workload",
            "burst",
            "-streams",
            &n,
            "-req-max",
            &size,
            "-seed",
            &seed,
        ],
        Shape::Idle => vec![
            "-workload",
            "idle",
            "-streams",
            &n,
            "-busy",
            "4",
            "-busy-size",
            &size,
            "-odd",
            "-seed",
            &seed,
        ],
        // The interactive stream first, then the bulk streams beside it (see workload.go).
        Shape::Interactive => vec![
            "-workload",
            "interactive",
            "-busy",
            &n,
            "-busy-size",
            &size,
            "-req-max",
            &request_max,
            "-requests",
            &interactive_min,
            "-odd",
            "-seed",
            &seed,
        ],
        Shape::Cancel => panic!("{name}: the cancel shape runs between our own peers only"),
    };
    let requests = case.requests().to_string();
    args.extend(more.into_iter().map(String::from));
    if case.shape == Shape::RequestResponse {
        args.extend(["-requests".to_string(), requests]);
    }
    let peer = GoPeer::spawn(go_binary(), &args);
    listener.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let tcp = loop {
        match listener.accept() {
            Ok((tcp, _)) => break tcp,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "{name}: the Go client did not connect within 10 s; stderr:\n{}",
                    peer.stderr()
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    tcp.set_nonblocking(false).unwrap();
    let config = case.config();
    let served = E::block_on(async {
        let server = E::new_mux(tcp, Side::Server, config);
        let progress = Progress::new();
        let mut diagnostics = Diagnostics::default();
        diagnostics.session::<E>("server", &server);
        diagnostics.go(&peer);
        let mut served = None;
        guarded::<E>(name, &progress, &diagnostics, async {
            served = Some(serve::<E>(case, server.clone(), progress.clone()).await);
        })
        .await;
        (served.expect("served"), E::stats(&server))
    });
    let output = finish_go(peer, name);
    let (served, stats) = served;
    // Go checked every byte it got back; its summary says how much.
    let (go_streams, go_bytes) = match case.shape {
        Shape::Echo | Shape::Proxy => (
            output.summary_u64("opened"),
            output.summary_u64("opened_bytes"),
        ),
        _ => {
            assert_eq!(output.summary_u64("fails"), 0, "{name}\n{output}");
            (output.summary_u64("streams"), output.summary_u64("bytes"))
        }
    };
    assert_eq!(go_streams, case.total_streams() as u64, "{name}\n{output}");
    let expected_bytes = match case.shape {
        Shape::Echo | Shape::Proxy => Some(case.streams * case.size),
        Shape::Idle => Some(case.streams * (1 + IDLE_END) + BUSY * case.size),
        Shape::RequestResponse | Shape::Burst | Shape::Interactive | Shape::Cancel => None,
    };
    for record in output.records("interactive") {
        eprintln!("  Go's interactive stream: {}", record.join(" "));
    }
    if let Some(expected) = expected_bytes {
        assert_eq!(
            go_bytes, expected as u64,
            "{name}: bytes Go checked\n{output}"
        );
    }
    assert!(
        served.errors.is_empty(),
        "{name}: our server: {} streams failed:\n  {}\n{output}",
        served.errors.len(),
        errors_text(&served.errors)
    );
    assert_eq!(served.accepted, case.total_streams(), "{name}\n{output}");
    assert_eq!(served.bytes, go_bytes, "{name}: bytes we echoed\n{output}");
    assert_eq!(
        stats.streams_accepted,
        case.total_streams() as u64,
        "{name}"
    );
    assert_eq!(stats.streams_refused, 0, "{name}");
}

/// We open the streams on `E`; Go serves them (server mode: an echo per stream, or the slow
/// framed acceptor for the burst).
fn go_server<E: Env>(case: Case, name: &str) {
    assert!(
        case.shape != Shape::Cancel,
        "{name}: the cancel shape runs between our own peers only"
    );
    let mut args = go_common(&case);
    args.extend(["-mode", "server", "-addr", "127.0.0.1:0"].map(String::from));
    if case.shape == Shape::Burst {
        args.extend(["-serial", "-framed"].map(String::from));
    }
    let mut peer = GoPeer::spawn(go_binary(), &args);
    let addr = peer.listen_addr();
    let tcp = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("{name}: cannot connect to the Go server at {addr}: {e}"));
    let config = case.config();
    let (sent, stats) = E::block_on(async {
        let client = E::new_mux(tcp, Side::Client, config);
        let progress = Progress::new();
        let mut diagnostics = Diagnostics::default();
        diagnostics.session::<E>("client", &client);
        diagnostics.go(&peer);
        let mut sent = None;
        guarded::<E>(name, &progress, &diagnostics, async {
            let result = open::<E>(case, client.clone(), progress.clone()).await;
            sent = Some(result.unwrap_or_else(|e| {
                panic!(
                    "{name}: our client: {e}\nGo stderr:\n{}",
                    tail(&peer.stderr(), 4000)
                )
            }));
            E::close(&client).await.expect("our client's close");
        })
        .await;
        (sent.expect("sent"), E::stats(&client))
    });
    let output = finish_go(peer, name);
    assert_eq!(output.summary_u64("echo_fails"), 0, "{name}\n{output}");
    assert_eq!(
        output.summary_u64("accepted"),
        case.total_streams() as u64,
        "{name}\n{output}"
    );
    assert_eq!(output.summary_u64("echoed_bytes"), sent, "{name}\n{output}");
    assert_eq!(output.summary()["end"], "EOF", "{name}\n{output}");
    assert_eq!(stats.streams_opened, case.total_streams() as u64, "{name}");
}

// ------------------------------------------------------------------------------------------------
// The tests

/// The case that once hung for ever: a Go version 2 client opens 64 streams and echoes 1 MiB
/// on each (random-sized writes while reading) through our tokio echo server, default
/// configurations. Runs in full in debug builds too.
#[test]
fn go_v2_client_echoes_64_streams_of_1_mib_through_our_tokio_server() {
    run_cases::<Tokio>(&[Case {
        shape: Shape::Echo,
        peer: Peer::GoClient,
        version: Version::V2,
        buffers: Buffers::Default,
        streams: 64,
        size: 1 << 20,
        run: 0,
    }]);
}

macro_rules! matrix {
    ($shape:expr => $ours_tokio:ident, $ours_smol:ident, $go_client:ident, $go_server:ident) => {
        #[test]
        fn $ours_tokio() {
            run_matrix::<Tokio>($shape, Peer::Ours);
        }

        #[test]
        fn $ours_smol() {
            run_matrix::<Smol>($shape, Peer::Ours);
        }

        #[test]
        fn $go_client() {
            run_matrix::<Tokio>($shape, Peer::GoClient);
        }

        #[test]
        fn $go_server() {
            run_matrix::<Tokio>($shape, Peer::GoServer);
        }
    };
}

matrix!(Shape::Echo =>
    echo_between_our_tokio_peers,
    echo_between_our_smol_peers,
    echo_from_go_clients_through_our_tokio_server,
    echo_from_our_tokio_client_through_go_servers);

matrix!(Shape::Proxy =>
    proxy_between_our_tokio_peers,
    proxy_between_our_smol_peers,
    proxy_from_go_clients_through_our_tokio_server,
    proxy_from_our_tokio_client_through_go_servers);

matrix!(Shape::RequestResponse =>
    requests_between_our_tokio_peers,
    requests_between_our_smol_peers,
    requests_from_go_clients_to_our_tokio_server,
    requests_from_our_tokio_client_to_go_servers);

matrix!(Shape::Burst =>
    burst_of_opens_between_our_tokio_peers,
    burst_of_opens_between_our_smol_peers,
    burst_of_opens_from_go_clients_to_our_slow_tokio_acceptor,
    burst_of_opens_from_our_tokio_client_to_slow_go_acceptors);

matrix!(Shape::Idle =>
    idle_streams_beside_busy_ones_between_our_tokio_peers,
    idle_streams_beside_busy_ones_between_our_smol_peers,
    idle_streams_beside_busy_ones_from_go_clients_to_our_tokio_server,
    idle_streams_beside_busy_ones_from_our_tokio_client_to_go_servers);

matrix!(Shape::Interactive =>
    interactive_beside_bulk_between_our_tokio_peers,
    interactive_beside_bulk_between_our_smol_peers,
    interactive_beside_bulk_from_go_clients_to_our_tokio_server,
    interactive_beside_bulk_from_our_tokio_client_to_go_servers);

/// The interactive shape over TLS (tokio-rustls), both ends ours on tokio.
#[test]
fn interactive_beside_bulk_over_tls_between_our_tokio_peers() {
    run_matrix::<TokioTls>(Shape::Interactive, Peer::Ours);
}

#[test]
fn cancelled_reads_between_our_tokio_peers() {
    run_matrix::<Tokio>(Shape::Cancel, Peer::Ours);
}

#[test]
fn cancelled_reads_between_our_smol_peers() {
    run_matrix::<Smol>(Shape::Cancel, Peer::Ours);
}

/// The 4-bulk interactive case (default buffers, versions 1 and 2), [`STRESS_VAR`] times, or
/// [`STRESS_DEFAULT`] (see the module docs, "Stress").
fn stress_interactive<E: Env>() {
    let size = if cfg!(debug_assertions) {
        128 << 10
    } else {
        1 << 20
    };
    let cases = [Version::V1, Version::V2].map(|version| Case {
        shape: Shape::Interactive,
        peer: Peer::Ours,
        version,
        buffers: Buffers::Default,
        streams: 4,
        size,
        run: 0,
    });
    run_cases_times::<E>(&cases, stress_runs().unwrap_or(STRESS_DEFAULT));
}

#[test]
fn stress_interactive_beside_4_bulk_streams_on_tokio() {
    stress_interactive::<Tokio>();
}

#[test]
fn stress_interactive_beside_4_bulk_streams_on_smol() {
    stress_interactive::<Smol>();
}
