//! End-to-end benchmark over loopback TCP: smux-rs (smux-tokio and smux-smol, protocol
//! versions 1 and 2) beside raw TCP (on tokio and on smol), `async_smux` 0.4, `yamux` 0.14 and
//! Go's xtaci/smux.
//!
//! `cargo bench -p smux-benches --bench e2e` runs every case and prints a markdown table
//! (medians of 3 runs) and the ratios to the performance targets; see `benches/README.md`
//! for the scenarios, the settings and the environment variables (`SMUX_BENCH_SMOKE=1` for a
//! short run, `SMUX_BENCH_FILTER=tokio,go` for a subset, ...).
//!
//! Every run of a case is a fresh child process (this executable re-run with `--case`), so
//! peak RSS and CPU time belong to that case alone; client and server both live in it and
//! talk over one loopback TCP connection (raw TCP: one connection per stream). The Go cases
//! run the Go peer (`interop/go-peer`, `-mode bench`), which is its own client and server.
//! The peers' set-up, the bulk scenario and the child-process harness are in `common/`,
//! shared with the link benchmark (`link.rs`).

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bulk::bulk;
use common::harness::{
    cpu_seconds, env_u64, fmt_value, median, run_child, status_kib, Outcome, Sample,
};
use common::peers::{
    setup_async_smux, setup_ours_smol, setup_ours_tokio, setup_yamux, Handler, Io, Opener, Rt,
    SocketPair,
};
use futures::channel::mpsc;
use futures::StreamExt;
use smux_tokio::{MuxConfig, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

/// Streams (or TCP connections) at once in the `bulk8` scenario.
const BULK_STREAMS: usize = 8;
/// Tasks opening streams at once in the `idle` scenario.
const IDLE_OPENERS: usize = 64;
/// Tasks opening streams at once in the `popen` scenario (each one open after another).
const POPEN_TASKS: usize = 64;
/// `max_stream_buffer` of the extra version-2 column: the fixed window of the releases before
/// the shared receive budget (the default now caps a stream at the whole 4 MiB budget).
const CAPPED_WINDOW: usize = 1 << 20;
/// Above this many idle streams, the peers whose stream opening is quadratic get special
/// treatment (see [`Peer::idle_slow`]).
const IDLE_SLOW_ABOVE: u64 = 10_000;
const GIB: f64 = (1u64 << 30) as f64;

// ------------------------------------------------------------------------------------------------
// Scenarios and peers

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Scenario {
    /// One stream, client to server, in 64 KiB writes.
    Bulk1,
    /// [`BULK_STREAMS`] streams at once, the same bytes in all.
    Bulk8,
    /// Sequential open + 1-byte echo + close.
    Rr,
    /// Many streams opened (1-byte echo each) and held open by both ends.
    Idle,
    /// Pingpong: 1-byte request, 1-byte reply, in sequence on one stream.
    Pp,
    /// Pingpong beside [`parked`] idle streams with a reader parked on each end.
    PpParked,
    /// Pipelined opens: [`POPEN_TASKS`] tasks at once, each doing `rr`'s open + 1-byte echo +
    /// close back to back.
    Popen,
}

const SCENARIOS: [Scenario; 7] = [
    Scenario::Bulk1,
    Scenario::Bulk8,
    Scenario::Rr,
    Scenario::Popen,
    Scenario::Idle,
    Scenario::Pp,
    Scenario::PpParked,
];

/// Idle streams beside the pingpong of `pp-parked` (`SMUX_BENCH_PARKED`, default 1000).
fn parked() -> u64 {
    env_u64("SMUX_BENCH_PARKED").unwrap_or(1000)
}

/// Whether the tokio peers run on a current-thread runtime (`SMUX_BENCH_TOKIO=current`)
/// instead of the 2-worker multi-thread one.
fn tokio_current_thread() -> bool {
    std::env::var("SMUX_BENCH_TOKIO").is_ok_and(|v| v == "current")
}

/// Whether the pingpong client runs in the future given to `block_on` (`SMUX_BENCH_BODY=main`,
/// as `#[tokio::main]` code does) instead of a spawned task.
fn body_on_main() -> bool {
    std::env::var("SMUX_BENCH_BODY").is_ok_and(|v| v == "main")
}

impl Scenario {
    fn key(self) -> &'static str {
        match self {
            Scenario::Bulk1 => "bulk1",
            Scenario::Bulk8 => "bulk8",
            Scenario::Rr => "rr",
            Scenario::Idle => "idle",
            Scenario::Pp => "pp",
            Scenario::PpParked => "pp-parked",
            Scenario::Popen => "popen",
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        SCENARIOS.into_iter().find(|sc| sc.key() == s)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Peer {
    /// Raw TCP on tokio.
    Tcp,
    Tokio(u8),
    TokioCappedWindow,
    /// Raw TCP on smol.
    SmolTcp,
    Smol(u8),
    AsyncSmux,
    Yamux,
    Go(u8),
}

const PEERS: [Peer; 11] = [
    Peer::Tcp,
    Peer::Tokio(1),
    Peer::Tokio(2),
    Peer::TokioCappedWindow,
    Peer::SmolTcp,
    Peer::Smol(1),
    Peer::Smol(2),
    Peer::AsyncSmux,
    Peer::Yamux,
    Peer::Go(1),
    Peer::Go(2),
];

impl Peer {
    fn key(self) -> String {
        match self {
            Peer::Tcp => "tcp".into(),
            Peer::Tokio(v) => format!("tokio-v{v}"),
            Peer::TokioCappedWindow => "tokio-v2-1m".into(),
            Peer::SmolTcp => "smol-tcp".into(),
            Peer::Smol(v) => format!("smol-v{v}"),
            Peer::AsyncSmux => "async_smux".into(),
            Peer::Yamux => "yamux".into(),
            Peer::Go(v) => format!("go-v{v}"),
        }
    }

    fn header(self) -> String {
        match self {
            Peer::Tcp => "raw TCP tokio".into(),
            Peer::Tokio(v) => format!("ours tokio v{v}"),
            Peer::TokioCappedWindow => "ours tokio v2 1 MiB cap".into(),
            Peer::SmolTcp => "raw TCP smol".into(),
            Peer::Smol(v) => format!("ours smol v{v}"),
            Peer::AsyncSmux => "async_smux 0.4".into(),
            Peer::Yamux => "yamux 0.14".into(),
            Peer::Go(v) => format!("Go smux v{v}"),
        }
    }

    fn parse(s: &str) -> Option<Peer> {
        PEERS.into_iter().find(|p| p.key() == s)
    }

    /// Raw TCP has no streams to open and close or to hold idle (its pingpong is one
    /// connection).
    fn runs(self, scenario: Scenario) -> bool {
        !(matches!(self, Peer::Tcp | Peer::SmolTcp)
            && matches!(
                scenario,
                Scenario::Rr | Scenario::Popen | Scenario::Idle | Scenario::PpParked
            ))
    }

    /// How a peer whose stream opening slows down with every stream already open takes part
    /// in `idle` beyond [`IDLE_SLOW_ABOVE`] streams. async_smux walks every stream's handle on
    /// each received frame and flush (100,000 streams took 500 s, 200 opens/s, in a trial
    /// run), so it only runs when the filter names `idle/async_smux`; yamux counts its
    /// unacknowledged streams over all streams on each open (100,000 took 76 s, 1,300/s), so it
    /// runs once instead of once per repetition.
    fn idle_slow(self) -> Option<IdleSlow> {
        match self {
            Peer::AsyncSmux => Some(IdleSlow::OnRequest),
            Peer::Yamux => Some(IdleSlow::Once),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum IdleSlow {
    /// Only when the filter names the case.
    OnRequest,
    /// One run, whatever the repetitions.
    Once,
}

/// Sizes of a run.
#[derive(Clone, Copy, Debug)]
struct Params {
    /// Bytes moved in all by `bulk1` and by `bulk8`.
    bytes: u64,
    /// Round trips of `rr`, `pp` and `pp-parked`.
    ops: u64,
    /// Streams of `idle`.
    idle: u64,
    /// Streams of `popen` (opened, echoed and closed).
    opens: u64,
}

// ------------------------------------------------------------------------------------------------
// The scenarios: a peer (`common::peers`) is a way to get a server handler installed and a
// stream opener

/// Runs `scenario` with the peer that `setup` installs.
async fn scenario<S, F, Fut>(rt: Rt, scenario: Scenario, p: Params, setup: F) -> Sample
where
    S: Io,
    F: FnOnce(Handler<S>) -> Fut,
    Fut: Future<Output = Opener<S>>,
{
    let (secs, units, cpu) = match scenario {
        Scenario::Bulk1 | Scenario::Bulk8 => {
            let k = if scenario == Scenario::Bulk1 {
                1
            } else {
                BULK_STREAMS
            };
            let run = bulk(rt, k, p.bytes, setup).await;
            (run.secs_fin, run.bytes, run.cpu)
        }
        Scenario::Rr => rr(rt, p.ops, 1, setup).await,
        Scenario::Popen => rr(rt, p.opens, POPEN_TASKS, setup).await,
        Scenario::Idle => idle(rt, p.idle, setup).await,
        Scenario::Pp => pingpong(rt, p.ops, 0, setup).await,
        Scenario::PpParked => pingpong(rt, p.ops, parked(), setup).await,
    };
    Sample {
        secs,
        units,
        cpu,
        hwm_kib: status_kib("VmHWM"),
    }
}

/// `ops` times: open a stream, write 1 byte, read the 1-byte echo, half-close and drop it (not
/// waiting for the server's FIN). The server reads the byte, writes it back, reads to EOF and
/// half-closes. `tasks` tasks at once do that, each in sequence (`ops / tasks` each, the
/// remainder spread over the first ones): 1 for `rr`, [`POPEN_TASKS`] for `popen`. Timed from
/// before the first open until every task has closed its last stream.
async fn rr<S, F, Fut>(rt: Rt, ops: u64, tasks: usize, setup: F) -> (f64, u64, f64)
where
    S: Io,
    F: FnOnce(Handler<S>) -> Fut,
    Fut: Future<Output = Opener<S>>,
{
    let handler: Handler<S> = Arc::new(|mut s: S| {
        Box::pin(async move {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.expect("rr: server read");
            s.write_all(&b).await.expect("rr: server write");
            s.flush().await.expect("rr: server flush");
            let mut rest = [0u8; 16];
            while s.read(&mut rest).await.expect("rr: server reads to EOF") > 0 {}
            let _ = s.shutdown().await;
        })
    });
    let open = setup(handler).await;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let tasks = tasks.max(1) as u64;
    let mut workers = Vec::new();
    for w in 0..tasks {
        let count = ops / tasks + u64::from(w < ops % tasks);
        let open = open.clone();
        workers.push(rt.spawn(async move {
            for i in 0..count {
                let mut s = open().await.expect("rr: open");
                let mut b = [(i ^ w) as u8];
                s.write_all(&b).await.expect("rr: write");
                s.flush().await.expect("rr: flush");
                s.read_exact(&mut b).await.expect("rr: read the echo");
                assert_eq!(b[0], (i ^ w) as u8, "rr: echo");
                s.shutdown().await.expect("rr: shutdown");
            }
        }));
    }
    futures::future::join_all(workers).await;
    (start.elapsed().as_secs_f64(), ops, cpu_seconds() - cpu0)
}

/// Pingpong: `parked` idle streams first (each established by a 1-byte echo, then with a
/// task parked in `read` on both ends), then `ops` round trips in sequence on one more stream,
/// a 1-byte ping and its 1-byte echo. Only the round trips are timed.
async fn pingpong<S, F, Fut>(rt: Rt, ops: u64, parked: u64, setup: F) -> (f64, u64, f64)
where
    S: Io,
    F: FnOnce(Handler<S>) -> Fut,
    Fut: Future<Output = Opener<S>>,
{
    let handler: Handler<S> = Arc::new(|mut s: S| {
        Box::pin(async move {
            let mut b = [0u8; 1];
            loop {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if s.write_all(&b).await.is_err() || s.flush().await.is_err() {
                    break;
                }
            }
        })
    });
    let open = setup(handler).await;
    let mut idle = Vec::new();
    for _ in 0..parked {
        let mut s = open().await.expect("pp: open an idle stream");
        let mut b = [1u8];
        s.write_all(&b).await.expect("pp: idle write");
        s.flush().await.expect("pp: idle flush");
        s.read_exact(&mut b).await.expect("pp: idle echo");
        // Parked in read for the rest of the run (the process exits without waiting).
        idle.push(rt.spawn(async move {
            let _ = s.read(&mut b).await;
            s
        }));
    }
    let mut s = open().await.expect("pp: open");
    let body = async move {
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        let mut b = [0u8; 1];
        for i in 0..ops {
            b[0] = i as u8;
            s.write_all(&b).await.expect("pp: write");
            s.flush().await.expect("pp: flush");
            s.read_exact(&mut b).await.expect("pp: read the echo");
            assert_eq!(b[0], i as u8, "pp: echo");
        }
        (start.elapsed().as_secs_f64(), ops, cpu_seconds() - cpu0)
    };
    let result = if body_on_main() {
        body.await
    } else {
        rt.spawn(body).await
    };
    std::mem::forget(idle);
    result
}

/// `n` streams opened by [`IDLE_OPENERS`] tasks at once, each carrying a 1-byte echo (which
/// makes every peer put the stream on the wire and acknowledge it), then held open by both
/// ends. The peak RSS is read once all of them are held; the process exits without closing
/// them.
async fn idle<S, F, Fut>(rt: Rt, n: u64, setup: F) -> (f64, u64, f64)
where
    S: Io,
    F: FnOnce(Handler<S>) -> Fut,
    Fut: Future<Output = Opener<S>>,
{
    let (held_tx, held_rx) = mpsc::unbounded::<S>();
    let handler: Handler<S> = Arc::new(move |mut s: S| {
        let held = held_tx.clone();
        Box::pin(async move {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.expect("idle: server read");
            s.write_all(&b).await.expect("idle: server write");
            s.flush().await.expect("idle: server flush");
            let _ = held.unbounded_send(s);
        })
    });
    let open = setup(handler).await;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut openers = Vec::new();
    for w in 0..IDLE_OPENERS as u64 {
        let count = n / IDLE_OPENERS as u64 + u64::from(w < n % IDLE_OPENERS as u64);
        let open = open.clone();
        openers.push(rt.spawn(async move {
            let mut mine = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let mut s = open().await.expect("idle: open");
                let mut b = [1u8];
                s.write_all(&b).await.expect("idle: write");
                s.flush().await.expect("idle: flush");
                s.read_exact(&mut b).await.expect("idle: read the echo");
                mine.push(s);
            }
            mine
        }));
    }
    let client: Vec<Vec<S>> = futures::future::join_all(openers).await;
    let server: Vec<S> = held_rx.take(n as usize).collect().await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(client.iter().map(Vec::len).sum::<usize>() as u64, n);
    assert_eq!(server.len() as u64, n);
    // Held until the process exits.
    std::mem::forget((client, server));
    (secs, n, cpu)
}

// ------------------------------------------------------------------------------------------------
// Peers (the multiplexers' set-up is in `common::peers`)

/// Raw TCP: one connection per "stream"; the listener's accept loop is the server.
async fn setup_tcp(handler: Handler<TcpStream>) -> Opener<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            s.set_nodelay(true).expect("nodelay");
            tokio::spawn(handler(s));
        }
    });
    Arc::new(move || {
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(s)
        })
    })
}

/// Raw TCP on smol, the same as [`setup_tcp`] on smol's executor and sockets (with tokio's
/// I/O traits through tokio-util's compat wrapper, as [`setup_ours_smol`]'s streams).
async fn setup_smol_tcp(handler: Handler<SmolTcp>) -> Opener<SmolTcp> {
    let listener = smol::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    smol::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            s.set_nodelay(true).expect("nodelay");
            smol::spawn(handler(s.compat())).detach();
        }
    })
    .detach();
    Arc::new(move || {
        Box::pin(async move {
            let s = smol::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(s.compat())
        })
    })
}

/// A raw TCP connection on smol, with tokio's I/O traits.
type SmolTcp = Compat<smol::net::TcpStream>;

/// `SMUX_BENCH_CLIENT_DRIVE=1`: our client mux also gets a task in `Mux::drive` (an
/// experiment; by default only the streams' own polls drive the client, as documented).
fn client_drive() -> bool {
    std::env::var("SMUX_BENCH_CLIENT_DRIVE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Our configuration: the default, with `version`; `max_stream_buffer` = [`CAPPED_WINDOW`] for
/// the extra column; `max_streams` raised for `idle` beyond its default 65536.
fn ours_config(version: u8, capped_window: bool, scenario: Scenario, p: Params) -> MuxConfig {
    let mut config = MuxConfig::default().with_version(if version == 1 {
        Version::V1
    } else {
        Version::V2
    });
    if capped_window {
        config.max_stream_buffer = CAPPED_WINDOW;
    }
    if scenario == Scenario::Idle {
        config.max_streams = config.max_streams.max(p.idle as usize + 1024);
    }
    config.validate().expect("valid config");
    config
}

/// The runtime of every tokio peer: multi-thread, 2 workers (`SMUX_BENCH_TOKIO_WORKERS=N` to
/// experiment).
fn tokio_runtime() -> tokio::runtime::Runtime {
    let workers = env_u64("SMUX_BENCH_TOKIO_WORKERS").map_or(2, |n| n.max(1) as usize);
    common::peers::tokio_runtime(tokio_current_thread(), workers)
}

/// One loopback TCP connection for a multiplexer.
fn loopback() -> SocketPair {
    SocketPair::loopback().expect("loopback connection")
}

/// Runs one case in this process (the child side of `--case`).
fn run_case(sc: Scenario, peer: Peer, p: Params) -> Sample {
    let idle_streams = match sc {
        Scenario::Idle if p.idle > 512 => Some(p.idle as usize + 1024),
        Scenario::PpParked if parked() > 256 => Some(parked() as usize + 1024),
        _ => None,
    };
    match peer {
        Peer::Tcp => tokio_runtime().block_on(scenario(Rt::Tokio, sc, p, setup_tcp)),
        Peer::SmolTcp => smol::block_on(scenario(Rt::Smol, sc, p, setup_smol_tcp)),
        Peer::Tokio(v) => {
            let config = ours_config(v, false, sc, p);
            tokio_runtime().block_on(scenario(Rt::Tokio, sc, p, |h| {
                setup_ours_tokio(config, client_drive(), loopback(), h)
            }))
        }
        Peer::TokioCappedWindow => {
            let config = ours_config(2, true, sc, p);
            tokio_runtime().block_on(scenario(Rt::Tokio, sc, p, |h| {
                setup_ours_tokio(config, client_drive(), loopback(), h)
            }))
        }
        Peer::Smol(v) => {
            let config = ours_config(v, false, sc, p);
            smol::block_on(scenario(Rt::Smol, sc, p, |h| {
                setup_ours_smol(config, client_drive(), loopback(), h)
            }))
        }
        Peer::AsyncSmux => tokio_runtime().block_on(scenario(Rt::Tokio, sc, p, |h| {
            setup_async_smux(loopback(), h)
        })),
        Peer::Yamux => tokio_runtime().block_on(scenario(Rt::Tokio, sc, p, |h| {
            setup_yamux(idle_streams, loopback(), h)
        })),
        Peer::Go(_) => unreachable!("the Go peer runs in its own process"),
    }
}

// ------------------------------------------------------------------------------------------------
// The parent: runs every case in child processes and prints the tables

struct Options {
    params: Params,
    reps: usize,
    smoke: bool,
    filters: Vec<String>,
    case_timeout: Duration,
}

fn options(args: &[String]) -> Options {
    let smoke = args.iter().any(|a| a == "--smoke")
        || std::env::var("SMUX_BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0")
        // `cargo test --benches` runs this without `--bench`: a smoke run then.
        || !args.iter().any(|a| a == "--bench");
    let mut params = if smoke {
        Params {
            bytes: 8 << 20,
            ops: 200,
            idle: 1000,
            opens: 1000,
        }
    } else {
        Params {
            bytes: 2 << 30,
            ops: 20_000,
            idle: 100_000,
            opens: 50_000,
        }
    };
    if let Some(b) = env_u64("SMUX_BENCH_BYTES") {
        params.bytes = b.max(BULK_STREAMS as u64) / BULK_STREAMS as u64 * BULK_STREAMS as u64;
    }
    if let Some(n) = env_u64("SMUX_BENCH_OPS") {
        params.ops = n;
    }
    if let Some(n) = env_u64("SMUX_BENCH_IDLE") {
        params.idle = n;
    }
    if let Some(n) = env_u64("SMUX_BENCH_OPENS") {
        params.opens = n;
    }
    let reps = env_u64("SMUX_BENCH_REPS").map_or(if smoke { 1 } else { 3 }, |r| r.max(1) as usize);
    // Positional arguments filter too (`cargo bench --bench e2e -- tokio`).
    let filters = common::harness::filters("SMUX_BENCH_FILTER", args);
    Options {
        params,
        reps,
        smoke,
        filters,
        case_timeout: Duration::from_secs(if smoke { 120 } else { 600 }),
    }
}

fn case_label(sc: Scenario, peer: Peer) -> String {
    format!("{}/{}", sc.key(), peer.key())
}

fn case_command(sc: Scenario, peer: Peer, p: Params, go: Option<&Path>) -> Command {
    match peer {
        Peer::Go(v) => {
            let mut cmd = Command::new(go.expect("Go peer built"));
            cmd.args(["-mode", "bench", "-deadline", "3600000", "-version"])
                .arg(v.to_string());
            match sc {
                Scenario::Bulk1 | Scenario::Bulk8 => {
                    let k = if sc == Scenario::Bulk1 {
                        1
                    } else {
                        BULK_STREAMS
                    };
                    cmd.args(["-scenario", "bulk", "-conns"])
                        .arg(k.to_string())
                        .arg("-bytes")
                        .arg(p.bytes.to_string());
                }
                Scenario::Rr => {
                    cmd.args(["-scenario", "rr", "-ops"]).arg(p.ops.to_string());
                }
                Scenario::Popen => {
                    cmd.args(["-scenario", "popen", "-ops"])
                        .arg(p.opens.to_string())
                        .arg("-tasks")
                        .arg(POPEN_TASKS.to_string());
                }
                Scenario::Idle => {
                    cmd.args(["-scenario", "idle", "-ops"])
                        .arg(p.idle.to_string());
                }
                Scenario::Pp => {
                    cmd.args(["-scenario", "pp", "-ops"]).arg(p.ops.to_string());
                }
                Scenario::PpParked => {
                    cmd.args(["-scenario", "pp-parked", "-ops"])
                        .arg(p.ops.to_string())
                        .arg("-parked")
                        .arg(parked().to_string());
                }
            }
            cmd
        }
        _ => {
            let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
            cmd.arg("--case")
                .arg(sc.key())
                .arg(peer.key())
                .arg(p.bytes.to_string())
                .arg(p.ops.to_string())
                .arg(p.idle.to_string())
                .arg(p.opens.to_string());
            cmd
        }
    }
}

/// One table cell's state.
enum Cell {
    Value(f64),
    NotApplicable,
    NotRun,
    Skipped,
    Failed,
    TooSlow,
    Once(f64),
}

struct Results {
    samples: BTreeMap<(Scenario, Peer), Vec<Sample>>,
    failed: BTreeMap<(Scenario, Peer), String>,
    selected: Vec<(Scenario, Peer)>,
    /// Left out as too slow (see [`Peer::idle_slow`]).
    too_slow: Vec<(Scenario, Peer)>,
    /// Run once only (see [`Peer::idle_slow`]).
    once: Vec<(Scenario, Peer)>,
    go_skipped: bool,
}

impl Results {
    fn cell(&self, sc: Scenario, peer: Peer, metric: fn(&Sample) -> f64) -> Cell {
        if !peer.runs(sc) {
            return Cell::NotApplicable;
        }
        if self.failed.contains_key(&(sc, peer)) {
            return Cell::Failed;
        }
        if self.too_slow.contains(&(sc, peer)) {
            return Cell::TooSlow;
        }
        if !self.selected.contains(&(sc, peer)) {
            return Cell::NotRun;
        }
        match self.samples.get(&(sc, peer)) {
            Some(s) if s.len() == 1 && self.once.contains(&(sc, peer)) => Cell::Once(metric(&s[0])),
            Some(s) if !s.is_empty() => Cell::Value(median(s.iter().map(metric).collect())),
            _ if matches!(peer, Peer::Go(_)) && self.go_skipped => Cell::Skipped,
            _ => Cell::NotRun,
        }
    }

    fn value(&self, sc: Scenario, peer: Peer, metric: fn(&Sample) -> f64) -> Option<f64> {
        match self.cell(sc, peer, metric) {
            Cell::Value(v) | Cell::Once(v) => Some(v),
            _ => None,
        }
    }
}

fn gib_per_s(s: &Sample) -> f64 {
    s.units as f64 / GIB / s.secs
}
fn cpu_per_gib(s: &Sample) -> f64 {
    s.cpu / (s.units as f64 / GIB)
}
fn rss_mib(s: &Sample) -> f64 {
    s.hwm_kib as f64 / 1024.0
}
fn cpu_us_per_op(s: &Sample) -> f64 {
    s.cpu * 1e6 / s.units as f64
}

fn ops_per_s(s: &Sample) -> f64 {
    s.units as f64 / s.secs
}

fn fmt_cell(c: Cell) -> String {
    match c {
        Cell::Value(v) => fmt_value(v),
        Cell::NotApplicable => "—".into(),
        Cell::NotRun => "not run".into(),
        Cell::Skipped => "skipped".into(),
        Cell::Failed => "FAILED".into(),
        Cell::TooSlow => "too slow ²".into(),
        Cell::Once(v) => format!("{} ¹", fmt_value(v)),
    }
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 && n & ((1 << 30) - 1) == 0 {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n & ((1 << 20) - 1) == 0 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} B")
    }
}

/// A runtime of ours, a column of the ratio blocks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Runtime {
    Tokio,
    Smol,
}

/// Ours v1 on `rt`.
fn v1(rt: Runtime) -> Peer {
    match rt {
        Runtime::Tokio => Peer::Tokio(1),
        Runtime::Smol => Peer::Smol(1),
    }
}

/// Ours v2 (default configuration) on `rt`.
fn v2(rt: Runtime) -> Peer {
    match rt {
        Runtime::Tokio => Peer::Tokio(2),
        Runtime::Smol => Peer::Smol(2),
    }
}

/// What a target compares ours with.
#[derive(Clone, Copy, Debug)]
enum Base {
    /// Raw TCP of the same runtime (`tcp` for tokio, `smol-tcp` for smol).
    Tcp,
    /// One peer, the same for both runtimes.
    Peer(Peer),
    /// The best (highest) of these peers, those that have a value.
    Best(&'static [Peer]),
    /// Ours (the same column) in another scenario (`Target::base_sc`).
    Ours,
    /// No base: the bound is on ours' value itself.
    One,
}

/// A performance target: ours (in scenario `sc`) divided by the base (in `base_sc`), at least
/// or at most `bound`.
struct Target {
    name: String,
    ours: fn(Runtime) -> Peer,
    sc: Scenario,
    base: Base,
    base_sc: Scenario,
    metric: fn(&Sample) -> f64,
    at_least: bool,
    bound: f64,
}

impl Target {
    /// ours v1 / base ≥ bound, both in `sc`.
    fn new(name: String, sc: Scenario, base: Base, metric: fn(&Sample) -> f64, bound: f64) -> Self {
        Target {
            name,
            ours: v1,
            sc,
            base,
            base_sc: sc,
            metric,
            at_least: true,
            bound,
        }
    }

    /// ours v1 / base ≤ bound, both in `sc`.
    fn at_most(
        name: String,
        sc: Scenario,
        base: Base,
        metric: fn(&Sample) -> f64,
        bound: f64,
    ) -> Self {
        Target {
            at_least: false,
            ..Target::new(name, sc, base, metric, bound)
        }
    }

    /// The ratio on `rt` and whether it meets the target ("n/a" without the values).
    fn cell(&self, r: &Results, rt: Runtime) -> String {
        let ours = (self.ours)(rt);
        let value = |peer: Peer| r.value(self.base_sc, peer, self.metric);
        let mut best_of = None;
        let base = match self.base {
            Base::Tcp => value(match rt {
                Runtime::Tokio => Peer::Tcp,
                Runtime::Smol => Peer::SmolTcp,
            }),
            Base::Peer(peer) => value(peer),
            Base::Best(peers) => peers
                .iter()
                .filter_map(|&peer| Some((value(peer)?, peer)))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(v, peer)| {
                    best_of = Some(peer);
                    v
                }),
            Base::Ours => value(ours),
            Base::One => Some(1.0),
        };
        match (r.value(self.sc, ours, self.metric), base) {
            (Some(a), Some(b)) if b > 0.0 => {
                let ratio = a / b;
                let met = if self.at_least {
                    ratio >= self.bound
                } else {
                    ratio <= self.bound
                };
                format!(
                    "{} {}{}",
                    fmt_value(ratio),
                    if met { "met" } else { "**missed**" },
                    best_of.map_or(String::new(), |peer| format!(" (vs {})", peer.key()))
                )
            }
            _ => "n/a".into(),
        }
    }
}

fn print_tables(r: &Results, o: &Options) {
    let p = o.params;
    type Row = (String, Scenario, fn(&Sample) -> f64);
    let rows: Vec<Row> = vec![
        (
            format!(
                "one stream, {} in 64 KiB writes, GiB/s",
                human_bytes(p.bytes)
            ),
            Scenario::Bulk1,
            gib_per_s,
        ),
        (
            "one stream, CPU s/GiB (both ends)".into(),
            Scenario::Bulk1,
            cpu_per_gib,
        ),
        ("one stream, peak RSS MiB".into(), Scenario::Bulk1, rss_mib),
        (
            format!(
                "{BULK_STREAMS} streams at once ({} in all), GiB/s",
                human_bytes(p.bytes)
            ),
            Scenario::Bulk8,
            gib_per_s,
        ),
        (
            format!("{BULK_STREAMS} streams, CPU s/GiB (both ends)"),
            Scenario::Bulk8,
            cpu_per_gib,
        ),
        (
            format!("{BULK_STREAMS} streams, peak RSS MiB"),
            Scenario::Bulk8,
            rss_mib,
        ),
        (
            format!(
                "sequential open + 1-byte echo + close ({}), per second",
                p.ops
            ),
            Scenario::Rr,
            ops_per_s,
        ),
        (
            "sequential open + echo + close, CPU µs per open (both ends)".into(),
            Scenario::Rr,
            cpu_us_per_op,
        ),
        (
            format!(
                "pipelined opens: {POPEN_TASKS} tasks at once, each open + 1-byte echo + close \
                 in sequence ({} in all), opens/s",
                fmt_value(p.opens as f64)
            ),
            Scenario::Popen,
            ops_per_s,
        ),
        (
            "pipelined opens, CPU µs per open (both ends)".into(),
            Scenario::Popen,
            cpu_us_per_op,
        ),
        (
            format!(
                "{} idle streams (both ends), peak RSS MiB",
                fmt_value(p.idle as f64)
            ),
            Scenario::Idle,
            rss_mib,
        ),
        (
            format!(
                "{} idle streams, opened per second (64 openers)",
                fmt_value(p.idle as f64)
            ),
            Scenario::Idle,
            ops_per_s,
        ),
        (
            format!(
                "pingpong, 1-byte request and reply on one stream ({}), round trips/s",
                p.ops
            ),
            Scenario::Pp,
            ops_per_s,
        ),
        (
            "pingpong, CPU µs per round trip (both ends)".into(),
            Scenario::Pp,
            cpu_us_per_op,
        ),
        (
            format!(
                "pingpong beside {} parked idle streams, round trips/s",
                fmt_value(parked() as f64)
            ),
            Scenario::PpParked,
            ops_per_s,
        ),
        (
            format!(
                "pingpong beside {} parked, CPU µs per round trip",
                fmt_value(parked() as f64)
            ),
            Scenario::PpParked,
            cpu_us_per_op,
        ),
    ];
    println!();
    println!(
        "## smux end-to-end benchmark (loopback TCP, {} of {} run{} per case{})",
        if o.reps > 1 { "medians" } else { "results" },
        o.reps,
        if o.reps == 1 { "" } else { "s" },
        if o.smoke {
            ", SMOKE sizes: not for comparison"
        } else {
            ""
        }
    );
    println!(
        "tokio peers: {}; pingpong client: {}; smol peers: smol::block_on.",
        if tokio_current_thread() {
            "current-thread runtime (SMUX_BENCH_TOKIO=current)"
        } else {
            "multi-thread runtime, 2 workers"
        },
        if body_on_main() {
            "in the block_on future (SMUX_BENCH_BODY=main)"
        } else {
            "in a spawned task"
        }
    );
    println!();
    let mut header = String::from("| test |");
    let mut rule = String::from("|---|");
    for peer in PEERS {
        header.push_str(&format!(" {} |", peer.header()));
        rule.push_str("---:|");
    }
    println!("{header}\n{rule}");
    for (name, sc, metric) in &rows {
        let mut line = format!("| {name} |");
        for peer in PEERS {
            line.push_str(&format!(" {} |", fmt_cell(r.cell(*sc, peer, *metric))));
        }
        println!("{line}");
    }
    println!();
    println!(
        "Bulk: client writes, server reads and discards; CPU is user+system of the whole \
         process (both ends) during the transfer. Peak RSS: VmHWM of the process (Go: \
         ru_maxrss), both ends."
    );
    if !r.once.is_empty() {
        println!(
            "¹ one run only: yamux counts its unacknowledged streams over all streams on each \
             open, so many idle streams take long (100,000: 76 s in a trial)."
        );
    }
    if !r.too_slow.is_empty() {
        println!(
            "² not run: async_smux walks all its streams on each frame and flush (100,000 \
             streams: ~500 s in a trial); SMUX_BENCH_FILTER=idle/async_smux runs it."
        );
    }

    // Ratios to the targets of issues 5, 11 and 21, for each runtime of ours.
    let idle_name = |bound: &str| {
        format!(
            "{} idle streams: peak RSS MiB of ours v1 (both ends) ≤ {bound}",
            fmt_value(p.idle as f64)
        )
    };
    let issue5 = [
        Target::new(
            "one stream: ours v1 / raw TCP ≥ 0.9".into(),
            Scenario::Bulk1,
            Base::Tcp,
            gib_per_s,
            0.9,
        ),
        Target::new(
            "one stream: ours v1 / Go v1 ≥ 1.2".into(),
            Scenario::Bulk1,
            Base::Peer(Peer::Go(1)),
            gib_per_s,
            1.2,
        ),
        Target {
            ours: v2,
            ..Target::new(
                "one stream: ours v2 (default config) / Go v2 ≥ 1.5".into(),
                Scenario::Bulk1,
                Base::Peer(Peer::Go(2)),
                gib_per_s,
                1.5,
            )
        },
        Target::new(
            format!("{BULK_STREAMS} streams: ours v1 / async_smux ≥ 1.5"),
            Scenario::Bulk8,
            Base::Peer(Peer::AsyncSmux),
            gib_per_s,
            1.5,
        ),
        Target::new(
            "open+echo+close: ours v1 / Go v1 ≥ 1.0".into(),
            Scenario::Rr,
            Base::Peer(Peer::Go(1)),
            ops_per_s,
            1.0,
        ),
        Target::at_most(
            "CPU s/GiB, one stream: ours v1 / async_smux ≤ 0.6".into(),
            Scenario::Bulk1,
            Base::Peer(Peer::AsyncSmux),
            cpu_per_gib,
            0.6,
        ),
        Target::at_most(
            format!("CPU s/GiB, {BULK_STREAMS} streams: ours v1 / async_smux ≤ 0.6"),
            Scenario::Bulk8,
            Base::Peer(Peer::AsyncSmux),
            cpu_per_gib,
            0.6,
        ),
        Target::at_most(idle_name("100"), Scenario::Idle, Base::One, rss_mib, 100.0),
    ];
    let issue11 = [
        Target {
            base_sc: Scenario::Pp,
            ..Target::new(
                "pingpong beside parked idle streams / pingpong, ours v1 ≥ 0.9".into(),
                Scenario::PpParked,
                Base::Ours,
                ops_per_s,
                0.9,
            )
        },
        Target::new(
            "pingpong: ours v1 / raw TCP ≥ 0.95".into(),
            Scenario::Pp,
            Base::Tcp,
            ops_per_s,
            0.95,
        ),
        Target::new(
            "pingpong: ours v1 / Go v1 ≥ 1.0".into(),
            Scenario::Pp,
            Base::Peer(Peer::Go(1)),
            ops_per_s,
            1.0,
        ),
        Target::new(
            "open+echo+close: ours v1 / async_smux ≥ 1.2".into(),
            Scenario::Rr,
            Base::Peer(Peer::AsyncSmux),
            ops_per_s,
            1.2,
        ),
        Target::new(
            "open+echo+close: ours v1 / Go v1 ≥ 1.5".into(),
            Scenario::Rr,
            Base::Peer(Peer::Go(1)),
            ops_per_s,
            1.5,
        ),
        Target::new(
            "8 streams: ours v1 / yamux 0.14 ≥ 1.0".into(),
            Scenario::Bulk8,
            Base::Peer(Peer::Yamux),
            gib_per_s,
            1.0,
        ),
    ];
    let issue21 = [
        Target::new(
            "pingpong: ours v1 / raw TCP ≥ 0.95".into(),
            Scenario::Pp,
            Base::Tcp,
            ops_per_s,
            0.95,
        ),
        Target::new(
            "open+echo+close: ours v1 / async_smux ≥ 1.2".into(),
            Scenario::Rr,
            Base::Peer(Peer::AsyncSmux),
            ops_per_s,
            1.2,
        ),
        Target::new(
            "open+echo+close: ours v1 / Go v1 ≥ 1.5".into(),
            Scenario::Rr,
            Base::Peer(Peer::Go(1)),
            ops_per_s,
            1.5,
        ),
        Target::new(
            "pipelined opens: ours v1 / best of async_smux, yamux, Go v1, Go v2 ≥ 1.0".into(),
            Scenario::Popen,
            Base::Best(&[Peer::AsyncSmux, Peer::Yamux, Peer::Go(1), Peer::Go(2)]),
            ops_per_s,
            1.0,
        ),
        Target::at_most(
            "CPU µs per round trip (pingpong): ours v1 / async_smux ≤ 1.0".into(),
            Scenario::Pp,
            Base::Peer(Peer::AsyncSmux),
            cpu_us_per_op,
            1.0,
        ),
        Target::at_most(
            "CPU s/GiB, one stream: ours v1 / raw TCP ≤ 1.1".into(),
            Scenario::Bulk1,
            Base::Tcp,
            cpu_per_gib,
            1.1,
        ),
        Target::at_most(idle_name("50"), Scenario::Idle, Base::One, rss_mib, 50.0),
    ];
    for (issue, targets) in [
        ("5", &issue5[..]),
        ("11", &issue11[..]),
        ("21", &issue21[..]),
    ] {
        println!();
        println!("### Ratios to the targets (issue {issue}), same run");
        println!();
        println!("| target | ours tokio | ours smol |\n|---|---:|---:|");
        for t in targets {
            let mut line = format!("| {} |", t.name);
            for rt in [Runtime::Tokio, Runtime::Smol] {
                line.push_str(&format!(" {} |", t.cell(r, rt)));
            }
            println!("{line}");
        }
    }
    println!(
        "\nraw TCP is that of the same runtime (tokio rows: raw TCP tokio; smol rows: raw TCP \
         smol); async_smux, yamux and Go are the same columns for both."
    );
    if o.smoke {
        println!("\n(smoke sizes: the ratios mean nothing here)");
    }
}

fn parent(args: &[String]) -> bool {
    let o = options(args);
    let slow_idle = |sc: Scenario, p: Peer| {
        (sc == Scenario::Idle && o.params.idle > IDLE_SLOW_ABOVE)
            .then(|| p.idle_slow())
            .flatten()
    };
    let mut too_slow = Vec::new();
    let selected: Vec<(Scenario, Peer)> = SCENARIOS
        .into_iter()
        .flat_map(|sc| PEERS.into_iter().map(move |p| (sc, p)))
        .filter(|&(sc, p)| p.runs(sc))
        .filter(|&(sc, p)| {
            let label = case_label(sc, p);
            o.filters.is_empty() || o.filters.iter().any(|f| label.contains(f.as_str()))
        })
        .filter(|&(sc, p)| {
            let on_request = slow_idle(sc, p) == Some(IdleSlow::OnRequest);
            if on_request && !o.filters.iter().any(|f| *f == case_label(sc, p)) {
                too_slow.push((sc, p));
                return false;
            }
            true
        })
        .collect();
    eprintln!(
        "e2e: {} cases x {} run{}; {} bytes per bulk case, {} round trips, {} idle streams, \
         {} pipelined opens{}",
        selected.len(),
        o.reps,
        if o.reps == 1 { "" } else { "s" },
        o.params.bytes,
        o.params.ops,
        o.params.idle,
        o.params.opens,
        if o.smoke { " (smoke)" } else { "" }
    );

    let mut go_bin: Option<PathBuf> = None;
    let mut go_skipped = false;
    if selected.iter().any(|(_, p)| matches!(p, Peer::Go(_))) {
        match common::harness::go_peer() {
            Ok(path) => go_bin = Some(path),
            Err(_) => go_skipped = true,
        }
    }

    let mut results = Results {
        samples: BTreeMap::new(),
        failed: BTreeMap::new(),
        selected: selected.clone(),
        too_slow,
        once: selected
            .iter()
            .copied()
            .filter(|&(sc, p)| slow_idle(sc, p) == Some(IdleSlow::Once))
            .collect(),
        go_skipped,
    };
    let started = Instant::now();
    // Run-major order: the repetitions of a case are spread over the whole run, so a burst of
    // load from elsewhere on the machine does not hit all of them.
    for rep in 1..=o.reps {
        for &(sc, peer) in &selected {
            if matches!(peer, Peer::Go(_)) && go_bin.is_none() {
                continue;
            }
            if results.failed.contains_key(&(sc, peer))
                || (rep > 1 && results.once.contains(&(sc, peer)))
            {
                continue;
            }
            let label = case_label(sc, peer);
            let cmd = case_command(sc, peer, o.params, go_bin.as_deref());
            match run_child(cmd, o.case_timeout) {
                Outcome::Done(sample, _) => {
                    let summary = match sc {
                        Scenario::Bulk1 | Scenario::Bulk8 => format!(
                            "{:.2} GiB/s, {:.2} CPU s/GiB",
                            gib_per_s(&sample),
                            cpu_per_gib(&sample)
                        ),
                        Scenario::Idle => format!("{:.0}/s", ops_per_s(&sample)),
                        Scenario::Rr | Scenario::Popen => format!(
                            "{:.0}/s, {:.1} CPU µs/open",
                            ops_per_s(&sample),
                            cpu_us_per_op(&sample)
                        ),
                        Scenario::Pp | Scenario::PpParked => format!(
                            "{:.0} RTT/s, {:.1} CPU µs/RTT",
                            ops_per_s(&sample),
                            cpu_us_per_op(&sample)
                        ),
                    };
                    eprintln!(
                        "  [{:>5.1}s] run {rep}/{} {label:<20} {summary}, peak RSS {:.1} MiB",
                        started.elapsed().as_secs_f64(),
                        o.reps,
                        rss_mib(&sample)
                    );
                    results.samples.entry((sc, peer)).or_default().push(sample);
                }
                Outcome::Failed(why) => {
                    eprintln!("  run {rep}/{} {label}: FAILED: {why}", o.reps);
                    results.failed.insert((sc, peer), why);
                }
            }
        }
    }
    print_tables(&results, &o);
    println!(
        "\n({} cases in {:.0} s)",
        selected.len(),
        started.elapsed().as_secs_f64()
    );
    if !results.failed.is_empty() {
        println!("\nFAILED cases:");
        for ((sc, peer), why) in &results.failed {
            println!(
                "- {}: {}",
                case_label(*sc, *peer),
                why.lines().next().unwrap_or("")
            );
        }
    }
    results.failed.is_empty()
}

fn child(args: &[String]) {
    let usage = "--case SCENARIO PEER BYTES OPS IDLE OPENS";
    let get = |i: usize| args.get(i).unwrap_or_else(|| panic!("usage: {usage}"));
    let sc = Scenario::parse(get(0)).unwrap_or_else(|| panic!("unknown scenario {}", get(0)));
    let peer = Peer::parse(get(1)).unwrap_or_else(|| panic!("unknown peer {}", get(1)));
    let num = |i: usize| -> u64 { get(i).parse().unwrap_or_else(|e| panic!("{usage}: {e}")) };
    let p = Params {
        bytes: num(2),
        ops: num(3),
        idle: num(4),
        opens: num(5),
    };
    let sample = run_case(sc, peer, p);
    println!("{}", sample.line());
    // Skip the teardown of whatever the case still holds (the idle streams).
    std::process::exit(0);
}

fn main() {
    common::harness::main(child, parent);
}
