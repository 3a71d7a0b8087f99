//! Drain shutdown over loopback TCP: new streams from the peer are refused (the peer reads
//! their end at once), open ones finish, and the connection closes when they are done or at
//! the deadline.

use std::time::Duration;

use smux_tokio::{Mux, MuxConfig, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

type TcpMux = Mux<TcpStream>;

async fn mux_pair(version: Version) -> (TcpMux, TcpMux) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let config = MuxConfig::default().with_version(version);
    (
        Mux::client(a.unwrap(), config.clone()).unwrap(),
        Mux::server(b.unwrap().0, config).unwrap(),
    )
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("not done within 30 s")
}

async fn drain_lets_open_streams_finish(version: Version) {
    let (client, server) = mux_pair(version).await;
    let client_drive = tokio::spawn({
        let client = client.clone();
        async move { client.drive().await }
    });
    let mut old = client.connect().await.unwrap();
    old.write_all(b"request").await.unwrap();
    let mut served = within(server.accept()).await.unwrap();

    let draining = tokio::spawn({
        let server = server.clone();
        async move { server.drain(Duration::from_secs(20)).await }
    });
    // A stream opened during the drain is refused: its reads end at once.
    let mut late = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if server.snapshot().draining {
            break client.connect().await.unwrap();
        }
    };
    late.write_all(b"too late").await.unwrap();
    let mut got = Vec::new();
    within(late.read_to_end(&mut got)).await.unwrap();
    assert!(got.is_empty());
    assert!(
        server.connect().await.is_err(),
        "no new streams from the draining side"
    );
    // accept ends once the backlog is empty.
    assert!(within(server.accept()).await.is_err());

    // The open stream works both ways until the server is done with it.
    let mut request = [0u8; 7];
    served.read_exact(&mut request).await.unwrap();
    served.write_all(b"response").await.unwrap();
    assert!(!draining.is_finished());
    drop(served);
    within(draining).await.unwrap().unwrap();
    let mut response = Vec::new();
    within(old.read_to_end(&mut response)).await.unwrap();
    assert_eq!(response, b"response");
    assert_eq!(server.stats().streams_refused, 1);
    // The client sees the server's close.
    let end = within(client_drive).await.unwrap();
    assert!(end.is_err(), "the peer closed: {end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_open_streams_finish_v1() {
    drain_lets_open_streams_finish(Version::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_open_streams_finish_v2() {
    drain_lets_open_streams_finish(Version::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_the_streams_left_at_its_deadline() {
    let (client, server) = mux_pair(Version::V2).await;
    let _client_drive = tokio::spawn({
        let client = client.clone();
        async move { client.drive().await }
    });
    let mut idle = client.connect().await.unwrap();
    idle.write_all(b"x").await.unwrap();
    let mut kept = within(server.accept()).await.unwrap();
    kept.write_all(b"written before the deadline")
        .await
        .unwrap();
    let started = Instant::now();
    within(server.drain(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The stream still held by the server was finished after its data.
    let mut got = Vec::new();
    within(idle.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"written before the deadline");
    assert!(server.is_closed());
    assert!(kept.write_all(b"after").await.is_err());
}
