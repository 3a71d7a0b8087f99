//! Issue 19, "no stream waits on another and no wake-up is lost", on the transports of
//! `test_util::slow`: a slow link on a virtual clock, flushes that are `Pending` once or until
//! a gate opens, and reads cancelled while parked.
//!
//! Everything runs on a `futures::executor::LocalPool`, `run_until_stalled()` between ticks of
//! the link's clock, with [`NoTimer`] and keepalive disabled: nothing wakes a task but the
//! transports and the mux itself, and how long something took is a count of ticks, the same on
//! every run. A step that takes longer than its bound fails the test (the bounds are derived
//! below); [`within`] only guards against a hang of the executor itself.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use futures::channel::oneshot;
use futures::executor::{block_on, LocalPool};
use futures::future::{pending, select, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::task::LocalSpawnExt;

use super::{config, counting, pair, pattern, poll_once, poll_read_once, read_all, within};
use crate::test_util::{duplex, slow_link, DuplexEnd, LinkClock, LinkEnd, PendingFlush};
use crate::{Mux, MuxStream, NoTimer, OwnedWriteHalf, Version};

// ------------------------------------------------------------------------------------------------
// An interactive stream beside bulk writers, on a slow link

/// Bytes the link carries per tick, each way.
const RATE: usize = 16 * 1024;
/// The link's buffers: bytes written and not yet delivered (the sender's socket buffer and the
/// wire), and bytes delivered and not yet read, each way.
const LINK_BUFFER: usize = 64 * 1024;
/// The largest data frame: `max_frame_size` (32 KiB by default) and its 8-byte header.
const FRAME: usize = 32 * 1024 + 8;
/// The most output the driver takes from the session at once while the link is full: the
/// session frames a `CONGESTED_BATCH` (64 KiB), so one frame more at most, and the driver takes
/// more only once it wrote what it took before.
const BATCH: usize = 64 * 1024 + FRAME;
/// Ticks for the hops between tasks (the peer's reader, its reply, the reader of the reply)
/// and the rounding of partly used ticks.
const MARGIN: usize = 4;
/// Request/response exchanges per scenario.
const ROUND_TRIPS: u8 = 20;
/// Ticks the bulk writers run alone first, so the link, the driver's batch and the session's
/// queues are full when the interactive stream starts.
const WARM_UP: u64 = 40;

/// Ticks within which a frame of the interactive stream queued now is written to the link
/// (what a flush, or a close, waits for), beside `bulk` streams that always have data:
///
/// - the driver's batch ahead of it, [`BATCH`];
/// - the rest of a frame a zero-copy write had the link take only part of (it goes to the
///   front of the transmit queue), one [`FRAME`];
/// - its own frame and the control frames around it (SYN, FIN, UPD), one [`FRAME`] at most.
///
/// Not the bulk streams' frames in the session's queue: the interactive stream's frames are
/// small, so the scheduler's light lane puts them first. Nor the number of bulk streams, then.
/// The link takes a byte for every byte it delivers, [`RATE`] per tick; whatever its buffer
/// held when the frame was queued only has to make room, so it adds nothing.
fn write_bound(_bulk: usize) -> u64 {
    let ahead = BATCH + FRAME + FRAME;
    (ahead.div_ceil(RATE) + MARGIN) as u64
}

/// Ticks within which a frame queued now reaches the peer's application, and a 1-byte reply
/// comes back: [`write_bound`], plus the link's buffer ahead of the frame (delivered in order),
/// plus a tick for the reply on the direction the bulk writers do not use (covered by the
/// margin).
fn delivery_bound(bulk: usize) -> u64 {
    write_bound(bulk) + LINK_BUFFER.div_ceil(RATE) as u64
}

/// The steps of the interactive script, timed in ticks of the link's clock.
struct Steps {
    clock: LinkClock,
    /// The step under way, when it started, and its bound.
    current: Cell<Option<(&'static str, u64, u64)>>,
    /// The steps done: name, ticks taken, bound.
    took: RefCell<Vec<(&'static str, u64, u64)>>,
    finished: Cell<bool>,
    /// Whether the round trips flush their requests (the rest of the script always does).
    flushes: bool,
}

impl Steps {
    fn begin(&self, name: &'static str, bound: u64) {
        self.current.set(Some((name, self.clock.now(), bound)));
    }

    fn end(&self) {
        let (name, started, bound) = self.current.take().expect("a step under way");
        let took = self.clock.now() - started;
        self.took.borrow_mut().push((name, took, bound));
    }

    /// The time taken by all the steps called `name`.
    fn total(&self, name: &str) -> u64 {
        let took = self.took.borrow();
        took.iter()
            .filter(|(n, ..)| *n == name)
            .map(|(_, t, _)| *t)
            .sum()
    }

    /// The longest time taken by steps called `name`.
    fn longest(&self, name: &str) -> u64 {
        let took = self.took.borrow();
        let times = took.iter().filter(|(n, ..)| *n == name).map(|(_, t, _)| *t);
        times.max().unwrap_or_else(|| panic!("no step {name}"))
    }
}

/// Writes forever in pieces of 16 to 64 KiB.
async fn bulk_writer<T: AsyncRead + AsyncWrite + Unpin + Send>(mut s: MuxStream<T>, seed: usize) {
    let data = vec![seed as u8; 64 * 1024];
    for i in 0.. {
        let len = 16 * 1024 + (i * 7919 + seed * 4099) % (48 * 1024 + 1);
        s.write_all(&data[..len]).await.unwrap();
    }
}

/// Reads everything, counting the bytes.
async fn sink<T: AsyncRead + AsyncWrite + Unpin + Send>(
    mut t: MuxStream<T>,
    received: Rc<Cell<u64>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = t.read(&mut buf).await.unwrap();
        if n == 0 {
            return;
        }
        received.set(received.get() + n as u64);
    }
}

/// Echoes what it reads, flushing after each piece; tells `eof` when the stream ends.
async fn echo<T: AsyncRead + AsyncWrite + Unpin + Send>(
    mut t: MuxStream<T>,
    eof: oneshot::Sender<()>,
) {
    let mut buf = [0u8; 64];
    loop {
        let n = t.read(&mut buf).await.unwrap();
        if n == 0 {
            eof.send(()).unwrap();
            return;
        }
        t.write_all(&buf[..n]).await.unwrap();
        t.flush().await.unwrap();
    }
}

/// The interactive side: a 1-byte write and its flush, its echo, request/response exchanges,
/// a half-close and the peer seeing the end; each step within its bound.
async fn interactive<T: AsyncRead + AsyncWrite + Unpin + Send>(
    mut s: MuxStream<T>,
    steps: Rc<Steps>,
    eof: oneshot::Receiver<()>,
    bulk: usize,
) {
    let mut byte = [0u8];
    steps.begin("flush", write_bound(bulk));
    s.write_all(b"?").await.unwrap();
    s.flush().await.unwrap();
    steps.end();
    steps.begin("echo", delivery_bound(bulk));
    s.read_exact(&mut byte).await.unwrap();
    assert_eq!(&byte, b"?");
    steps.end();
    for k in 0..ROUND_TRIPS {
        steps.begin("round trip", delivery_bound(bulk));
        s.write_all(&[k]).await.unwrap();
        if steps.flushes {
            s.flush().await.unwrap();
        }
        s.read_exact(&mut byte).await.unwrap();
        assert_eq!(byte, [k]);
        steps.end();
    }
    steps.begin("close", write_bound(bulk));
    s.close().await.unwrap();
    steps.end();
    steps.begin("peer sees the end", delivery_bound(bulk));
    eof.await.unwrap();
    steps.end();
    steps.finished.set(true);
}

/// A client with `bulk` streams writing forever and one interactive stream, over a slow link
/// (each end's transport made by `wrap`); the server reads the bulk streams and echoes the
/// interactive one. Every step of [`interactive`] must be done within its bound, while the
/// bulk writers keep the link full.
fn interactive_beside_bulk<T>(version: Version, bulk: usize, wrap: fn(LinkEnd) -> T)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    interactive_script(version, bulk, wrap, true);
}

/// [`interactive_beside_bulk`], its round trips flushing their requests or not; returns the
/// ticks all the round trips took.
fn interactive_script<T>(
    version: Version,
    bulk: usize,
    wrap: fn(LinkEnd) -> T,
    flushes: bool,
) -> u64
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    within(60, move || {
        let (a, b, clock) = slow_link(RATE, LINK_BUFFER);
        let client = Mux::client(wrap(a), config(version), NoTimer).unwrap();
        let server = Mux::server(wrap(b), config(version), NoTimer).unwrap();
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();

        let s = block_on(client.connect()).unwrap();
        let interactive_id = s.id();
        for seed in 0..bulk {
            let w = block_on(client.connect()).unwrap();
            spawner.spawn_local(bulk_writer(w, seed)).unwrap();
        }
        let received = Rc::new(Cell::new(0u64));
        let (eof_tx, eof_rx) = oneshot::channel();
        let accept_spawner = spawner.clone();
        let sunk = received.clone();
        spawner
            .spawn_local(async move {
                let mut eof_tx = Some(eof_tx);
                while let Ok(t) = server.accept().await {
                    if t.id() == interactive_id {
                        let eof = eof_tx.take().unwrap();
                        accept_spawner.spawn_local(echo(t, eof)).unwrap();
                    } else {
                        accept_spawner.spawn_local(sink(t, sunk.clone())).unwrap();
                    }
                }
            })
            .unwrap();

        for _ in 0..WARM_UP {
            pool.run_until_stalled();
            clock.tick();
        }
        assert!(
            received.get() >= (WARM_UP as usize * RATE / 2) as u64,
            "the bulk writers got going: {} bytes",
            received.get()
        );

        let steps = Rc::new(Steps {
            clock: clock.clone(),
            current: Cell::new(None),
            took: RefCell::new(Vec::new()),
            finished: Cell::new(false),
            flushes,
        });
        spawner
            .spawn_local(interactive(s, steps.clone(), eof_rx, bulk))
            .unwrap();
        let started = clock.now();
        let received_before = received.get();
        loop {
            pool.run_until_stalled();
            if steps.finished.get() {
                break;
            }
            let (name, began, bound) = steps.current.get().expect("a step under way");
            let waited = clock.now() - began;
            assert!(
                waited < bound,
                "{version:?}, {bulk} bulk writers: {name} not done after {waited} ticks \
                 (bound {bound}); steps done: {:?}",
                steps.took.borrow()
            );
            clock.tick();
        }

        // The bulk writers kept the link busy all along: nearly every tick carried their
        // bytes (the interactive frames, the headers and the link's buffers aside).
        let ticks = clock.now() - started;
        let bulk_bytes = received.get() - received_before;
        let full = ticks * RATE as u64;
        assert!(
            bulk_bytes >= (full - full / 20).saturating_sub(2 * LINK_BUFFER as u64),
            "{bulk_bytes} bulk bytes in {ticks} ticks of {RATE}"
        );
        println!(
            "{version:?}, {bulk} bulk: flush {}/{}, echo {}, round trip {}/{}, close {}/{}, \
             end {}; {ticks} ticks, {bulk_bytes} bulk bytes",
            steps.longest("flush"),
            write_bound(bulk),
            steps.longest("echo"),
            steps.longest("round trip"),
            delivery_bound(bulk),
            steps.longest("close"),
            write_bound(bulk),
            steps.longest("peer sees the end"),
        );
        drop(pool);
        drop(client);
        steps.total("round trip")
    })
}

/// A flush costs a request/response exchange nothing beside bulk streams: the round trips
/// that flush each request take as long (within a tenth) as the same round trips that do not
/// (whose requests go out as soon as the driver gets to them). Five runs of each, summed: a
/// run's ticks move by a few percent with the order in which parked tasks are woken.
fn flushes_cost_round_trips_nothing(version: Version) {
    for bulk in [1, 8] {
        let runs = |flushes| -> u64 {
            (0..5)
                .map(|_| interactive_script(version, bulk, plain, flushes))
                .sum()
        };
        let with = runs(true);
        let without = runs(false);
        println!(
            "{version:?}, {bulk} bulk: round trips {with} ticks with flushes, {without} without"
        );
        assert!(
            with <= without + without / 10 + 2,
            "{version:?}, {bulk} bulk: {with} ticks with flushes, {without} without"
        );
    }
}

#[test]
fn flushes_cost_round_trips_nothing_v1() {
    flushes_cost_round_trips_nothing(Version::V1);
}

#[test]
fn flushes_cost_round_trips_nothing_v2() {
    flushes_cost_round_trips_nothing(Version::V2);
}

/// The plain link.
fn plain(end: LinkEnd) -> LinkEnd {
    end
}

#[test]
fn interactive_beside_one_bulk_writer_v1() {
    interactive_beside_bulk(Version::V1, 1, plain);
}

#[test]
fn interactive_beside_one_bulk_writer_v2() {
    interactive_beside_bulk(Version::V2, 1, plain);
}

#[test]
fn interactive_beside_eight_bulk_writers_v1() {
    interactive_beside_bulk(Version::V1, 8, plain);
}

#[test]
fn interactive_beside_eight_bulk_writers_v2() {
    interactive_beside_bulk(Version::V2, 8, plain);
}

/// The same over a link whose flush is `Pending` once after writes (TLS over a slow path).
#[test]
fn interactive_beside_eight_bulk_writers_with_pending_flushes_v1() {
    interactive_beside_bulk(Version::V1, 8, PendingFlush::new);
}

#[test]
fn interactive_beside_eight_bulk_writers_with_pending_flushes_v2() {
    interactive_beside_bulk(Version::V2, 8, PendingFlush::new);
}

// ------------------------------------------------------------------------------------------------
// A transport whose flush is Pending once

/// Less than the duplex buffers and the initial v2 window: the upload needs nothing from the
/// peer, which stays quiet (nothing polls it) until the close is done.
const UPLOAD: usize = 200 * 1024;

/// An upload, then `close()`, over a transport whose flush is `Pending` once, the peer quiet:
/// the drive that completes the flush must wake the closing task, nothing else will.
fn upload_then_close_over_a_pending_flush(version: Version) {
    within(10, move || {
        let (a, b) = duplex();
        let a = PendingFlush::new(a);
        let pendings = a.pending_count();
        let client = Mux::client(a, config(version), NoTimer).unwrap();
        let server = Mux::server(b, config(version), NoTimer).unwrap();
        let data = pattern(19, UPLOAD);
        let mut pool = LocalPool::new();
        let closed = Rc::new(Cell::new(false));
        let done = closed.clone();
        let upload = data.clone();
        pool.spawner()
            .spawn_local(async move {
                let mut s = client.connect().await.unwrap();
                s.write_all(&upload).await.unwrap();
                s.close().await.unwrap();
                done.set(true);
            })
            .unwrap();
        pool.run_until_stalled();
        assert!(pendings.get() > 0, "the transport's flush was Pending");
        assert!(closed.get(), "{version:?}: close() never completed");

        let got = block_on(async {
            let mut t = server.accept().await.unwrap();
            read_all(&mut t).await
        });
        assert!(got == data, "the peer read {} of {UPLOAD} bytes", got.len());
    });
}

#[test]
fn upload_then_close_over_a_pending_flush_v1() {
    upload_then_close_over_a_pending_flush(Version::V1);
}

#[test]
fn upload_then_close_over_a_pending_flush_v2() {
    upload_then_close_over_a_pending_flush(Version::V2);
}

/// A small write and its flush, then the reply and its flush, each end's transport `Pending`
/// once per flush, each flush done while the other end is not polled.
fn small_writes_and_flushes_over_pending_flushes(version: Version) {
    within(10, move || {
        let (a, b) = duplex();
        let (a, b) = (PendingFlush::new(a), PendingFlush::new(b));
        let (client_pendings, server_pendings) = (a.pending_count(), b.pending_count());
        let client = Mux::client(a, config(version), NoTimer).unwrap();
        let server = Mux::server(b, config(version), NoTimer).unwrap();
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();

        let step = Rc::new(Cell::new(0));
        let client_step = step.clone();
        spawner
            .spawn_local(async move {
                let mut s = client.connect().await.unwrap();
                s.write_all(b"ping").await.unwrap();
                s.flush().await.unwrap();
                client_step.set(1);
                // A flush with nothing new written.
                s.flush().await.unwrap();
                client_step.set(2);
                let mut pong = [0u8; 4];
                s.read_exact(&mut pong).await.unwrap();
                assert_eq!(&pong, b"pong");
                client_step.set(3);
                pending::<()>().await;
            })
            .unwrap();
        pool.run_until_stalled();
        assert!(client_pendings.get() > 0, "the client's flush was Pending");
        assert_eq!(step.get(), 2, "{version:?}: the client's flushes completed");

        let server_step = Rc::new(Cell::new(0));
        let done = server_step.clone();
        spawner
            .spawn_local(async move {
                let mut t = server.accept().await.unwrap();
                let mut ping = [0u8; 4];
                t.read_exact(&mut ping).await.unwrap();
                assert_eq!(&ping, b"ping");
                t.write_all(b"pong").await.unwrap();
                t.flush().await.unwrap();
                done.set(1);
                pending::<()>().await;
            })
            .unwrap();
        pool.run_until_stalled();
        assert!(server_pendings.get() > 0, "the server's flush was Pending");
        assert_eq!(
            server_step.get(),
            1,
            "{version:?}: the server's flush completed"
        );
        assert_eq!(step.get(), 3, "{version:?}: the client read the reply");
    });
}

#[test]
fn small_writes_and_flushes_over_pending_flushes_v1() {
    small_writes_and_flushes_over_pending_flushes(Version::V1);
}

#[test]
fn small_writes_and_flushes_over_pending_flushes_v2() {
    small_writes_and_flushes_over_pending_flushes(Version::V2);
}

/// An upload, then `close()`, over a transport that holds its flush until a gate opens (a TLS
/// record waiting for the socket), the peer quiet: `close()` waits for the transport's flush,
/// and completes once the gate opens. Opening it wakes the read duty's holder, the closing
/// task itself: its own drive finishes the flush, and must count that as progress, since
/// nothing else will wake it.
fn upload_then_close_over_a_gated_flush(version: Version) {
    within(10, move || {
        let (a, b) = duplex();
        let (a, gate) = PendingFlush::gated(a);
        let client = Mux::client(a, config(version), NoTimer).unwrap();
        let server = Mux::server(b, config(version), NoTimer).unwrap();
        let data = pattern(20, UPLOAD);
        let mut pool = LocalPool::new();
        let stage = Rc::new(Cell::new(0));
        let client_stage = stage.clone();
        let upload = data.clone();
        pool.spawner()
            .spawn_local(async move {
                let mut s = client.connect().await.unwrap();
                s.write_all(&upload).await.unwrap();
                client_stage.set(1);
                s.close().await.unwrap();
                client_stage.set(2);
            })
            .unwrap();
        pool.run_until_stalled();
        assert_eq!(stage.get(), 1, "close() waits for the transport's flush");
        assert!(gate.is_waited_on());
        gate.open();
        pool.run_until_stalled();
        assert_eq!(stage.get(), 2, "{version:?}: close() never completed");

        let got = block_on(async {
            let mut t = server.accept().await.unwrap();
            read_all(&mut t).await
        });
        assert!(got == data, "the peer read {} of {UPLOAD} bytes", got.len());
    });
}

#[test]
fn upload_then_close_over_a_gated_flush_v1() {
    upload_then_close_over_a_gated_flush(Version::V1);
}

#[test]
fn upload_then_close_over_a_gated_flush_v2() {
    upload_then_close_over_a_gated_flush(Version::V2);
}

/// Small writes and their flushes, and the reply and its flush, over transports that hold
/// each flush until their gate opens: each flush waits for its gate, and is done once it
/// opens, the other end not polled meanwhile.
fn small_writes_and_flushes_over_gated_flushes(version: Version) {
    within(10, move || {
        let (a, b) = duplex();
        let ((a, client_gate), (b, server_gate)) = (PendingFlush::gated(a), PendingFlush::gated(b));
        let client = Mux::client(a, config(version), NoTimer).unwrap();
        let server = Mux::server(b, config(version), NoTimer).unwrap();
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();

        let step = Rc::new(Cell::new(0));
        let client_step = step.clone();
        spawner
            .spawn_local(async move {
                let mut s = client.connect().await.unwrap();
                s.write_all(b"ping").await.unwrap();
                s.flush().await.unwrap();
                client_step.set(1);
                s.write_all(b"!").await.unwrap();
                s.flush().await.unwrap();
                client_step.set(2);
                let mut pong = [0u8; 4];
                s.read_exact(&mut pong).await.unwrap();
                assert_eq!(&pong, b"pong");
                client_step.set(3);
                pending::<()>().await;
            })
            .unwrap();
        for expected in [1, 2] {
            pool.run_until_stalled();
            assert_eq!(
                step.get(),
                expected - 1,
                "a flush waits for the transport's"
            );
            client_gate.open();
            pool.run_until_stalled();
            assert_eq!(
                step.get(),
                expected,
                "{version:?}: the client's flush completed"
            );
        }

        let server_step = Rc::new(Cell::new(0));
        let done = server_step.clone();
        spawner
            .spawn_local(async move {
                let mut t = server.accept().await.unwrap();
                let mut ping = [0u8; 5];
                t.read_exact(&mut ping).await.unwrap();
                assert_eq!(&ping, b"ping!");
                t.write_all(b"pong").await.unwrap();
                t.flush().await.unwrap();
                done.set(1);
                pending::<()>().await;
            })
            .unwrap();
        pool.run_until_stalled();
        assert_eq!(
            server_step.get(),
            0,
            "the server's flush waits for its transport's"
        );
        server_gate.open();
        pool.run_until_stalled();
        assert_eq!(
            server_step.get(),
            1,
            "{version:?}: the server's flush completed"
        );
        assert_eq!(step.get(), 3, "{version:?}: the client read the reply");
    });
}

#[test]
fn small_writes_and_flushes_over_gated_flushes_v1() {
    small_writes_and_flushes_over_gated_flushes(Version::V1);
}

#[test]
fn small_writes_and_flushes_over_gated_flushes_v2() {
    small_writes_and_flushes_over_gated_flushes(Version::V2);
}

// ------------------------------------------------------------------------------------------------
// A read cancelled while parked, and another stream's data

/// How stream A's parked read is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    /// A `read()` future (a bare `poll_read`) dropped, as a timeout or a `select!` does: the
    /// mux cannot see it go.
    Read,
    /// A `read_chunk()` future dropped: its drop passes the duty on.
    ReadChunk,
    /// The owned read half dropped while its read was parked (the write half lives on).
    ReadHalf,
}

/// A read of A parked the way `how` says, as a future that borrows `a` (or, for the owned
/// read half, owns it; the write half goes to `keep`). Dropping the future cancels the read.
fn read_of_a<'a>(
    how: Cancel,
    a: &'a mut Option<MuxStream<DuplexEnd>>,
    keep: &mut Option<OwnedWriteHalf<DuplexEnd>>,
) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
    match how {
        Cancel::Read => {
            let a = a.as_mut().unwrap();
            Box::pin(async move {
                let mut buf = [0u8; 16];
                let n = a.read(&mut buf).await;
                panic!("A's read completed: {n:?}");
            })
        }
        Cancel::ReadChunk => {
            let a = a.as_mut().unwrap();
            Box::pin(async move {
                let chunk = a.read_chunk(16).await;
                panic!("A's read_chunk completed: {chunk:?}");
            })
        }
        Cancel::ReadHalf => {
            let (mut read_half, write_half) = a.take().unwrap().into_split();
            *keep = Some(write_half);
            Box::pin(async move {
                let mut buf = [0u8; 16];
                let n = read_half.read(&mut buf).await;
                panic!("A's read half read: {n:?}");
            })
        }
    }
}

/// Server streams A and B each have a read parked (hand-polled, counting wakers): A's last
/// when `a_last` (then A holds the read duty), else first. A's read is cancelled; then the
/// peer writes to B. B's reader must be woken, and its next poll must read the data, with
/// nothing else polled and no timer.
fn cancelled_read_then_data_for_another(version: Version, how: Cancel, a_last: bool) {
    within(10, move || {
        let (client, server) = pair(version);
        let mut a = block_on(client.connect()).unwrap();
        let mut b = block_on(client.connect()).unwrap();
        let mut ta = Some(block_on(server.accept()).unwrap());
        let mut tb = block_on(server.accept()).unwrap();
        let (ca, wa) = counting();
        let (cb, wb) = counting();
        let mut buf_b = [0u8; 16];

        let mut keep = None;
        let mut read_a = read_of_a(how, &mut ta, &mut keep);
        if a_last {
            assert!(poll_read_once(&mut tb, &mut buf_b, &wb).is_pending());
            assert!(poll_once(read_a.as_mut(), &wa).is_pending());
        } else {
            assert!(poll_once(read_a.as_mut(), &wa).is_pending());
            assert!(poll_read_once(&mut tb, &mut buf_b, &wb).is_pending());
        }
        assert_eq!(server.parked_count(), 2);
        drop(read_a);
        let parked_after_cancel = server.parked_count();

        block_on(async {
            b.write_all(b"for B").await.unwrap();
            b.flush().await.unwrap();
        });
        assert!(
            cb.count() >= 1,
            "B's reader was not woken ({how:?} of A cancelled, A parked {})",
            if a_last { "last" } else { "first" }
        );
        match poll_read_once(&mut tb, &mut buf_b, &wb) {
            Poll::Ready(Ok(5)) => assert_eq!(&buf_b[..5], b"for B"),
            other => panic!("B's read: {other:?}"),
        }
        // A cancellation the mux sees takes A's waker along: it is never woken.
        let seen = how != Cancel::Read;
        assert_eq!(parked_after_cancel, if seen { 1 } else { 2 });
        if seen {
            assert_eq!(ca.count(), 0, "A's cancelled read is not woken");
        }

        // A's stream still works.
        block_on(a.write_all(b"for A")).unwrap();
        let mut buf_a = [0u8; 16];
        match (ta.as_mut(), keep.take()) {
            (Some(ta), None) => {
                let n = block_on(ta.read(&mut buf_a)).unwrap();
                assert_eq!(&buf_a[..n], b"for A");
            }
            (None, Some(write_half)) => drop(write_half),
            _ => unreachable!(),
        }
    });
}

#[test]
fn cancelled_read_of_the_duty_holder_leaves_another_reader_woken_v1() {
    cancelled_read_then_data_for_another(Version::V1, Cancel::Read, true);
}

#[test]
fn cancelled_read_of_the_duty_holder_leaves_another_reader_woken_v2() {
    cancelled_read_then_data_for_another(Version::V2, Cancel::Read, true);
}

#[test]
fn cancelled_read_parked_first_leaves_another_reader_woken_v1() {
    cancelled_read_then_data_for_another(Version::V1, Cancel::Read, false);
}

#[test]
fn cancelled_read_parked_first_leaves_another_reader_woken_v2() {
    cancelled_read_then_data_for_another(Version::V2, Cancel::Read, false);
}

#[test]
fn cancelled_read_chunk_of_the_duty_holder_passes_the_duty_on_v1() {
    cancelled_read_then_data_for_another(Version::V1, Cancel::ReadChunk, true);
}

#[test]
fn cancelled_read_chunk_of_the_duty_holder_passes_the_duty_on_v2() {
    cancelled_read_then_data_for_another(Version::V2, Cancel::ReadChunk, true);
}

#[test]
fn cancelled_read_chunk_parked_first_v1() {
    cancelled_read_then_data_for_another(Version::V1, Cancel::ReadChunk, false);
}

#[test]
fn cancelled_read_chunk_parked_first_v2() {
    cancelled_read_then_data_for_another(Version::V2, Cancel::ReadChunk, false);
}

#[test]
fn dropped_read_half_of_the_duty_holder_passes_the_duty_on_v1() {
    cancelled_read_then_data_for_another(Version::V1, Cancel::ReadHalf, true);
}

#[test]
fn dropped_read_half_of_the_duty_holder_passes_the_duty_on_v2() {
    cancelled_read_then_data_for_another(Version::V2, Cancel::ReadHalf, true);
}

#[test]
fn dropped_read_half_parked_first_v1() {
    cancelled_read_then_data_for_another(Version::V1, Cancel::ReadHalf, false);
}

#[test]
fn dropped_read_half_parked_first_v2() {
    cancelled_read_then_data_for_another(Version::V2, Cancel::ReadHalf, false);
}

/// The scene of a test with real tasks: who reads what, around the read that times out.
#[derive(Debug, Clone, Copy)]
struct Scene {
    /// Tasks whose read times out (each on a stream of its own).
    timed_out: usize,
    /// The timed-out reads park after B's (then the last one holds the read duty).
    parked_last: bool,
    /// Tasks reading streams that get nothing.
    idle: usize,
    /// A task in `Mux::drive()`.
    drive: bool,
}

/// The same with real tasks: tasks read streams A under a "timeout" (a `select` with a
/// channel the test fires), give up and go on waiting for something else, keeping their
/// streams (so the mux cannot see the reads go); a task reads B; maybe idle readers and a
/// `drive()` task. After the timeouts the peer writes to B: B's task must read it in the same
/// `run_until_stalled`, with no timer.
///
/// When the timeout fires, `select` polls the read once more before it sees the timeout, so
/// a timed-out read parks last (and holds the read duty) whichever order the tasks parked in
/// first: that is what a timeout around a read does.
fn timed_out_read_task_then_data_for_another(version: Version, scene: Scene) {
    within(10, move || {
        let (client, server) = pair(version);
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        let mut b = block_on(client.connect()).unwrap();
        let mut tb = block_on(server.accept()).unwrap();
        let others: Vec<_> = (0..scene.timed_out + scene.idle)
            .map(|_| block_on(client.connect()).unwrap())
            .collect();

        let got_b = Rc::new(RefCell::new(None));
        let got = got_b.clone();
        let mut readers: Vec<Pin<Box<dyn Future<Output = ()>>>> = vec![Box::pin(async move {
            let mut buf = [0u8; 16];
            let n = tb.read(&mut buf).await.unwrap();
            *got.borrow_mut() = Some(buf[..n].to_vec());
            pending::<()>().await;
        })];
        if scene.drive {
            let server = server.clone();
            readers.push(Box::pin(async move {
                server.drive().await.unwrap();
            }));
        }
        let mut timing_out: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::new();
        let mut timeouts = Vec::new();
        let gave_up = Rc::new(Cell::new(0));
        for i in 0..scene.timed_out + scene.idle {
            let mut t = block_on(server.accept()).unwrap();
            if i >= scene.timed_out {
                readers.push(Box::pin(async move {
                    let mut buf = [0u8; 16];
                    let n = t.read(&mut buf).await;
                    panic!("an idle stream read {n:?}");
                }));
                continue;
            }
            let (timeout, timed_out) = oneshot::channel::<()>();
            timeouts.push(timeout);
            let gave = gave_up.clone();
            timing_out.push(Box::pin(async move {
                let mut buf = [0u8; 16];
                match select(t.read(&mut buf), timed_out).await {
                    Either::Left((n, _)) => panic!("a timed-out read completed: {n:?}"),
                    Either::Right(_) => gave.set(gave.get() + 1),
                }
                // Waits for something else, the stream kept: its read went unseen.
                pending::<()>().await;
                drop(t);
            }));
        }

        // Each batch parks in a turn of its own, so the order is the one chosen.
        let (first, second) = if scene.parked_last {
            (readers, timing_out)
        } else {
            (timing_out, readers)
        };
        for task in first {
            spawner.spawn_local(task).unwrap();
            pool.run_until_stalled();
        }
        for task in second {
            spawner.spawn_local(task).unwrap();
            pool.run_until_stalled();
        }
        let parked = 1 + scene.timed_out + scene.idle + usize::from(scene.drive);
        assert_eq!(server.parked_count(), parked);
        for timeout in timeouts {
            timeout.send(()).unwrap();
        }
        pool.run_until_stalled();
        assert_eq!(gave_up.get(), scene.timed_out);

        block_on(async {
            b.write_all(b"for B").await.unwrap();
            b.flush().await.unwrap();
        });
        pool.run_until_stalled();
        assert_eq!(
            got_b.borrow().as_deref(),
            Some(&b"for B"[..]),
            "{version:?}, {scene:?}: B's task did not read its data"
        );
        drop(others);
    });
}

/// One timed-out read, parked last (it holds the read duty), or first.
const ONE_TIMED_OUT: Scene = Scene {
    timed_out: 1,
    parked_last: true,
    idle: 0,
    drive: false,
};

#[test]
fn timed_out_read_task_parked_last_v1() {
    timed_out_read_task_then_data_for_another(Version::V1, ONE_TIMED_OUT);
}

#[test]
fn timed_out_read_task_parked_last_v2() {
    timed_out_read_task_then_data_for_another(Version::V2, ONE_TIMED_OUT);
}

#[test]
fn timed_out_read_task_parked_first_v1() {
    let scene = Scene {
        parked_last: false,
        ..ONE_TIMED_OUT
    };
    timed_out_read_task_then_data_for_another(Version::V1, scene);
}

#[test]
fn timed_out_read_task_parked_first_v2() {
    let scene = Scene {
        parked_last: false,
        ..ONE_TIMED_OUT
    };
    timed_out_read_task_then_data_for_another(Version::V2, scene);
}

#[test]
fn timed_out_read_task_parked_last_beside_idle_readers_v1() {
    let scene = Scene {
        idle: 5,
        ..ONE_TIMED_OUT
    };
    timed_out_read_task_then_data_for_another(Version::V1, scene);
}

#[test]
fn timed_out_read_task_parked_last_beside_idle_readers_v2() {
    let scene = Scene {
        idle: 5,
        ..ONE_TIMED_OUT
    };
    timed_out_read_task_then_data_for_another(Version::V2, scene);
}

/// Several reads time out unseen, parked last: with a task in `drive()` (which holds the read
/// duty whenever it is parked, and whose going away is seen), nothing is lost however many.
/// (Without it, two such reads can be woken as the holder of the duty and its one deputy
/// both, and B's data waits in the transport for the next readiness.)
#[test]
fn timed_out_reads_beside_a_drive_task_v1() {
    let scene = Scene {
        timed_out: 3,
        drive: true,
        ..ONE_TIMED_OUT
    };
    timed_out_read_task_then_data_for_another(Version::V1, scene);
}

#[test]
fn timed_out_reads_beside_a_drive_task_v2() {
    let scene = Scene {
        timed_out: 3,
        drive: true,
        ..ONE_TIMED_OUT
    };
    timed_out_read_task_then_data_for_another(Version::V2, scene);
}
