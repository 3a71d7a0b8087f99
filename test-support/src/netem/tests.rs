//! The relay's unit tests: rate, delay, half-close, integrity and back-pressure, each within
//! a few seconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{LinkSpec, Relay};
use crate::{checksum, payload};

/// A listener on loopback whose every connection is handled by `serve` in a task of its own.
async fn target<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// Waits (up to a second) for the relay's counters to reach `want`: they count a chunk once
/// its write returned, which may be just after the far side read it.
async fn assert_relayed(relay: &Relay, want: (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while relay.relayed() != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(relay.relayed(), want);
}

/// Echoes everything, then half-closes.
async fn echo(mut stream: TcpStream) {
    let (mut r, mut w) = stream.split();
    tokio::io::copy(&mut r, &mut w).await.unwrap();
    w.shutdown().await.unwrap();
}

#[test]
fn path_spec() {
    let spec = LinkSpec::path(Duration::from_millis(40), 100);
    assert_eq!(spec.one_way_delay, Duration::from_millis(20));
    assert_eq!(spec.rate, 12_500_000);
    assert_eq!(spec.queue, 128 * 1024);
    assert_eq!(spec.socket_buffer, 64 * 1024);
    assert_eq!(spec.serialization(12_500), Duration::from_millis(1));
    assert_eq!(spec.delay_line_capacity(), 250_000 + 128 * 1024);
}

#[tokio::test]
async fn rate_is_the_spec() {
    const TOTAL: usize = 2 << 20;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let addr = target(move |mut s| {
        let done = tx.lock().unwrap().take();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let n = s.read(&mut buf).await.unwrap();
            let first = (Instant::now(), n);
            let mut total = n;
            loop {
                match s.read(&mut buf).await.unwrap() {
                    0 => break,
                    m => total += m,
                }
            }
            let _ = done
                .expect("one connection")
                .send((first, Instant::now(), total));
        }
    })
    .await;
    let spec = LinkSpec::path(Duration::from_millis(10), 40);
    let relay = Relay::start(addr, spec).unwrap();
    let mut c = TcpStream::connect(relay.addr()).await.unwrap();
    c.write_all(&vec![7u8; TOTAL]).await.unwrap();
    c.shutdown().await.unwrap();
    let ((t0, first), t1, total) = rx.await.unwrap();
    assert_eq!(total, TOTAL);
    // From the first read on, the rest came at the link's rate.
    let rate = (total - first) as f64 / (t1 - t0).as_secs_f64();
    let want = spec.rate as f64;
    assert!(
        (rate - want).abs() <= 0.1 * want,
        "measured {rate:.0} B/s, spec {want} B/s"
    );
    assert_relayed(&relay, (TOTAL as u64, 0)).await;
}

#[tokio::test]
async fn round_trip_takes_the_delay() {
    let addr = target(echo).await;
    let relay = Relay::start(addr, LinkSpec::path(Duration::from_millis(20), 100)).unwrap();
    let mut c = TcpStream::connect(relay.addr()).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut b = [0u8; 1];
    for i in 0..3u8 {
        let start = Instant::now();
        c.write_all(&[i]).await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        let rtt = start.elapsed();
        assert_eq!(b[0], i);
        assert!(
            rtt >= Duration::from_millis(20) && rtt < Duration::from_millis(60),
            "round trip {rtt:?} through a 20 ms path"
        );
    }
    assert_relayed(&relay, (3, 3)).await;
}

#[tokio::test]
async fn half_close_is_forwarded_both_ways() {
    let addr = target(|mut s| async move {
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request");
        // The other direction still works after the client's end arrived.
        s.write_all(b"reply").await.unwrap();
        s.shutdown().await.unwrap();
    })
    .await;
    let relay = Relay::start(addr, LinkSpec::path(Duration::from_millis(4), 100)).unwrap();
    let mut c = TcpStream::connect(relay.addr()).await.unwrap();
    c.write_all(b"request").await.unwrap();
    c.shutdown().await.unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"reply");
}

#[tokio::test]
async fn bytes_arrive_intact_and_in_order() {
    const LEN: usize = 3 << 20;
    let addr = target(echo).await;
    // A queue that is no multiple of the chunk size, a fast link and a short delay.
    let spec = LinkSpec {
        queue: 20_011,
        ..LinkSpec::path(Duration::from_millis(2), 1000)
    };
    let relay = Relay::start(addr, spec).unwrap();
    let c = TcpStream::connect(relay.addr()).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let data = payload(42, LEN);
    let sum = checksum(&data);
    let writer = tokio::spawn(async move {
        // Odd write sizes.
        for piece in data.chunks(77_777) {
            w.write_all(piece).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut echoed = Vec::with_capacity(LEN);
    r.read_to_end(&mut echoed).await.unwrap();
    writer.await.unwrap();
    assert_eq!(echoed.len(), LEN);
    assert_eq!(checksum(&echoed), sum);
    assert_relayed(&relay, (LEN as u64, LEN as u64)).await;
}

#[tokio::test]
async fn a_receiver_that_stops_reading_stops_the_sender() {
    const LEN: usize = 32 << 20;
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let go_rx = std::sync::Mutex::new(Some(go_rx));
    let (sum_tx, sum_rx) = tokio::sync::oneshot::channel();
    let sum_tx = std::sync::Mutex::new(Some(sum_tx));
    let addr = target(move |mut s| {
        let go = go_rx.lock().unwrap().take();
        let done = sum_tx.lock().unwrap().take();
        async move {
            // Reads nothing until told to.
            go.expect("one connection").await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            let _ = done
                .expect("one connection")
                .send((got.len(), checksum(&got)));
        }
    })
    .await;
    let spec = LinkSpec::path(Duration::from_millis(2), 1000);
    let relay = Relay::start(addr, spec).unwrap();
    let c = TcpStream::connect(relay.addr()).await.unwrap();
    let (_r, mut w) = c.into_split();
    let data = payload(7, LEN);
    let sum = checksum(&data);
    let (written_tx, mut written_rx) = tokio::sync::watch::channel(0usize);
    let writer = tokio::spawn(async move {
        let mut written = 0;
        for piece in data.chunks(64 * 1024) {
            w.write_all(piece).await.unwrap();
            written += piece.len();
            written_tx.send_replace(written);
        }
        w.shutdown().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Stalled: the sender's and the relay's buffers are full, the rest waits for the reader.
    let written = *written_rx.borrow_and_update();
    let relayed = relay.relayed().0 as usize;
    assert!(
        written < LEN,
        "all {LEN} bytes written to a receiver that reads nothing"
    );
    // What the relay's socket and the receiver's take (256 KiB in a trial run).
    assert!(
        relayed <= 1 << 20,
        "{relayed} bytes relayed to a receiver that reads nothing"
    );
    go_tx.send(()).unwrap();
    writer.await.unwrap();
    assert_eq!(sum_rx.await.unwrap(), (LEN, sum));
}
