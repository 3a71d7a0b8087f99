//! End to end against Debian's kcptun (`apt-get install kcptun`: kcptun 20210922, smux 1.5.16,
//! kcp-go 5.6.1), for smux versions 1 and 2:
//!
//! - our client -> Debian `kcptun-server` -> a TCP echo,
//! - Debian `kcptun-client` -> our server -> the echo;
//!
//! 100 concurrent connections of 1 MiB each, checked byte for byte; a half-close passed on;
//! an idle gap of several keepalive intervals (`--keepalive 1`); a killed `kcptun-server`.
//! The binaries missing is a failure (install them), never a skip.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use smux_kcptun::tunnel::{self, Client, Options, Role};
use smux_kcptun::KcpListener;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const CONNECTIONS: usize = 100;
const PER_CONNECTION: usize = 1024 * 1024;

/// The flags both ends run with: kcptun's, minus what this crate does not do.
fn common_flags(smuxver: u8) -> Vec<String> {
    [
        "--crypt",
        "none",
        "--datashard",
        "0",
        "--parityshard",
        "0",
        "--nocomp",
        "--keepalive",
        "1",
        "--quiet",
        "--smuxver",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([smuxver.to_string()])
    .collect()
}

fn require(binary: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{binary}` is not installed: these tests need Debian's kcptun \
         (`apt-get install kcptun`; scripts/test.sh installs it)"
    );
}

fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_tcp_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts a Debian kcptun binary and waits for its log line `ready_line`; its log goes on
/// being read (and echoed with a prefix, for failures) in the background.
async fn spawn_kcptun(binary: &str, args: Vec<String>, ready_line: &str) -> Child {
    require(binary);
    let mut child = Command::new(binary)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let name = binary.to_string();
    let ready = timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(ready_line) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "{binary} {args:?} did not start");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{name}] {line}");
        }
    });
    child
}

/// A TCP echo server: each connection gets back what it sends, then a FIN.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                tokio::io::copy(&mut r, &mut w).await?;
                w.shutdown().await
            });
        }
    });
    addr
}

/// The bytes connection `i` sends: different for every connection and offset.
fn payload(i: usize) -> Vec<u8> {
    let mut x = (i as u32).wrapping_mul(0x9e37_79b9) | 1;
    (0..PER_CONNECTION)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sends `payload(i)` through `entry` while reading the echo; checks it byte for byte.
async fn echo_once(entry: SocketAddr, i: usize) {
    let tcp = TcpStream::connect(entry).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut r, mut w) = tcp.into_split();
    let data = payload(i);
    let sent = data.clone();
    let writer = tokio::spawn(async move { w.write_all(&sent).await.map(|_| w) });
    let mut echo = vec![0u8; data.len()];
    r.read_exact(&mut echo)
        .await
        .unwrap_or_else(|e| panic!("connection {i}: echo cut short: {e}"));
    let _w = writer.await.unwrap().unwrap();
    if let Some(at) = echo.iter().zip(&data).position(|(a, b)| a != b) {
        panic!("connection {i}: echo differs at byte {at}");
    }
}

async fn many_connections(entry: SocketAddr) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|i| tokio::spawn(echo_once(entry, i)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "{CONNECTIONS} x {} KiB echoed in {:?}",
        PER_CONNECTION / 1024,
        started.elapsed()
    );
}

/// A target that tells the test what each connection sent before its FIN.
async fn recording_target() -> (SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                if tcp.read_to_end(&mut got).await.is_ok() {
                    let _ = tx.send(got).await;
                }
            });
        }
    });
    (addr, rx)
}

/// A target that greets, half-closes, then waits for the client's FIN.
async fn greeting_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                tcp.write_all(b"hello, then FIN").await?;
                tcp.shutdown().await?;
                let mut rest = Vec::new();
                tcp.read_to_end(&mut rest).await
            });
        }
    });
    addr
}

/// Our client's listener, serving through a kcptun server at `server`.
async fn our_client(
    server: SocketAddr,
    smuxver: u8,
    extra: &[&str],
) -> (SocketAddr, std::sync::Arc<Client>) {
    let mut args = vec![
        "-l".to_string(),
        "127.0.0.1:0".into(),
        "-r".into(),
        server.to_string(),
    ];
    args.extend(common_flags(smuxver));
    args.extend(extra.iter().map(|s| s.to_string()));
    let options = Options::parse(Role::Client, args).unwrap();
    let listener = TcpListener::bind(options.listen).await.unwrap();
    let entry = listener.local_addr().unwrap();
    let client = Client::new(options);
    tokio::spawn(client.clone().serve(listener));
    (entry, client)
}

/// Our server on a fresh UDP port, dialing `target`.
async fn our_server(target: SocketAddr, smuxver: u8, extra: &[&str]) -> SocketAddr {
    let mut args = vec![
        "-l".to_string(),
        "127.0.0.1:0".into(),
        "-t".into(),
        target.to_string(),
    ];
    args.extend(common_flags(smuxver));
    args.extend(extra.iter().map(|s| s.to_string()));
    let options = Options::parse(Role::Server, args).unwrap();
    let listener = KcpListener::bind(options.listen, options.kcp.clone())
        .await
        .unwrap();
    let addr = listener.local_addr();
    tokio::spawn(tunnel::serve(listener, options));
    addr
}

/// A Debian kcptun-server on a free loopback UDP port. The port is found by binding and
/// dropping a socket, so another socket may take it before kcptun does: then kcptun exits,
/// and this tries another port.
async fn debian_server(target: SocketAddr, smuxver: u8) -> (SocketAddr, Child) {
    for _ in 0..5 {
        let udp = free_udp_port();
        let mut args = vec![
            "-l".to_string(),
            udp.to_string(),
            "-t".into(),
            target.to_string(),
        ];
        args.extend(common_flags(smuxver));
        let mut child = spawn_kcptun("kcptun-server", args, "key derivation done").await;
        // kcptun-server logs before it binds: wait for its socket to show up, bound to
        // 127.0.0.1 (0100007F) at that port.
        let entry = format!("0100007F:{:04X}", udp.port());
        let bound = timeout(Duration::from_secs(10), async {
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    return false;
                }
                let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
                let local = |l: &str| l.split_whitespace().nth(1).map(str::to_string);
                if table.lines().filter_map(local).any(|a| a == entry) {
                    // Bound by kcptun, unless it is about to exit for having lost the race.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if child.try_wait().ok().flatten().is_none() {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if bound == Ok(true) {
            return (udp, child);
        }
    }
    panic!("kcptun-server could not bind a loopback UDP port in 5 tries");
}

async fn debian_client(server: SocketAddr, smuxver: u8) -> (SocketAddr, Child) {
    let tcp = free_tcp_port();
    let mut args = vec![
        "-l".to_string(),
        tcp.to_string(),
        "-r".into(),
        server.to_string(),
    ];
    args.extend(common_flags(smuxver));
    let child = spawn_kcptun("kcptun-client", args, "listening on").await;
    (tcp, child)
}

async fn fin_forward(entry: SocketAddr, recorded: &mut tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let data = payload(7)[..200_000].to_vec();
    let mut tcp = TcpStream::connect(entry).await.unwrap();
    tcp.write_all(&data).await.unwrap();
    tcp.shutdown().await.unwrap();
    let got = timeout(Duration::from_secs(20), recorded.recv())
        .await
        .expect("the target never saw the FIN")
        .unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the target got other bytes than were sent");
}

async fn fin_backward(entry: SocketAddr) {
    let mut tcp = TcpStream::connect(entry).await.unwrap();
    let mut got = Vec::new();
    timeout(Duration::from_secs(20), tcp.read_to_end(&mut got))
        .await
        .expect("the app never saw the target's FIN")
        .unwrap();
    assert_eq!(got, b"hello, then FIN");
}

/// The idle gap: several of kcptun's keepalive intervals (`--keepalive 1`) with no traffic,
/// our side closing a session that hears nothing for 3 s; the connection still works after.
async fn idle_gap(entry: SocketAddr) {
    let mut tcp = TcpStream::connect(entry).await.unwrap();
    tcp.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"before");
    tokio::time::sleep(Duration::from_secs(6)).await;
    tcp.write_all(b"after!").await.unwrap();
    timeout(Duration::from_secs(10), tcp.read_exact(&mut buf))
        .await
        .expect("no echo after the idle gap")
        .expect("the connection died in the idle gap");
    assert_eq!(&buf, b"after!");
}

/// Our side gives up on a session that hears nothing for 3 s (kcptun's own is Go smux's 30 s):
/// a 6 s gap survives only if kcptun's keepalives (every second) get through.
const SHORT_TIMEOUT: &[&str] = &["--keepalive-timeout", "3"];

async fn our_client_to_debian_server(smuxver: u8) {
    let echo = echo_server().await;
    let (udp, _server) = debian_server(echo, smuxver).await;
    let (entry, _client) = our_client(udp, smuxver, &[]).await;
    many_connections(entry).await;
    // A session of its own with the short timeout (under the bulk load above, KCP's
    // retransmission backoff may well leave 3 s without a frame).
    let (entry_idle, _idle) = our_client(udp, smuxver, SHORT_TIMEOUT).await;
    idle_gap(entry_idle).await;

    let (recording, mut recorded) = recording_target().await;
    let (udp2, _server2) = debian_server(recording, smuxver).await;
    let (entry2, _c2) = our_client(udp2, smuxver, &[]).await;
    fin_forward(entry2, &mut recorded).await;

    let greeting = greeting_target().await;
    let (udp3, _server3) = debian_server(greeting, smuxver).await;
    let (entry3, _c3) = our_client(udp3, smuxver, &[]).await;
    fin_backward(entry3).await;
}

async fn debian_client_to_our_server(smuxver: u8) {
    let echo = echo_server().await;
    let udp = our_server(echo, smuxver, &[]).await;
    let (entry, _client) = debian_client(udp, smuxver).await;
    many_connections(entry).await;
    let udp_idle = our_server(echo, smuxver, SHORT_TIMEOUT).await;
    let (entry_idle, _idle) = debian_client(udp_idle, smuxver).await;
    idle_gap(entry_idle).await;

    let (recording, mut recorded) = recording_target().await;
    let udp2 = our_server(recording, smuxver, &[]).await;
    let (entry2, _c2) = debian_client(udp2, smuxver).await;
    fin_forward(entry2, &mut recorded).await;

    let greeting = greeting_target().await;
    let udp3 = our_server(greeting, smuxver, &[]).await;
    let (entry3, _c3) = debian_client(udp3, smuxver).await;
    fin_backward(entry3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_through_debian_kcptun_server_v1() {
    our_client_to_debian_server(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_through_debian_kcptun_server_v2() {
    our_client_to_debian_server(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_kcptun_client_through_our_server_v1() {
    debian_client_to_our_server(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_kcptun_client_through_our_server_v2() {
    debian_client_to_our_server(2).await;
}

/// A kcptun server killed under an open stream: our stream's read fails within seconds with
/// an error that names the cause, rather than waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_kcptun_server_is_a_clear_error_not_a_hang() {
    let echo = echo_server().await;
    let (udp, mut server) = debian_server(echo, 2).await;
    let (_entry, client) = our_client(udp, 2, &[]).await;
    let mut stream = client.open().await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    stream.flush().await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    server.kill().await.unwrap();
    let started = Instant::now();
    let r = timeout(Duration::from_secs(15), stream.read(&mut buf))
        .await
        .expect("the read hung after the kcptun server was killed");
    let e = r.expect_err("a read after the server was killed returned data or EOF");
    let text = format!("{e}");
    eprintln!("after {:?}: {text}", started.elapsed());
    assert!(
        text.contains("unreachable") || text.contains("timed out") || text.contains("keepalive"),
        "the error does not say what happened: {text}"
    );
}
