//! The mixed cases: ours (smux-tokio, `MuxConfig::default()` with the case's protocol
//! version) on one end of the connection, the Go peer on the other (`-mode bench -role
//! server` or `-role client`, `interop/go-peer/link.go`), the relay between them. Ours runs in
//! this process, on the same runtime as in the cases of ours against itself.
//!
//! What is measured is what the same-peer cases measure:
//!
//! - `inter`: the client times the round trips and counts the download, wherever it runs
//!   (ours: [`inter_client`]; Go: its `result` line, passed on);
//! - `bulk`: from the client's first open until the server read the last byte. Client and
//!   server are in two processes here, so each notes its instant as Unix time (the same
//!   clock for both, on one host): the Go server prints `read bytes=N last_ns=T` per stream,
//!   the Go client `start_ns=T` in its `result` line.

use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smux_test_support::netem::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cases::{Case, Params};
use crate::common::bulk::{send_stream, CHUNK};
use crate::common::harness::{cpu_seconds, result_fields};
use crate::common::peers::{tokio_runtime, Handler, Opener, OursTokio, Rt};
use crate::run::{go_command, inter_client, inter_handler, ours_config, GoPeer, LinkResult};

/// Now, as Unix time in ns (what Go's `time.Now().UnixNano()` gives).
fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as u64
}

/// The seconds from `start_ns` to `end_ns` (Unix times in ns).
fn secs_between(start_ns: u64, end_ns: u64) -> f64 {
    assert!(
        end_ns >= start_ns,
        "bulk: the server's last read ({end_ns} ns) is before the client's start ({start_ns} ns)"
    );
    (end_ns - start_ns) as f64 / 1e9
}

/// `tokio-vN>go`: ours is the client, the Go peer the server (`-role server`, listening on
/// 127.0.0.1:0); the relay goes towards the Go peer's address and ours connects to the relay.
pub fn ours_client(case: Case, p: Params, version: u8, go: &Path) -> String {
    let sc = case.scenario;
    let mut cmd = go_command(go, case, p, version);
    cmd.args(["-role", "server", "-addr", "127.0.0.1:0"]);
    let mut peer = GoPeer::start(cmd);
    let relay = Relay::start(peer.listening(), case.path.spec()).expect("start the relay");
    let socket = std::net::TcpStream::connect(relay.addr()).expect("connect to the relay");
    socket.set_nodelay(true).expect("TCP_NODELAY");
    socket.set_nonblocking(true).expect("nonblocking");
    let rt = tokio_runtime(false, 2);
    let run = rt.block_on(async move {
        let socket = tokio::net::TcpStream::from_std(socket).expect("register with tokio");
        let client = smux_tokio::Mux::client(socket, ours_config(version)).expect("config");
        let open: Opener<OursTokio> = Arc::new(move || {
            let client = client.clone();
            Box::pin(async move { client.connect().await })
        });
        if sc.is_bulk() {
            let (start_ns, cpu) = bulk_client(open, sc.streams(), p.bytes).await;
            (0.0, 0, cpu, Vec::new(), start_ns)
        } else {
            let (secs, units, cpu, lat) = inter_client(Rt::Tokio, sc.streams(), p, open).await;
            (secs, units, cpu, lat, 0)
        }
    });
    let (mut secs, mut units, cpu, lat_us, start_ns) = run;
    if sc.is_bulk() {
        // Every stream has seen the Go server's close, which it sends after its line.
        let mut last_ns = start_ns;
        units = 0;
        for _ in 0..sc.streams() {
            let line = peer
                .next_line("read ")
                .expect("the Go server's `read` line");
            let field = |key: &str| -> u64 {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no {key} in `{line}`"))
            };
            units += field("bytes");
            last_ns = last_ns.max(field("last_ns"));
        }
        assert_eq!(units, p.bytes, "bulk: bytes the Go server read");
        secs = secs_between(start_ns, last_ns);
    }
    rt.shutdown_background();
    let status = peer.close();
    let (up, down) = relay.relayed();
    eprintln!("relay: {up} bytes client → server, {down} bytes server → client");
    assert!(status.success(), "the Go peer failed: {status}");
    LinkResult::measured(secs, units, cpu, lat_us).line()
}

/// `go>tokio-vN`: the Go peer is the client (`-role client`, dialing the relay), ours the
/// server, accepting from its listener what the relay connects.
pub fn ours_server(case: Case, p: Params, version: u8, go: &Path) -> String {
    let sc = case.scenario;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let relay = Relay::start(listener.local_addr().expect("local_addr"), case.path.spec())
        .expect("start the relay");
    let mut cmd = go_command(go, case, p, version);
    cmd.args(["-role", "client", "-addr"])
        .arg(relay.addr().to_string());
    let mut peer = GoPeer::start(cmd);
    // Accepted while watching the Go peer: if it fails before it connects, that is its
    // failure, not a hang.
    listener.set_nonblocking(true).expect("nonblocking");
    let socket = loop {
        match listener.accept() {
            Ok((socket, _)) => break socket,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(status) = peer.try_wait() {
                    panic!("the Go client ended before it connected: {status}");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    socket.set_nodelay(true).expect("TCP_NODELAY");
    socket.set_nonblocking(true).expect("nonblocking");
    let (done_tx, done_rx) = mpsc::channel();
    let handler: Handler<OursTokio> = if sc.is_bulk() {
        bulk_handler(done_tx)
    } else {
        inter_handler()
    };
    let rt = tokio_runtime(false, 2);
    rt.block_on(async move {
        let socket = tokio::net::TcpStream::from_std(socket).expect("register with tokio");
        let server = smux_tokio::Mux::server(socket, ours_config(version)).expect("config");
        tokio::spawn(async move {
            while let Ok(st) = server.accept().await {
                tokio::spawn(handler(st));
            }
        });
    });
    // The server runs on the runtime's workers meanwhile.
    let line = peer.next_line("result ").expect("the Go client's result");
    let mut result = LinkResult::parse(&line)
        .unwrap_or_else(|| panic!("unreadable result line of the Go client: {line}"));
    if sc.is_bulk() {
        let start_ns: u64 = result_fields(&line)
            .and_then(|f| f.get("start_ns")?.parse().ok())
            .unwrap_or_else(|| panic!("no start_ns in `{line}`"));
        // The Go client's result comes once it wrote everything, before the server read it
        // all: wait for every stream's end here.
        let mut last_ns = start_ns;
        let mut units = 0;
        for _ in 0..sc.streams() {
            let (n, at) = done_rx
                .recv()
                .expect("the bulk handlers ended")
                .unwrap_or_else(|why| panic!("{why}"));
            units += n;
            last_ns = last_ns.max(at);
        }
        assert_eq!(units, p.bytes, "bulk: bytes ours read");
        result.sample.secs = secs_between(start_ns, last_ns);
        result.sample.units = units;
    }
    rt.shutdown_background();
    let status = peer.close();
    let (up, down) = relay.relayed();
    eprintln!("relay: {up} bytes client → server, {down} bytes server → client");
    assert!(status.success(), "the Go peer failed: {status}");
    result.line()
}

/// The client's side of bulk with ours (as `common::bulk::bulk` does it): `k` streams at
/// once, each opened, given its share of `total` in [`CHUNK`] writes and half-closed, then
/// read until the server's end. Returns when the first was opened (Unix ns) and the CPU
/// seconds of this process.
async fn bulk_client(open: Opener<OursTokio>, k: usize, total: u64) -> (u64, f64) {
    let per = total / k as u64;
    let cpu0 = cpu_seconds();
    let start_ns = unix_ns();
    let writers: Vec<_> = (0..k)
        .map(|_| {
            let open = open.clone();
            tokio::spawn(async move {
                send_stream(open().await.expect("bulk: open"), per).await;
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("bulk: a writer panicked");
    }
    (start_ns, cpu_seconds() - cpu0)
}

/// What a bulk stream of ours as the server read: the bytes and when the last came (Unix
/// ns), or why it failed.
type BulkRead = Result<(u64, u64), String>;

/// The server's side of bulk with ours: every stream is read to its end (reported to `done`)
/// and then shut down.
fn bulk_handler(done: mpsc::Sender<BulkRead>) -> Handler<OursTokio> {
    Arc::new(move |mut s: OursTokio| {
        let done = done.clone();
        Box::pin(async move {
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0u64;
            let mut last = unix_ns();
            let read = loop {
                match s.read(&mut buf).await {
                    Ok(0) => break Ok((n, last)),
                    Ok(m) => {
                        n += m as u64;
                        last = unix_ns();
                    }
                    Err(e) => break Err(format!("bulk: server read after {n} bytes: {e}")),
                }
            };
            let _ = done.send(read);
            let _ = s.shutdown().await;
        })
    })
}
