//! The bulk scenario: streams carry bytes client to server in 64 KiB writes.

use std::sync::Arc;
use std::time::Instant;

use futures::channel::mpsc;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::cpu_seconds;
use super::peers::{Handler, Io, Opener, Rt};

/// Size of every write (and of the server's read buffer).
pub const CHUNK: usize = 64 * 1024;

/// What one bulk run measured.
#[derive(Clone, Copy, Debug)]
pub struct BulkRun {
    /// Bytes the server read.
    pub bytes: u64,
    /// Seconds from the first open until the server had read the last byte.
    pub secs_read: f64,
    /// Seconds from the first open until every client stream had seen the server's FIN.
    pub secs_fin: f64,
    /// User + system CPU seconds of the process over `secs_fin`.
    pub cpu: f64,
}

/// `k` streams at once carry `total` bytes client to server in [`CHUNK`] writes; the server
/// reads and discards them. Each client stream then half-closes and waits for the server's
/// FIN, sent once the server has read everything.
pub async fn bulk<S, F, Fut>(rt: Rt, k: usize, total: u64, setup: F) -> BulkRun
where
    S: Io,
    F: FnOnce(Handler<S>) -> Fut,
    Fut: std::future::Future<Output = Opener<S>>,
{
    let per = total / k as u64;
    let (done_tx, done_rx) = mpsc::unbounded::<(u64, Instant)>();
    let handler: Handler<S> = Arc::new(move |mut s: S| {
        let done = done_tx.clone();
        Box::pin(async move {
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0u64;
            let mut last = Instant::now();
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(m) => {
                        n += m as u64;
                        last = Instant::now();
                    }
                    Err(e) => panic!("bulk: server read after {n} bytes: {e}"),
                }
            }
            s.shutdown().await.expect("bulk: server shutdown");
            let _ = done.unbounded_send((n, last));
        })
    });
    let open = setup(handler).await;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..k {
        let open = open.clone();
        writers.push(rt.spawn(async move {
            send_stream(open().await.expect("bulk: open"), per).await;
        }));
    }
    futures::future::join_all(writers).await;
    let (received, last) = done_rx
        .take(k)
        .fold(
            (0, start),
            |(a, t), (n, at)| async move { (a + n, t.max(at)) },
        )
        .await;
    let secs_fin = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(received, per * k as u64, "bulk: bytes received");
    BulkRun {
        bytes: received,
        secs_read: (last - start).as_secs_f64(),
        secs_fin,
        cpu,
    }
}

/// One bulk stream's client side: `per` bytes in [`CHUNK`] writes, a half-close, then reads
/// until the server's end.
pub async fn send_stream<S: Io>(mut s: S, per: u64) {
    let chunk = vec![0x5au8; CHUNK];
    let mut left = per;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&chunk[..n]).await.expect("bulk: write");
        left -= n as u64;
    }
    s.shutdown().await.expect("bulk: shutdown");
    let mut rest = [0u8; 16];
    while s.read(&mut rest).await.expect("bulk: read the FIN") > 0 {}
}
