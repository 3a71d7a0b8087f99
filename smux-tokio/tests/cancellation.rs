//! Cancellation over real loopback TCP: futures of read, write, connect and accept dropped at
//! arbitrary points (tiny timeouts in loops, `select!` against other futures, a `read_exact`
//! dropped half-way) leave the mux usable and lose no data that an operation reported.
//!
//! Every scenario runs on the multi-thread runtime (two workers) and the current-thread one,
//! with protocol versions 1 and 2.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use smux_test_support::{checksum, payload, XorShift};
use smux_tokio::{Mux, MuxConfig, MuxStream, StreamId, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

type TcpMux = Mux<TcpStream>;
type TcpMuxStream = MuxStream<TcpStream>;

/// Failure guard for a whole scenario.
const HANG: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------------
// Helpers

/// The shared generator, with the deadlines of this file.
struct Rng(XorShift);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(XorShift::new(seed))
    }

    fn up_to(&mut self, max: usize) -> usize {
        self.0.up_to(max)
    }

    /// A short deadline for a future about to be cancelled: often zero (one poll, then
    /// dropped), sometimes a few microseconds to a millisecond.
    fn tiny(&mut self) -> Duration {
        match self.up_to(3) {
            0 | 1 => Duration::ZERO,
            2 => Duration::from_micros(self.up_to(50) as u64),
            _ => Duration::from_micros(self.up_to(1000) as u64),
        }
    }
}

async fn mux_pair(client: MuxConfig, server: MuxConfig) -> (TcpMux, TcpMux) {
    mux_pair_with(client, server, false).await
}

/// A mux pair; with `small_kernel_buffers`, the sockets' kernel buffers are shrunk so that
/// backpressure reaches the writer quickly.
async fn mux_pair_with(
    client: MuxConfig,
    server: MuxConfig,
    small_kernel_buffers: bool,
) -> (TcpMux, TcpMux) {
    let listen = TcpSocket::new_v4().unwrap();
    let connect = TcpSocket::new_v4().unwrap();
    if small_kernel_buffers {
        for s in [&listen, &connect] {
            s.set_send_buffer_size(16 * 1024).unwrap();
            s.set_recv_buffer_size(16 * 1024).unwrap();
        }
    }
    listen.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listen.local_addr().unwrap();
    let listener: TcpListener = listen.listen(16).unwrap();
    let (a, b) = tokio::join!(connect.connect(addr), listener.accept());
    let (a, (b, _)) = (a.unwrap(), b.unwrap());
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (
        Mux::client(a, client).unwrap(),
        Mux::server(b, server).unwrap(),
    )
}

fn config(version: Version) -> MuxConfig {
    MuxConfig::default().with_version(version)
}

/// Writes `data` in random pieces with random pauses (so that the reader often finds nothing
/// to read and its reads wait), then FIN.
async fn write_in_pieces(mut s: TcpMuxStream, data: Vec<u8>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut at = 0;
    while at < data.len() {
        let end = (at + 1 + rng.up_to(40_000)).min(data.len());
        s.write_all(&data[at..end]).await.unwrap();
        at = end;
        match rng.up_to(3) {
            0 => tokio::task::yield_now().await,
            1 => tokio::time::sleep(Duration::from_millis(1)).await,
            _ => {}
        }
    }
    s.shutdown().await.unwrap();
}

/// Like `write_in_pieces`, but stops at every multiple of `every` bytes until `go` says the
/// reader has caught up (so that the reader's next read has nothing to find).
async fn write_with_checkpoints(
    mut s: TcpMuxStream,
    data: Vec<u8>,
    seed: u64,
    every: usize,
    mut go: mpsc::UnboundedReceiver<()>,
) {
    let mut rng = Rng::new(seed);
    let mut at = 0;
    while at < data.len() {
        let checkpoint = (at / every + 1) * every;
        let end = (at + 1 + rng.up_to(40_000)).min(checkpoint).min(data.len());
        s.write_all(&data[at..end]).await.unwrap();
        at = end;
        if at == checkpoint && at < data.len() {
            // Everything written must reach the reader while this task waits: flush (in
            // version 2 the rest of it waits for window, which only a poll of the mux uses).
            s.flush().await.unwrap();
            go.recv().await.unwrap();
        } else if rng.up_to(3) == 0 {
            tokio::task::yield_now().await;
        }
    }
    s.shutdown().await.unwrap();
}

/// The mux pair still works: a fresh stream echoes a message.
async fn still_usable(client: &TcpMux, server: &TcpMux) {
    let mut a = client.connect().await.unwrap();
    a.write_all(b"still usable?").await.unwrap();
    a.shutdown().await.unwrap();
    let mut b = server.accept().await.unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"still usable?");
    b.write_all(b"yes").await.unwrap();
    b.shutdown().await.unwrap();
    let mut back = Vec::new();
    a.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"yes");
}

/// Runs `$scenario(version)` on both runtimes and both versions, as four tests.
macro_rules! matrix {
    ($scenario:ident) => {
        mod $scenario {
            use smux_tokio::Version;

            async fn guarded(version: Version) {
                match tokio::time::timeout(super::HANG, super::$scenario(version)).await {
                    Ok(()) => {}
                    Err(_) => panic!("scenario did not finish within {:?}", super::HANG),
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v1_multi_thread() {
                guarded(Version::V1).await
            }

            #[tokio::test(flavor = "current_thread")]
            async fn v1_current_thread() {
                guarded(Version::V1).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v2_multi_thread() {
                guarded(Version::V2).await
            }

            #[tokio::test(flavor = "current_thread")]
            async fn v2_current_thread() {
                guarded(Version::V2).await
            }
        }
    };
}

fn spawn<F: Future + Send + 'static>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F::Output: Send,
{
    tokio::spawn(f)
}

// ------------------------------------------------------------------------------------------------
// Reads

/// A reader whose reads are cancelled again and again by tiny timeouts still gets every byte,
/// in order; so does one reading with `read_chunk`.
async fn cancelled_reads_lose_nothing(version: Version) {
    const LEN: usize = 2 << 20;
    // The writer waits at each checkpoint until the reader has everything; the reader then
    // makes one read that must find nothing and is dropped, so cancellations are certain.
    const EVERY: usize = 256 * 1024;
    let (client, server) = mux_pair(config(version), config(version)).await;
    let data = payload(1, LEN);
    for (i, use_chunks) in [false, true].into_iter().enumerate() {
        let (go, wait) = mpsc::unbounded_channel();
        let writer = spawn(write_with_checkpoints(
            client.connect().await.unwrap(),
            data.clone(),
            i as u64,
            EVERY,
            wait,
        ));
        let mut s = server.accept().await.unwrap();
        let mut rng = Rng::new(7 + i as u64);
        let mut got = Vec::with_capacity(LEN);
        let mut cancelled = 0;
        let mut buf = vec![0; 20_000];
        let mut checkpoint = EVERY;
        loop {
            if got.len() == checkpoint && checkpoint < LEN {
                let probe = timeout(Duration::ZERO, s.read(&mut buf)).await;
                assert!(probe.is_err(), "a read found data the writer never sent");
                cancelled += 1;
                checkpoint += EVERY;
                go.send(()).unwrap();
            }
            let max = 1 + rng.up_to(buf.len() - 1);
            let d = rng.tiny();
            let read = if use_chunks {
                timeout(d, s.read_chunk(max))
                    .await
                    .map(|r| r.unwrap().map(|c| c.to_vec()))
            } else {
                timeout(d, s.read(&mut buf[..max]))
                    .await
                    .map(|r| Some(buf[..r.unwrap()].to_vec()).filter(|c| !c.is_empty()))
            };
            match read {
                Ok(Some(chunk)) => got.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(_) => cancelled += 1,
            }
        }
        writer.await.unwrap();
        assert_eq!(got.len(), LEN);
        assert_eq!(checksum(&got), checksum(&data));
        assert!(
            cancelled >= LEN / EVERY - 1,
            "only {cancelled} reads cancelled"
        );
    }
    still_usable(&client, &server).await;
}

matrix!(cancelled_reads_lose_nothing);

/// One task reads two streams with `select!`: the losing read is dropped every time, and
/// neither stream loses a byte.
async fn reads_raced_in_select_lose_nothing(version: Version) {
    const LEN: usize = 1 << 20;
    let (client, server) = mux_pair(config(version), config(version)).await;
    let (da, db) = (payload(2, LEN), payload(3, LEN));
    let wa = spawn(write_in_pieces(
        client.connect().await.unwrap(),
        da.clone(),
        2,
    ));
    let wb = spawn(write_in_pieces(
        client.connect().await.unwrap(),
        db.clone(),
        3,
    ));
    let mut a = server.accept().await.unwrap();
    let mut b = server.accept().await.unwrap();
    let (mut ga, mut gb) = (Vec::new(), Vec::new());
    let (mut ba, mut bb) = (vec![0; 7000], vec![0; 9000]);
    let (mut a_done, mut b_done) = (false, false);
    let mut rng = Rng::new(4);
    while !(a_done && b_done) {
        tokio::select! {
            r = a.read(&mut ba), if !a_done => {
                let n = r.unwrap();
                a_done = n == 0;
                ga.extend_from_slice(&ba[..n]);
            }
            r = b.read(&mut bb), if !b_done => {
                let n = r.unwrap();
                b_done = n == 0;
                gb.extend_from_slice(&bb[..n]);
            }
            // A third contender that sometimes wins while both reads are pending.
            () = tokio::time::sleep(rng.tiny()) => {}
        }
    }
    wa.await.unwrap();
    wb.await.unwrap();
    assert_eq!(checksum(&ga), checksum(&da));
    assert_eq!(checksum(&gb), checksum(&db));
    still_usable(&client, &server).await;
}

matrix!(reads_raced_in_select_lose_nothing);

/// A `read_exact` dropped half-way keeps what it read in the caller's buffer, and the stream
/// continues exactly after those bytes.
async fn read_exact_dropped_half_way(version: Version) {
    let (client, server) = mux_pair(config(version), config(version)).await;
    let data = payload(5, 1000);
    let mut w = client.connect().await.unwrap();
    w.write_all(&data[..500]).await.unwrap(); // one frame
    w.flush().await.unwrap();
    let mut r = server.accept().await.unwrap();
    let mut buf = vec![0; 1000];
    // The first byte arrives with its whole frame.
    r.read_exact(&mut buf[..1]).await.unwrap();
    // The next read_exact takes the other 499 bytes on its first poll, then waits for more
    // and is dropped.
    let cancelled = timeout(Duration::from_millis(50), r.read_exact(&mut buf[1..])).await;
    assert!(cancelled.is_err(), "read_exact finished with half the data");
    assert_eq!(&buf[..500], &data[..500]);
    w.write_all(&data[500..]).await.unwrap();
    w.shutdown().await.unwrap();
    r.read_exact(&mut buf[500..]).await.unwrap();
    assert_eq!(buf, data);
    assert_eq!(r.read(&mut [0; 8]).await.unwrap(), 0);
    still_usable(&client, &server).await;
}

matrix!(read_exact_dropped_half_way);

// ------------------------------------------------------------------------------------------------
// Accept and connect

/// Accepts cancelled by tiny timeouts and lost `select!` races never lose a stream: every
/// stream the client opened is accepted exactly once.
async fn cancelled_accepts_lose_no_stream(version: Version) {
    const STREAMS: u32 = 200;
    // The opener waits after each batch until all of it was accepted; the acceptor then makes
    // one accept that must find nothing and is dropped, so cancellations are certain.
    const BATCH: u32 = 20;
    let (client, server) = mux_pair(config(version), config(version)).await;
    let (go, mut wait) = mpsc::unbounded_channel::<()>();
    let opener = spawn({
        let client = client.clone();
        async move {
            let mut rng = Rng::new(11);
            for i in 0..STREAMS {
                let mut s = client.connect().await.unwrap();
                s.write_all(&i.to_le_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
                if (i + 1) % BATCH == 0 && i + 1 < STREAMS {
                    wait.recv().await.unwrap();
                } else if rng.up_to(2) == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let mut rng = Rng::new(12);
    let mut seen = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut cancelled = 0;
    let mut batch_end = BATCH as usize;
    while seen.len() < STREAMS as usize {
        if seen.len() == batch_end {
            let probe = timeout(Duration::ZERO, server.accept()).await;
            assert!(probe.is_err(), "an accept found a stream nobody opened yet");
            cancelled += 1;
            batch_end += BATCH as usize;
            go.send(()).unwrap();
        }
        let accepted = if rng.up_to(1) == 0 {
            timeout(rng.tiny(), server.accept()).await.ok()
        } else {
            tokio::select! {
                s = server.accept() => Some(s),
                () = tokio::time::sleep(rng.tiny()) => None,
            }
        };
        let Some(s) = accepted else {
            cancelled += 1;
            continue;
        };
        let mut s = s.unwrap();
        assert!(ids.insert(s.id()), "stream {} accepted twice", s.id());
        let mut index = [0; 4];
        s.read_exact(&mut index).await.unwrap();
        assert!(seen.insert(u32::from_le_bytes(index)));
    }
    opener.await.unwrap();
    assert_eq!(seen, (0..STREAMS).collect());
    assert!(
        cancelled >= (STREAMS / BATCH - 1) as usize,
        "only {cancelled} accepts cancelled"
    );
    assert_eq!(server.stats().streams_accepted, u64::from(STREAMS));
    still_usable(&client, &server).await;
}

matrix!(cancelled_accepts_lose_no_stream);

/// Connect futures dropped before or during their poll leave nothing behind: no stream, no
/// id used, no SYN; a connected stream dropped at once is just a stream that ends at once.
async fn cancelled_connects_leave_no_trace(version: Version) {
    let (client, server) = mux_pair(config(version), config(version)).await;
    for _ in 0..100 {
        drop(client.connect());
        tokio::select! {
            biased;
            () = std::future::ready(()) => {}
            _ = client.connect() => panic!("the biased branch wins"),
        }
    }
    assert_eq!(client.stream_count(), 0);
    assert_eq!(client.stats().streams_opened, 0);
    // A connect polled under a zero timeout completes on its first poll.
    let s = timeout(Duration::ZERO, client.connect())
        .await
        .expect("connect completes on its first poll")
        .unwrap();
    assert_eq!(
        s.id(),
        StreamId::new(3),
        "no id was used by the dropped connects"
    );
    drop(s);
    // The peer sees that stream open and end at once, and nothing else before it.
    let mut t = server.accept().await.unwrap();
    assert_eq!(t.id(), StreamId::new(3));
    assert_eq!(t.read(&mut [0; 8]).await.unwrap(), 0);
    drop(t);
    still_usable(&client, &server).await;
    assert_eq!(client.stats().streams_opened, 2);
}

matrix!(cancelled_connects_leave_no_trace);

// ------------------------------------------------------------------------------------------------
// Writes

/// Writes cancelled by tiny timeouts against a slow reader and small send buffers: every
/// `write` that returned `Ok(n)` delivered exactly those n bytes, and a cancelled one none.
async fn cancelled_writes_deliver_what_they_reported(version: Version) {
    const LEN: usize = 1 << 20;
    let small = config(version)
        .with_max_stream_send_buffer(16 * 1024)
        .with_max_send_buffer(64 * 1024);
    // The receiver buffers little, so the slow reader holds the writer back.
    let receiver = config(version)
        .with_max_receive_buffer(64 * 1024)
        .with_max_stream_buffer(32 * 1024);
    let (client, server) = mux_pair_with(small, receiver, true).await;
    let data = payload(21, LEN);
    let mut w = client.connect().await.unwrap();
    // The reader starts only once a write was cancelled (nobody reading, the buffers fill up
    // and a write must wait), so cancellations are certain.
    let (start, mut started) = mpsc::unbounded_channel::<()>();
    let reader = spawn({
        let server = server.clone();
        async move {
            started.recv().await.unwrap();
            let mut r = server.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0; 4096];
            let mut rng = Rng::new(22);
            loop {
                let n = r.read(&mut buf).await.unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
                if rng.up_to(7) == 0 {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        }
    });
    let mut rng = Rng::new(23);
    let mut at = 0;
    let mut cancelled = 0;
    while at < LEN {
        let end = (at + 1 + rng.up_to(50_000)).min(LEN);
        match timeout(rng.tiny(), w.write(&data[at..end])).await {
            Ok(n) => at += n.unwrap(),
            Err(_) => {
                cancelled += 1;
                let _ = start.send(());
            }
        }
        // Cancelled flushes do not disturb anything either.
        if rng.up_to(15) == 0 {
            let _ = timeout(Duration::ZERO, w.flush()).await;
        }
    }
    w.shutdown().await.unwrap();
    let got = reader.await.unwrap();
    assert_eq!(got.len(), LEN);
    assert_eq!(checksum(&got), checksum(&data));
    assert!(cancelled > 0, "no write was ever cancelled");
    still_usable(&client, &server).await;
}

matrix!(cancelled_writes_deliver_what_they_reported);

/// A `write_all` dropped half-way has written some prefix of its buffer (whole `poll_write`s)
/// and nothing else: after it, the stream carries that prefix, then what is written next.
async fn write_all_dropped_half_way(version: Version) {
    // More than the kernel buffers of a loopback connection hold, so that the write_all
    // cannot finish while nobody reads.
    const LEN: usize = 16 << 20;
    let small = config(version).with_max_stream_send_buffer(16 * 1024);
    let (client, server) = mux_pair(small, config(version)).await;
    let data = payload(31, LEN);
    for round in 0..4u64 {
        let mut w = client.connect().await.unwrap();
        let mut r = server.accept().await.unwrap();
        // Nobody reads yet: the write_all fills the buffers and waits, and is dropped.
        let cancel_after = Duration::from_millis(5 + 10 * round);
        let cancelled = timeout(cancel_after, w.write_all(&data)).await;
        assert!(
            cancelled.is_err(),
            "write_all of {LEN} bytes finished unread"
        );
        // Now read, and finish the stream with a marker.
        let reader = spawn(async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        });
        w.write_all(b"<end>").await.unwrap();
        w.shutdown().await.unwrap();
        let got = reader.await.unwrap();
        let k = got.len() - 5;
        assert_eq!(&got[k..], b"<end>");
        assert!(k > 0 && k < LEN, "round {round}: prefix of {k} bytes");
        assert!(
            got[..k] == data[..k],
            "round {round}: the prefix is not the data"
        );
    }
    still_usable(&client, &server).await;
}

matrix!(write_all_dropped_half_way);

// ------------------------------------------------------------------------------------------------
// Shutdown and close

/// A stream `shutdown` and a `Mux::close` dropped right after their first poll still take
/// effect: the FIN follows all the data, and the connection closes gracefully, as long as
/// something drives the mux (here a `drive` task; the mux spawns nothing itself).
async fn cancelled_shutdown_and_close_still_complete(version: Version) {
    const LEN: usize = 1 << 20;
    let (client, server) = mux_pair(config(version), config(version)).await;
    let driver = spawn({
        let client = client.clone();
        async move { client.drive().await }
    });
    let data = payload(41, LEN);
    let mut w = client.connect().await.unwrap();
    let reader = spawn({
        let server = server.clone();
        async move {
            let mut r = server.accept().await.unwrap();
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        }
    });
    w.write_all(&data).await.unwrap();
    let _ = timeout(Duration::ZERO, w.shutdown()).await;
    let got = reader.await.unwrap();
    assert_eq!(got.len(), LEN);
    assert_eq!(checksum(&got), checksum(&data));
    // A write after the (cancelled) shutdown fails: the write half is finished.
    assert!(w.write_all(b"late").await.is_err());

    let _ = timeout(Duration::ZERO, client.close()).await;
    driver.await.unwrap().expect("closed by this side");
    assert!(client.is_closed());
    let end = server.accept().await.unwrap_err();
    assert_eq!(end.kind(), std::io::ErrorKind::ConnectionAborted, "{end}");
}

matrix!(cancelled_shutdown_and_close_still_complete);
