//! A burst of 50,000 stream opens over loopback TCP, on smol (the tokio twin is
//! smux-tokio/tests/burst.rs).
//!
//! The client opens 50,000 streams back to back, writes one byte on each, shuts it down and
//! drops it without waiting for anything; the server accepts in a loop and spawns a task per
//! stream that reads it to EOF. Every stream must arrive with its byte, and nothing may be
//! refused on either side (the accept backlog pauses input instead). A stall detector fails
//! the case if nothing moves for 10 s, printing both sessions' snapshots.
//!
//! Iterations (each with protocol versions 1 and 2): `SMUX_BURST_RUNS` (default 2). The plan
//! and the counters are `smux_test_support::burst`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use smol::future::FutureExt as _;
use smol::net::{TcpListener, TcpStream};
use smol::Timer;
use smux_smol::{Mux, MuxConfig, MuxStream, SessionSnapshot, Version};
use smux_test_support::burst::{byte_for, runs, Progress, STALL, STREAMS};

type TcpMux = Mux<TcpStream>;

/// The snapshot, with the stream list cut short (it may hold tens of thousands).
fn describe(snap: &SessionSnapshot) -> String {
    let mut snap = snap.clone();
    let streams = snap.streams.len();
    snap.streams.truncate(16);
    format!("{streams} streams (first 16 shown): {snap:#?}")
}

async fn read_one(mut stream: MuxStream<TcpStream>, progress: Arc<Progress>) {
    let mut got = Vec::new();
    let ok = match stream.read_to_end(&mut got).await {
        Ok(_) => got == [byte_for(stream.id().as_u32())],
        Err(_) => false,
    };
    progress.read(ok);
}

async fn burst(version: Version, run: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = futures::join!(TcpStream::connect(addr), listener.accept());
    let (a, b) = (a.unwrap(), b.unwrap().0);
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    let config = MuxConfig::default().with_version(version);
    let client: TcpMux = smux_smol::client(a, config.clone()).unwrap();
    let server: TcpMux = smux_smol::server(b, config).unwrap();
    let progress = Arc::new(Progress::default());

    // The client's streams are dropped right away: a task keeps its connection moving.
    let client_drive = smol::spawn({
        let client = client.clone();
        async move { client.drive().await }
    });
    let acceptor = smol::spawn({
        let (server, progress) = (server.clone(), progress.clone());
        async move {
            loop {
                let stream = server.accept().await?;
                progress.accepted.fetch_add(1, Ordering::Relaxed);
                smol::spawn(read_one(stream, progress.clone())).detach();
            }
            #[allow(unreachable_code)]
            Ok::<(), std::io::Error>(())
        }
    });
    let opener = smol::spawn({
        let (client, progress) = (client.clone(), progress.clone());
        async move {
            for _ in 0..STREAMS {
                let mut stream = client.connect().await.unwrap();
                stream
                    .write_all(&[byte_for(stream.id().as_u32())])
                    .await
                    .unwrap();
                stream.close().await.unwrap();
                drop(stream);
                progress.opened.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    // Stall detector.
    let started = Instant::now();
    let mut last = (progress.total(), Instant::now());
    while !progress.done() {
        Timer::after(Duration::from_millis(50)).await;
        let now = progress.total();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= STALL {
            panic!(
                "{version:?} run {run}: no progress for {STALL:?}: {}\n\
                 client: {}\nserver: {}",
                progress.describe(),
                describe(&client.snapshot()),
                describe(&server.snapshot()),
            );
        }
    }
    let elapsed = started.elapsed();
    opener.await;

    progress.assert_complete();
    let (c, s) = (client.stats(), server.stats());
    assert_eq!(c.streams_opened, STREAMS);
    assert_eq!(s.streams_accepted, STREAMS);
    assert_eq!(c.streams_refused, 0);
    assert_eq!(s.streams_refused, 0);
    println!("{version:?} run {run}: {STREAMS} streams in {elapsed:.2?}");

    client.close().await.unwrap();
    let _ = within("client drive after close", client_drive).await;
    let accept_end = within("server accept after the client closed", acceptor).await;
    assert!(accept_end.is_err());
}

/// `f`, failing after 10 s.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    f.or(async {
        Timer::after(Duration::from_secs(10)).await;
        panic!("{what}: not within 10 s");
    })
    .await
}

#[test]
fn burst_of_50k_opens() {
    smol::block_on(async {
        for run in 0..runs() {
            for version in [Version::V1, Version::V2] {
                burst(version, run).await;
            }
        }
    });
}
