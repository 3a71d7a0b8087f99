//! Integration tests over real loopback TCP with smol, for protocol versions 1 and 2.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use smol::future::FutureExt as _;
use smol::net::{TcpListener, TcpStream};
use smol::Timer;
use smux_smol::{Mux, MuxConfig, MuxStream, Version};
use smux_test_support::{Checksum, XorShift};

type TcpMux = Mux<TcpStream>;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs a test body on smol, failing it if it takes longer than `limit`.
fn run(name: &str, limit: Duration, body: impl Future<Output = ()>) {
    let started = Instant::now();
    smol::block_on(body.or(async {
        Timer::after(limit).await;
        panic!("{name}: timed out after {limit:?}");
    }));
    eprintln!("{name}: {:.2?}", started.elapsed());
}

fn config(version: Version) -> MuxConfig {
    MuxConfig::default().with_version(version)
}

/// Short keepalive: NOP every 100 ms, fail after 300 ms of silence.
fn fast_keepalive(version: Version) -> MuxConfig {
    MuxConfig::default()
        .with_version(version)
        .with_keep_alive_interval(Duration::from_millis(100))
        .with_keep_alive_timeout(Duration::from_millis(300))
}

/// A listener on an ephemeral loopback port.
async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A connected pair of loopback TCP sockets: (client end, server end).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let (listener, addr) = listener().await;
    let (client, (server, _)) =
        futures::future::try_join(TcpStream::connect(addr), listener.accept())
            .await
            .unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// A client mux and a server mux over one loopback TCP connection.
async fn mux_pair(client: MuxConfig, server: MuxConfig) -> (TcpMux, TcpMux) {
    let (c, s) = tcp_pair().await;
    (
        smux_smol::client(c, client).unwrap(),
        smux_smol::server(s, server).unwrap(),
    )
}

/// Copies a stream back to itself until the peer's FIN, then sends FIN.
async fn echo(stream: MuxStream<TcpStream>) -> io::Result<u64> {
    let id = stream.id();
    let (mut reader, mut writer) = stream.split();
    let result = async {
        let n = futures::io::copy(&mut reader, &mut writer).await?;
        writer.close().await?;
        Ok(n)
    }
    .await;
    if let Err(e) = &result {
        eprintln!("echo {id:?}: {e}");
    }
    result
}

/// Accepts streams and echoes each in a task of its own, until accept fails; returns that
/// error.
fn spawn_echo_server(mux: TcpMux) -> smol::Task<io::Error> {
    smol::spawn(async move {
        loop {
            match mux.accept().await {
                Ok(stream) => smol::spawn(echo(stream)).detach(),
                Err(e) => return e,
            }
        }
    })
}

/// Reads a stream to its end, returning the length and checksum of what was read.
async fn drain(
    stream: &mut (impl futures::io::AsyncRead + Unpin),
) -> io::Result<(usize, Checksum)> {
    let mut buf = vec![0; 16 * 1024];
    let mut len = 0;
    let mut sum = Checksum::new();
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok((len, sum));
        }
        len += n;
        sum.update(&buf[..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// Echo: 100 sequential streams

async fn sequential_echo(version: Version) {
    let (client, server) = mux_pair(config(version), config(version)).await;
    let server_task = spawn_echo_server(server);
    let mut rng = XorShift::new(1);
    for i in 0..100u32 {
        let mut s = client.connect().await.unwrap();
        assert_eq!(u32::from(s.id()) % 2, 1, "client ids are odd");
        let len = rng.range(1, 8 * 1024);
        let message = rng.bytes(len);
        s.write_all(&message).await.unwrap();
        s.close().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), message.len(), "stream {i}");
        assert!(got == message, "stream {i}: echo differs");
    }
    let stats = client.stats();
    assert_eq!(stats.streams_opened, 100);
    client.close().await.unwrap();
    assert!(client.is_closed());
    // The server's accept loop ends when the client goes away.
    let e = server_task.await;
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted, "{e}");
}

#[test]
fn echo_100_sequential_streams_v1() {
    run(
        "echo_100_sequential_streams_v1",
        Duration::from_secs(20),
        sequential_echo(Version::V1),
    );
}

#[test]
fn echo_100_sequential_streams_v2() {
    run(
        "echo_100_sequential_streams_v2",
        Duration::from_secs(20),
        sequential_echo(Version::V2),
    );
}

// ---------------------------------------------------------------------------------------------
// 1000 concurrent streams with random sizes

const CONCURRENT_STREAMS: usize = 1000;
/// About 1.5 s in debug when nothing stalls; a stall that only the 10 s keepalive breaks fails.
const CONCURRENT_LIMIT: Duration = Duration::from_secs(10);

/// Mostly small: 80% up to 4 KiB, 17% up to 64 KiB, 3% up to 1 MiB; stream 0 is 1 MiB exactly.
fn skewed_size(rng: &mut XorShift, i: usize) -> usize {
    if i == 0 {
        return 1024 * 1024;
    }
    match rng.next_u64() % 100 {
        0..80 => rng.range(0, 4 * 1024),
        80..97 => rng.range(4 * 1024, 64 * 1024),
        _ => rng.range(64 * 1024, 1024 * 1024),
    }
}

/// One client stream: writes `len` pseudo-random bytes in random pieces while reading the echo
/// concurrently; checks the echo's length and checksum.
async fn echo_one(mux: TcpMux, i: usize, len: usize) {
    let mut rng = XorShift::new(1000 + i as u64);
    let data = rng.bytes(len);
    let expected = Checksum::of(&data);
    let stream = mux.connect().await.unwrap();
    let id = stream.id();
    let (mut reader, mut writer) = stream.split();
    let write = async {
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = rng.range(1, 64 * 1024).min(rest.len());
            writer.write_all(&rest[..n]).await?;
            rest = &rest[n..];
        }
        writer.close().await
    };
    let (written, read) = futures::future::join(write, drain(&mut reader)).await;
    written.unwrap_or_else(|e| panic!("stream {i} ({id:?}): write: {e}"));
    let (got_len, got_sum) = read.unwrap_or_else(|e| panic!("stream {i} ({id:?}): read: {e}"));
    assert_eq!(got_len, len, "stream {i} ({id:?}): echo length");
    assert_eq!(got_sum, expected, "stream {i} ({id:?}): echo checksum");
}

async fn concurrent_random(version: Version) {
    let (client, server) = mux_pair(config(version), config(version)).await;
    let server_handle = server.clone();
    let server_task = spawn_echo_server(server);
    let mut rng = XorShift::new(42);
    let sizes: Vec<usize> = (0..CONCURRENT_STREAMS)
        .map(|i| skewed_size(&mut rng, i))
        .collect();
    let total: usize = sizes.iter().sum();
    let started = Instant::now();
    let tasks: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| smol::spawn(echo_one(client.clone(), i, len)))
        .collect();
    for task in tasks {
        task.await;
    }
    eprintln!(
        "{version:?}: {CONCURRENT_STREAMS} streams, {:.1} MiB each way, in {:.2?}",
        total as f64 / (1024.0 * 1024.0),
        started.elapsed()
    );
    let stats = server_handle.stats();
    assert_eq!(stats.streams_accepted, CONCURRENT_STREAMS as u64);
    assert_eq!(stats.streams_refused, 0);
    client.close().await.unwrap();
    let e = server_task.await;
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted, "{e}");
}

#[test]
fn concurrent_1000_random_streams_v1() {
    run(
        "concurrent_1000_random_streams_v1",
        CONCURRENT_LIMIT,
        concurrent_random(Version::V1),
    );
}

#[test]
fn concurrent_1000_random_streams_v2() {
    run(
        "concurrent_1000_random_streams_v2",
        CONCURRENT_LIMIT,
        concurrent_random(Version::V2),
    );
}

// ---------------------------------------------------------------------------------------------
// Half-close

const RESPONSE_LEN: usize = 2 * 1024 * 1024;

/// The opener sends a request and half-closes; the acceptor reads to EOF, then writes a
/// response larger than the v2 window (and the per-stream send buffer) and closes; the opener
/// reads it all to EOF.
async fn half_close(version: Version, server_opens: bool) {
    let (client, server) = mux_pair(config(version), config(version)).await;
    let (opener, acceptor) = if server_opens {
        (server, client)
    } else {
        (client, server)
    };
    let response = XorShift::new(7).bytes(RESPONSE_LEN);
    let expected = Checksum::of(&response);
    let responder = smol::spawn(async move {
        let mut s = acceptor.accept().await.unwrap();
        let mut request = Vec::new();
        s.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"give me two mebibytes");
        // Reading again after the end still says end.
        assert_eq!(s.read(&mut [0; 16]).await.unwrap(), 0);
        s.write_all(&response).await.unwrap();
        s.close().await.unwrap();
        // After our FIN, writing is refused.
        let e = s.write_all(b"more").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
        (s, acceptor)
    });
    let mut s = opener.connect().await.unwrap();
    s.write_all(b"give me two mebibytes").await.unwrap();
    s.close().await.unwrap();
    let e = s.write_all(b"x").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
    let (len, sum) = drain(&mut s).await.unwrap();
    assert_eq!(len, RESPONSE_LEN);
    assert_eq!(sum, expected);
    assert_eq!(s.read(&mut [0; 16]).await.unwrap(), 0);
    let (their_stream, acceptor) = responder.await;
    drop(their_stream);
    drop(s);
    // The connection is still usable after both halves closed.
    let mut s2 = opener.connect().await.unwrap();
    let echo_task = smol::spawn(async move { echo(acceptor.accept().await.unwrap()).await });
    s2.write_all(b"still alive").await.unwrap();
    s2.close().await.unwrap();
    let mut got = Vec::new();
    s2.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"still alive");
    assert_eq!(echo_task.await.unwrap(), 11);
}

#[test]
fn half_close_client_opens_v1() {
    run(
        "half_close_client_opens_v1",
        Duration::from_secs(20),
        half_close(Version::V1, false),
    );
}

#[test]
fn half_close_client_opens_v2() {
    run(
        "half_close_client_opens_v2",
        Duration::from_secs(20),
        half_close(Version::V2, false),
    );
}

#[test]
fn half_close_server_opens_v1() {
    run(
        "half_close_server_opens_v1",
        Duration::from_secs(20),
        half_close(Version::V1, true),
    );
}

#[test]
fn half_close_server_opens_v2() {
    run(
        "half_close_server_opens_v2",
        Duration::from_secs(20),
        half_close(Version::V2, true),
    );
}

// ---------------------------------------------------------------------------------------------
// Keepalive

/// A raw TCP client that connects and then neither writes nor closes: a server mux parked in
/// accept() fails with TimedOut once the keepalive timeout passes.
async fn dead_client_times_out_accept(version: Version) {
    let (listener, addr) = listener().await;
    let (raw, (tcp, _)) = futures::future::try_join(TcpStream::connect(addr), listener.accept())
        .await
        .unwrap();
    let started = Instant::now();
    let server = smux_smol::server(tcp, fast_keepalive(version)).unwrap();
    let e = server.accept().await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
    assert!(server.is_closed());
    // The dead peer must stay open until the end, or the mux would see EOF instead.
    drop(raw);
}

/// A raw TCP server that accepts and then neither writes nor closes: a client stream parked in
/// read() fails with TimedOut.
async fn dead_server_times_out_read(version: Version) {
    let (raw, tcp) = tcp_pair().await;
    let started = Instant::now();
    let client = smux_smol::client(raw, fast_keepalive(version)).unwrap();
    let mut s = client.connect().await.unwrap();
    s.write_all(b"anyone there?").await.unwrap();
    let e = s.read(&mut [0; 64]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
    // Everything else on the mux reports the same error.
    let e = client.accept().await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    let e = client.drive().await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    let e = client.connect().await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    drop(tcp);
}

#[test]
fn keepalive_dead_peer_fails_accept_v1() {
    run(
        "keepalive_dead_peer_fails_accept_v1",
        Duration::from_secs(5),
        dead_client_times_out_accept(Version::V1),
    );
}

#[test]
fn keepalive_dead_peer_fails_accept_v2() {
    run(
        "keepalive_dead_peer_fails_accept_v2",
        Duration::from_secs(5),
        dead_client_times_out_accept(Version::V2),
    );
}

#[test]
fn keepalive_dead_peer_fails_read_v1() {
    run(
        "keepalive_dead_peer_fails_read_v1",
        Duration::from_secs(5),
        dead_server_times_out_read(Version::V1),
    );
}

#[test]
fn keepalive_dead_peer_fails_read_v2() {
    run(
        "keepalive_dead_peer_fails_read_v2",
        Duration::from_secs(5),
        dead_server_times_out_read(Version::V2),
    );
}

/// Two muxes left idle well past the keepalive timeout stay up thanks to NOPs: the server
/// waits in accept(), the client in drive(). Then a stream still works.
async fn idle_muxes_stay_alive(version: Version) {
    let (client, server) = mux_pair(fast_keepalive(version), fast_keepalive(version)).await;
    let server_handle = server.clone();
    let server_task = smol::spawn(async move {
        let s = server.accept().await?;
        echo(s).await
    });
    let driver = client.clone();
    let drive_task = smol::spawn(async move { driver.drive().await });

    // Five keepalive timeouts of silence from the application.
    Timer::after(Duration::from_millis(1500)).await;
    assert!(!client.is_closed());
    assert!(!server_handle.is_closed());
    let (c, s) = (client.stats(), server_handle.stats());
    // A NOP every 100 ms: about 15 each way by now.
    assert!(c.frames_in >= 8, "client got {} frames", c.frames_in);
    assert!(s.frames_in >= 8, "server got {} frames", s.frames_in);
    assert!(c.frames_out >= 8, "client sent {} frames", c.frames_out);
    assert!(s.frames_out >= 8, "server sent {} frames", s.frames_out);

    let mut stream = client.connect().await.unwrap();
    stream.write_all(b"after a long nap").await.unwrap();
    stream.close().await.unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"after a long nap");
    assert_eq!(server_task.await.unwrap(), 16);

    client.close().await.unwrap();
    drive_task.await.unwrap();
}

#[test]
fn keepalive_idle_muxes_stay_alive_v1() {
    run(
        "keepalive_idle_muxes_stay_alive_v1",
        Duration::from_secs(5),
        idle_muxes_stay_alive(Version::V1),
    );
}

#[test]
fn keepalive_idle_muxes_stay_alive_v2() {
    run(
        "keepalive_idle_muxes_stay_alive_v2",
        Duration::from_secs(5),
        idle_muxes_stay_alive(Version::V2),
    );
}

// ---------------------------------------------------------------------------------------------
// Graceful close

const CLOSE_STREAMS: usize = 8;
/// More than the initial v2 peer window (256 KiB, as in Go), so in version 2 close() has to
/// wait for the server to read (and grant window) before it can finish; the part beyond the
/// window stays within the per-stream send buffer (256 KiB), so writes return at once.
const CLOSE_STREAM_LEN: usize = 320 * 1024;

/// The client writes on several streams, then closes the mux at once; the server must receive
/// every byte, then EOF on each stream.
async fn graceful_close(version: Version) {
    let (client, server) = mux_pair(config(version), config(version)).await;
    let server_task = smol::spawn(async move {
        let mut readers = Vec::new();
        let accept_error = loop {
            match server.accept().await {
                Ok(mut s) => readers.push(smol::spawn(async move {
                    let id = s.id();
                    let mut data = Vec::new();
                    let result = s.read_to_end(&mut data).await;
                    (id, result.map(|_| data))
                })),
                Err(e) => break e,
            }
        };
        let mut streams = Vec::new();
        for r in readers {
            streams.push(r.await);
        }
        (streams, accept_error)
    });

    let mut sent = Vec::new();
    let mut streams = Vec::new();
    for i in 0..CLOSE_STREAMS {
        let mut s = client.connect().await.unwrap();
        let data = XorShift::new(100 + i as u64).bytes(CLOSE_STREAM_LEN);
        s.write_all(&data).await.unwrap();
        sent.push((s.id(), data));
        streams.push(s);
    }
    client.close().await.unwrap();
    assert!(client.is_closed());
    // The streams refuse further writes.
    for s in &mut streams {
        assert!(s.write_all(b"too late").await.is_err());
    }
    drop(streams);

    let (received, accept_error) = server_task.await;
    assert_eq!(
        accept_error.kind(),
        io::ErrorKind::ConnectionAborted,
        "{accept_error}"
    );
    assert_eq!(received.len(), CLOSE_STREAMS, "streams accepted");
    for ((id, data), (got_id, got)) in sent.iter().zip(received) {
        assert_eq!(*id, got_id);
        let got = got.unwrap_or_else(|e| panic!("stream {id:?}: {e}"));
        assert_eq!(got.len(), data.len(), "stream {id:?}");
        assert!(got == *data, "stream {id:?}: data differs");
    }
}

#[test]
fn graceful_close_delivers_everything_v1() {
    run(
        "graceful_close_delivers_everything_v1",
        Duration::from_secs(10),
        graceful_close(Version::V1),
    );
}

#[test]
fn graceful_close_delivers_everything_v2() {
    run(
        "graceful_close_delivers_everything_v2",
        Duration::from_secs(10),
        graceful_close(Version::V2),
    );
}

/// The client finishes closing before the server accepts anything: the streams it opened,
/// their data and their FINs have all arrived, followed by the end of the connection. The
/// server must still be able to accept and read them.
async fn graceful_close_then_accept(version: Version) {
    let (client, server) = mux_pair(config(version), config(version)).await;
    let mut sent = Vec::new();
    for i in 0..3u64 {
        let mut s = client.connect().await.unwrap();
        let data = XorShift::new(200 + i).bytes(1024);
        s.write_all(&data).await.unwrap();
        sent.push(data);
    }
    client.close().await.unwrap();
    // Let everything, EOF included, reach the server's socket.
    Timer::after(Duration::from_millis(50)).await;
    for (i, data) in sent.iter().enumerate() {
        let mut s = server
            .accept()
            .await
            .unwrap_or_else(|e| panic!("accepting stream {i} after the client closed: {e}"));
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert!(got == *data, "stream {i}: data differs");
    }
    let e = server.accept().await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted, "{e}");
}

#[test]
fn graceful_close_then_accept_v1() {
    run(
        "graceful_close_then_accept_v1",
        Duration::from_secs(5),
        graceful_close_then_accept(Version::V1),
    );
}

#[test]
fn graceful_close_then_accept_v2() {
    run(
        "graceful_close_then_accept_v2",
        Duration::from_secs(5),
        graceful_close_then_accept(Version::V2),
    );
}

// ---------------------------------------------------------------------------------------------
// Paused input

/// The server's receive buffer fills while frames it has already read from the socket are
/// still unprocessed, and the client has nothing more to send. Once the application reads, the
/// buffered frames must be processed without waiting for new bytes from the transport.
#[test]
fn paused_input_resumes_from_buffered_frames_v1() {
    run(
        "paused_input_resumes_from_buffered_frames_v1",
        Duration::from_secs(5),
        async {
            let client_config = MuxConfig::default()
                .with_keep_alive_disabled(true)
                .with_max_frame_size(1024);
            let server_config = MuxConfig::default()
                .with_keep_alive_disabled(true)
                .with_max_receive_buffer(32 * 1024)
                .with_max_stream_buffer(32 * 1024);
            let (client, server) = mux_pair(client_config, server_config).await;
            // 48 frames of 1 KiB and a FIN: one socket read on the server takes them all.
            let data = XorShift::new(3).bytes(48 * 1024);
            let mut s = client.connect().await.unwrap();
            s.write_all(&data).await.unwrap();
            s.close().await.unwrap();
            Timer::after(Duration::from_millis(100)).await;

            let mut t = server.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0; 4096];
            loop {
                let n = t
                    .read(&mut buf)
                    .or(async {
                        Timer::after(Duration::from_secs(1)).await;
                        Err(io::Error::other("no progress for 1 s"))
                    })
                    .await
                    .unwrap_or_else(|e| {
                        panic!("stuck after {} of {} bytes: {e}", got.len(), data.len())
                    });
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got == data, "data differs");
        },
    );
}
