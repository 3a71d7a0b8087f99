//! A burst of 50,000 stream opens over loopback TCP, on tokio (the smol twin is
//! smux-smol/tests/burst.rs).
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
use std::time::Duration;

use smux_test_support::burst::{byte_for, runs, Progress, STALL, STREAMS};
use smux_tokio::{Mux, MuxConfig, MuxStream, SessionSnapshot, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

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
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (a, b) = (a.unwrap(), b.unwrap().0);
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    let config = MuxConfig::default().with_version(version);
    let client: TcpMux = Mux::client(a, config.clone()).unwrap();
    let server: TcpMux = Mux::server(b, config).unwrap();
    let progress = Arc::new(Progress::default());

    // The client's streams are dropped right away: a task keeps its connection moving.
    let client_drive = tokio::spawn({
        let client = client.clone();
        async move { client.drive().await }
    });
    let acceptor = tokio::spawn({
        let (server, progress) = (server.clone(), progress.clone());
        async move {
            loop {
                let stream = server.accept().await?;
                progress.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(read_one(stream, progress.clone()));
            }
            #[allow(unreachable_code)]
            Ok::<(), std::io::Error>(())
        }
    });
    let opener = tokio::spawn({
        let (client, progress) = (client.clone(), progress.clone());
        async move {
            for _ in 0..STREAMS {
                let mut stream = client.connect().await.unwrap();
                stream
                    .write_all(&[byte_for(stream.id().as_u32())])
                    .await
                    .unwrap();
                stream.shutdown().await.unwrap();
                drop(stream);
                progress.opened.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    // Stall detector.
    let started = Instant::now();
    let mut last = (progress.total(), Instant::now());
    while !progress.done() {
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    opener.await.unwrap();

    progress.assert_complete();
    let (c, s) = (client.stats(), server.stats());
    assert_eq!(c.streams_opened, STREAMS);
    assert_eq!(s.streams_accepted, STREAMS);
    assert_eq!(c.streams_refused, 0);
    assert_eq!(s.streams_refused, 0);
    println!("{version:?} run {run}: {STREAMS} streams in {elapsed:.2?}");

    client.close().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), client_drive)
        .await
        .expect("client drive after close");
    let accept_end = tokio::time::timeout(Duration::from_secs(10), acceptor)
        .await
        .expect("server accept after the client closed")
        .unwrap();
    assert!(accept_end.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_50k_opens() {
    for run in 0..runs() {
        for version in [Version::V1, Version::V2] {
            burst(version, run).await;
        }
    }
}
