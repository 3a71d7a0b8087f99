//! Owned halves (`MuxStream::into_split`) and `Mux::incoming` over loopback TCP, on the
//! two-worker runtime: a reader and a writer in two tasks, and a half dropped at every point
//! of a stream's life, checked from the peer's side. The smol twin is
//! `smux-smol/tests/split.rs`.

use std::time::Duration;

use futures::StreamExt;
use smux_test_support::{checksum, payload, XorShift};
use smux_tokio::{Mux, MuxConfig, MuxStream, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type TcpMux = Mux<TcpStream>;

/// Longest a scenario may take before it counts as hung.
const HANG: Duration = Duration::from_secs(60);

async fn mux_pair(version: Version) -> (TcpMux, TcpMux) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (a, b) = (a.unwrap(), b.unwrap().0);
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    let config = MuxConfig::default().with_version(version);
    (
        Mux::client(a, config.clone()).unwrap(),
        Mux::server(b, config).unwrap(),
    )
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {HANG:?}"))
}

/// Waits until the mux has no streams left (every one finished both ways and dropped).
async fn all_streams_gone(mux: &TcpMux) {
    within("streams reaped", async {
        while mux.stream_count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Reads the stream to its end.
async fn read_all(stream: &mut MuxStream<TcpStream>) -> Vec<u8> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    got
}

/// Echo server over `incoming()`: a task per stream, until the session ends.
fn serve_echo(server: &TcpMux) -> tokio::task::JoinHandle<usize> {
    let mut incoming = server.incoming();
    tokio::spawn(async move {
        let mut streams = 0;
        while let Some(stream) = incoming.next().await {
            let mut stream = stream.expect("the session ends cleanly");
            streams += 1;
            tokio::spawn(async move {
                while let Some(chunk) = stream.read_chunk(64 * 1024).await.unwrap() {
                    stream.write_chunk(chunk).await.unwrap();
                }
                stream.shutdown().await.unwrap();
            });
        }
        streams
    })
}

async fn reader_and_writer_in_two_tasks(version: Version) {
    let (client, server) = mux_pair(version).await;
    let served = serve_echo(&server);
    let mut streams = Vec::new();
    for i in 0..8u64 {
        let (mut reader, mut writer) = client.connect().await.unwrap().into_split();
        let data = payload(i, 300_000 + i as usize * 1000);
        let expected = checksum(&data);
        let write = tokio::spawn(async move {
            let mut rng = XorShift::new(i);
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rng.range(1, 40_000).min(rest.len());
                writer.write_all(&rest[..n]).await.unwrap();
                rest = &rest[n..];
            }
            writer.shutdown().await.unwrap();
            // Dropped here: the stream lives on in the read half.
        });
        let read = tokio::spawn(async move {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            got
        });
        streams.push((write, read, expected));
    }
    for (write, read, expected) in streams {
        within("writer", write).await.unwrap();
        let got = within("reader", read).await.unwrap();
        assert_eq!(checksum(&got), expected);
    }
    all_streams_gone(&client).await;
    client.close().await.unwrap();
    assert_eq!(within("incoming ends", served).await.unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_and_writer_in_two_tasks_v1() {
    reader_and_writer_in_two_tasks(Version::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_and_writer_in_two_tasks_v2() {
    reader_and_writer_in_two_tasks(Version::V2).await;
}

/// Where a half is dropped.
#[derive(Debug, Clone, Copy)]
enum DropPoint {
    /// The write half, before it wrote anything.
    WriterBeforeWriting,
    /// The write half, after writing, without `shutdown`.
    WriterAfterWriting,
    /// The read half, first; the write half goes on writing.
    ReaderFirst,
    /// The writer's task, aborted while blocked on a full window, and then the read half.
    WriterTaskMidWrite,
    /// The reader's task, aborted while waiting for data; the write half goes on.
    ReaderTaskMidRead,
}

const POINTS: [DropPoint; 5] = [
    DropPoint::WriterBeforeWriting,
    DropPoint::WriterAfterWriting,
    DropPoint::ReaderFirst,
    DropPoint::WriterTaskMidWrite,
    DropPoint::ReaderTaskMidRead,
];

async fn drop_halves_at(version: Version, point: DropPoint) {
    let (client, server) = mux_pair(version).await;
    // Dropped halves send what was written and their FIN as the connection is driven: a task
    // in `drive()` on each side keeps it going while the test's own tasks wait elsewhere.
    for mux in [&client, &server] {
        let mux = mux.clone();
        tokio::spawn(async move { mux.drive().await });
    }
    let (reader, mut writer) = client.connect().await.unwrap().into_split();
    writer.write_all(b"hello").await.unwrap();
    writer.flush().await.unwrap();
    let mut peer = within("accept", server.accept()).await.unwrap();
    let mut hello = [0u8; 5];
    peer.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hello");
    match point {
        DropPoint::WriterBeforeWriting => {
            drop(writer);
            // The peer sees the end, and can still answer the read half.
            assert_eq!(within("peer read", read_all(&mut peer)).await, b"");
            peer.write_all(b"bye").await.unwrap();
            peer.shutdown().await.unwrap();
            let mut reader = reader;
            let mut got = Vec::new();
            within("reply", reader.read_to_end(&mut got)).await.unwrap();
            assert_eq!(got, b"bye");
        }
        DropPoint::WriterAfterWriting => {
            writer.write_all(b" world").await.unwrap();
            drop(writer);
            // Data written before the drop reaches the peer, then the FIN.
            assert_eq!(within("peer read", read_all(&mut peer)).await, b" world");
            drop(reader);
        }
        DropPoint::ReaderFirst => {
            drop(reader);
            // Unread data for the stream is kept, and writing goes on.
            peer.write_all(b"unread").await.unwrap();
            writer.write_all(b" again").await.unwrap();
            writer.shutdown().await.unwrap();
            assert_eq!(within("peer read", read_all(&mut peer)).await, b" again");
            drop(writer);
        }
        DropPoint::WriterTaskMidWrite => {
            let data = payload(7, 64 << 20);
            // The peer reads nothing: the write blocks on the window (v2) or the send buffers.
            let writing = tokio::spawn(async move {
                writer.write_all(&data).await.unwrap();
                unreachable!("64 MiB written to a peer that reads nothing");
            });
            // Blocked once more than a window went out and nothing more moves.
            let mut out = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = client.stats().bytes_out;
                if now > 256 * 1024 && now == out {
                    break;
                }
                out = now;
            }
            writing.abort();
            assert!(writing.await.unwrap_err().is_cancelled());
            drop(reader);
            // What was written reaches the peer in order, then the FIN.
            let got = within("peer read", read_all(&mut peer)).await;
            assert!(!got.is_empty());
            assert_eq!(got, payload(7, got.len()));
        }
        DropPoint::ReaderTaskMidRead => {
            let reading = tokio::spawn(async move {
                let mut reader = reader;
                let mut buf = [0u8; 16];
                let _ = reader.read(&mut buf).await;
                unreachable!("the peer sent nothing");
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            reading.abort();
            assert!(reading.await.unwrap_err().is_cancelled());
            writer.write_all(b" still").await.unwrap();
            writer.shutdown().await.unwrap();
            assert_eq!(within("peer read", read_all(&mut peer)).await, b" still");
            drop(writer);
        }
    }
    drop(peer);
    // Both halves and the peer's stream are gone: nothing is left on either side.
    all_streams_gone(&client).await;
    all_streams_gone(&server).await;
    // The connection still works.
    let mut s = client.connect().await.unwrap();
    s.write_all(b"next").await.unwrap();
    s.shutdown().await.unwrap();
    let mut t = within("accept", server.accept()).await.unwrap();
    assert_eq!(within("read", read_all(&mut t)).await, b"next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_halves_at_every_point_v1() {
    for point in POINTS {
        drop_halves_at(Version::V1, point).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_halves_at_every_point_v2() {
    for point in POINTS {
        drop_halves_at(Version::V2, point).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halves_reunite_only_with_their_own() {
    let (client, server) = mux_pair(Version::V2).await;
    let served = serve_echo(&server);
    let (r1, w1) = client.connect().await.unwrap().into_split();
    let (r2, w2) = client.connect().await.unwrap().into_split();
    let err = r1.reunite(w2).unwrap_err();
    assert!(err.to_string().contains("different streams"), "{err}");
    let (r1, w2) = (err.0, err.1);
    let mut s1 = r1.reunite(w1).unwrap();
    let mut s2 = r2.reunite(w2).unwrap();
    for (s, msg) in [(&mut s1, &b"one"[..]), (&mut s2, &b"two"[..])] {
        s.write_all(msg).await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(within("echo", read_all(s)).await, msg);
    }
    drop((s1, s2));
    client.close().await.unwrap();
    assert_eq!(within("incoming ends", served).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_gives_an_error_once_when_the_session_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (raw, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let mut raw = raw.unwrap();
    let server: TcpMux = Mux::server(accepted.unwrap().0, MuxConfig::default()).unwrap();
    let mut incoming = server.incoming();
    // A SYN for stream 3, then half a PSH header, then the end of the connection.
    raw.write_all(&[1, 0, 0, 0, 3, 0, 0, 0, 1, 2, 5, 0])
        .await
        .unwrap();
    raw.shutdown().await.unwrap();
    let first = within("first", incoming.next()).await.unwrap().unwrap();
    assert_eq!(first.id().as_u32(), 3);
    let err = within("the error", incoming.next())
        .await
        .expect("an error, not the end")
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    assert!(within("after the error", incoming.next()).await.is_none());
}
