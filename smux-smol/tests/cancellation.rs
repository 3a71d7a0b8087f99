//! Cancellation over real loopback TCP with smol: reads and accepts raced against zero or tiny
//! timers (the losing future is dropped) lose no data and no stream, for versions 1 and 2.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::net::{TcpListener, TcpStream};
use smol::Timer;
use smux_smol::{Mux, MuxConfig, MuxStream, Version};
use smux_test_support::{payload, XorShift};

type TcpMux = Mux<TcpStream>;

/// Failure guard for a whole scenario.
const HANG: Duration = Duration::from_secs(30);

fn run(body: impl Future<Output = ()>) {
    smol::block_on(body.or(async {
        Timer::after(HANG).await;
        panic!("scenario did not finish within {HANG:?}");
    }));
}

/// The shared generator, with the deadlines of this file.
struct Rng(XorShift);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(XorShift::new(seed))
    }

    fn up_to(&mut self, max: usize) -> usize {
        self.0.up_to(max)
    }

    /// Zero (the future gets one poll), or up to a millisecond.
    fn tiny(&mut self) -> Duration {
        if self.up_to(1) == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.up_to(1000) as u64)
        }
    }
}

/// `fut`, unless `limit` passes first, in which case it is dropped and `None` returned.
async fn or_cancel<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            Timer::after(limit).await;
            None
        })
        .await
}

async fn mux_pair(version: Version) -> (TcpMux, TcpMux) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, (b, _)) = futures::future::try_join(TcpStream::connect(addr), listener.accept())
        .await
        .unwrap();
    let config = MuxConfig::default().with_version(version);
    (
        smux_smol::client(a, config.clone()).unwrap(),
        smux_smol::server(b, config).unwrap(),
    )
}

/// Writes `data` in random pieces with random pauses, then FIN. At every multiple of `every`
/// bytes it flushes and waits until `go` says the reader has caught up.
async fn write_with_checkpoints(
    mut s: MuxStream<TcpStream>,
    data: Vec<u8>,
    seed: u64,
    every: usize,
    go: Receiver<()>,
) {
    let mut rng = Rng::new(seed);
    let mut at = 0;
    while at < data.len() {
        let checkpoint = (at / every + 1) * every;
        let end = (at + 1 + rng.up_to(40_000)).min(checkpoint).min(data.len());
        s.write_all(&data[at..end]).await.unwrap();
        at = end;
        if at == checkpoint && at < data.len() {
            s.flush().await.unwrap();
            go.recv().await.unwrap();
        } else if rng.up_to(2) == 0 {
            Timer::after(Duration::from_millis(1)).await;
        }
    }
    s.close().await.unwrap();
}

/// A reader whose reads are dropped again and again still gets every byte, in order. At each
/// checkpoint the writer waits until the reader has everything, and the reader's next read
/// must find nothing and is dropped, so cancellations are certain.
async fn cancelled_reads_lose_nothing(version: Version) {
    const LEN: usize = 1 << 20;
    const EVERY: usize = 128 * 1024;
    let (client, server) = mux_pair(version).await;
    let data = payload(1, LEN);
    let (go, wait) = smol::channel::unbounded();
    let writer = smol::spawn(write_with_checkpoints(
        client.connect().await.unwrap(),
        data.clone(),
        2,
        EVERY,
        wait,
    ));
    let mut s = server.accept().await.unwrap();
    let mut rng = Rng::new(3);
    let mut got = Vec::with_capacity(LEN);
    let mut buf = vec![0; 20_000];
    let mut cancelled = 0;
    let mut checkpoint = EVERY;
    loop {
        if got.len() == checkpoint && checkpoint < LEN {
            let probe = or_cancel(Duration::ZERO, s.read(&mut buf)).await;
            assert!(probe.is_none(), "a read found data the writer never sent");
            cancelled += 1;
            checkpoint += EVERY;
            go.send(()).await.unwrap();
        }
        let max = 1 + rng.up_to(buf.len() - 1);
        match or_cancel(rng.tiny(), s.read(&mut buf[..max])).await {
            Some(Ok(0)) => break,
            Some(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Some(Err(e)) => panic!("read failed: {e}"),
            None => cancelled += 1,
        }
    }
    writer.await;
    assert_eq!(got.len(), LEN);
    assert!(got == data, "data lost or reordered");
    assert!(
        cancelled >= LEN / EVERY - 1,
        "only {cancelled} reads cancelled"
    );
    // Still usable.
    let mut a = client.connect().await.unwrap();
    a.write_all(b"after").await.unwrap();
    a.close().await.unwrap();
    let mut b = server.accept().await.unwrap();
    let mut after = Vec::new();
    b.read_to_end(&mut after).await.unwrap();
    assert_eq!(after, b"after");
}

/// Accepts dropped by tiny timers never lose a stream.
async fn cancelled_accepts_lose_no_stream(version: Version) {
    const STREAMS: u32 = 100;
    // After each batch the opener waits until all of it was accepted; the acceptor's next
    // accept must find nothing and is dropped, so cancellations are certain.
    const BATCH: u32 = 10;
    let (client, server) = mux_pair(version).await;
    let (go, wait) = smol::channel::unbounded::<()>();
    let opener = smol::spawn({
        let client = client.clone();
        async move {
            let mut rng = Rng::new(5);
            for i in 0..STREAMS {
                let mut s = client.connect().await.unwrap();
                s.write_all(&i.to_le_bytes()).await.unwrap();
                s.close().await.unwrap();
                if (i + 1) % BATCH == 0 && i + 1 < STREAMS {
                    wait.recv().await.unwrap();
                } else if rng.up_to(2) == 0 {
                    Timer::after(Duration::from_millis(1)).await;
                }
            }
        }
    });
    let mut rng = Rng::new(6);
    let mut seen = BTreeSet::new();
    let mut cancelled = 0;
    let mut batch_end = BATCH as usize;
    while seen.len() < STREAMS as usize {
        if seen.len() == batch_end {
            let probe = or_cancel(Duration::ZERO, server.accept()).await;
            assert!(
                probe.is_none(),
                "an accept found a stream nobody opened yet"
            );
            cancelled += 1;
            batch_end += BATCH as usize;
            go.send(()).await.unwrap();
        }
        let Some(s) = or_cancel(rng.tiny(), server.accept()).await else {
            cancelled += 1;
            continue;
        };
        let mut s = s.unwrap();
        let mut index = [0; 4];
        s.read_exact(&mut index).await.unwrap();
        assert!(seen.insert(u32::from_le_bytes(index)), "accepted twice");
    }
    opener.await;
    assert_eq!(seen, (0..STREAMS).collect());
    assert!(
        cancelled >= (STREAMS / BATCH - 1) as usize,
        "only {cancelled} accepts cancelled"
    );
    assert_eq!(server.stats().streams_accepted, u64::from(STREAMS));
}

#[test]
fn cancelled_reads_lose_nothing_v1() {
    run(cancelled_reads_lose_nothing(Version::V1));
}

#[test]
fn cancelled_reads_lose_nothing_v2() {
    run(cancelled_reads_lose_nothing(Version::V2));
}

#[test]
fn cancelled_accepts_lose_no_stream_v1() {
    run(cancelled_accepts_lose_no_stream(Version::V1));
}

#[test]
fn cancelled_accepts_lose_no_stream_v2() {
    run(cancelled_accepts_lose_no_stream(Version::V2));
}
