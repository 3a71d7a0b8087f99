//! Regression test: writers blocked on the send budget, woken over and over by a trickle of
//! input, must not grow the session's memory.
//!
//! A raw peer (a plain `TcpStream` writing frames built by hand) opens 200 streams to our
//! server, whose per-stream task echoes (read, `write_all` back), sends 60,000 bytes on each and
//! never reads our replies: the echo writers fill `max_send_buffer` and block. The peer then
//! sends 8-byte NOP frames, one per write. Every transport readiness wakes every parked task,
//! so each blocked writer polls its write again and again; the session used to push the stream
//! onto its list of send-budget waiters on every such poll (memory growing without end while
//! the budget stayed full). Now a stream waits in that list once, and RSS must stay flat.
//!
//! Duration of the trickle: `SMUX_TRICKLE_SECS` (default 15), for each protocol version.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smux_tokio::{Mux, MuxConfig, MuxStream, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

const STREAMS: u32 = 200;
const PER_STREAM: usize = 60_000;
/// RSS may grow at most this much after warm-up.
const RSS_BOUND: usize = 8 << 20;
const SYN: u8 = 0;
const PSH: u8 = 2;
const NOP: u8 = 3;

/// One case at a time, so that the RSS measurements do not disturb each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn frame(ver: u8, cmd: u8, sid: u32, data: &[u8]) -> Vec<u8> {
    let mut f = vec![ver, cmd];
    f.extend_from_slice(&u16::try_from(data.len()).unwrap().to_le_bytes());
    f.extend_from_slice(&sid.to_le_bytes());
    f.extend_from_slice(data);
    f
}

/// Resident set size of this process, from /proc/self/status.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

fn trickle_duration() -> Duration {
    let secs = std::env::var("SMUX_TRICKLE_SECS")
        .ok()
        .map(|s| s.parse::<u64>().expect("SMUX_TRICKLE_SECS: whole seconds"))
        .unwrap_or(15);
    Duration::from_secs(secs)
}

/// A loopback connection (raw peer end, our end) with small kernel buffers, so that our replies
/// pile up in the session rather than in the kernel.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listen = TcpSocket::new_v4().unwrap();
    let connect = TcpSocket::new_v4().unwrap();
    for s in [&listen, &connect] {
        s.set_send_buffer_size(32 * 1024).unwrap();
        s.set_recv_buffer_size(32 * 1024).unwrap();
    }
    listen.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listen.local_addr().unwrap();
    let listener: TcpListener = listen.listen(16).unwrap();
    let (client, accepted) = tokio::join!(connect.connect(addr), listener.accept());
    let (server, _) = accepted.unwrap();
    (client.unwrap(), server)
}

async fn echo(mut stream: MuxStream<TcpStream>, echoed: Arc<AtomicU64>) {
    let mut buf = vec![0; 64 * 1024];
    // Errors end the task: they come only when the case tears the connection down (the
    // assertions on `echoed` would catch an echo that ended early).
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if stream.write_all(&buf[..n]).await.is_err() {
            break;
        }
        echoed.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Waits for `cond`, polling every 50 ms; panics with `what` after 20 s.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    timeout(Duration::from_secs(20), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within 20 s"));
}

async fn trickle(version: Version) {
    let _serial = SERIAL.lock().await;
    let v = version.as_u8();
    let (mut raw, ours) = tcp_pair().await;
    let config = MuxConfig::default().with_version(version);
    let max_send_buffer = config.max_send_buffer;
    let mux = Mux::server(ours, config).unwrap();
    let echoed = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn({
        let (mux, echoed) = (mux.clone(), echoed.clone());
        async move {
            while let Ok(stream) = mux.accept().await {
                tokio::spawn(echo(stream, echoed.clone()));
            }
        }
    });

    // 200 streams, 60,000 bytes each (within the v2 initial window), in 30,000-byte frames.
    let data = vec![0x5a; PER_STREAM / 2];
    for i in 0..STREAMS {
        let sid = 1 + 2 * i;
        let mut wire = frame(v, SYN, sid, &[]);
        wire.extend(frame(v, PSH, sid, &data));
        wire.extend(frame(v, PSH, sid, &data));
        timeout(Duration::from_secs(20), raw.write_all(&wire))
            .await
            .expect("the peer's data write stalled")
            .unwrap();
    }
    // Warm-up: the echo writers fill the send budget and block (the rest of their streams' data
    // waits unread behind them).
    let blocked = |mux: &Mux<TcpStream>| {
        let snap = mux.snapshot();
        let blocked = snap.streams.iter().filter(|s| s.write_blocked).count();
        (snap, blocked)
    };
    wait_for("the echo writers to block on the send budget", || {
        let (snap, blocked) = blocked(&mux);
        snap.stats.streams_accepted == u64::from(STREAMS)
            && snap.buffered_output >= max_send_buffer / 2
            && blocked >= (STREAMS / 2) as usize
    })
    .await;

    // The trickle: one NOP per write, as fast as the peer can.
    let stop = Arc::new(AtomicBool::new(false));
    let nops = tokio::spawn({
        let stop = stop.clone();
        async move {
            let nop = frame(v, NOP, 0, &[]);
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                raw.write_all(&nop).await.unwrap();
                sent += 1;
                if sent % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            (raw, sent)
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frames_at_start = mux.stats().frames_in;
    let rss_start = rss_bytes();
    let echoed_at_start = echoed.load(Ordering::Relaxed);
    let duration = trickle_duration();
    let started = Instant::now();
    let mut peak_growth = 0;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let growth = rss_bytes().saturating_sub(rss_start);
        peak_growth = peak_growth.max(growth);
        assert!(
            growth <= RSS_BOUND,
            "{version:?}: RSS grew by {} KiB after {:?} of trickle (bound {} KiB)",
            growth / 1024,
            started.elapsed(),
            RSS_BOUND / 1024
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (_raw, sent) = timeout(Duration::from_secs(20), nops)
        .await
        .expect("NOP writer")
        .unwrap();
    let frames = mux.stats().frames_in - frames_at_start;
    let (snap, still_blocked) = blocked(&mux);
    println!(
        "{version:?}: {duration:?} of trickle, {sent} NOPs written, {frames} frames read, \
         {still_blocked} writers blocked, peak RSS growth {} KiB",
        peak_growth / 1024
    );
    // The case did what it claims: the writers stayed blocked on the budget (the peer read
    // nothing, so nothing more was taken), and the trickle kept arriving.
    assert!(!mux.is_closed());
    assert_eq!(echoed.load(Ordering::Relaxed), echoed_at_start);
    assert!(still_blocked >= (STREAMS / 2) as usize);
    assert!(snap.buffered_output >= max_send_buffer / 2);
    assert!(frames >= 10_000, "only {frames} frames arrived");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_writers_and_a_trickle_of_nops_v1() {
    trickle(Version::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_writers_and_a_trickle_of_nops_v2() {
    trickle(Version::V2).await;
}
