//! Owned halves (`MuxStream::into_split`) and `Mux::incoming` over loopback TCP on smol: a
//! reader and a writer in two tasks, and a half dropped at every point of a stream's life,
//! checked from the peer's side. The tokio twin is `smux-tokio/tests/split.rs`.

use std::future::Future;
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::StreamExt;
use smol::future::FutureExt as _;
use smol::net::{TcpListener, TcpStream};
use smol::Timer;
use smux_smol::{Mux, MuxConfig, MuxStream, Version};
use smux_test_support::{checksum, payload, XorShift};

type TcpMux = Mux<TcpStream>;

/// Longest a scenario may take before it counts as hung.
const HANG: Duration = Duration::from_secs(60);

fn run(body: impl Future<Output = ()>) {
    smol::block_on(body.or(async {
        Timer::after(HANG).await;
        panic!("scenario did not finish within {HANG:?}");
    }));
}

async fn mux_pair(version: Version) -> (TcpMux, TcpMux) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = futures::join!(TcpStream::connect(addr), listener.accept());
    let (a, b) = (a.unwrap(), b.unwrap().0);
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    let config = MuxConfig::default().with_version(version);
    (
        smux_smol::client(a, config.clone()).unwrap(),
        smux_smol::server(b, config).unwrap(),
    )
}

/// Waits until the mux has no streams left (every one finished both ways and dropped).
async fn all_streams_gone(mux: &TcpMux) {
    while mux.stream_count() > 0 {
        Timer::after(Duration::from_millis(5)).await;
    }
}

async fn read_all<R: futures::io::AsyncRead + Unpin>(stream: &mut R) -> Vec<u8> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    got
}

/// Echo server over `incoming()`: a task per stream, until the session ends.
fn serve_echo(server: &TcpMux) -> smol::Task<usize> {
    let mut incoming = server.incoming();
    smol::spawn(async move {
        let mut streams = 0;
        while let Some(stream) = incoming.next().await {
            let mut stream = stream.expect("the session ends cleanly");
            streams += 1;
            smol::spawn(async move {
                while let Some(chunk) = stream.read_chunk(64 * 1024).await.unwrap() {
                    stream.write_chunk(chunk).await.unwrap();
                }
                stream.close().await.unwrap();
            })
            .detach();
        }
        streams
    })
}

fn reader_and_writer_in_two_tasks(version: Version) {
    run(async {
        let (client, server) = mux_pair(version).await;
        let served = serve_echo(&server);
        let mut streams = Vec::new();
        for i in 0..8u64 {
            let (mut reader, mut writer) = client.connect().await.unwrap().into_split();
            let data = payload(i, 300_000 + i as usize * 1000);
            let expected = checksum(&data);
            let write = smol::spawn(async move {
                let mut rng = XorShift::new(i);
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let n = rng.range(1, 40_000).min(rest.len());
                    writer.write_all(&rest[..n]).await.unwrap();
                    rest = &rest[n..];
                }
                writer.close().await.unwrap();
            });
            let read = smol::spawn(async move { read_all(&mut reader).await });
            streams.push((write, read, expected));
        }
        for (write, read, expected) in streams {
            write.await;
            assert_eq!(checksum(&read.await), expected);
        }
        all_streams_gone(&client).await;
        client.close().await.unwrap();
        assert_eq!(served.await, 8);
    });
}

#[test]
fn reader_and_writer_in_two_tasks_v1() {
    reader_and_writer_in_two_tasks(Version::V1);
}

#[test]
fn reader_and_writer_in_two_tasks_v2() {
    reader_and_writer_in_two_tasks(Version::V2);
}

/// Where a half is dropped.
#[derive(Debug, Clone, Copy)]
enum DropPoint {
    /// The write half, before it wrote anything.
    WriterBeforeWriting,
    /// The write half, after writing, without `close`.
    WriterAfterWriting,
    /// The read half, first; the write half goes on writing.
    ReaderFirst,
    /// The writer's task, cancelled while blocked on a full window, and then the read half.
    WriterTaskMidWrite,
    /// The reader's task, cancelled while waiting for data; the write half goes on.
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
    // Dropped halves send what was written and their FIN as the connection is driven.
    for mux in [&client, &server] {
        let mux = mux.clone();
        smol::spawn(async move { mux.drive().await }).detach();
    }
    let (mut reader, mut writer) = client.connect().await.unwrap().into_split();
    writer.write_all(b"hello").await.unwrap();
    writer.flush().await.unwrap();
    let mut peer: MuxStream<TcpStream> = server.accept().await.unwrap();
    let mut hello = [0u8; 5];
    peer.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hello");
    match point {
        DropPoint::WriterBeforeWriting => {
            drop(writer);
            // The peer sees the end, and can still answer the read half.
            assert_eq!(read_all(&mut peer).await, b"");
            peer.write_all(b"bye").await.unwrap();
            peer.close().await.unwrap();
            assert_eq!(read_all(&mut reader).await, b"bye");
            drop(reader);
        }
        DropPoint::WriterAfterWriting => {
            writer.write_all(b" world").await.unwrap();
            drop(writer);
            assert_eq!(read_all(&mut peer).await, b" world");
            drop(reader);
        }
        DropPoint::ReaderFirst => {
            drop(reader);
            peer.write_all(b"unread").await.unwrap();
            writer.write_all(b" again").await.unwrap();
            writer.close().await.unwrap();
            assert_eq!(read_all(&mut peer).await, b" again");
            drop(writer);
        }
        DropPoint::WriterTaskMidWrite => {
            let data = payload(7, 64 << 20);
            let writing = smol::spawn(async move {
                writer.write_all(&data).await.unwrap();
                unreachable!("64 MiB written to a peer that reads nothing");
            });
            // Blocked once more than a window went out and nothing more moves.
            let mut out = 0;
            loop {
                Timer::after(Duration::from_millis(100)).await;
                let now = client.stats().bytes_out;
                if now > 256 * 1024 && now == out {
                    break;
                }
                out = now;
            }
            assert!(
                writing.cancel().await.is_none(),
                "the write was still blocked"
            );
            drop(reader);
            let got = read_all(&mut peer).await;
            assert!(!got.is_empty());
            assert_eq!(got, payload(7, got.len()));
        }
        DropPoint::ReaderTaskMidRead => {
            let reading = smol::spawn(async move {
                let mut buf = [0u8; 16];
                let _ = reader.read(&mut buf).await;
                unreachable!("the peer sent nothing");
            });
            Timer::after(Duration::from_millis(50)).await;
            assert!(reading.cancel().await.is_none());
            writer.write_all(b" still").await.unwrap();
            writer.close().await.unwrap();
            assert_eq!(read_all(&mut peer).await, b" still");
            drop(writer);
        }
    }
    drop(peer);
    all_streams_gone(&client).await;
    all_streams_gone(&server).await;
    let mut s = client.connect().await.unwrap();
    s.write_all(b"next").await.unwrap();
    s.close().await.unwrap();
    let mut t = server.accept().await.unwrap();
    assert_eq!(read_all(&mut t).await, b"next");
}

#[test]
fn dropping_halves_at_every_point_v1() {
    run(async {
        for point in POINTS {
            drop_halves_at(Version::V1, point).await;
        }
    });
}

#[test]
fn dropping_halves_at_every_point_v2() {
    run(async {
        for point in POINTS {
            drop_halves_at(Version::V2, point).await;
        }
    });
}

#[test]
fn halves_reunite_only_with_their_own() {
    run(async {
        let (client, server) = mux_pair(Version::V2).await;
        let served = serve_echo(&server);
        let (r1, w1) = client.connect().await.unwrap().into_split();
        let (r2, w2) = client.connect().await.unwrap().into_split();
        let err = r1.reunite(w2).unwrap_err();
        assert!(err.to_string().contains("different streams"), "{err}");
        let smux_smol::ReuniteError(r1, w2) = err;
        let mut s1 = r1.reunite(w1).unwrap();
        let mut s2 = r2.reunite(w2).unwrap();
        for (s, msg) in [(&mut s1, &b"one"[..]), (&mut s2, &b"two"[..])] {
            s.write_all(msg).await.unwrap();
            s.close().await.unwrap();
            assert_eq!(read_all(s).await, msg);
        }
        drop((s1, s2));
        client.close().await.unwrap();
        assert_eq!(served.await, 2);
    });
}
