//! Loss-free under load: rounds of 1000 concurrent streams over one loopback TCP mux pair, each
//! stream echoing, half-closing, or being dropped early by either side (the plans are in
//! `smux_test_support::soak`). Every stream that completes normally is checked byte for byte
//! (checksums on both ends); a stream dropped by one side must end cleanly on the other
//! without disturbing the rest.
//!
//! One round per protocol version by default; `SMUX_SOAK_SECS=300 cargo test --release -p
//! smux-tokio --test soak -- --nocapture` keeps running rounds for five minutes per version.

use std::io;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use smux_test_support::soak::{self, Behaviour, StreamPlan, Tally, HEADER_LEN};
use smux_test_support::Checksum;
use smux_tokio::{Mux, MuxConfig, MuxStream, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

type TcpMux = Mux<TcpStream>;
type Stream = MuxStream<TcpStream>;

/// Longest one round may take on a loaded machine before it counts as hung.
const ROUND_LIMIT: Duration = Duration::from_secs(120);

async fn mux_pair(version: Version) -> (TcpMux, TcpMux) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (client, (server, _)) = (client.unwrap(), accepted.unwrap());
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    let config = MuxConfig::default().with_version(version);
    (
        Mux::client(client, config.clone()).unwrap(),
        Mux::server(server, config).unwrap(),
    )
}

/// Reads to the end (or at most `limit` bytes), returning the count and checksum.
async fn drain(r: &mut (impl AsyncRead + Unpin), limit: usize) -> io::Result<(usize, u64)> {
    let mut buf = vec![0; 16 * 1024];
    let (mut len, mut sum) = (0, Checksum::new());
    while len < limit {
        let want = buf.len().min(limit - len);
        let n = r.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        len += n;
        sum.update(&buf[..n]);
    }
    Ok((len, sum.value()))
}

/// The server's side of one stream; panics if what arrives is not what the plan says.
async fn serve(mut stream: Stream) -> (Behaviour, usize) {
    let id = stream.id();
    let mut header = [0; HEADER_LEN];
    stream.read_exact(&mut header).await.unwrap();
    let plan = StreamPlan::from_header(&header).expect("a stream header");
    let expected = plan.request();
    let read = plan.server_reads();
    let want = (read, smux_test_support::checksum(&expected[..read]));
    match plan.behaviour {
        Behaviour::Echo => {
            let mut sum = Checksum::new();
            let mut len = 0;
            while let Some(chunk) = stream.read_chunk(64 * 1024).await.unwrap() {
                len += chunk.len();
                sum.update(&chunk);
                stream.write_chunk(chunk).await.unwrap();
            }
            stream.shutdown().await.unwrap();
            assert_eq!((len, sum.value()), want, "{id}: echo request");
        }
        Behaviour::HalfClose | Behaviour::ClientDrops => {
            // The client drops after `cut` bytes: EOF must follow them exactly.
            let got = drain(&mut stream, usize::MAX).await.unwrap();
            assert_eq!(got, want, "{id}: {:?} request", plan.behaviour);
            stream.write_all(&plan.reply()).await.unwrap();
            stream.shutdown().await.unwrap();
        }
        Behaviour::ServerDrops => {
            let got = drain(&mut stream, read).await.unwrap();
            assert_eq!(got, want, "{id}: request before the drop");
            drop(stream);
        }
    }
    (plan.behaviour, read)
}

/// Accepts and serves streams until the connection ends; returns what was served.
async fn server_loop(mux: TcpMux) -> Tally {
    let mut tasks = JoinSet::new();
    let mut tally = Tally::default();
    while let Ok(stream) = mux.accept().await {
        tasks.spawn(serve(stream));
        while let Some(done) = tasks.try_join_next() {
            let (behaviour, bytes) = done.expect("a server stream failed");
            tally.add(behaviour, bytes);
        }
    }
    while let Some(done) = tasks.join_next().await {
        let (behaviour, bytes) = done.expect("a server stream failed");
        tally.add(behaviour, bytes);
    }
    tally
}

/// The client's side of one stream; returns the payload bytes it read and checked.
async fn run_stream(mux: TcpMux, plan: StreamPlan) -> usize {
    let stream = mux.connect().await.unwrap();
    let id = stream.id();
    let request = plan.request();
    let (mut reader, mut writer) = tokio::io::split(stream);
    writer.write_all(&plan.header()).await.unwrap();
    match plan.behaviour {
        Behaviour::Echo => {
            let write = async {
                writer.write_all(&request).await?;
                writer.shutdown().await
            };
            let (written, echoed) = tokio::join!(write, drain(&mut reader, usize::MAX));
            written.unwrap();
            let echoed = echoed.unwrap();
            assert_eq!(
                echoed,
                (plan.len, smux_test_support::checksum(&request)),
                "{id}"
            );
            plan.len
        }
        Behaviour::HalfClose => {
            writer.write_all(&request).await.unwrap();
            writer.shutdown().await.unwrap();
            let reply = drain(&mut reader, usize::MAX).await.unwrap();
            let expected = plan.reply();
            assert_eq!(
                reply,
                (expected.len(), smux_test_support::checksum(&expected))
            );
            expected.len()
        }
        Behaviour::ServerDrops => {
            // Write while watching the read side; once it ends (the server's FIN, or an
            // error), stop writing, as an application would.
            let write = Box::pin(async {
                writer.write_all(&request).await?;
                writer.shutdown().await
            });
            let read = Box::pin(drain(&mut reader, usize::MAX));
            let read = match select(write, read).await {
                Either::Left((_, read)) => read.await,
                Either::Right((read, _)) => read,
            };
            if let Ok((n, _)) = read {
                assert_eq!(n, 0, "{id}: data from a server that never writes");
            }
            0
        }
        Behaviour::ClientDrops => {
            writer.write_all(&request[..plan.cut]).await.unwrap();
            0 // Dropped here: FIN after the data written.
        }
    }
}

/// Runs rounds for `SMUX_SOAK_SECS` (at least one) over one mux pair.
async fn soak(version: Version) {
    let duration = soak::duration();
    let started = Instant::now();
    let (client, server) = mux_pair(version).await;
    let server = tokio::spawn(server_loop(server));
    let mut expected = Tally::default();
    let mut client_read = 0u64;
    let mut round = 0;
    loop {
        let plans = soak::round_plans(round);
        let mut tasks = JoinSet::new();
        for plan in &plans {
            expected.add(plan.behaviour, plan.server_reads());
            tasks.spawn(run_stream(client.clone(), *plan));
        }
        let all = async {
            while let Some(done) = tasks.join_next().await {
                client_read += done.expect("a client stream failed") as u64;
            }
        };
        if tokio::time::timeout(ROUND_LIMIT, all).await.is_err() {
            panic!("{version:?} round {round} did not finish within {ROUND_LIMIT:?}");
        }
        round += 1;
        if started.elapsed() >= duration {
            break;
        }
    }
    let streams = round * soak::STREAMS_PER_ROUND as u64;
    assert_eq!(client.stats().streams_opened, streams);
    client.close().await.unwrap();
    let served = tokio::time::timeout(ROUND_LIMIT, server)
        .await
        .expect("server did not end")
        .unwrap();
    assert_eq!(served, expected, "the server saw every stream as planned");
    assert_eq!(served.total(), streams);
    eprintln!(
        "{version:?}: {round} rounds, {streams} streams, {} MiB checked by the server and {} \
         MiB by the client in {:.1?}",
        served.bytes_read >> 20,
        client_read >> 20,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_v1() {
    soak(Version::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_v2() {
    soak(Version::V2).await;
}
