//! Loss-free under load on smol: rounds of 1000 concurrent streams over one loopback TCP mux
//! pair, each stream echoing, half-closing, or being dropped early by either side (the plans
//! are in `smux_test_support::soak`). Every stream that completes normally is checked byte for
//! byte (checksums on both ends); a stream dropped by one side must end cleanly on the other
//! without disturbing the rest.
//!
//! One round per protocol version by default; `SMUX_SOAK_SECS=300 cargo test --release -p
//! smux-smol --test soak -- --nocapture` keeps running rounds for five minutes per version.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use smol::future::FutureExt as _;
use smol::net::{TcpListener, TcpStream};
use smol::{Task, Timer};
use smux_smol::{Mux, MuxConfig, MuxStream, Version};
use smux_test_support::soak::{self, Behaviour, StreamPlan, Tally, HEADER_LEN};
use smux_test_support::Checksum;

type TcpMux = Mux<TcpStream>;
type Stream = MuxStream<TcpStream>;

/// Longest one round may take on a loaded machine before it counts as hung.
const ROUND_LIMIT: Duration = Duration::from_secs(120);

/// `future`, or a panic naming `what` if it takes longer than `limit`.
async fn within<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    future
        .or(async {
            Timer::after(limit).await;
            panic!("{what} did not finish within {limit:?}");
        })
        .await
}

async fn mux_pair(version: Version) -> (TcpMux, TcpMux) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, (server, _)) =
        futures::future::try_join(TcpStream::connect(addr), listener.accept())
            .await
            .unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    let config = MuxConfig::default().with_version(version);
    (
        smux_smol::client(client, config.clone()).unwrap(),
        smux_smol::server(server, config).unwrap(),
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
            stream.close().await.unwrap();
            assert_eq!((len, sum.value()), want, "{id}: echo request");
        }
        Behaviour::HalfClose | Behaviour::ClientDrops => {
            // The client drops after `cut` bytes: EOF must follow them exactly.
            let got = drain(&mut stream, usize::MAX).await.unwrap();
            assert_eq!(got, want, "{id}: {:?} request", plan.behaviour);
            stream.write_all(&plan.reply()).await.unwrap();
            stream.close().await.unwrap();
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
    let mut tasks: Vec<Task<(Behaviour, usize)>> = Vec::new();
    let mut tally = Tally::default();
    while let Ok(stream) = mux.accept().await {
        tasks.push(smol::spawn(serve(stream)));
        if tasks.len() >= 2 * soak::STREAMS_PER_ROUND {
            // Keep the list short on long soaks: collect the older half.
            for task in tasks.drain(..soak::STREAMS_PER_ROUND) {
                let (behaviour, bytes) = task.await;
                tally.add(behaviour, bytes);
            }
        }
    }
    for task in tasks {
        let (behaviour, bytes) = task.await;
        tally.add(behaviour, bytes);
    }
    tally
}

/// The client's side of one stream; returns the payload bytes it read and checked.
async fn run_stream(mux: TcpMux, plan: StreamPlan) -> usize {
    let stream = mux.connect().await.unwrap();
    let id = stream.id();
    let request = plan.request();
    let (mut reader, mut writer) = stream.split();
    writer.write_all(&plan.header()).await.unwrap();
    match plan.behaviour {
        Behaviour::Echo => {
            let write = async {
                writer.write_all(&request).await?;
                writer.close().await
            };
            let (written, echoed) = futures::join!(write, drain(&mut reader, usize::MAX));
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
            writer.close().await.unwrap();
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
                writer.close().await
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
    let server = smol::spawn(server_loop(server));
    let mut expected = Tally::default();
    let mut client_read = 0u64;
    let mut round = 0;
    loop {
        let plans = soak::round_plans(round);
        let tasks: Vec<Task<usize>> = plans
            .iter()
            .map(|plan| {
                expected.add(plan.behaviour, plan.server_reads());
                smol::spawn(run_stream(client.clone(), *plan))
            })
            .collect();
        let what = format!("{version:?} round {round}");
        within(ROUND_LIMIT, &what, async {
            for task in tasks {
                client_read += task.await as u64;
            }
        })
        .await;
        round += 1;
        if started.elapsed() >= duration {
            break;
        }
    }
    let streams = round * soak::STREAMS_PER_ROUND as u64;
    assert_eq!(client.stats().streams_opened, streams);
    client.close().await.unwrap();
    let served = within(ROUND_LIMIT, "the server", server).await;
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

#[test]
fn soak_v1() {
    smol::block_on(soak(Version::V1));
}

#[test]
fn soak_v2() {
    smol::block_on(soak(Version::V2));
}
