//! smux-rs against Go's own smux (1.5.16 from Debian) over loopback TCP.
//!
//! The Go side is `go-peer/main.go`, built once per test process (see `smux_interop::go`); a
//! test fails, never skips, when it cannot be built. Every scenario is written once, generic
//! over [`Env`] (the async runtime and its smux adapter: `smux-tokio` on a two-worker tokio
//! runtime, `smux-smol` on a smol executor with two workers), and run for protocol versions 1
//! and 2 with our side as client and as server:
//!
//! - `echo_both_ways`: 100 streams opened by us and 100 by Go at the same time, payloads of 1
//!   byte to 3 MiB, echoed by the other side and checked by FNV-1a checksum; Go reads and
//!   writes in odd-sized pieces. Then one side closes the session (we do when we are the
//!   client, Go does when it is), and the other sees the end.
//! - `keepalive`: Go and we both send NOPs every 100 ms and time out after 500 ms; the
//!   connection stays idle for 1.5 s and then echoes. Go's NOPs keep us alive, ours keep Go
//!   alive.
//! - `our_close`: we write to 16 streams (up to 1.5 MiB each, much of it still queued) and close
//!   the session at once; Go reads every stream to its end and reports length and checksum.
//! - `go_closes`: Go writes to 12 streams and closes its session without closing them; we read
//!   all the data, then every stream and `accept` fail with a clear error (no FIN came).
//! - `fin_delivered_then_go_closes`: our `close` (FIN) is still pending when Go reads the
//!   stream to its end and closes the session; since the FIN reached Go, `close` must succeed.
//! - `slow_reader` (version 2): Go leaves one stream unread; echoes on the other streams
//!   complete meanwhile, and the writer blocked on the unread stream fails cleanly when Go
//!   closes the session.
//! - `drain_refuses_go_streams`: we drain while a stream of ours is open; the streams Go opens
//!   then get a FIN at once, and Go reads `io.EOF` with no byte on each. (Go 1.5.16 puts a
//!   stream it opens in its table only after the SYN is written, and drops a FIN for a stream
//!   not in it: about one run in three lost the first FIN and hung until our side sent it
//!   again on Go's data.)
//! - `go_reads_our_greeting`: Go opens 1,000 streams at once and each first reads the
//!   greeting we write on accepting it (a server that speaks first); for the same reason, our
//!   replies to a stream Go just opened wait until Go sends something on it, or
//!   `Config::early_reply_hold`.
//!
//! The Go peer closes its TCP connection gracefully (FIN after its data, see `lingerConn` in
//! `main.go`): Go smux itself just closes the socket, which resets the connection when input
//! is unread and can destroy data still in flight, a TCP effect that is not what is tested.
//!
//! Version 2 caveat (Go 1.5.16): a Go writer blocked on the stream window gives up with EOF when
//! our FIN arrives. So in version 2 we send FIN only after reading the whole echo; in version
//! 1 we write everything, send FIN at once, and read the echo after (a true half-close).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smux_interop::go::{self, GoOutput, GoPeer};
use smux_interop::runtime::{Runtime, Smol, Tokio};
use smux_interop::workload::Diagnostics;
use smux_interop::{checksum, payload, Checksum, XorShift};
use smux_proto::{Config as MuxConfig, Side, StreamId, Version};

/// Longest a scenario may take before it counts as hung.
const HANG: Duration = Duration::from_secs(90);
/// Longest the Go peer may take to exit once we are done.
const GO_EXIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------------
// The runtime abstraction

/// A runtime with its smux adapter (see `smux_interop::runtime`), its streams seen through
/// the `futures::io` traits (tokio's through `tokio_util::compat`).
trait Env: Runtime {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn connect(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>>;
    fn accept(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>>;
    fn id(stream: &Self::Stream) -> StreamId;
    /// Hands all of `data` to the session at once (no copy, no direct write).
    fn write_chunk(stream: &mut Self::Stream, data: bytes::Bytes) -> BoxFuture<'_, io::Result<()>>;
}

type TokioStream = tokio_util::compat::Compat<smux_tokio::MuxStream<tokio::net::TcpStream>>;

impl Env for Tokio {
    type Stream = TokioStream;

    fn connect(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let mux = mux.clone();
        Box::pin(async move { mux.connect().await.map(|s| s.compat()) })
    }

    fn accept(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let mux = mux.clone();
        Box::pin(async move { mux.accept().await.map(|s| s.compat()) })
    }

    fn id(stream: &Self::Stream) -> StreamId {
        stream.get_ref().id()
    }

    fn write_chunk(stream: &mut Self::Stream, data: bytes::Bytes) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(stream.get_mut().write_chunk(data))
    }
}

impl Env for Smol {
    type Stream = smux_smol::MuxStream<smol::net::TcpStream>;

    fn connect(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        let mux = mux.clone();
        Box::pin(async move { mux.connect().await })
    }

    fn accept(mux: &Self::Mux) -> BoxFuture<'static, io::Result<Self::Stream>> {
        let mux = mux.clone();
        Box::pin(async move { mux.accept().await })
    }

    fn id(stream: &Self::Stream) -> StreamId {
        stream.id()
    }

    fn write_chunk(stream: &mut Self::Stream, data: bytes::Bytes) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(stream.write_chunk(data))
    }
}

thread_local! {
    /// The hang report of the scenario running on this thread: `connect_go` adds our session
    /// and the Go peer, `run` prints it if the scenario hangs.
    static DIAGNOSTICS: RefCell<Diagnostics> = RefCell::new(Diagnostics::default());
}

/// Runs a scenario on `E`, failing instead of hanging (with our session's snapshot, Go's
/// stderr and its goroutines), and reports its duration.
fn run<E: Env>(name: &str, scenario: impl Future<Output = ()>) {
    let started = Instant::now();
    DIAGNOSTICS.with(|d| *d.borrow_mut() = Diagnostics::default());
    E::block_on(async {
        let scenario = std::pin::pin!(scenario);
        match futures::future::select(scenario, E::sleep(HANG)).await {
            Either::Left(((), _)) => {}
            Either::Right(_) => {
                let report = DIAGNOSTICS.with(|d| d.borrow().report());
                panic!("{name} on {}: not done within {HANG:?}\n{report}", E::NAME)
            }
        }
    });
    let test = std::thread::current().name().unwrap_or(name).to_owned();
    eprintln!("timing {test}: {:.2?}", started.elapsed());
}

/// Waits until `done()` holds, polling every few ms.
async fn wait_until<E: Env>(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        E::sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------------------------------------------
// The Go peer

fn go_binary() -> &'static Path {
    go::peer_binary(env!("CARGO_TARGET_TMPDIR"))
}

/// Go's keepalive for the bulk scenarios: frequent NOPs in the middle of the traffic.
const GO_KEEPALIVE: [&str; 4] = ["-keepalive-interval", "200", "-keepalive-timeout", "10000"];

fn config(version: Version) -> MuxConfig {
    MuxConfig::default()
        .with_version(version)
        .with_keep_alive_interval(Duration::from_millis(200))
        .with_keep_alive_timeout(Duration::from_secs(10))
}

/// Starts the Go peer as the other end of `our_side` and returns our mux over the connection.
async fn connect_go<E: Env>(
    version: Version,
    our_side: Side,
    config: MuxConfig,
    args: &[String],
) -> (E::Mux, GoPeer) {
    let binary = go_binary();
    let mut full: Vec<String> = vec!["-version".into(), version.as_u8().to_string()];
    match our_side {
        Side::Client => {
            full.extend(["-mode", "server", "-addr", "127.0.0.1:0"].map(String::from));
            full.extend_from_slice(args);
            let (peer, addr) = E::unblock(move || {
                let mut peer = GoPeer::spawn(binary, &full);
                let addr = peer.listen_addr();
                (peer, addr)
            })
            .await;
            let tcp = E::unblock(move || std::net::TcpStream::connect(addr))
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the Go peer at {addr}: {e}"));
            let mux = E::new_mux(tcp, Side::Client, config);
            diagnose::<E>(&mux, &peer);
            (mux, peer)
        }
        Side::Server => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr: SocketAddr = listener.local_addr().unwrap();
            full.extend([
                "-mode".into(),
                "client".into(),
                "-addr".into(),
                addr.to_string(),
            ]);
            full.extend_from_slice(args);
            let peer = GoPeer::spawn(binary, &full);
            let started = Instant::now();
            let tcp = loop {
                match listener.accept() {
                    Ok((tcp, _)) => break tcp,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(
                            started.elapsed() < Duration::from_secs(10),
                            "the Go client did not connect within 10 s; stderr:\n{}",
                            peer.stderr()
                        );
                        E::sleep(Duration::from_millis(2)).await;
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            tcp.set_nonblocking(false).unwrap();
            let mux = E::new_mux(tcp, Side::Server, config);
            diagnose::<E>(&mux, &peer);
            (mux, peer)
        }
    }
}

/// Puts our session and the Go peer in this thread's hang report.
fn diagnose<E: Env>(mux: &E::Mux, peer: &GoPeer) {
    DIAGNOSTICS.with(|d| {
        let mut d = d.borrow_mut();
        d.session::<E>("session", mux);
        d.go(peer);
    });
}

/// Waits (off the runtime) for the Go peer to exit; checks that it succeeded.
async fn finish_go<E: Env>(peer: GoPeer) -> GoOutput {
    let output = E::unblock(move || peer.finish(GO_EXIT)).await;
    output.assert_success();
    output
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The side Go plays when we play `ours`.
fn other(ours: Side) -> Side {
    match ours {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

/// Stream ids of `side` are odd for the client and even for the server, from 3 and 2 up.
fn assert_ids_of(side: Side, ids: impl IntoIterator<Item = StreamId>, count: usize) {
    let mut ids: Vec<u32> = ids.into_iter().map(StreamId::as_u32).collect();
    ids.sort_unstable();
    let first = match side {
        Side::Client => 3,
        Side::Server => 2,
    };
    let expected: Vec<u32> = (0..count as u32).map(|i| first + 2 * i).collect();
    assert_eq!(ids, expected, "stream ids of the {side:?}");
}

/// Errors that clearly say the connection ended (the peer closed it, or reset it).
fn is_connection_end(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

// ------------------------------------------------------------------------------------------------
// Our side of the traffic

/// Sizes of our reads and writes: odd, small, around a frame, beyond a frame.
const PIECES: [usize; 8] = [1, 5, 1021, 4093, 33_333, 65_537, 262_147, 1 << 20];

/// Writes `data` in odd-sized pieces.
async fn write_pieces<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    mut turn: usize,
) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        let n = PIECES[turn % PIECES.len()].min(rest.len());
        turn += 1;
        w.write_all(&rest[..n]).await?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Writes `data` on a stream we opened and reads the echo back. Version 1 (`fin_first`): FIN
/// right after the data, then the echo is read to its end. Version 2: FIN once the whole echo
/// is in (see the module docs), then the stream must end.
async fn roundtrip<S>(stream: S, data: &[u8], fin_first: bool, turn: usize) -> io::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = stream.split();
    let context =
        |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let write = async {
        write_pieces(&mut writer, data, turn)
            .await
            .map_err(context("write".into()))?;
        if fin_first {
            writer.close().await.map_err(context("FIN".into()))?;
        }
        io::Result::Ok(())
    };
    let read = async {
        let mut echoed = vec![0; data.len()];
        let mut got = 0;
        let mut i = turn;
        while got < echoed.len() {
            let end = (got + PIECES[i % PIECES.len()]).min(echoed.len());
            i += 1;
            let read = reader.read(&mut echoed[got..end]).await;
            match read.map_err(context(format!("read after {got} bytes of the echo")))? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("echo ended after {got} of {} bytes", echoed.len()),
                    ))
                }
                n => got += n,
            }
        }
        Ok(echoed)
    };
    let ((), echoed) = futures::try_join!(write, read)?;
    if !fin_first {
        writer.close().await.map_err(context("FIN".into()))?;
    }
    // Go closes its end after the echo: nothing more may come.
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .await
        .map_err(context("waiting for Go's FIN".into()))?;
    if !rest.is_empty() {
        return Err(io::Error::other(format!(
            "{} bytes after the echo",
            rest.len()
        )));
    }
    Ok(echoed)
}

/// Sizes for our streams: one of 3 MiB, one of 1 byte, then mostly small (85% up to 16 KiB,
/// 13% up to 256 KiB, 2% up to 1 MiB).
fn sizes(count: usize, seed: u64) -> Vec<usize> {
    let mut rng = XorShift::new(seed);
    (0..count)
        .map(|i| match i {
            0 => (3 << 20) + 5,
            1 => 1,
            _ => match rng.range(0, 99) {
                0..=84 => rng.range(1, 16 * 1024),
                85..=97 => rng.range(1, 256 * 1024),
                _ => rng.range(1, 1 << 20),
            },
        })
        .collect()
}

/// Opens a stream per size, all at once, echoes a payload on each through Go and checks it.
/// Returns the ids and sizes.
async fn open_and_check<E: Env>(
    mux: &E::Mux,
    sizes: &[usize],
    seed: u64,
    fin_first: bool,
    peer: GoPeer,
) -> (Vec<(StreamId, usize)>, GoPeer) {
    let tasks: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let mux = mux.clone();
            E::spawn(async move {
                let data = payload(seed * 100_000 + i as u64, size);
                let stream = E::connect(&mux)
                    .await
                    .map_err(|e| format!("connect #{i}: {e}"))?;
                let id = E::id(&stream);
                let echoed = roundtrip(stream, &data, fin_first, i)
                    .await
                    .map_err(|e| format!("stream {id} ({size} bytes): {e}"))?;
                if echoed.len() != size || checksum(&echoed) != checksum(&data) {
                    return Err(format!(
                        "stream {id}: the echo ({} bytes) differs from what we sent ({size} bytes)",
                        echoed.len()
                    ));
                }
                Ok((id, size))
            })
        })
        .collect();
    let results = futures::future::join_all(tasks).await;
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if !errors.is_empty() {
        let output = E::unblock(move || peer.finish(GO_EXIT)).await;
        panic!(
            "{} of {} of our streams failed:\n{}\n{output}",
            errors.len(),
            sizes.len(),
            errors
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    (results.into_iter().map(Result::unwrap).collect(), peer)
}

/// How a stream the peer opened ended on our side.
struct Served {
    id: StreamId,
    bytes: u64,
    sum: u64,
    result: io::Result<()>,
}

/// What our acceptor saw: every stream, and the error that ended `accept`.
struct Accepted {
    streams: Vec<Served>,
    end: io::Error,
}

impl Accepted {
    /// Asserts that there were `count` streams and our side of each ended cleanly; a failure
    /// shows `context` (the Go peer's output).
    fn assert_all_ok(&self, count: usize, context: &dyn std::fmt::Display) {
        assert_eq!(self.streams.len(), count, "{context}");
        for s in &self.streams {
            if let Err(e) = &s.result {
                panic!("our side of Go's stream {} failed: {e}\n{context}", s.id);
            }
        }
    }
}

/// What our side does with a stream the peer opened.
#[derive(Clone, Copy, PartialEq)]
enum Reply {
    /// Reads it to its end.
    Sink,
    /// Echoes everything back.
    Echo,
    /// Writes the greeting Go's `-greet` expects ("hello ID\n") as soon as the stream is
    /// accepted, as a server that speaks first does; then echoes.
    GreetThenEcho,
}

/// Handles one stream the peer opened: reads it to its end in odd-sized reads, replying as
/// `reply` says; then FIN.
async fn serve<S>(mut stream: S, id: StreamId, reply: Reply) -> Served
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if reply == Reply::GreetThenEcho {
        let greeting = format!("hello {}\n", id.as_u32());
        if let Err(e) = stream.write_all(greeting.as_bytes()).await {
            return Served {
                id,
                bytes: 0,
                sum: 0,
                result: Err(e),
            };
        }
    }
    let echo = reply != Reply::Sink;
    let mut buf = vec![0; 1 << 20];
    let mut sum = Checksum::new();
    let mut bytes = 0u64;
    let mut turn = id.as_u32() as usize;
    let result = loop {
        let size = PIECES[turn % PIECES.len()];
        turn += 1;
        match stream.read(&mut buf[..size]).await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                sum.update(&buf[..n]);
                bytes += n as u64;
                if echo {
                    if let Err(e) = stream.write_all(&buf[..n]).await {
                        break Err(e);
                    }
                }
            }
            Err(e) => break Err(e),
        }
    };
    if result.is_ok() {
        // Go forgets a stream when it closes it: our FIN may find the session already gone.
        let _ = stream.close().await;
    }
    Served {
        id,
        bytes,
        sum: sum.value(),
        result,
    }
}

/// Accepts streams until `accept` fails, serving each in a task of its own; `finished` counts
/// the streams served. Gives every result once all are done.
fn spawn_acceptor<E: Env>(
    mux: E::Mux,
    reply: Reply,
    finished: Arc<AtomicUsize>,
) -> BoxFuture<'static, Accepted> {
    E::spawn(async move {
        let mut tasks = Vec::new();
        let end = loop {
            match E::accept(&mux).await {
                Ok(stream) => {
                    let finished = finished.clone();
                    tasks.push(E::spawn(async move {
                        let id = E::id(&stream);
                        let served = serve(stream, id, reply).await;
                        finished.fetch_add(1, Ordering::SeqCst);
                        served
                    }));
                }
                Err(e) => break e,
            }
        };
        Accepted {
            streams: futures::future::join_all(tasks).await,
            end,
        }
    })
}

// ------------------------------------------------------------------------------------------------
// Scenarios

/// 100 streams each way at once, echoed with checksums; then the client side closes.
async fn echo_both_ways<E: Env>(version: Version, ours: Side) {
    const OURS: usize = 100;
    const GOS: usize = 100;
    let seed = 10 * u64::from(version.as_u8()) + ours as u64;
    let mut go_args = args(&["-streams", &GOS.to_string(), "-expect", &OURS.to_string()]);
    go_args.extend(args(&["-odd", "-seed", &seed.to_string()]));
    go_args.extend(args(&GO_KEEPALIVE));
    if ours == Side::Server {
        // Go is the client: it closes the session once both directions are done.
        go_args.push("-close".into());
    }
    let (mux, peer) = connect_go::<E>(version, ours, config(version), &go_args).await;
    let finished = Arc::new(AtomicUsize::new(0));
    let acceptor = spawn_acceptor::<E>(mux.clone(), Reply::Echo, finished.clone());

    let our_sizes = sizes(OURS, seed);
    let (opened, peer) =
        open_and_check::<E>(&mux, &our_sizes, seed, version == Version::V1, peer).await;
    assert_ids_of(ours, opened.iter().map(|&(id, _)| id), OURS);

    if ours == Side::Client {
        // Go checks each echo and then closes its stream: then it is done with it.
        wait_until::<E>("Go's streams echoed", Duration::from_secs(60), || {
            finished.load(Ordering::SeqCst) >= GOS
        })
        .await;
        E::close(&mux).await.expect("our graceful close");
        assert!(E::is_closed(&mux));
        assert!(E::connect(&mux).await.is_err(), "connect after close");
    }
    let accepted = acceptor.await;
    let output = finish_go::<E>(peer).await;

    // Go's streams: all echoed in full by us.
    accepted.assert_all_ok(GOS, &output);
    assert_ids_of(other(ours), accepted.streams.iter().map(|s| s.id), GOS);
    let echoed: u64 = accepted.streams.iter().map(|s| s.bytes).sum();
    assert_eq!(output.summary_u64("opened"), GOS as u64, "{output}");
    assert_eq!(output.summary_u64("opened_bytes"), echoed, "{output}");
    // Ours: all accepted and echoed by Go.
    let ours_total: usize = our_sizes.iter().sum();
    assert_eq!(output.summary_u64("accepted"), OURS as u64, "{output}");
    assert_eq!(
        output.summary_u64("echoed_bytes"),
        ours_total as u64,
        "{output}"
    );
    let stats = E::stats(&mux);
    assert_eq!(stats.streams_opened, OURS as u64);
    assert_eq!(stats.streams_accepted, GOS as u64);

    // How the session ended, on each side.
    let go_end = &output.summary()["end"];
    match ours {
        Side::Client => {
            assert_eq!(go_end, "EOF", "Go must see our close as EOF\n{output}");
            assert_eq!(
                accepted.end.kind(),
                io::ErrorKind::NotConnected,
                "{}",
                accepted.end
            );
        }
        Side::Server => {
            assert_eq!(go_end, "closed-by-us", "{output}");
            assert!(
                is_connection_end(&accepted.end),
                "accept after Go closed: {:?} {}",
                accepted.end.kind(),
                accepted.end
            );
        }
    }
    eprintln!(
        "{} v{} ours={ours:?}: {OURS}+{GOS} streams, {:.1} MiB ours + {:.1} MiB Go's, echoed",
        E::NAME,
        version.as_u8(),
        ours_total as f64 / (1 << 20) as f64,
        echoed as f64 / (1 << 20) as f64,
    );
}

/// Both sides: NOP every 100 ms, timeout 500 ms; idle for 1.5 s, then echo.
async fn keepalive<E: Env>(version: Version, ours: Side) {
    const IDLE: Duration = Duration::from_millis(1500);
    let config = MuxConfig::default()
        .with_version(version)
        .with_keep_alive_interval(Duration::from_millis(100))
        .with_keep_alive_timeout(Duration::from_millis(500));
    let mut go_args = args(&[
        "-keepalive-interval",
        "100",
        "-keepalive-timeout",
        "500",
        "-idle",
        "1500",
        "-streams",
        "2",
        "-sizes",
        "1,100003",
        "-expect",
        "2",
    ]);
    if ours == Side::Server {
        go_args.push("-close".into());
    }
    let (mux, peer) = connect_go::<E>(version, ours, config, &go_args).await;
    let finished = Arc::new(AtomicUsize::new(0));
    // The acceptor keeps our mux polled, so our keepalive runs while we are idle.
    let acceptor = spawn_acceptor::<E>(mux.clone(), Reply::Echo, finished.clone());

    let before = E::stats(&mux);
    E::sleep(IDLE).await;
    if E::is_closed(&mux) {
        let end = acceptor.await.end;
        let output = E::unblock(move || peer.finish(GO_EXIT)).await;
        panic!(
            "our session ended while idle: {end} ({:?})\n{output}",
            end.kind()
        );
    }
    let after = E::stats(&mux);
    let (frames_in, frames_out) = (
        after.frames_in - before.frames_in,
        after.frames_out - before.frames_out,
    );
    // About 15 NOPs each way; ask for a third.
    assert!(
        frames_in >= 5,
        "only {frames_in} frames (Go's NOPs) arrived in {IDLE:?}"
    );
    assert!(
        frames_out >= 5,
        "only {frames_out} frames (our NOPs) went out in {IDLE:?}"
    );

    let (opened, peer) =
        open_and_check::<E>(&mux, &[100_003, 1], 7, version == Version::V1, peer).await;
    assert_eq!(opened.len(), 2);
    if ours == Side::Client {
        wait_until::<E>("Go's streams echoed", Duration::from_secs(20), || {
            finished.load(Ordering::SeqCst) >= 2
        })
        .await;
        E::close(&mux).await.expect("our graceful close");
    }
    let accepted = acceptor.await;
    let output = finish_go::<E>(peer).await;
    assert_eq!(output.records("idle-ok").len(), 1, "{output}");
    assert_eq!(output.summary_u64("opened"), 2, "{output}");
    assert_eq!(output.summary_u64("accepted"), 2, "{output}");
    assert_eq!(output.summary_u64("echoed_bytes"), 100_004, "{output}");
    accepted.assert_all_ok(2, &output);
    eprintln!(
        "{} v{} ours={ours:?}: {frames_in} frames in, {frames_out} out while idle",
        E::NAME,
        version.as_u8()
    );
}

/// We write to many streams and close the session at once, most data still queued; Go reads
/// every stream to its end.
async fn our_close<E: Env>(version: Version, ours: Side) {
    const SIZES: [usize; 16] = [
        1, 2, 3, 1000, 32_767, 32_768, 32_769, 65_535, 65_536, 65_537, 262_143, 262_144, 262_145,
        300_001, 700_001, 1_500_007,
    ];
    let go_args = args(&["-sink", "-odd"]);
    let (mux, peer) = connect_go::<E>(version, ours, config(version), &go_args).await;

    // All written (accepted by the session) before close; no stream is finished by us.
    let writers: Vec<_> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let mux = mux.clone();
            E::spawn(async move {
                let data = payload(1000 + i as u64, size);
                let mut stream = E::connect(&mux).await.expect("connect");
                write_pieces(&mut stream, &data, i).await.expect("write");
                (E::id(&stream), size, checksum(&data), stream)
            })
        })
        .collect();
    let mut written = futures::future::join_all(writers).await;
    // Go's AcceptStream may report the end of the session before a stream whose SYN came
    // just before it (its select picks either): let Go accept every stream before closing.
    let peer = E::unblock(move || {
        let mut peer = peer;
        for _ in 0..SIZES.len() {
            peer.wait_line("accepted ", Duration::from_secs(30));
        }
        peer
    })
    .await;
    let queued = E::stats(&mux);
    E::close(&mux).await.expect("our graceful close");
    assert!(E::is_closed(&mux));
    for (id, _, _, stream) in &mut written {
        assert!(
            stream.write_all(b"late").await.is_err(),
            "stream {id}: write after close"
        );
    }
    assert!(E::connect(&mux).await.is_err(), "connect after close");

    let output = finish_go::<E>(peer).await;
    let mut got: Vec<(u32, usize, u64)> = output
        .records("sink")
        .iter()
        .map(|f| {
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                u64::from_str_radix(&f[2], 16).unwrap(),
            )
        })
        .collect();
    got.sort_unstable();
    let mut sent: Vec<(u32, usize, u64)> = written
        .iter()
        .map(|(id, size, sum, _)| (id.as_u32(), *size, *sum))
        .collect();
    sent.sort_unstable();
    assert_eq!(
        got, sent,
        "what Go read differs from what we wrote\n{output}"
    );
    assert_eq!(
        output.summary()["end"],
        "EOF",
        "Go must see our close as EOF\n{output}"
    );
    let total: usize = SIZES.iter().sum();
    eprintln!(
        "{} v{} ours={ours:?}: closed after {} of {total} payload bytes were sent",
        E::NAME,
        version.as_u8(),
        queued.bytes_out,
    );
}

/// Go writes to 12 streams and closes its session without closing them: we read everything,
/// then each stream and `accept` fail with a clear error.
async fn go_closes<E: Env>(version: Version, ours: Side) {
    const STREAMS: usize = 12;
    let go_args = args(&[
        "-abort",
        "-odd",
        "-streams",
        &STREAMS.to_string(),
        "-sizes",
        "1,1000,65537,300001,17,1048583",
        "-seed",
        "5",
    ]);
    let (mux, peer) = connect_go::<E>(version, ours, config(version), &go_args).await;
    let accepted =
        spawn_acceptor::<E>(mux.clone(), Reply::Sink, Arc::new(AtomicUsize::new(0))).await;
    let output = finish_go::<E>(peer).await;

    assert!(
        is_connection_end(&accepted.end),
        "accept after Go closed: {:?} {}",
        accepted.end.kind(),
        accepted.end
    );
    assert!(E::is_closed(&mux));
    assert!(E::connect(&mux).await.is_err(), "connect after Go closed");
    let mut sent: Vec<(u32, u64, u64)> = output
        .records("sent")
        .iter()
        .map(|f| {
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                u64::from_str_radix(&f[2], 16).unwrap(),
            )
        })
        .collect();
    sent.sort_unstable();
    let mut got: Vec<(u32, u64, u64)> = accepted
        .streams
        .iter()
        .map(|s| (s.id.as_u32(), s.bytes, s.sum))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got, sent,
        "what we read differs from what Go wrote\n{output}"
    );
    for s in &accepted.streams {
        match &s.result {
            Ok(()) => panic!("stream {} ended cleanly, but Go sent no FIN", s.id),
            Err(e) => assert!(
                is_connection_end(e),
                "stream {}: unclear error {:?}: {e}",
                s.id,
                e.kind()
            ),
        }
    }
    assert_ids_of(other(ours), accepted.streams.iter().map(|s| s.id), STREAMS);
}

/// Our half-close completes once its FIN is out, even if the session ends before the closing
/// task runs again: we write a payload that cannot be flushed at once (beyond Go's window in
/// version 2, beyond the socket buffers in version 1), start `close` (FIN after the data) and
/// poll it once; another task drives the rest out. Go reads the stream to its end (so it got
/// the FIN) and then closes the session. Only then is our `close` polled again: all its data
/// and its FIN reached Go, so it must succeed.
async fn fin_delivered_then_go_closes<E: Env>(version: Version, ours: Side) {
    const SIZE: usize = 16 << 20;
    let config = config(version)
        .with_max_send_buffer(2 * SIZE)
        .with_max_stream_send_buffer(2 * SIZE);
    let go_args = args(&["-sink", "-close", "-expect", "1"]);
    let (mux, peer) = connect_go::<E>(version, ours, config, &go_args).await;

    // Nothing else polls the mux yet: the session takes all the data at once, and only our
    // own polls push it out, as far as the socket takes it.
    let data = payload(77, SIZE);
    let mut stream = E::connect(&mux).await.unwrap();
    let id = E::id(&stream);
    E::write_chunk(&mut stream, data.clone().into())
        .await
        .unwrap();
    let mut close = stream.close();
    assert!(
        futures::poll!(&mut close).is_pending(),
        "close finished at once: the scenario needs output still queued"
    );
    // From now on another task drives the connection, while ours holds the pending `close`.
    let acceptor = spawn_acceptor::<E>(mux.clone(), Reply::Sink, Arc::new(AtomicUsize::new(0)));
    // Go reads everything and the FIN, then closes the session.
    let (sink, peer) = E::unblock(move || {
        let mut peer = peer;
        let line = peer.wait_line("sink ", Duration::from_secs(30));
        (line, peer)
    })
    .await;
    assert_eq!(
        sink,
        format!("sink {id} {SIZE} {:016x}", checksum(&data)),
        "what Go read"
    );
    wait_until::<E>("Go closed the session", Duration::from_secs(10), || {
        E::is_closed(&mux)
    })
    .await;
    let result = close.await;
    let accepted = acceptor.await;
    let output = finish_go::<E>(peer).await;
    assert_eq!(output.summary()["end"], "closed-by-us", "{output}");
    assert!(is_connection_end(&accepted.end), "{}", accepted.end);
    if let Err(e) = result {
        panic!(
            "close() of stream {id} failed although its data and FIN reached Go (Go read \
             {SIZE} bytes to EOF before closing the session): {:?}: {e}",
            e.kind()
        );
    }
}

/// Version 2: Go leaves one stream unread. Our echoes on other streams complete meanwhile;
/// the writer stuck on the unread stream fails cleanly when Go closes the session.
async fn slow_reader<E: Env>(ours: Side) {
    const OTHERS: usize = 4;
    const SIZE: usize = (1 << 20) + 3;
    let version = Version::V2;
    match ours {
        Side::Client => {
            // Go holds the first stream it accepts; it closes the session once the others
            // are echoed.
            let go_args = args(&["-slow", "-close", "-expect", &(OTHERS + 1).to_string()]);
            let (mux, mut peer) = connect_go::<E>(version, ours, config(version), &go_args).await;
            let acceptor =
                spawn_acceptor::<E>(mux.clone(), Reply::Echo, Arc::new(AtomicUsize::new(0)));

            let mut slow = E::connect(&mux).await.unwrap();
            let slow_id = E::id(&slow);
            slow.write_all(&[0x5a]).await.unwrap();
            slow.flush().await.unwrap();
            let (line, peer_back) = E::unblock(move || {
                let line = peer.wait_line("slow accepted ", Duration::from_secs(10));
                (line, peer)
            })
            .await;
            peer = peer_back;
            assert_eq!(line, format!("slow accepted {slow_id}"));

            // Far beyond the 256 KiB Go lets us send before it reads.
            let slow_done = Arc::new(AtomicBool::new(false));
            let slow_writer = E::spawn({
                let slow_done = slow_done.clone();
                async move {
                    let data = payload(99, 4 << 20);
                    let result = slow.write_all(&data).await;
                    slow_done.store(true, Ordering::SeqCst);
                    result
                }
            });
            // It stalls once Go's 256 KiB initial window (plus our stream send buffer) is used.
            let before = E::stats(&mux).bytes_out;
            E::sleep(Duration::from_millis(200)).await;
            let sent = E::stats(&mux).bytes_out - before;
            assert!(
                !slow_done.load(Ordering::SeqCst),
                "the write to the unread stream completed"
            );
            assert!(
                sent < 300_000,
                "{sent} bytes sent to a stream Go does not read"
            );

            let sizes = vec![SIZE; OTHERS];
            let (opened, peer) = open_and_check::<E>(&mux, &sizes, 3, false, peer).await;
            assert_eq!(opened.len(), OTHERS);
            // Go now closes the session (maybe already did): the writer blocked on the unread
            // stream must fail, not hang and not succeed.
            let err = slow_writer
                .await
                .expect_err("the write to the unread stream succeeded");
            assert!(is_connection_end(&err), "{:?}: {err}", err.kind());
            let accepted = acceptor.await;
            assert!(accepted.streams.is_empty());
            let output = finish_go::<E>(peer).await;
            assert_eq!(
                output.summary_u64("accepted"),
                OTHERS as u64 + 1,
                "{output}"
            );
            assert_eq!(
                output.summary_u64("echoed_bytes"),
                (OTHERS * SIZE) as u64,
                "{output}"
            );
        }
        Side::Server => {
            // Go opens the slow stream first, writes 1 MiB on it and never reads our echo;
            // then it opens the others, and closes the session once they are checked.
            let go_args = args(&[
                "-slow",
                "-close",
                "-streams",
                &(OTHERS + 1).to_string(),
                "-sizes",
                &SIZE.to_string(),
            ]);
            let (mux, peer) = connect_go::<E>(version, ours, config(version), &go_args).await;
            let accepted =
                spawn_acceptor::<E>(mux.clone(), Reply::Echo, Arc::new(AtomicUsize::new(0))).await;
            let output = finish_go::<E>(peer).await;
            let slow = output.records("slow");
            assert_eq!(slow.len(), 1, "{output}");
            assert_eq!(slow[0][0], "opened");
            let slow_id: u32 = slow[0][1].parse().unwrap();
            assert_eq!(output.summary_u64("opened"), OTHERS as u64, "{output}");
            assert_eq!(accepted.streams.len(), OTHERS + 1);
            for s in &accepted.streams {
                if s.id.as_u32() == slow_id {
                    // Our echo of it waits for window until Go closes the session.
                    let e = s.result.as_ref().expect_err("echo of the unread stream");
                    assert!(is_connection_end(e), "{:?}: {e}", e.kind());
                } else {
                    assert!(s.result.is_ok(), "stream {}: {:?}", s.id, s.result);
                    assert_eq!(s.bytes, SIZE as u64);
                }
            }
        }
    }
}

/// The Go peer still writes exactly the golden vectors stored in `testdata/`.
#[test]
fn go_writes_the_stored_vectors() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("go-vectors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let peer = GoPeer::spawn(
        go_binary(),
        ["-mode", "vectors", "-out", dir.to_str().unwrap()],
    );
    let output = peer.finish(GO_EXIT);
    output.assert_success();
    let stored = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let list = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".bin"))
            .collect();
        names.sort();
        names
    };
    let names = list(&dir);
    assert_eq!(names, list(&stored), "the set of vector files");
    for name in names {
        let fresh = std::fs::read(dir.join(&name)).unwrap();
        let kept = std::fs::read(stored.join(&name)).unwrap();
        assert!(
            fresh == kept,
            "testdata/{name} differs from what Go writes now"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `drain_refuses_go_streams`: we open a stream to Go and keep it open, then drain; Go,
/// after 800 ms of idleness, opens 2 streams. Each is refused with a FIN at once: Go's reads
/// give `io.EOF` with no byte (its echo check fails, which is the point), and we count both
/// in `streams_refused`. Go then exits, which ends the connection and the drain.
async fn drain_refuses_go_streams<E: Env>(version: Version, ours: Side) {
    let config = MuxConfig::default().with_version(version);
    let go_args = args(&["-idle", "800", "-streams", "2", "-sizes", "1000,2000"]);
    let (mux, peer) = connect_go::<E>(version, ours, config, &go_args).await;
    let mut held = E::connect(&mux).await.unwrap();
    held.write_all(b"held").await.unwrap();
    let mut echo = [0u8; 4];
    held.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"held");
    let draining = E::spawn({
        let mux = mux.clone();
        async move { E::drain(&mux, Duration::from_secs(60)).await }
    });
    wait_until::<E>("the drain started", Duration::from_secs(10), || {
        E::snapshot(&mux).draining
    })
    .await;
    let output = E::unblock(move || peer.finish(GO_EXIT)).await;
    assert!(!output.success(), "Go's echo check should fail\n{output}");
    assert_eq!(
        output.stderr.matches("echo ended after 0 of").count(),
        2,
        "both of Go's streams end at once\n{output}"
    );
    assert_eq!(
        output.stderr.matches(": EOF").count(),
        2,
        "Go reads io.EOF\n{output}"
    );
    assert_eq!(E::stats(&mux).streams_refused, 2);
    // Go exited: the connection, and with it the drain, ends.
    assert!(draining.await.is_err());
    drop(held);
}

/// `go_reads_our_greeting`: Go opens 1,000 streams at once, and on each first reads our
/// greeting (a server that speaks first, as SSH and SMTP do), then has 64 bytes echoed. We
/// write the greeting the moment a stream is accepted. Go 1.5.16 puts a stream it opens in its
/// table only after its SYN is written and drops what arrives for a stream not in it; without
/// `Config::early_reply_hold` a burst like this one lost up to 14 % of the greetings (and Go's
/// reads of them hung); 3 or 4 of these 8 cases fail in every run with the hold at zero.
///
/// The hold here is 100 ms, not the default 20 ms: this test runs beside the other Go tests on
/// two cores, and Go's goroutine that registers the stream can then wait longer than 20 ms
/// (about one case in a hundred lost a greeting). The default's residual loss is measured
/// apart (`smux-proto/doc/guarantees.md`).
async fn go_reads_our_greeting<E: Env>(version: Version, ours: Side) {
    const GOS: usize = 1000;
    const SIZE: usize = 64;
    let mut go_args = args(&["-streams", &GOS.to_string(), "-sizes", &SIZE.to_string()]);
    go_args.extend(args(&["-greet", "-deadline", "30000"]));
    go_args.extend(args(&GO_KEEPALIVE));
    if ours == Side::Server {
        // Go is the client: it closes the session once its streams are done.
        go_args.push("-close".into());
    }
    let config = config(version).with_early_reply_hold(Duration::from_millis(100));
    let (mux, peer) = connect_go::<E>(version, ours, config, &go_args).await;
    let finished = Arc::new(AtomicUsize::new(0));
    let acceptor = spawn_acceptor::<E>(mux.clone(), Reply::GreetThenEcho, finished.clone());
    if ours == Side::Client {
        wait_until::<E>("Go's streams greeted", Duration::from_secs(30), || {
            finished.load(Ordering::SeqCst) >= GOS
        })
        .await;
        E::close(&mux).await.expect("our graceful close");
    }
    let accepted = acceptor.await;
    let output = finish_go::<E>(peer).await;
    accepted.assert_all_ok(GOS, &output);
    assert_eq!(output.summary_u64("opened"), GOS as u64, "{output}");
    assert_eq!(
        output.summary_u64("opened_bytes"),
        (GOS * SIZE) as u64,
        "{output}"
    );
}

// ------------------------------------------------------------------------------------------------
// The matrix

/// `$scenario(version, side)` for versions 1 and 2, our side client and server, on tokio and
/// smol: eight tests in a module named after the scenario.
macro_rules! matrix {
    ($scenario:ident) => {
        mod $scenario {
            use super::{run, Side, Smol, Tokio, Version};

            #[test]
            fn v1_client_tokio() {
                run::<Tokio>(
                    stringify!($scenario),
                    super::$scenario::<Tokio>(Version::V1, Side::Client),
                );
            }

            #[test]
            fn v1_server_tokio() {
                run::<Tokio>(
                    stringify!($scenario),
                    super::$scenario::<Tokio>(Version::V1, Side::Server),
                );
            }

            #[test]
            fn v2_client_tokio() {
                run::<Tokio>(
                    stringify!($scenario),
                    super::$scenario::<Tokio>(Version::V2, Side::Client),
                );
            }

            #[test]
            fn v2_server_tokio() {
                run::<Tokio>(
                    stringify!($scenario),
                    super::$scenario::<Tokio>(Version::V2, Side::Server),
                );
            }

            #[test]
            fn v1_client_smol() {
                run::<Smol>(
                    stringify!($scenario),
                    super::$scenario::<Smol>(Version::V1, Side::Client),
                );
            }

            #[test]
            fn v1_server_smol() {
                run::<Smol>(
                    stringify!($scenario),
                    super::$scenario::<Smol>(Version::V1, Side::Server),
                );
            }

            #[test]
            fn v2_client_smol() {
                run::<Smol>(
                    stringify!($scenario),
                    super::$scenario::<Smol>(Version::V2, Side::Client),
                );
            }

            #[test]
            fn v2_server_smol() {
                run::<Smol>(
                    stringify!($scenario),
                    super::$scenario::<Smol>(Version::V2, Side::Server),
                );
            }
        }
    };
}

matrix!(echo_both_ways);
matrix!(keepalive);
matrix!(drain_refuses_go_streams);
matrix!(go_reads_our_greeting);
matrix!(our_close);
matrix!(go_closes);
matrix!(fin_delivered_then_go_closes);

mod slow_reader {
    use super::{run, Side, Smol, Tokio};

    #[test]
    fn v2_client_tokio() {
        run::<Tokio>("slow_reader", super::slow_reader::<Tokio>(Side::Client));
    }

    #[test]
    fn v2_server_tokio() {
        run::<Tokio>("slow_reader", super::slow_reader::<Tokio>(Side::Server));
    }

    #[test]
    fn v2_client_smol() {
        run::<Smol>("slow_reader", super::slow_reader::<Smol>(Side::Client));
    }

    #[test]
    fn v2_server_smol() {
        run::<Smol>("slow_reader", super::slow_reader::<Smol>(Side::Server));
    }
}
