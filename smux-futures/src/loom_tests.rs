//! Model checks of the driver's locks and wake-ups with loom (`scripts/loom.sh`:
//! `RUSTFLAGS="--cfg loom" cargo test -p smux-futures --release --lib loom_tests`).
//!
//! Under `--cfg loom` the locks and atomics of `driver.rs` and `wakers.rs` are loom's
//! (`sync.rs`), so loom runs every interleaving of the threads below at those points, up to a
//! bound on preemptions. The checks use the real types: [`Wakers`] directly, and a real
//! [`Mux`] (session, driver, wakers) over an in-memory transport whose state is behind a loom
//! lock. Tasks are loom threads; a task that waits runs in `loom::future::block_on`, which
//! parks the thread until its waker is woken, so a lost wake-up is a deadlock, which loom
//! reports with the interleaving that led to it.
//!
//! What is checked (see "Model checking" in ARCHITECTURE.md):
//! - the read duty: a readiness racing with tasks that park, with tasks on duty that are
//!   cancelled (`cancel`), whose stream is dropped (`forget_stream`) or whose registration is
//!   dropped (`unregister`), and with a holder that went away unseen (a bare poll): the live
//!   task that waits is woken or drives itself;
//! - `again`: work queued (a write, a stream's FIN) by a thread that finds the transport
//!   taken is written by the holder before it lets go;
//! - flush waiters: a flush completed by another thread's drive, or by the transport after a
//!   `Pending` flush, wakes the task that waits for it;
//! - a stream dropped (its drop drives) while another thread is in the middle of a drive.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::io::{AsyncRead, AsyncWrite};
use loom::future::block_on;
use loom::sync::atomic::AtomicUsize;
use loom::thread;
use smux_proto::{Config, Frame, Side, StreamId, Version};

use crate::sync::{lock, AtomicBool, Mutex, Ordering};
use crate::timer::{Sleep, Timer};
use crate::wakers::{Slot, Waiter, Wakers};
use crate::{Mux, MuxStream};

/// How far loom looks: `None` explores every interleaving; `Some(n)`, those with at most `n`
/// preemptions (a thread switched out while it could go on). `LOOM_MAX_PREEMPTIONS` overrides
/// it for every check. The bounds keep the whole run within a few minutes on two cores: the
/// checks of the real mux with three or four threads take about 40 microseconds an execution,
/// and a bound of 3 gives 0.1 to 4 million executions each (see `scripts/loom.sh`).
const EXHAUSTIVE: Option<usize> = None;
const DEEP: Option<usize> = Some(3);
const SHALLOW: Option<usize> = Some(2);

/// Runs `f` under loom with the preemption bound `bound` (see [`EXHAUSTIVE`]); prints how many
/// executions (distinct interleavings) were explored.
#[track_caller]
fn check(bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = bound;
    }
    builder.max_branches = 100_000;
    let executions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    println!(
        "{}: {} executions (preemption bound {:?})",
        std::panic::Location::caller(),
        executions.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound,
    );
}

// ---------------------------------------------------------------------------------------------
// The wakers alone.

/// A waker that counts its wake-ups (in a loom atomic).
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}

fn woken(count: &Count) -> bool {
    count.0.load(Ordering::SeqCst) > 0
}

fn reader(id: u32) -> Waiter {
    Waiter::Stream(Slot::Read(StreamId::new(id)))
}

/// A live task parked on stream 1, a task on stream 3 that is cancelled, a registered
/// connection-wide waiter (an `accept` future) that is dropped, and a task on stream 5 that
/// parked last and went away unseen (a bare poll): the transport's readiness, whenever it
/// comes, ends with the live task woken (nobody else is left to drive).
#[test]
fn the_read_duty_reaches_the_live_task_when_the_others_go() {
    check(EXHAUSTIVE, || {
        let wakers = Arc::new(Wakers::default());
        // The last drive left the transport holding the duty waker.
        wakers.watch_input(true);
        let (live, w) = counting();
        wakers.park_waiter(reader(1), &w);
        let (_, w) = counting();
        wakers.park_waiter(reader(3), &w);
        let accept = wakers.register_key();
        let (_, w) = counting();
        wakers.park_waiter(Waiter::Connection(accept), &w);
        let (_, w) = counting();
        wakers.park_waiter(reader(5), &w);

        let readiness = {
            let wakers = wakers.clone();
            thread::spawn(move || wakers.wake_duty())
        };
        let cancelled = {
            let wakers = wakers.clone();
            thread::spawn(move || wakers.cancel(reader(3)))
        };
        wakers.unregister(accept);
        readiness.join().unwrap();
        cancelled.join().unwrap();
        assert!(
            woken(&live),
            "the readiness was lost: the live reader is not woken"
        );
    });
}

/// The live task parks while the readiness comes and the tasks on duty go (a stream dropped,
/// a registration dropped): it is woken, or it saw the transport unwatched and drives.
#[test]
fn a_task_that_parks_during_the_hand_off_is_woken_or_drives() {
    check(EXHAUSTIVE, || {
        let wakers = Arc::new(Wakers::default());
        wakers.watch_input(true);
        let (_, w) = counting();
        wakers.park_waiter(reader(3), &w);
        let accept = wakers.register_key();
        let (_, w) = counting();
        wakers.park_waiter(Waiter::Connection(accept), &w);

        let readiness = {
            let wakers = wakers.clone();
            thread::spawn(move || wakers.wake_duty())
        };
        let parker = {
            let wakers = wakers.clone();
            thread::spawn(move || {
                let (live, w) = counting();
                // `Driver::poll_op`: park, then drive unless the transport is watched (and
                // the connection quiet, the worst case here).
                wakers.park_waiter(reader(1), &w);
                let drove = !wakers.input_watched();
                if drove {
                    wakers.duty_served();
                }
                (live, drove)
            })
        };
        wakers.forget_stream(StreamId::new(3));
        wakers.unregister(accept);
        readiness.join().unwrap();
        let (live, drove) = parker.join().unwrap();
        assert!(drove || woken(&live), "the readiness was lost");
    });
}

/// A drive (by a task that was not woken for it) starts while the readiness is handed to a
/// holder gone unseen and its deputy, which is then cancelled: either the drive read the
/// transport after the readiness (it served it), or the live task is woken.
#[test]
fn a_drive_racing_with_the_hand_off_serves_the_readiness_or_it_reaches_a_live_task() {
    check(EXHAUSTIVE, || {
        let wakers = Arc::new(Wakers::default());
        wakers.watch_input(true);
        // The transport's input: set before the transport wakes the duty waker.
        let input = Arc::new(AtomicBool::new(false));
        let (live, w) = counting();
        wakers.park_waiter(reader(1), &w);
        let (_, w) = counting();
        wakers.park_waiter(reader(3), &w);
        let (_, w) = counting();
        wakers.park_waiter(reader(5), &w);

        let readiness = {
            let (wakers, input) = (wakers.clone(), input.clone());
            thread::spawn(move || {
                input.store(true, Ordering::SeqCst);
                wakers.wake_duty();
            })
        };
        let drive = {
            let (wakers, input) = (wakers.clone(), input.clone());
            thread::spawn(move || {
                // `Driver::drive_turn`, then `pump_input`: the read takes what arrived.
                wakers.duty_served();
                wakers.watch_input(false);
                wakers.watch_input(true);
                input.swap(false, Ordering::SeqCst)
            })
        };
        wakers.cancel(reader(3));
        readiness.join().unwrap();
        let served = drive.join().unwrap();
        assert!(served || woken(&live), "the readiness was lost");
    });
}

// ---------------------------------------------------------------------------------------------
// A real mux over an in-memory transport.

/// Both directions of the in-memory transport, behind a loom lock.
#[derive(Default)]
struct Wire {
    /// Bytes the peer sent, not yet read.
    inbound: Vec<u8>,
    /// The waker of a read that found nothing (the driver's duty waker).
    reader: Option<Waker>,
    /// Bytes the mux wrote.
    outbound: Vec<u8>,
    /// How much of `outbound` a completed flush covered.
    flushed: usize,
    /// Flushes answer `Pending` until the peer releases them.
    hold_flush: bool,
    flusher: Option<Waker>,
}

/// The mux's end.
struct Transport(Arc<Mutex<Wire>>);

/// The peer's end: sends frames, releases flushes, looks at what was written.
#[derive(Clone)]
struct Peer(Arc<Mutex<Wire>>);

impl Peer {
    /// Sends a frame; wakes a read that found nothing (outside the lock, as a reactor does).
    fn send(&self, frame: Frame) {
        let reader = {
            let mut wire = lock(&self.0);
            frame.encode(Version::V1, &mut wire.inbound).unwrap();
            wire.reader.take()
        };
        if let Some(waker) = reader {
            waker.wake();
        }
    }

    fn send_data(&self, stream_id: StreamId, data: &'static [u8]) {
        self.send(Frame::Psh {
            stream_id,
            data: Bytes::from_static(data),
        });
    }

    /// Lets flushes complete; wakes a flush that was `Pending`.
    fn release_flush(&self) {
        let flusher = {
            let mut wire = lock(&self.0);
            wire.hold_flush = false;
            wire.flusher.take()
        };
        if let Some(waker) = flusher {
            waker.wake();
        }
    }

    /// (bytes written, bytes flushed)
    fn outbound(&self) -> (usize, usize) {
        let wire = lock(&self.0);
        (wire.outbound.len(), wire.flushed)
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut wire = lock(&self.0);
        if wire.inbound.is_empty() {
            wire.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(wire.inbound.len());
        buf[..n].copy_from_slice(&wire.inbound[..n]);
        wire.inbound.drain(..n);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.0).outbound.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut wire = lock(&self.0);
        let mut n = 0;
        for buf in bufs {
            wire.outbound.extend_from_slice(buf);
            n += buf.len();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut wire = lock(&self.0);
        if wire.hold_flush {
            wire.flusher = Some(cx.waker().clone());
            return Poll::Pending;
        }
        wire.flushed = wire.outbound.len();
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// A fixed clock that cannot sleep (keepalive is off): the executions are deterministic.
struct Clock(Instant);

impl Timer for Clock {
    fn now(&self) -> Instant {
        self.0
    }

    fn sleep_until(&self, _deadline: Instant) -> Option<Sleep> {
        None
    }

    fn can_sleep(&self) -> bool {
        false
    }
}

type TestMux = Mux<Transport>;
type Stream = Arc<MuxStream<Transport>>;

/// A client mux (v1, no keepalive) with `streams` streams opened (their SYNs written, so the
/// transport holds the duty waker), and the peer's end.
fn connection(streams: usize, hold_flush: bool) -> (TestMux, Vec<Stream>, Peer) {
    let wire = Arc::new(Mutex::new(Wire {
        hold_flush,
        ..Wire::default()
    }));
    let mut config = Config::default();
    config.keep_alive_disabled = true;
    config.early_reply_hold = Duration::ZERO;
    let mux = Mux::new(
        Transport(wire.clone()),
        Side::Client,
        config,
        Clock(Instant::now()),
    )
    .unwrap();
    let streams = (0..streams)
        .map(|_| Arc::new(block_on(mux.connect()).unwrap()))
        .collect();
    (mux, streams, Peer(wire))
}

/// Polls `fut` once with a waker that does nothing: a task that then goes away.
fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(futures::task::noop_waker_ref()))
}

/// A task that reads one chunk of stream `s` and checks it.
fn read_one(s: &Stream, expected: &'static [u8]) -> thread::JoinHandle<()> {
    let s = s.clone();
    thread::spawn(move || {
        let chunk = block_on(s.read_chunk_shared(64)).unwrap().unwrap();
        assert_eq!(&chunk[..], expected);
    })
}

/// Everything the session emitted was written to the transport and flushed.
fn assert_all_written(mux: &TestMux, peer: &Peer) {
    let (offset, wants_write, flushed) = mux.driver().with(|core| {
        let offset = core.session.output_offset();
        (offset, core.session.wants_write(), core.flushed_to(offset))
    });
    assert!(!wants_write, "output left in the session");
    let (written, transport_flushed) = peer.outbound();
    assert_eq!(written as u64, offset, "output left in the driver");
    assert_eq!(transport_flushed, written, "not flushed");
    assert!(flushed);
}

/// Two readers park while data for both arrives: each is woken (or drives) and reads it.
#[test]
fn readers_racing_with_readiness_get_their_data() {
    check(SHALLOW, || {
        let (mux, streams, peer) = connection(2, false);
        let ids = [streams[0].id(), streams[1].id()];
        let network = thread::spawn(move || {
            peer.send_data(ids[0], b"a");
            peer.send_data(ids[1], b"b");
        });
        let first = read_one(&streams[0], b"a");
        let second = read_one(&streams[1], b"b");
        network.join().unwrap();
        first.join().unwrap();
        second.join().unwrap();
        drop(streams);
        drop(mux);
    });
}

/// A `read_chunk` and an `accept` are polled once and then dropped (a timeout, a
/// `select!`) while data arrives for a third task: whichever of them held the read duty
/// passes it on, and the reader gets its data.
#[test]
fn cancelled_waits_pass_the_read_duty_on() {
    check(DEEP, || {
        let (mux, streams, peer) = connection(2, false);
        let id = streams[1].id();
        let network = thread::spawn(move || peer.send_data(id, b"b"));
        let waiter = read_one(&streams[1], b"b");
        let cancelled = {
            let (mux, s) = (mux.clone(), streams[0].clone());
            thread::spawn(move || {
                let mut read = Box::pin(s.read_chunk_shared(64));
                let mut accept = Box::pin(mux.accept());
                assert!(poll_once(read.as_mut()).is_pending());
                assert!(poll_once(accept.as_mut()).is_pending());
                drop(read);
                drop(accept);
            })
        };
        network.join().unwrap();
        waiter.join().unwrap();
        cancelled.join().unwrap();
    });
}

/// A bare `poll_read` parks last and goes away unseen (its caller's future was dropped, the
/// stream kept); a registered `accept` future woken as its deputy is dropped: the duty must
/// still reach the reader that waits.
#[test]
fn a_holder_gone_unseen_is_covered_when_its_deputy_goes() {
    check(DEEP, || {
        let (mux, streams, peer) = connection(2, false);
        let id = streams[1].id();
        let waiter = read_one(&streams[1], b"b");
        let gone = {
            let (mux, s) = (mux.clone(), streams[0].clone());
            thread::spawn(move || {
                let mut accept = Box::pin(mux.accept());
                assert!(poll_once(accept.as_mut()).is_pending());
                let mut buf = [0u8; 8];
                let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                assert!(s.poll_read_shared(&mut cx, &mut buf).is_pending());
                drop(accept);
            })
        };
        let network = thread::spawn(move || peer.send_data(id, b"b"));
        network.join().unwrap();
        gone.join().unwrap();
        waiter.join().unwrap();
    });
}

/// A stream whose bare `poll_read` parked is dropped (`forget_stream`, then its drop drives),
/// and an `accept` is polled and dropped, while data arrives for the reader that waits.
#[test]
fn a_dropped_stream_passes_the_read_duty_on() {
    check(SHALLOW, || {
        let (mux, mut streams, peer) = connection(2, false);
        let id = streams[1].id();
        let waiter = read_one(&streams[1], b"b");
        let first = streams.swap_remove(0);
        let dropped = {
            let mux = mux.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 8];
                let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                assert!(first.poll_read_shared(&mut cx, &mut buf).is_pending());
                let mut accept = Box::pin(mux.accept());
                assert!(poll_once(accept.as_mut()).is_pending());
                drop(first);
                drop(accept);
            })
        };
        let network = thread::spawn(move || peer.send_data(id, b"b"));
        network.join().unwrap();
        dropped.join().unwrap();
        waiter.join().unwrap();
    });
}

/// `again`: one thread drives while two others queue output (a write, the FIN of a dropped
/// stream) and try to drive: whoever holds the transport writes it all before letting go.
#[test]
fn output_queued_while_another_thread_drives_is_written() {
    check(DEEP, || {
        let (mux, mut streams, peer) = connection(2, false);
        let holder = {
            let mux = mux.clone();
            thread::spawn(move || {
                mux.driver().drive(None);
            })
        };
        let writer = {
            let s = streams[0].clone();
            thread::spawn(move || block_on(s.write_chunk_shared(Bytes::from_static(b"x"))))
        };
        let last = streams.pop().unwrap();
        let dropper = thread::spawn(move || drop(last));
        holder.join().unwrap();
        writer.join().unwrap().unwrap();
        dropper.join().unwrap();
        assert_all_written(&mux, &peer);
    });
}

/// A flush waits for the transport's flush, which is `Pending` until the network releases
/// it, while another thread drives: the flusher is woken (or finds its flush done).
#[test]
fn a_flush_completed_by_another_drive_or_the_transport_wakes_the_flusher() {
    check(DEEP, || {
        let (mux, streams, peer) = connection(1, true);
        let flusher = {
            let s = streams[0].clone();
            thread::spawn(move || {
                block_on(async {
                    s.write_chunk_shared(Bytes::from_static(b"x")).await?;
                    poll_fn(|cx| s.poll_flushed(cx)).await
                })
            })
        };
        let driver = {
            let mux = mux.clone();
            thread::spawn(move || {
                mux.driver().drive(None);
            })
        };
        let network = {
            let peer = peer.clone();
            thread::spawn(move || peer.release_flush())
        };
        flusher.join().unwrap().unwrap();
        driver.join().unwrap();
        network.join().unwrap();
        assert_all_written(&mux, &peer);
    });
}

/// A stream is dropped (its FIN queued, the duty passed on, a drive) while another thread is
/// in the middle of a drive and data arrives for a reader that waits: the FIN goes out and
/// the reader gets its data.
#[test]
fn a_stream_dropped_during_another_drive() {
    check(SHALLOW, || {
        let (mux, mut streams, peer) = connection(2, false);
        let id = streams[1].id();
        let waiter = read_one(&streams[1], b"b");
        let first = streams.swap_remove(0);
        let dropped = thread::spawn(move || {
            let mut buf = [0u8; 8];
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            assert!(first.poll_read_shared(&mut cx, &mut buf).is_pending());
            drop(first);
        });
        let holder = {
            let (mux, peer) = (mux.clone(), peer.clone());
            thread::spawn(move || {
                peer.send_data(id, b"b");
                mux.driver().drive(None);
            })
        };
        holder.join().unwrap();
        dropped.join().unwrap();
        waiter.join().unwrap();
        drop(streams);
        assert_all_written(&mux, &peer);
    });
}
