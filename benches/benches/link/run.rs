//! One run of a case, in the child process: the link emulator between the client's and the
//! server's socket, the peer on them, the scenario, and the `result` line.
//!
//! The Rust peers run client and server in this process, the relay on its own thread. The Go
//! peer runs as a process of its own (`-mode bench -via -`): it prints its server's address,
//! this process starts the relay towards it and answers with the relay's address on the
//! peer's stdin, and passes its `result` line on. The mixed cases (ours against the Go peer)
//! are in `mixed.rs`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smux_test_support::netem::Relay;
use smux_tokio::{MuxConfig, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cases::{Case, Impl, Params, Scenario, INTERVAL};
use crate::common::bulk::{bulk, CHUNK};
use crate::common::harness::{cpu_seconds, status_kib, Sample};
use crate::common::peers::{
    setup_async_smux, setup_ours_smol, setup_ours_tokio, setup_yamux, tokio_runtime, Handler, Io,
    Opener, Rt, SocketPair,
};

/// `TCP_NOTSENT_LOWAT` of the `+lowat` columns: 16 KiB.
pub const LOWAT: u32 = 16 * 1024;
/// How long the interactive client waits for the last replies after the measurement.
const REPLY_GRACE: Duration = Duration::from_secs(30);

/// What one run measured: the fields of every `result` line, and for the interactive
/// scenarios every round trip in µs (the field `lat_us`).
pub struct LinkResult {
    /// Bulk: time until the server read everything, and the bytes; interactive: the length of
    /// the measurement and the download's bytes during it.
    pub sample: Sample,
    /// Round trips, µs, in order.
    pub lat_us: Vec<u64>,
}

impl LinkResult {
    /// A result measured in this process (its peak memory read now).
    pub fn measured(secs: f64, units: u64, cpu: f64, lat_us: Vec<u64>) -> LinkResult {
        LinkResult {
            sample: Sample {
                secs,
                units,
                cpu,
                hwm_kib: status_kib("VmHWM"),
            },
            lat_us,
        }
    }

    /// The `result` line.
    pub fn line(&self) -> String {
        let mut line = self.sample.line();
        if !self.lat_us.is_empty() {
            let lat: Vec<String> = self.lat_us.iter().map(u64::to_string).collect();
            line.push_str(&format!(" lat_us={}", lat.join(",")));
        }
        line
    }

    /// Parses a `result` line.
    pub fn parse(line: &str) -> Option<LinkResult> {
        let sample = Sample::parse(line)?;
        let fields = crate::common::harness::result_fields(line)?;
        let lat_us = match fields.get("lat_us") {
            Some(list) if !list.is_empty() => list
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
            _ => Vec::new(),
        };
        Some(LinkResult { sample, lat_us })
    }
}

/// Runs `case` and returns its `result` line (`go`: the Go peer's executable).
pub fn run_case(case: Case, p: Params, go: Option<&Path>) -> String {
    let go = || go.expect("the Go peer's executable");
    match case.peer.imp {
        Impl::Go(v) => run_go(case, p, v, go()),
        Impl::TokioToGo(v) => crate::mixed::ours_client(case, p, v, go()),
        Impl::GoToTokio(v) => crate::mixed::ours_server(case, p, v, go()),
        _ => run_rust(case, p),
    }
}

/// Ours with protocol `version`, otherwise `MuxConfig::default()`.
pub fn ours_config(version: u8) -> MuxConfig {
    MuxConfig::default().with_version(if version == 1 {
        Version::V1
    } else {
        Version::V2
    })
}

/// A Rust peer: the relay, the connection through it, the scenario.
fn run_rust(case: Case, p: Params) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let relay = Relay::start(listener.local_addr().expect("local_addr"), case.path.spec())
        .expect("start the relay");
    let pair = SocketPair::accept_from(&listener, relay.addr()).expect("connect via the relay");
    if case.peer.lowat {
        for socket in [&pair.client, &pair.server] {
            socket2::SockRef::from(socket)
                .set_tcp_notsent_lowat(LOWAT)
                .expect("TCP_NOTSENT_LOWAT");
        }
    }
    let sc = case.scenario;
    let result = match case.peer.imp {
        Impl::Tokio(v) => tokio_runtime(false, 2).block_on(scenario(Rt::Tokio, sc, p, |h| {
            setup_ours_tokio(ours_config(v), false, pair, h)
        })),
        Impl::Smol(v) => smol::block_on(scenario(Rt::Smol, sc, p, |h| {
            setup_ours_smol(ours_config(v), false, pair, h)
        })),
        Impl::AsyncSmux => tokio_runtime(false, 2)
            .block_on(scenario(Rt::Tokio, sc, p, |h| setup_async_smux(pair, h))),
        Impl::Yamux => tokio_runtime(false, 2)
            .block_on(scenario(Rt::Tokio, sc, p, |h| setup_yamux(None, pair, h))),
        Impl::Go(_) | Impl::TokioToGo(_) | Impl::GoToTokio(_) => {
            unreachable!("the Go peer runs in its own process")
        }
    };
    let (up, down) = relay.relayed();
    eprintln!("relay: {up} bytes client → server, {down} bytes server → client");
    result.line()
}

/// Runs scenario `sc` with the peer that `setup` installs.
async fn scenario<S, F, Fut>(rt: Rt, sc: Scenario, p: Params, setup: F) -> LinkResult
where
    S: Io,
    F: FnOnce(Handler<S>) -> Fut,
    Fut: std::future::Future<Output = Opener<S>>,
{
    let (secs, units, cpu, lat_us) = if sc.is_bulk() {
        let run = bulk(rt, sc.streams(), p.bytes, setup).await;
        (run.secs_read, run.bytes, run.cpu, Vec::new())
    } else {
        inter(rt, sc.streams(), p, setup).await
    };
    LinkResult::measured(secs, units, cpu, lat_us)
}

/// An interactive stream beside `k` downloads: the client opens the download streams (first
/// byte `b`), the server writes [`CHUNK`]s to them without end, the client reads and discards.
/// After the warm-up, a 1-byte request goes out on the interactive stream (first byte `i`)
/// every [`INTERVAL`] for the measurement, on schedule whatever the replies do (open loop),
/// and the server echoes each at once; a round trip counts from its scheduled send time.
///
/// Returns (measurement seconds, download bytes during it, CPU seconds, round trips in µs).
async fn inter<S, F, Fut>(rt: Rt, k: usize, p: Params, setup: F) -> (f64, u64, f64, Vec<u64>)
where
    S: Io,
    F: FnOnce(Handler<S>) -> Fut,
    Fut: std::future::Future<Output = Opener<S>>,
{
    let open = setup(inter_handler()).await;
    inter_client(rt, k, p, open).await
}

/// The server's side of [`inter`]: a stream whose first byte is `b` gets [`CHUNK`]s without
/// end, one whose first byte is `i` is echoed.
pub fn inter_handler<S: Io>() -> Handler<S> {
    Arc::new(|mut s: S| {
        Box::pin(async move {
            let mut kind = [0u8; 1];
            if s.read_exact(&mut kind).await.is_err() {
                return;
            }
            match kind[0] {
                b'b' => {
                    let chunk = vec![0x5au8; CHUNK];
                    while s.write_all(&chunk).await.is_ok() {}
                }
                b'i' => {
                    let mut buf = [0u8; 64];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err()
                                {
                                    break;
                                }
                            }
                        }
                    }
                }
                other => panic!("inter: unknown stream kind {other}"),
            }
        })
    })
}

/// The client's side of [`inter`] on the streams `open` opens; returns what [`inter`] does.
pub async fn inter_client<S: Io>(
    rt: Rt,
    k: usize,
    p: Params,
    open: Opener<S>,
) -> (f64, u64, f64, Vec<u64>) {
    let requests = p.requests();
    let body = async move {
        let received = Arc::new(AtomicU64::new(0));
        let mut downloads = Vec::new();
        for _ in 0..k {
            let mut s = open().await.expect("inter: open a download");
            s.write_all(b"b").await.expect("inter: start a download");
            s.flush().await.expect("inter: flush");
            let received = received.clone();
            downloads.push(rt.spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            }));
        }
        let mut s = open().await.expect("inter: open the interactive stream");
        s.write_all(b"i").await.expect("inter: write");
        s.flush().await.expect("inter: flush");
        rt.sleep_until(Instant::now() + p.warmup).await;

        let cpu0 = cpu_seconds();
        let start = Instant::now();
        let before = received.load(Ordering::Relaxed);
        let (mut r, mut w) = tokio::io::split(s);
        let replies = rt.spawn(async move {
            let mut lat = Vec::with_capacity(requests as usize);
            let mut b = [0u8; 1];
            for i in 0..requests {
                r.read_exact(&mut b).await.expect("inter: read a reply");
                assert_eq!(b[0], i as u8, "inter: reply {i}");
                let due = start + INTERVAL * i;
                lat.push(due.elapsed().as_micros() as u64);
            }
            lat
        });
        for i in 0..requests {
            rt.sleep_until(start + INTERVAL * i).await;
            w.write_all(&[i as u8]).await.expect("inter: request");
            w.flush().await.expect("inter: flush");
        }
        rt.sleep_until(start + INTERVAL * requests).await;
        let bytes = received.load(Ordering::Relaxed) - before;
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let grace = Box::pin(rt.sleep_until(Instant::now() + REPLY_GRACE));
        let lat = match futures::future::select(replies, grace).await {
            futures::future::Either::Left((lat, _)) => lat,
            futures::future::Either::Right(_) => panic!(
                "inter: not every reply of {requests} came within {REPLY_GRACE:?} after the \
                 measurement (downloads still running: {} bytes so far)",
                received.load(Ordering::Relaxed)
            ),
        };
        // The downloads run until the process exits (a smol task ends when dropped).
        std::mem::forget(downloads);
        (secs, bytes, cpu, lat)
    };
    rt.spawn(body).await
}

/// The Go peer through the relay: it prints its server's address (`listening ADDR`), the
/// relay starts towards it, the peer's client dials the relay's address read from stdin.
fn run_go(case: Case, p: Params, version: u8, go: &Path) -> String {
    let mut cmd = go_command(go, case, p, version);
    cmd.args(["-via", "-"]);
    if case.peer.lowat {
        cmd.arg("-lowat").arg(LOWAT.to_string());
    }
    let mut peer = GoPeer::start(cmd);
    let server = peer.listening();
    let relay = Relay::start(server, case.path.spec()).expect("start the relay");
    peer.tell(&relay.addr().to_string());
    let result = peer.next_line("result ");
    // Its stdin is kept open until it exited: the Go peer fails when its stdin closes first.
    let status = peer.wait();
    let (up, down) = relay.relayed();
    eprintln!("relay: {up} bytes client → server, {down} bytes server → client");
    assert!(status.success(), "the Go peer failed: {status}");
    result.expect("the Go peer's result")
}

/// The Go peer's command line for the scenario of `case` (`-mode bench`, protocol `version`,
/// the scenario's flags); the caller adds how it connects.
pub fn go_command(go: &Path, case: Case, p: Params, version: u8) -> Command {
    let mut cmd = Command::new(go);
    // The bench's own time limit applies, not the peer's.
    cmd.args(["-mode", "bench", "-deadline", "3600000"])
        .arg("-version")
        .arg(version.to_string());
    let k = case.scenario.streams().to_string();
    if case.scenario.is_bulk() {
        cmd.args(["-scenario", "bulk", "-conns", &k, "-bytes"])
            .arg(p.bytes.to_string());
    } else {
        cmd.args(["-scenario", "inter", "-conns", &k])
            .arg("-warmup")
            .arg(p.warmup.as_millis().to_string())
            .arg("-measure")
            .arg(p.measure.as_millis().to_string())
            .arg("-interval")
            .arg(INTERVAL.as_millis().to_string());
    }
    cmd
}

/// A running Go peer: its stdin (the peer ends when it closes) and its stdout, line by line.
pub struct GoPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: io::Lines<BufReader<ChildStdout>>,
}

impl GoPeer {
    /// Starts `cmd`, its stderr going to this process's.
    pub fn start(mut cmd: Command) -> GoPeer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        GoPeer {
            child,
            stdin,
            lines,
        }
    }

    /// The next line of its stdout that starts with `prefix` (the lines before it go to
    /// stderr).
    pub fn next_line(&mut self, prefix: &str) -> io::Result<String> {
        for line in self.lines.by_ref() {
            let line = line?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
            eprintln!("go: {line}");
        }
        Err(io::Error::other(format!(
            "the Go peer ended without a `{prefix}` line"
        )))
    }

    /// The address of its server, from its `listening ADDR` line.
    pub fn listening(&mut self) -> SocketAddr {
        let line = self
            .next_line("listening ")
            .expect("the Go peer's server address");
        line["listening ".len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in `{line}`: {e}"))
    }

    /// Writes `line` to its stdin.
    pub fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to the Go peer's stdin");
        stdin.flush().expect("flush the Go peer's stdin");
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for the Go peer")
    }

    /// Waits until it exits by itself, then closes its stdin.
    pub fn wait(mut self) -> ExitStatus {
        let status = self.child.wait().expect("wait for the Go peer");
        drop(self.stdin.take());
        status
    }

    /// Closes its stdin (which ends a peer of `-role`), then waits until it exits.
    pub fn close(mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait for the Go peer")
    }
}
