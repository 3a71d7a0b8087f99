//! Integration tests over real loopback TCP.
//!
//! Every scenario is an `async fn` run by several `#[tokio::test]`s: on the multi-thread
//! runtime (two workers) and on the current-thread runtime, with protocol versions 1 and 2.
//! The keepalive scenarios use paused time on the current-thread runtime (tokio cannot pause
//! time on the multi-thread one, which gets short real intervals instead).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::time::Duration;

use smux_test_support::{checksum, payload, XorShift};
use smux_tokio::{Mux, MuxConfig, MuxStream, Side, StreamId, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

type TcpMux = Mux<TcpStream>;
type TcpMuxStream = MuxStream<TcpStream>;

/// Longest a scenario on real time may take before it counts as hung.
const HANG: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------------------------
// Helpers

fn config(version: Version) -> MuxConfig {
    MuxConfig::default().with_version(version)
}

fn keepalive_config(version: Version, interval: Duration, timeout: Duration) -> MuxConfig {
    MuxConfig::default()
        .with_version(version)
        .with_keep_alive_interval(interval)
        .with_keep_alive_timeout(timeout)
}

/// Two ends of a fresh loopback TCP connection: (connecting side, accepting side).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.unwrap();
    let (server, _) = accepted.unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// A client mux and a server mux over one loopback TCP connection.
async fn mux_pair(client: MuxConfig, server: MuxConfig) -> (TcpMux, TcpMux) {
    let (a, b) = tcp_pair().await;
    (
        Mux::client(a, client).unwrap(),
        Mux::server(b, server).unwrap(),
    )
}

/// Echoes one stream without copying: chunks go back as they come until the peer's FIN, then
/// our FIN. Returns the byte count.
async fn echo(mut stream: TcpMuxStream) -> io::Result<usize> {
    let mut total = 0;
    while let Some(chunk) = stream.read_chunk(64 * 1024).await? {
        total += chunk.len();
        stream.write_chunk(chunk).await?;
    }
    stream.shutdown().await?;
    Ok(total)
}

/// What an echo server saw: streams accepted, bytes echoed, and the error that ended `accept`.
struct Served {
    streams: usize,
    bytes: usize,
    end: io::Error,
}

/// Accepts streams until the connection ends, echoing each in a task of its own; then waits
/// for every echo task, which must all have succeeded.
fn spawn_echo_server(mux: TcpMux) -> JoinHandle<Served> {
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        let end = loop {
            match mux.accept().await {
                Ok(stream) => {
                    tasks.spawn(echo(stream));
                }
                Err(e) => break e,
            }
        };
        let mut served = Served {
            streams: 0,
            bytes: 0,
            end,
        };
        while let Some(result) = tasks.join_next().await {
            served.streams += 1;
            served.bytes += result.unwrap().expect("echo task failed");
        }
        served
    })
}

/// Runs a real-time scenario, failing instead of hanging forever.
async fn within<F: Future>(limit: Duration, scenario: F) -> F::Output {
    match tokio::time::timeout(limit, scenario).await {
        Ok(output) => output,
        Err(_) => panic!("scenario did not finish within {limit:?}"),
    }
}

/// Frames as (cmd, stream id, payload length), from raw bytes a mux wrote.
fn parse_frames(mut bytes: &[u8]) -> Vec<(u8, u32, usize)> {
    let mut frames = Vec::new();
    while bytes.len() >= 8 {
        let cmd = bytes[1];
        let len = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
        let sid = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        frames.push((cmd, sid, len));
        bytes = &bytes[(8 + len).min(bytes.len())..];
    }
    frames
}

const CMD_NOP: u8 = 3;

/// Runs `$scenario(version)` for versions 1 and 2 on the multi-thread and the current-thread
/// runtime, as four tests in a module named after the scenario.
macro_rules! matrix {
    ($scenario:ident) => {
        mod $scenario {
            use smux_tokio::Version;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v1_multi_thread() {
                super::within(super::HANG, super::$scenario(Version::V1)).await
            }

            #[tokio::test(flavor = "current_thread")]
            async fn v1_current_thread() {
                super::within(super::HANG, super::$scenario(Version::V1)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v2_multi_thread() {
                super::within(super::HANG, super::$scenario(Version::V2)).await
            }

            #[tokio::test(flavor = "current_thread")]
            async fn v2_current_thread() {
                super::within(super::HANG, super::$scenario(Version::V2)).await
            }
        }
    };
}

// ------------------------------------------------------------------------------------------------
// Echo: 100 sequential streams

async fn echo_sequential(version: Version) {
    const STREAMS: usize = 100;
    let (client, server) = mux_pair(config(version), config(version)).await;
    let server = spawn_echo_server(server);

    let mut total = 0;
    for i in 0..STREAMS {
        let mut stream = client.connect().await.unwrap();
        // Client ids are odd from 3, as in Go.
        assert_eq!(stream.id(), StreamId::new(3 + 2 * i as u32));
        let message = format!("message {i} on stream {}; ", stream.id()).repeat(i + 1);
        stream.write_all(message.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, message.as_bytes(), "stream {}", stream.id());
        total += echoed.len();
    }
    let stats = client.stats();
    assert_eq!(stats.streams_opened, STREAMS as u64);
    assert!(stats.bytes_out > total as u64 && stats.bytes_in > total as u64);

    client.close().await.unwrap();
    assert!(client.is_closed());
    let served = server.await.unwrap();
    assert_eq!(served.streams, STREAMS);
    assert_eq!(served.bytes, total);
    assert_eq!(served.end.kind(), io::ErrorKind::ConnectionAborted);
}

matrix!(echo_sequential);

// ------------------------------------------------------------------------------------------------
// 1000 concurrent streams of random sizes up to 1 MiB

/// Mostly small: 90% up to 16 KiB, 9% up to 256 KiB, 1% up to 1 MiB (about 24 KiB on average).
fn skewed_size(rng: &mut XorShift) -> usize {
    const MAX: usize = 1 << 20;
    match rng.up_to(99) {
        0..=89 => rng.up_to(16 * 1024),
        90..=98 => rng.up_to(256 * 1024),
        _ => rng.up_to(MAX),
    }
}

/// Writes `data` and reads the echo at the same time (the echo of a large write must be read
/// while writing, or the buffers fill up); returns what came back.
async fn echo_roundtrip(stream: TcpMuxStream, data: &[u8]) -> io::Result<Vec<u8>> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        writer.write_all(data).await?;
        writer.shutdown().await
    };
    let read = async {
        let mut echoed = Vec::with_capacity(data.len());
        reader.read_to_end(&mut echoed).await?;
        Ok(echoed)
    };
    let ((), echoed) = tokio::try_join!(write, read)?;
    Ok(echoed)
}

async fn concurrent_streams(version: Version) {
    const STREAMS: usize = 1000;
    let (client, server) = mux_pair(config(version), config(version)).await;
    let server = spawn_echo_server(server);

    let mut rng = XorShift::new(0x5eed + version.as_u8() as u64);
    let sizes: Vec<usize> = (0..STREAMS)
        .map(|i| match i {
            // Make sure the extremes are there.
            0 => 1 << 20,
            1 => 0,
            _ => skewed_size(&mut rng),
        })
        .collect();
    let total: usize = sizes.iter().sum();

    let mut tasks = JoinSet::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let client = client.clone();
        tasks.spawn(async move {
            let data = payload(i as u64, size);
            let expected = checksum(&data);
            let stream = client.connect().await?;
            let id = stream.id();
            let echoed = echo_roundtrip(stream, &data).await?;
            assert_eq!(echoed.len(), size, "stream {id}: echo length");
            assert_eq!(checksum(&echoed), expected, "stream {id}: echo checksum");
            io::Result::Ok(size)
        });
    }
    let mut echoed = 0;
    while let Some(result) = tasks.join_next().await {
        echoed += result.unwrap().unwrap();
    }
    assert_eq!(echoed, total);

    client.close().await.unwrap();
    let served = server.await.unwrap();
    assert_eq!(served.streams, STREAMS);
    assert_eq!(served.bytes, total);
}

matrix!(concurrent_streams);

// ------------------------------------------------------------------------------------------------
// Half-close both ways

async fn half_close(version: Version) {
    const REQUEST: &[u8] = b"GET /large-response";
    // Beyond the version 2 window and the version 1 session receive buffer (4 MiB).
    const RESPONSE_LEN: usize = 5 << 20;
    let response = payload(7, RESPONSE_LEN);
    let response_sum = checksum(&response);

    let (client, server) = mux_pair(config(version), config(version)).await;
    let server_task = tokio::spawn(async move {
        let mut stream = server.accept().await.unwrap();
        // The request ends with the client's FIN; EOF stays EOF.
        let mut request = Vec::new();
        stream.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, REQUEST);
        assert_eq!(stream.read(&mut [0; 16]).await.unwrap(), 0);
        // Our half is still open: a response much larger than any window.
        stream.write_all(&response).await.unwrap();
        stream.shutdown().await.unwrap();
        // Shutting down again is harmless; writing is not allowed any more.
        stream.shutdown().await.unwrap();
        let err = stream.write_all(b"late").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        (server, stream)
    });

    let mut stream = client.connect().await.unwrap();
    stream.write_all(REQUEST).await.unwrap();
    stream.shutdown().await.unwrap();
    let err = stream.write_all(b"more").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    // Only now start reading: the server's writes wait for window / receive budget meanwhile.
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), RESPONSE_LEN);
    assert_eq!(checksum(&got), response_sum);
    assert_eq!(stream.read(&mut [0; 16]).await.unwrap(), 0);

    let (server, server_stream) = server_task.await.unwrap();
    drop((stream, server_stream));
    client.close().await.unwrap();
    // The server saw our graceful close as the peer closing.
    let err = server.drive().await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    assert!(server.is_closed());
}

matrix!(half_close);

// ------------------------------------------------------------------------------------------------
// Graceful close: everything written before `close` arrives, then EOF on every stream

async fn graceful_close(version: Version) {
    const STREAMS: usize = 8;
    let (client, server) = mux_pair(config(version), config(version)).await;

    let server_task = tokio::spawn(async move {
        let mut readers = JoinSet::new();
        let end = loop {
            match server.accept().await {
                Ok(mut stream) => {
                    readers.spawn(async move {
                        let mut got = Vec::new();
                        stream.read_to_end(&mut got).await?;
                        io::Result::Ok((stream.id(), got.len(), checksum(&got)))
                    });
                }
                Err(e) => break e,
            }
        };
        let mut received = HashMap::new();
        while let Some(result) = readers.join_next().await {
            let (id, len, sum) = result.unwrap().expect("server stream failed");
            received.insert(id, (len, sum));
        }
        (received, end)
    });

    let mut sent = HashMap::new();
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let mut stream = client.connect().await.unwrap();
        // From 1 byte to ~700 KiB: some of it is still buffered when `close` is called.
        let data = payload(100 + i as u64, 1 + i * 100_000);
        stream.write_all(&data).await.unwrap();
        sent.insert(stream.id(), (data.len(), checksum(&data)));
        streams.push(stream);
    }
    client.close().await.unwrap();
    assert!(client.is_closed());
    // The streams are finished: no more writing, and no new streams.
    for stream in &mut streams {
        assert!(stream.write_all(b"after close").await.is_err());
    }
    assert!(client.connect().await.is_err());

    let (received, end) = server_task.await.unwrap();
    assert_eq!(end.kind(), io::ErrorKind::ConnectionAborted);
    assert_eq!(received, sent);
}

matrix!(graceful_close);

/// The client opens streams, writes, finishes them and closes before the server accepted any;
/// the server drives the connection to its end first (as a dedicated `drive` task may), then
/// accepts: every stream that arrived is still there, with all its data and then EOF.
async fn graceful_close_before_accept(version: Version) {
    const STREAMS: usize = 4;
    let (client, server) = mux_pair(config(version), config(version)).await;
    let mut sent = HashMap::new();
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let mut stream = client.connect().await.unwrap();
        let data = payload(200 + i as u64, 10 + i * 1000);
        stream.write_all(&data).await.unwrap();
        // Half of them finished here, the others (kept open) by `close`.
        if i % 2 == 0 {
            stream.shutdown().await.unwrap();
        }
        sent.insert(stream.id(), (data.len(), checksum(&data)));
        streams.push(stream);
    }
    client.close().await.unwrap();

    let end = server.drive().await.unwrap_err();
    assert_eq!(end.kind(), io::ErrorKind::ConnectionAborted);
    let mut received = HashMap::new();
    loop {
        match server.accept().await {
            Ok(mut stream) => {
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await.unwrap();
                received.insert(stream.id(), (got.len(), checksum(&got)));
            }
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
                break;
            }
        }
    }
    assert_eq!(received, sent);
}

matrix!(graceful_close_before_accept);

// ------------------------------------------------------------------------------------------------
// Keepalive

/// A mux whose peer is a raw TCP socket that never writes fails with `TimedOut` once the
/// keepalive timeout has passed, having sent NOPs meanwhile.
async fn keepalive_timeout(version: Version, side: Side, interval: Duration, timeout: Duration) {
    let (tcp, mut silent) = tcp_pair().await;
    let mux = Mux::new(tcp, side, keepalive_config(version, interval, timeout)).unwrap();
    let start = Instant::now();

    // A task waiting in `accept` keeps the mux polled, so its timer wakes it.
    let acceptor = tokio::spawn({
        let mux = mux.clone();
        async move { mux.accept().await.map(|s| s.id()) }
    });
    let mut stream = mux.connect().await.unwrap();
    stream.write_all(b"anyone there?").await.unwrap();
    let err = stream.read(&mut [0; 16]).await.unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(
        elapsed >= timeout && elapsed < timeout + interval + Duration::from_secs(2),
        "timed out after {elapsed:?}"
    );

    let err = acceptor.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(mux.is_closed());
    assert_eq!(
        mux.drive().await.unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    assert!(mux.connect().await.is_err());

    // The silent peer got the SYN, the data and NOPs, then the transport was closed.
    drop((stream, mux));
    let mut wire = Vec::new();
    silent.read_to_end(&mut wire).await.unwrap();
    let nops = parse_frames(&wire)
        .iter()
        .filter(|(cmd, _, _)| *cmd == CMD_NOP)
        .count();
    assert!(nops >= 1, "no NOP sent: {:?}", parse_frames(&wire));
}

#[tokio::test(start_paused = true)]
async fn keepalive_timeout_v1_client_paused() {
    let (interval, timeout) = (Duration::from_secs(1), Duration::from_secs(3));
    keepalive_timeout(Version::V1, Side::Client, interval, timeout).await;
}

#[tokio::test(start_paused = true)]
async fn keepalive_timeout_v2_server_paused() {
    let (interval, timeout) = (Duration::from_secs(10), Duration::from_secs(30));
    keepalive_timeout(Version::V2, Side::Server, interval, timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_timeout_v1_server_multi_thread() {
    let (interval, timeout) = (Duration::from_millis(50), Duration::from_millis(250));
    within(
        HANG,
        keepalive_timeout(Version::V1, Side::Server, interval, timeout),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_timeout_v2_client_multi_thread() {
    let (interval, timeout) = (Duration::from_millis(50), Duration::from_millis(250));
    within(
        HANG,
        keepalive_timeout(Version::V2, Side::Client, interval, timeout),
    )
    .await;
}

/// Two muxes with keepalive, idle for several timeouts, stay alive on each other's NOPs and
/// still work afterwards.
async fn keepalive_alive(version: Version, interval: Duration, timeout: Duration, idle: Duration) {
    let config = keepalive_config(version, interval, timeout);
    let (client, server) = mux_pair(config.clone(), config).await;
    let echo_server = spawn_echo_server(server.clone());
    // Nobody opens streams towards the client: this only keeps the client mux polled.
    let client_acceptor = tokio::spawn({
        let client = client.clone();
        async move { client.accept().await.map(|s| s.id()) }
    });

    let (client_before, server_before) = (client.stats(), server.stats());
    tokio::time::sleep(idle).await;
    assert!(!client.is_closed() && !server.is_closed());
    // Roughly idle / interval NOPs each way; ask for half of that.
    let expected = (idle.as_millis() / interval.as_millis() / 2) as u64;
    let client_in = client.stats().frames_in - client_before.frames_in;
    let server_in = server.stats().frames_in - server_before.frames_in;
    assert!(client_in >= expected, "client got {client_in} frames");
    assert!(server_in >= expected, "server got {server_in} frames");

    // Still usable.
    let data = payload(42, 100_000);
    let echoed = echo_roundtrip(client.connect().await.unwrap(), &data)
        .await
        .unwrap();
    assert_eq!(echoed, data);

    client.close().await.unwrap();
    let err = client_acceptor.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err}");
    let served = echo_server.await.unwrap();
    assert_eq!(served.streams, 1);
    assert_eq!(served.end.kind(), io::ErrorKind::ConnectionAborted);
}

#[tokio::test(start_paused = true)]
async fn keepalive_alive_v1_paused() {
    let (interval, timeout) = (Duration::from_secs(1), Duration::from_secs(3));
    keepalive_alive(Version::V1, interval, timeout, Duration::from_secs(30)).await;
}

#[tokio::test(start_paused = true)]
async fn keepalive_alive_v2_paused() {
    let (interval, timeout) = (Duration::from_secs(10), Duration::from_secs(30));
    keepalive_alive(Version::V2, interval, timeout, Duration::from_secs(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_alive_v1_multi_thread() {
    let (interval, timeout) = (Duration::from_millis(100), Duration::from_secs(1));
    let idle = Duration::from_millis(2500);
    within(HANG, keepalive_alive(Version::V1, interval, timeout, idle)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_alive_v2_multi_thread() {
    let (interval, timeout) = (Duration::from_millis(100), Duration::from_secs(1));
    let idle = Duration::from_millis(2500);
    within(HANG, keepalive_alive(Version::V2, interval, timeout, idle)).await;
}

// ------------------------------------------------------------------------------------------------
// Regression: a read that frees receive budget must let input resume

/// The server's receive budget fills up (input pauses) while a task waits on stream `b`; then
/// another task reads stream `a` to its end, freeing budget, and does nothing more with the
/// mux. Input must resume so `b`'s byte reaches the waiting task. Keepalive is off, so no NOP
/// timer can hide a lost wake-up.
async fn read_resumes_paused_input(version: Version) {
    const HALF: usize = 32 * 1024;
    let config = MuxConfig::default()
        .with_version(version)
        .with_keep_alive_disabled(true)
        .with_max_receive_buffer(2 * HALF)
        .with_max_stream_buffer(2 * HALF);
    let (client, server) = mux_pair(config.clone(), config).await;

    // Three streams, opened and accepted.
    let mut client_streams = Vec::new();
    let mut server_streams = Vec::new();
    for _ in 0..3 {
        let mut s = client.connect().await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut t = server.accept().await.unwrap();
        let mut byte = [0; 1];
        t.read_exact(&mut byte).await.unwrap();
        client_streams.push(s);
        server_streams.push(t);
    }
    let [mut a, mut b, mut c] = <[_; 3]>::try_from(client_streams).unwrap();
    let [mut sa, mut sb, _sc] = <[_; 3]>::try_from(server_streams).unwrap();

    // A task parked on b.
    let waiter = tokio::spawn(async move {
        let mut byte = [0; 1];
        sb.read_exact(&mut byte).await.map(|_| byte[0])
    });
    let before = server.stats().bytes_in;

    // a: half the budget and FIN; c: the other half (input pauses); then one byte on b.
    a.write_all(&[1; HALF]).await.unwrap();
    a.shutdown().await.unwrap();
    c.write_all(&[3; HALF]).await.unwrap();
    b.write_all(b"!").await.unwrap();
    b.flush().await.unwrap();
    while server.stats().bytes_in < before + 2 * HALF as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Read a to its end (no UPD owed after FIN): budget is free again.
    let mut got = Vec::new();
    sa.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), HALF);

    let byte = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the task waiting on b was never woken: input stayed paused")
        .unwrap()
        .unwrap();
    assert_eq!(byte, b'!');
}

matrix!(read_resumes_paused_input);

// ------------------------------------------------------------------------------------------------
// Reads into a caller's buffer

/// Reads into a `ReadBuf` over uninitialised memory touch only the bytes received: the rest
/// of a large buffer is not zeroed on every call (which costs more than a small message).
#[tokio::test]
async fn reads_do_not_initialise_the_rest_of_the_buffer() {
    use std::mem::MaybeUninit;
    use tokio::io::{AsyncRead, ReadBuf};

    let (client, server) = mux_pair(config(Version::V1), config(Version::V1)).await;
    let mut out = client.connect().await.unwrap();
    out.write_all(b"hello").await.unwrap();
    out.flush().await.unwrap();
    let inbound = server.accept().await.unwrap();

    let mut memory = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    let mut buf = ReadBuf::uninit(&mut memory);
    let (mut read, _write) = inbound.into_split();
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut read).poll_read(cx, &mut buf))
        .await
        .unwrap();
    assert_eq!(buf.filled(), b"hello");
    assert_eq!(
        buf.initialized().len(),
        5,
        "only the received bytes are written"
    );

    out.write_all(b" world").await.unwrap();
    out.flush().await.unwrap();
    let mut whole = ReadBuf::uninit(&mut memory);
    whole.put_slice(b"hello");
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut read).poll_read(cx, &mut whole))
        .await
        .unwrap();
    assert_eq!(whole.filled(), b"hello world");
    assert_eq!(whole.initialized().len(), 11);
}
