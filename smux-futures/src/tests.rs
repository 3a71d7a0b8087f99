//! Tests of the lazy driver: who is woken, progress without a driver task, cleanup on drop,
//! graceful and abrupt endings, stalls, and cancelled futures.
//!
//! Everything runs on `futures::executor` (`block_on`, `LocalPool`) or plain threads, with
//! hand-written polls through counting wakers where the exact wake-ups matter. Every test runs
//! under [`within`], so a lost wake-up fails the test instead of hanging the suite.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::executor::{block_on, LocalPool};
use futures::future::{join, join_all};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::task::LocalSpawnExt;

use crate::test_util::{duplex, DuplexEnd, DEFAULT_CAPACITY};
use crate::{Mux, MuxConfig, MuxStream, NoTimer, Version};

// ------------------------------------------------------------------------------------------------
// Helpers

/// Runs `f` on its own thread and fails if it takes longer than `secs` (a lost wake-up or a
/// deadlock shows up as a timeout, not as a hung test run).
fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("timed out after {secs} s: a lost wake-up or a deadlock"),
    }
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Counter {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<Counter>, Waker) {
    let counter = Arc::new(Counter::default());
    (counter.clone(), Waker::from(counter))
}

/// One poll of a future, as an executor would do it with `waker`.
fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// One `poll_read` of a stream with `waker`.
fn poll_read_once<T: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut MuxStream<T>,
    buf: &mut [u8],
    waker: &Waker,
) -> Poll<io::Result<usize>> {
    Pin::new(stream).poll_read(&mut Context::from_waker(waker), buf)
}

fn config(version: Version) -> MuxConfig {
    MuxConfig::default()
        .with_version(version)
        .with_keep_alive_disabled(true)
}

/// Deterministic test data, different for each seed.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    smux_test_support::payload(u64::from(seed), len)
}

/// A client and a server over an in-memory duplex.
fn pair(version: Version) -> (Mux<DuplexEnd>, Mux<DuplexEnd>) {
    let (a, b) = duplex();
    (
        Mux::client(a, config(version), NoTimer).unwrap(),
        Mux::server(b, config(version), NoTimer).unwrap(),
    )
}

/// A duplex end the test keeps a handle to after moving it into a mux, to stall or shut it.
#[derive(Clone)]
struct Link(Arc<Mutex<DuplexEnd>>);

impl Link {
    fn lock(&self) -> std::sync::MutexGuard<'_, DuplexEnd> {
        self.0.lock().unwrap()
    }

    fn stall(&self, stalled: bool) {
        self.lock().set_stalled(stalled);
    }

    fn shutdown(&self) {
        self.lock().shutdown();
    }

    fn unread_outgoing(&self) -> usize {
        self.lock().unread_outgoing()
    }
}

impl AsyncRead for Link {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_close(cx)
    }
}

/// A client and a server whose transport ends the test can still reach.
fn linked(client: MuxConfig, server: MuxConfig) -> (Mux<Link>, Mux<Link>, Link, Link) {
    let (a, b) = duplex();
    let (a, b) = (Link(Arc::new(Mutex::new(a))), Link(Arc::new(Mutex::new(b))));
    (
        Mux::client(a.clone(), client, NoTimer).unwrap(),
        Mux::server(b.clone(), server, NoTimer).unwrap(),
        a,
        b,
    )
}

/// The smux error carried by an `io::Error` from the mux.
fn smux_error(e: &io::Error) -> &smux_proto::Error {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<smux_proto::Error>())
        .unwrap_or_else(|| panic!("no smux_proto::Error inside {e:?}"))
}

async fn read_all<T: AsyncRead + AsyncWrite + Unpin + Send>(s: &mut MuxStream<T>) -> Vec<u8> {
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    got
}

// ------------------------------------------------------------------------------------------------
// Wake-ups

/// Two readers parked on two streams; data arrives for A only.
///
/// The transport is given the duty waker: its readiness wakes one parked task, the holder of
/// the read duty (B, which parked and drove last), not every one. B's poll drives, which takes
/// A's frame off the transport and wakes A through its event; B stays `Pending` and parks
/// again.
#[test]
fn data_for_one_stream_wakes_its_reader_and_the_other_read_stays_pending() {
    within(10, || {
        let (client, server) = pair(Version::V1);
        let (mut a, mut b) = block_on(async {
            (
                client.connect().await.unwrap(),
                client.connect().await.unwrap(),
            )
        });
        let (mut ta, mut tb) = block_on(async {
            (
                server.accept().await.unwrap(),
                server.accept().await.unwrap(),
            )
        });
        assert_eq!((ta.id(), tb.id()), (a.id(), b.id()));
        assert_eq!(server.parked_count(), 0);

        let (ca, wa) = counting();
        let (cb, wb) = counting();
        let (mut buf_a, mut buf_b) = ([0u8; 64], [0u8; 64]);
        assert!(poll_read_once(&mut ta, &mut buf_a, &wa).is_pending());
        assert!(poll_read_once(&mut tb, &mut buf_b, &wb).is_pending());
        assert_eq!(server.parked_count(), 2, "both readers parked");
        assert_eq!((ca.count(), cb.count()), (0, 0));

        // The peer writes for A only, and is driven until the bytes are in the transport.
        block_on(async {
            a.write_all(b"for A").await.unwrap();
            a.flush().await.unwrap();
        });
        // The duty holder (B, the last to drive) is woken, and A as its deputy: B's read
        // might have been cancelled unseen.
        assert_eq!((ca.count(), cb.count()), (1, 1));
        assert_eq!(server.parked_count(), 0);

        // B's executor polls it: still nothing for B. That poll drives the connection and
        // takes A's frame off the transport; B parks again. A reads its data.
        assert!(poll_read_once(&mut tb, &mut buf_b, &wb).is_pending());
        assert_eq!((ca.count(), cb.count()), (1, 1));
        assert_eq!(server.parked_count(), 1);
        match poll_read_once(&mut ta, &mut buf_a, &wa) {
            Poll::Ready(Ok(5)) => assert_eq!(&buf_a[..5], b"for A"),
            other => panic!("A's read: {other:?}"),
        }

        // Now data for B, the only task parked: B alone is woken and reads it.
        block_on(async {
            b.write_all(b"for B!").await.unwrap();
            b.flush().await.unwrap();
        });
        assert_eq!((ca.count(), cb.count()), (1, 2));
        match poll_read_once(&mut tb, &mut buf_b, &wb) {
            Poll::Ready(Ok(6)) => assert_eq!(&buf_b[..6], b"for B!"),
            other => panic!("B's read: {other:?}"),
        }
    });
}

/// A thousand readers parked on idle streams beside one busy exchange: a frame for the busy
/// stream wakes its reader (the duty holder, the last to park) and one deputy at most (an idle
/// reader, which polls and parks again); a frame for an idle stream wakes the duty holder
/// and its deputy, whose polls drive and wake that stream's reader. The work per frame does
/// not grow with the parked tasks.
#[test]
fn frames_wake_no_idle_reader() {
    within(30, || {
        const IDLE: usize = 1000;
        let (client, server) = pair(Version::V2);
        let mut opened = Vec::new();
        let mut accepted = Vec::new();
        for _ in 0..=IDLE {
            opened.push(block_on(client.connect()).unwrap());
            accepted.push(block_on(server.accept()).unwrap());
        }
        let mut buf = [0u8; 16];
        let idle: Vec<_> = accepted[1..]
            .iter_mut()
            .map(|t| {
                let (c, w) = counting();
                assert!(poll_read_once(t, &mut buf, &w).is_pending());
                (c, w)
            })
            .collect();
        let (busy_count, busy_waker) = counting();
        assert!(poll_read_once(&mut accepted[0], &mut buf, &busy_waker).is_pending());
        assert_eq!(server.parked_count(), IDLE + 1);
        let idle_counts = |idle: &[(Arc<Counter>, Waker)]| -> Vec<usize> {
            idle.iter().map(|(c, _)| c.count()).collect()
        };
        // What an executor does: polls every woken idle reader, which parks again.
        let repoll = |accepted: &mut [MuxStream<DuplexEnd>], before: &[usize], buf: &mut [u8]| {
            let mut woken = 0;
            for (i, (c, w)) in idle.iter().enumerate() {
                if c.count() > before[i] {
                    woken += c.count() - before[i];
                    assert!(poll_read_once(&mut accepted[i + 1], buf, w).is_pending());
                }
            }
            woken
        };

        for round in 1..=100 {
            let before = idle_counts(&idle);
            block_on(async {
                opened[0].write_all(b"ping").await.unwrap();
                opened[0].flush().await.unwrap();
            });
            assert_eq!(busy_count.count(), round);
            assert!(matches!(
                poll_read_once(&mut accepted[0], &mut buf, &busy_waker),
                Poll::Ready(Ok(4))
            ));
            assert!(poll_read_once(&mut accepted[0], &mut buf, &busy_waker).is_pending());
            // The deputy polls after the holder drove: nothing for it; it parks again, and
            // does not take the holder's place.
            let woken = repoll(&mut accepted, &before, &mut buf);
            assert!(woken <= 1, "round {round}: {woken} idle readers woken");
            assert_eq!(server.parked_count(), IDLE + 1);
        }

        // A frame for idle stream 500: the duty holder drives and wakes 500's reader; one
        // other idle reader at most is woken, as the deputy.
        let before = idle_counts(&idle);
        block_on(async {
            opened[500].write_all(b"late").await.unwrap();
            opened[500].flush().await.unwrap();
        });
        assert_eq!(busy_count.count(), 101);
        assert!(poll_read_once(&mut accepted[0], &mut buf, &busy_waker).is_pending());
        assert_eq!(idle[499].0.count(), before[499] + 1);
        let others: usize = idle_counts(&idle)
            .iter()
            .zip(&before)
            .enumerate()
            .filter(|&(i, _)| i != 499)
            .map(|(_, (now, then))| now - then)
            .sum();
        assert!(others <= 1, "{others} other idle readers woken");
        assert!(matches!(
            poll_read_once(&mut accepted[500], &mut buf, &idle[499].1),
            Poll::Ready(Ok(4))
        ));
    });
}

/// The tasks woken for the read duty (the holder and its deputy) are dropped before they poll
/// (their streams are dropped): the duty passes to another parked task, whose poll then reads
/// the data that came.
#[test]
fn a_dropped_duty_holder_hands_the_duty_on() {
    within(10, || {
        let (client, server) = pair(Version::V1);
        let mut a = block_on(client.connect()).unwrap();
        let b = block_on(client.connect()).unwrap();
        let c = block_on(client.connect()).unwrap();
        let mut ta = block_on(server.accept()).unwrap();
        let mut tb = block_on(server.accept()).unwrap();
        let mut tc = block_on(server.accept()).unwrap();
        let (ca, wa) = counting();
        let (cb, wb) = counting();
        let (cc, wc) = counting();
        let (cr, wr) = counting();
        let mut buf = [0u8; 16];
        assert!(poll_read_once(&mut ta, &mut buf, &wa).is_pending());
        assert!(poll_read_once(&mut tb, &mut buf, &wb).is_pending());
        // An accept future: the deputy of choice (its going away is seen).
        let mut accept = Box::pin(server.accept());
        assert!(poll_once(accept.as_mut(), &wr).is_pending());
        assert!(poll_read_once(&mut tc, &mut buf, &wc).is_pending());
        block_on(async {
            a.write_all(b"for A").await.unwrap();
            a.flush().await.unwrap();
        });
        assert_eq!(
            (ca.count(), cb.count(), cc.count(), cr.count()),
            (0, 0, 1, 1),
            "the holder C, the last to park, and the accept future"
        );
        drop(accept);
        assert_eq!(
            ca.count() + cb.count(),
            1,
            "C, which may have gone unseen, is not left alone on duty: a new deputy"
        );
        // C's read is seen to go (as when a `read_chunk` future is dropped).
        server
            .driver()
            .wakers()
            .cancel(crate::wakers::Waiter::Stream(crate::wakers::Slot::Read(
                tc.id(),
            )));
        assert_eq!(
            ca.count() + cb.count(),
            2,
            "the duty passed to A and B when the accept future and C's read were dropped"
        );
        drop((tb, b, tc, c));
        match poll_read_once(&mut ta, &mut buf, &wa) {
            Poll::Ready(Ok(5)) => assert_eq!(&buf[..5], b"for A"),
            other => panic!("A's read: {other:?}"),
        }
    });
}

/// The cost of one request/response round trip (a 1-byte ping, a 1-byte pong, one stream),
/// both ends polled as one task through a counting waker on an in-memory transport:
/// wake-ups and acquisitions of each end's core lock per round trip. Printed, and bounded so
/// that a regression (every packet waking every task, a lock taken per byte...) fails.
#[test]
fn a_round_trip_costs_few_wake_ups_and_lock_acquisitions() {
    within(20, || {
        const TRIPS: usize = 2000;
        let (client, server) = pair(Version::V1);
        let mut a = block_on(client.connect()).unwrap();
        block_on(async {
            a.write_all(b"x").await.unwrap();
            a.flush().await.unwrap();
        });
        let mut b = block_on(server.accept()).unwrap();
        let mut x = [0u8; 1];
        block_on(b.read_exact(&mut x)).unwrap();
        // Idle streams beside it, each with a reader parked: they must not add to the cost.
        let mut idle = Vec::new();
        for _ in 0..100 {
            let s = block_on(client.connect()).unwrap();
            let t = block_on(server.accept()).unwrap();
            idle.push((s, t));
        }
        let (idle_count, idle_waker) = counting();
        let mut buf = [0u8; 1];
        for (_, t) in &mut idle {
            assert!(poll_read_once(t, &mut buf, &idle_waker).is_pending());
        }
        let (c0, s0) = (client.core_lock_count(), server.core_lock_count());
        let ping = async {
            let mut byte = [0u8; 1];
            for i in 0..TRIPS {
                byte[0] = i as u8;
                a.write_all(&byte).await.unwrap();
                a.flush().await.unwrap();
                a.read_exact(&mut byte).await.unwrap();
                assert_eq!(byte[0], i as u8);
            }
        };
        let pong = async {
            let mut byte = [0u8; 1];
            for _ in 0..TRIPS {
                b.read_exact(&mut byte).await.unwrap();
                b.write_all(&byte).await.unwrap();
                b.flush().await.unwrap();
            }
        };
        let (count, waker) = counting();
        let mut both = Box::pin(join(ping, pong));
        let mut polls = 0usize;
        loop {
            polls += 1;
            let before = count.count();
            if poll_once(both.as_mut(), &waker).is_ready() {
                break;
            }
            assert!(count.count() > before, "pending without a wake-up: lost");
        }
        let per_trip = |n: usize| n as f64 / TRIPS as f64;
        let client_locks = per_trip(client.core_lock_count() - c0);
        let server_locks = per_trip(server.core_lock_count() - s0);
        eprintln!(
            "per round trip: {:.2} wake-ups, {:.2} polls, core locks {:.1} (client) {:.1} (server)",
            per_trip(count.count()),
            per_trip(polls),
            client_locks,
            server_locks
        );
        // The idle readers parked last, so the first readiness went to one of them (the
        // last to park holds the read duty); after that they are woken as deputies only,
        // here once each at most (never polled again, they leave the parked set).
        assert!(
            idle_count.count() <= idle.len(),
            "idle readers woken {} times",
            idle_count.count()
        );
        // Each direction needs one wake-up (the data reached a task parked on the other end).
        assert!(per_trip(count.count()) <= 2.5, "{} wake-ups", count.count());
        assert!(client_locks <= 30.0 && server_locks <= 30.0);
    });
}

/// Without any transport readiness, a session event wakes exactly the task it concerns.
///
/// The server's receive budget (32 KiB) is filled by stream C, so the driver stops taking
/// frames, and A's data waits in the driver's input buffer while A and B are parked. Reading C
/// frees the budget: the frames left over must then be processed, waking A (its
/// `StreamReadable` event) and nobody else. The transport is idle all along (everything was
/// already read from it), so the fan-out plays no part: B's counter must not move.
#[test]
fn freed_receive_budget_resumes_input_and_wakes_only_the_reader_concerned() {
    within(10, || {
        let budget = 32 * 1024;
        let server_config = config(Version::V1)
            .with_max_receive_buffer(budget)
            .with_max_stream_buffer(budget);
        let (client, server, client_end, _server_end) = linked(config(Version::V1), server_config);
        let (mut a, b, mut c) = block_on(async {
            (
                client.connect().await.unwrap(),
                client.connect().await.unwrap(),
                client.connect().await.unwrap(),
            )
        });
        let (mut ta, mut tb, mut tc) = block_on(async {
            (
                server.accept().await.unwrap(),
                server.accept().await.unwrap(),
                server.accept().await.unwrap(),
            )
        });
        assert_eq!((ta.id(), tb.id(), tc.id()), (a.id(), b.id(), c.id()));

        // C's data (one frame that uses the whole budget), then A's.
        let for_c = pattern(3, budget);
        block_on(async {
            c.write_all(&for_c).await.unwrap();
            c.flush().await.unwrap();
            a.write_all(b"hello A").await.unwrap();
            a.flush().await.unwrap();
        });

        let (ca, wa) = counting();
        let (cb, wb) = counting();
        let (mut buf_a, mut buf_b) = ([0u8; 64], [0u8; 64]);
        // A's poll reads the transport: C's frame fills the budget, A's frame stays behind.
        assert!(poll_read_once(&mut ta, &mut buf_a, &wa).is_pending());
        assert!(poll_read_once(&mut tb, &mut buf_b, &wb).is_pending());
        assert_eq!(server.parked_count(), 2);
        assert_eq!(
            client_end.unread_outgoing(),
            0,
            "everything left the transport"
        );
        assert_eq!((ca.count(), cb.count()), (0, 0));

        // C's reader takes its data and goes away (it polls nothing more).
        let mut got = vec![0u8; budget];
        block_on(tc.read_exact(&mut got)).unwrap();
        assert_eq!(got, for_c);

        assert_eq!(ca.count(), 1, "A's data was processed and A woken");
        assert_eq!(
            cb.count(),
            0,
            "B was not woken: no transport readiness, no event for B"
        );
        assert!(poll_read_once(&mut tb, &mut buf_b, &wb).is_pending());
        match poll_read_once(&mut ta, &mut buf_a, &wa) {
            Poll::Ready(Ok(7)) => assert_eq!(&buf_a[..7], b"hello A"),
            other => panic!("A's read: {other:?}"),
        }
    });
}

// ------------------------------------------------------------------------------------------------
// Lazy driving

/// 5 MiB on one stream, with no driver task and no other poll: the writer's polls drive the
/// client, the reader's polls drive the server.
fn lazy_single_stream(version: Version) {
    within(10, move || {
        let (client, server) = pair(version);
        let data = pattern(7, 5 << 20);
        let got = block_on(async {
            let mut s = client.connect().await.unwrap();
            let mut t = server.accept().await.unwrap();
            let write = async {
                s.write_all(&data).await.unwrap();
                s.close().await.unwrap();
            };
            let read = async {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 48 * 1024];
                loop {
                    match t.read(&mut buf).await.unwrap() {
                        0 => break got,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
            };
            join(write, read).await.1
        });
        assert_eq!(got.len(), data.len());
        assert!(got == data, "data corrupted");
        assert!(client.stats().bytes_out > data.len() as u64);
        assert!(server.stats().bytes_in > data.len() as u64);
    });
}

#[test]
fn lazy_driving_with_one_stream_polled_v1() {
    lazy_single_stream(Version::V1);
}

#[test]
fn lazy_driving_with_one_stream_polled_v2() {
    lazy_single_stream(Version::V2);
}

// ------------------------------------------------------------------------------------------------
// Drop

fn drop_sends_fin(version: Version) {
    within(10, move || {
        let (client, server) = pair(version);
        block_on(async {
            // Client drops first.
            let mut s = client.connect().await.unwrap();
            s.write_all(b"last words").await.unwrap();
            let mut t = server.accept().await.unwrap();
            assert_eq!((client.stream_count(), server.stream_count()), (1, 1));
            drop(s);
            assert_eq!(read_all(&mut t).await, b"last words", "data, then EOF");
            assert_eq!(client.stream_count(), 0);
            assert_eq!(
                server.stream_count(),
                1,
                "the server still holds its handle"
            );
            drop(t);
            assert_eq!(server.stream_count(), 0);

            // Server drops first.
            let mut s = client.connect().await.unwrap();
            s.write_all(b"ping").await.unwrap();
            let mut t = server.accept().await.unwrap();
            let mut ping = [0u8; 4];
            t.read_exact(&mut ping).await.unwrap();
            t.write_all(b"pong").await.unwrap();
            drop(t);
            assert_eq!(read_all(&mut s).await, b"pong");
            assert_eq!(server.stream_count(), 0);
            drop(s);
            assert_eq!(client.stream_count(), 0);

            // The connection is still fine.
            let mut s = client.connect().await.unwrap();
            s.write_all(b"again").await.unwrap();
            s.close().await.unwrap();
            let mut t = server.accept().await.unwrap();
            assert_eq!(read_all(&mut t).await, b"again");
            drop((s, t));
            assert_eq!((client.stream_count(), server.stream_count()), (0, 0));
        });
        assert!(!client.is_closed() && !server.is_closed());
    });
}

#[test]
fn dropping_a_stream_sends_fin_and_frees_it_v1() {
    drop_sends_fin(Version::V1);
}

#[test]
fn dropping_a_stream_sends_fin_and_frees_it_v2() {
    drop_sends_fin(Version::V2);
}

/// The last handle of the mux (a stream outliving the `Mux`) closes the transport when it goes.
#[test]
fn dropping_every_handle_closes_the_transport() {
    within(10, || {
        let (client, server) = pair(Version::V1);
        block_on(async {
            let mut s = client.connect().await.unwrap();
            s.write_all(b"bye").await.unwrap();
            let mut t = server.accept().await.unwrap();

            // The Mux handle goes, the stream keeps the connection alive.
            drop(client);
            t.write_all(b"still here").await.unwrap();
            let mut buf = [0u8; 10];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"still here");
            assert!(!server.is_closed());

            // The last handle goes: FIN, then the transport is closed.
            drop(s);
            assert_eq!(read_all(&mut t).await, b"bye");
            let err = server.accept().await.unwrap_err();
            assert!(matches!(smux_error(&err), smux_proto::Error::PeerClosed));
            assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
            let err = t.write_all(b"anyone?").await.unwrap_err();
            assert!(matches!(smux_error(&err), smux_proto::Error::PeerClosed));
            assert!(server.is_closed());
            let err = server.drive().await.unwrap_err();
            assert!(matches!(smux_error(&err), smux_proto::Error::PeerClosed));
        });
    });
}

/// Dropping everything while output is stuck behind a full transport still ends the
/// connection: the transport goes with the mux, the peer sees it end inside a frame, and its
/// read fails after the data that made it.
#[test]
fn dropping_every_handle_with_output_stuck_ends_the_connection() {
    within(10, || {
        let (client, server) = pair(Version::V1);
        let data = pattern(9, 600 * 1024);
        let (_, wa) = counting();
        let mut s = block_on(client.connect()).unwrap();
        // Accepted while the connection lives (a failed session drops its accept backlog).
        let mut t = block_on(server.accept()).unwrap();
        // Write until the session refuses more: the transport (256 KiB) and the session
        // buffers are full, nobody reads.
        let mut written = 0;
        while written < data.len() {
            match Pin::new(&mut s).poll_write(&mut Context::from_waker(&wa), &data[written..]) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => break,
            }
        }
        assert!(written > DEFAULT_CAPACITY, "more than the transport holds");
        drop(s);
        drop(client);

        block_on(async {
            let mut got = Vec::new();
            let err = t.read_to_end(&mut got).await.unwrap_err();
            assert!(
                matches!(smux_error(&err), smux_proto::Error::TruncatedFrame { .. }),
                "{err:?}"
            );
            assert!(!got.is_empty() && got.len() < written);
            assert_eq!(got, data[..got.len()]);
            assert!(server.accept().await.is_err());
        });
    });
}

// ------------------------------------------------------------------------------------------------
// Graceful endings

fn half_close(version: Version) {
    within(10, move || {
        let (client, server) = pair(version);
        let data = pattern(1, 300 * 1024);
        block_on(async {
            let mut s = client.connect().await.unwrap();
            let mut t = server.accept().await.unwrap();
            let write = async {
                s.write_all(&data).await.unwrap();
                s.close().await.unwrap();
                // Half-closed: writing fails, reading goes on.
                assert!(s.write_all(b"more").await.is_err());
                read_all(&mut s).await
            };
            let read = async {
                let got = read_all(&mut t).await;
                t.write_all(b"got it").await.unwrap();
                t.close().await.unwrap();
                got
            };
            let (answer, got) = join(write, read).await;
            assert!(got == data, "data lost or corrupted");
            assert_eq!(answer, b"got it");
        });
    });
}

#[test]
fn data_written_before_half_close_arrives_v1() {
    half_close(Version::V1);
}

#[test]
fn data_written_before_half_close_arrives_v2() {
    half_close(Version::V2);
}

fn mux_close(version: Version) {
    within(10, move || {
        let (client, server) = pair(version);
        let datas: Vec<Vec<u8>> = (0..4)
            .map(|i| pattern(i, 200 * 1024 + 17 * usize::from(i)))
            .collect();
        block_on(async {
            let mut streams = Vec::new();
            for data in &datas {
                let mut s = client.connect().await.unwrap();
                s.write_all(data).await.unwrap();
                streams.push(s);
            }
            // An accept waiting on the closing side must end, not hang.
            let (accept_woken, waker) = counting();
            let mut pending_accept = Box::pin(client.accept());
            assert!(poll_once(pending_accept.as_mut(), &waker).is_pending());
            // Close with everything still queued (at most 256 KiB fit in the transport).
            let close = async {
                client.close().await.unwrap();
            };
            let receive = async {
                let mut ts = Vec::new();
                for _ in 0..datas.len() {
                    ts.push(server.accept().await.unwrap());
                }
                let reads = join_all(ts.iter_mut().map(read_all)).await;
                ts.iter().map(|t| t.id()).zip(reads).collect::<Vec<_>>()
            };
            let ((), received) = join(close, receive).await;
            for ((id, got), (s, data)) in received.iter().zip(streams.iter().zip(&datas)) {
                assert_eq!(*id, s.id());
                assert!(got == data, "stream {id}: data lost or corrupted");
            }
            assert!(client.is_closed());
            client.drive().await.unwrap();
            assert!(accept_woken.count() >= 1);
            match poll_once(pending_accept.as_mut(), &waker) {
                Poll::Ready(Err(e)) => {
                    assert!(matches!(smux_error(&e), smux_proto::Error::LocallyClosed))
                }
                other => panic!("accept after close: {other:?}"),
            }
            // New streams are refused on both sides.
            assert!(client.connect().await.is_err());
            let err = server.accept().await.unwrap_err();
            assert!(matches!(smux_error(&err), smux_proto::Error::PeerClosed));
        });
    });
}

#[test]
fn mux_close_delivers_all_data_then_eof_v1() {
    mux_close(Version::V1);
}

#[test]
fn mux_close_delivers_all_data_then_eof_v2() {
    mux_close(Version::V2);
}

// ------------------------------------------------------------------------------------------------
// Stalls

fn stalled_transport(version: Version) {
    within(10, move || {
        let send_budget = 512 * 1024;
        let client_config = config(version)
            .with_max_send_buffer(send_budget)
            .with_max_stream_send_buffer(send_budget);
        let (client, server, client_end, _server_end) = linked(client_config, config(version));
        let (a, b) = block_on(async {
            (
                client.connect().await.unwrap(),
                client.connect().await.unwrap(),
            )
        });
        let (ta, tb) = block_on(async {
            (
                server.accept().await.unwrap(),
                server.accept().await.unwrap(),
            )
        });

        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        let len = 1 << 20;
        let received = Rc::new(RefCell::new(Vec::new()));
        for (i, mut t) in [ta, tb].into_iter().enumerate() {
            let received = received.clone();
            spawner
                .spawn_local(async move {
                    let got = read_all(&mut t).await;
                    received.borrow_mut().push((i, got));
                })
                .unwrap();
        }
        // The readers wait, parked, before the network stalls.
        pool.run_until_stalled();
        assert_eq!(server.parked_count(), 2);

        client_end.stall(true);
        let accepted = Rc::new(RefCell::new([0usize; 2]));
        for (i, mut s) in [a, b].into_iter().enumerate() {
            let accepted = accepted.clone();
            let data = pattern(i as u8, len);
            spawner
                .spawn_local(async move {
                    for piece in data.chunks(16 * 1024) {
                        s.write_all(piece).await.unwrap();
                        accepted.borrow_mut()[i] += piece.len();
                    }
                    s.close().await.unwrap();
                })
                .unwrap();
        }
        pool.run_until_stalled();
        let total: usize = accepted.borrow().iter().sum();
        // Bounded: the session's send budget, plus the transmit queue the driver fills from it
        // (256 KiB), plus a frame and headers.
        assert!(total < 2 * len, "writers are blocked");
        assert!(
            total <= send_budget + 256 * 1024 + 64 * 1024,
            "{total} bytes accepted while stalled"
        );
        assert!(total >= send_budget / 2, "only {total} bytes accepted");
        assert_eq!(client_end.unread_outgoing(), 0, "nothing crossed the stall");
        assert!(received.borrow().is_empty());

        client_end.stall(false);
        pool.run_until_stalled();
        let received = received.borrow();
        assert_eq!(received.len(), 2, "all transfers completed after the stall");
        for (i, got) in received.iter() {
            assert!(*got == pattern(*i as u8, len), "stream {i}: data corrupted");
        }
    });
}

#[test]
fn stalled_transport_bounds_memory_and_recovers_v1() {
    stalled_transport(Version::V1);
}

#[test]
fn stalled_transport_bounds_memory_and_recovers_v2() {
    stalled_transport(Version::V2);
}

// ------------------------------------------------------------------------------------------------
// Errors

/// The peer's transport shuts down abruptly: streams still deliver what was received (both in
/// the session and still in the transport), then fail with the session error; accept fails.
#[test]
fn peer_shutdown_fails_reads_after_buffered_data_and_accept() {
    within(10, || {
        let (client, server, _client_end, server_end) =
            linked(config(Version::V1), config(Version::V1));
        block_on(async {
            let mut s1 = client.connect().await.unwrap();
            let mut s2 = client.connect().await.unwrap();
            let mut s3 = client.connect().await.unwrap();
            let mut t1 = server.accept().await.unwrap();
            let mut t2 = server.accept().await.unwrap();
            let _t3 = server.accept().await.unwrap();

            t1.write_all(b"hello world").await.unwrap();
            t1.flush().await.unwrap();
            let mut hello = [0u8; 5];
            s1.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"hello"); // " world" is buffered in the client session
            t2.write_all(b"tail").await.unwrap();
            t2.flush().await.unwrap(); // "tail" is in the transport
            server_end.shutdown();

            let check = |e: io::Error| {
                assert!(
                    matches!(smux_error(&e), smux_proto::Error::PeerClosed),
                    "{e:?}"
                );
                assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
            };
            let mut rest = Vec::new();
            check(s1.read_to_end(&mut rest).await.unwrap_err());
            assert_eq!(rest, b" world");
            let mut rest = Vec::new();
            check(s2.read_to_end(&mut rest).await.unwrap_err());
            assert_eq!(rest, b"tail");
            check(s3.read(&mut [0u8; 8]).await.unwrap_err());
            check(s3.write_all(b"x").await.unwrap_err());
            check(client.accept().await.unwrap_err());
            check(client.connect().await.unwrap_err());
            assert!(client.is_closed());
            check(client.drive().await.unwrap_err());
            // Errors are sticky.
            check(s1.read(&mut [0u8; 8]).await.unwrap_err());
        });
    });
}

// ------------------------------------------------------------------------------------------------
// Cancellation

#[test]
fn dropped_read_and_accept_futures_leave_the_mux_usable() {
    within(10, || {
        let (client, server) = pair(Version::V1);
        let (_, waker) = counting();

        // An accept future polled once, then dropped.
        {
            let mut accept = Box::pin(server.accept());
            assert!(poll_once(accept.as_mut(), &waker).is_pending());
        }
        let mut s = block_on(client.connect()).unwrap();
        block_on(s.write_all(b"one")).unwrap();
        let mut t = block_on(server.accept()).unwrap();
        assert_eq!(t.id(), s.id());
        let mut one = [0u8; 3];
        block_on(t.read_exact(&mut one)).unwrap();
        assert_eq!(&one, b"one");

        // A read future polled once, then dropped; the data comes later.
        {
            let mut buf = [0u8; 16];
            let mut read = t.read(&mut buf);
            assert!(poll_once(Pin::new(&mut read), &waker).is_pending());
        }
        block_on(s.write_all(b"two")).unwrap();
        let mut buf = [0u8; 16];
        let n = block_on(t.read(&mut buf)).unwrap();
        assert_eq!(&buf[..n], b"two");

        // Same with read_chunk, and with the data already in the transport when the dropped
        // future's task would have been woken.
        {
            let mut chunk = Box::pin(t.read_chunk(100));
            assert!(poll_once(chunk.as_mut(), &waker).is_pending());
        }
        block_on(async {
            s.write_all(b"three").await.unwrap();
            s.flush().await.unwrap();
        });
        let chunk = block_on(t.read_chunk(100)).unwrap().unwrap();
        assert_eq!(&chunk[..], b"three");

        // And a second accept after a cancelled one.
        {
            let mut accept = Box::pin(server.accept());
            assert!(poll_once(accept.as_mut(), &waker).is_pending());
        }
        let mut s2 = block_on(client.connect()).unwrap();
        block_on(s2.write_all(b"four")).unwrap();
        let mut t2 = block_on(server.accept()).unwrap();
        assert_eq!(t2.id(), s2.id());
        let mut four = [0u8; 4];
        block_on(t2.read_exact(&mut four)).unwrap();
        assert_eq!(&four, b"four");
    });
}

// ------------------------------------------------------------------------------------------------
// Threads

/// Several streams echoed, every stream on a thread of its own on both sides.
fn echo_across_threads(version: Version) {
    within(10, move || {
        let (client, server) = pair(version);
        let acceptor = std::thread::spawn(move || {
            let mut echoes = Vec::new();
            while let Ok(mut t) = block_on(server.accept()) {
                echoes.push(std::thread::spawn(move || {
                    block_on(async {
                        while let Some(chunk) = t.read_chunk(20_000).await.unwrap() {
                            t.write_chunk(chunk).await.unwrap();
                        }
                        t.close().await.unwrap();
                    })
                }));
            }
            echoes.into_iter().for_each(|e| e.join().unwrap());
        });
        let users: Vec<_> = (0..6)
            .map(|i| {
                let s = block_on(client.connect()).unwrap();
                std::thread::spawn(move || {
                    let data = pattern(i, 256 * 1024 + usize::from(i));
                    let (mut r, mut w) = s.split();
                    let got = block_on(join(
                        async {
                            w.write_all(&data).await.unwrap();
                            w.close().await.unwrap();
                        },
                        async {
                            let mut got = Vec::new();
                            r.read_to_end(&mut got).await.unwrap();
                            got
                        },
                    ))
                    .1;
                    assert!(got == data, "stream {i}: echo corrupted");
                })
            })
            .collect();
        users.into_iter().for_each(|u| u.join().unwrap());
        block_on(client.close()).unwrap();
        acceptor.join().unwrap();
    });
}

#[test]
fn echo_across_threads_v1() {
    echo_across_threads(Version::V1);
}

#[test]
fn echo_across_threads_v2() {
    echo_across_threads(Version::V2);
}

/// A flush that parked and then completed through its caller's own drive leaves no waker
/// behind, and a dropped stream's parked slots are forgotten: idle streams cost no waker
/// memory.
#[test]
fn completed_and_dropped_waits_leave_no_parked_wakers() {
    within(10, || {
        let (client, server, link, _) = linked(config(Version::V1), config(Version::V1));
        let (_, waker) = counting();
        let mut s = block_on(client.connect()).unwrap();
        let mut t = block_on(server.accept()).unwrap();

        // A flush against a stalled transport parks; once the transport moves, the next poll
        // completes it through its own drive (no event wakes a flush).
        link.stall(true);
        block_on(s.write_all(b"x")).unwrap();
        let mut flush = s.flush();
        assert!(poll_once(Pin::new(&mut flush), &waker).is_pending());
        assert_eq!(client.parked_count(), 1);
        link.stall(false);
        assert!(matches!(
            poll_once(Pin::new(&mut flush), &waker),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(
            client.parked_count(),
            0,
            "the finished flush unparked itself"
        );

        // A read parked on a stream that is then dropped.
        let mut buf = [0u8; 8];
        assert!(matches!(
            poll_read_once(&mut t, &mut buf, &waker),
            Poll::Ready(Ok(1))
        ));
        assert!(poll_read_once(&mut t, &mut buf, &waker).is_pending());
        assert_eq!(server.parked_count(), 1);
        drop(t);
        assert_eq!(
            server.parked_count(),
            0,
            "the dropped stream's slot is gone"
        );
    });
}

// ------------------------------------------------------------------------------------------------
// Memory of waiting: one entry per waiter, however often it is polled, whatever its waker

/// Polls made with a fresh waker each time (as some combinators and executors do): a blocked
/// accept, drive, read and write each keep one parked entry (the latest waker), and the wake-up
/// goes to that waker only. Before waiters were keyed by who waits, the accept and drive
/// waiters were deduplicated by `will_wake` alone and kept every distinct waker.
#[test]
fn repolls_with_fresh_wakers_keep_one_entry_per_waiter() {
    within(10, || {
        const POLLS: usize = 1000;
        let client_config = config(Version::V1)
            .with_max_send_buffer(64 * 1024)
            .with_max_stream_send_buffer(64 * 1024);
        let (client, server, client_end, _server_end) = linked(client_config, config(Version::V1));

        // Accept and drive, each a single future polled POLLS times with fresh wakers.
        let mut accept = Box::pin(server.accept());
        let mut drive = Box::pin(server.drive());
        let mut accept_counters = Vec::new();
        let mut drive_counters = Vec::new();
        for _ in 0..POLLS {
            let (counter, waker) = counting();
            assert!(poll_once(accept.as_mut(), &waker).is_pending());
            accept_counters.push(counter);
            let (counter, waker) = counting();
            assert!(poll_once(drive.as_mut(), &waker).is_pending());
            drive_counters.push(counter);
        }
        assert_eq!(server.parked_count(), 2, "one accept and one drive entry");

        // When a stream arrives, the transport wakes the latest drive waker (the drive holds
        // the read duty), and no earlier one; its poll wakes the latest accept waker.
        let mut s = block_on(client.connect()).unwrap();
        block_on(async {
            s.write_all(b"x").await.unwrap();
            s.flush().await.unwrap();
        });
        let (last, earlier) = drive_counters.split_last().unwrap();
        assert_eq!(last.count(), 1, "the latest drive waker is woken");
        assert!(earlier.iter().all(|c| c.count() == 0));
        let (_, waker) = counting();
        assert!(poll_once(drive.as_mut(), &waker).is_pending());
        let (last, earlier) = accept_counters.split_last().unwrap();
        assert_eq!(last.count(), 1, "the latest waker is woken");
        assert!(earlier.iter().all(|c| c.count() == 0));
        let (_, waker) = counting();
        let mut t = match poll_once(accept.as_mut(), &waker) {
            Poll::Ready(Ok(t)) => t,
            other => panic!("accept: {other:?}"),
        };
        drop(accept);
        drop(drive);
        assert_eq!(server.parked_count(), 0, "dropped futures left nothing");

        // A blocked read, polled with fresh wakers.
        let mut buf = [0u8; 8];
        let (_, waker) = counting();
        assert!(matches!(
            poll_read_once(&mut t, &mut buf, &waker),
            Poll::Ready(Ok(1))
        ));
        let mut read_counters = Vec::new();
        for _ in 0..POLLS {
            let (counter, waker) = counting();
            assert!(poll_read_once(&mut t, &mut buf, &waker).is_pending());
            read_counters.push(counter);
        }
        assert_eq!(server.parked_count(), 1);

        // A write blocked on the session send budget (the transport stalled), polled with
        // fresh wakers.
        client_end.stall(true);
        let big = vec![7u8; 64 * 1024];
        let mut written = 0;
        let mut write_counters = Vec::new();
        for _ in 0..POLLS {
            let (counter, waker) = counting();
            match Pin::new(&mut s).poll_write(&mut Context::from_waker(&waker), &big) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Pending => write_counters.push(counter),
                Poll::Ready(Err(e)) => panic!("write: {e}"),
            }
        }
        assert!(
            write_counters.len() >= POLLS - 16,
            "the writer blocked ({written} bytes taken)"
        );
        assert_eq!(client.parked_count(), 1, "one write entry");

        // Unstalled, the writer's latest waker is woken (and no earlier one); once the data
        // is pushed out, the reader's.
        client_end.stall(false);
        let (last, earlier) = write_counters.split_last().unwrap();
        assert_eq!(last.count(), 1, "the latest writer waker is woken");
        assert!(earlier.iter().all(|c| c.count() == 0));
        block_on(s.flush()).unwrap();
        let (last, earlier) = read_counters.split_last().unwrap();
        assert!(last.count() >= 1, "the latest reader waker is woken");
        assert!(earlier.iter().all(|c| c.count() == 0));
        let (_, waker) = counting();
        assert!(matches!(
            poll_read_once(&mut t, &mut buf, &waker),
            Poll::Ready(Ok(8))
        ));
    });
}

/// Accept and drive futures polled once each (with wakers of their own, as tasks spawned one
/// after another would) and then dropped leave no waker behind, however many there were; live
/// ones keep one entry each, and each of them is woken when a stream arrives.
#[test]
fn dropped_connection_waiters_leave_no_wakers() {
    within(10, || {
        let (client, server) = pair(Version::V2);
        for _ in 0..1000 {
            let (_, waker) = counting();
            let mut accept = Box::pin(server.accept());
            assert!(poll_once(accept.as_mut(), &waker).is_pending());
            let mut drive = Box::pin(client.drive());
            assert!(poll_once(drive.as_mut(), &waker).is_pending());
        }
        assert_eq!(server.parked_count(), 0);
        assert_eq!(client.parked_count(), 0);

        // Ten live accept futures, each re-polled with fresh wakers: ten entries.
        let mut accepts: Vec<_> = (0..10).map(|_| Box::pin(server.accept())).collect();
        let mut latest = Vec::new();
        for round in 0..50 {
            latest.clear();
            for accept in &mut accepts {
                let (counter, waker) = counting();
                assert!(poll_once(accept.as_mut(), &waker).is_pending(), "{round}");
                latest.push(counter);
            }
        }
        assert_eq!(server.parked_count(), 10);
        // Connecting sends the SYN at once; the server's transport wakes one waiter, the
        // holder of the read duty (the last to park), whose poll drives and takes the stream;
        // the stream's arrival wakes every other live waiter, once.
        let _s = block_on(client.connect()).unwrap();
        let woken: Vec<usize> = latest.iter().map(|c| c.count()).collect();
        assert_eq!(woken[..9], [0; 9], "only the duty holder is woken first");
        assert_eq!(woken[9], 1);
        let (_, waker) = counting();
        assert!(matches!(
            poll_once(accepts[9].as_mut(), &waker),
            Poll::Ready(Ok(_))
        ));
        assert!(
            latest[..9].iter().all(|c| c.count() == 1),
            "every live waiter woken once"
        );
        drop(accepts);
        assert_eq!(server.parked_count(), 0);
    });
}

/// `poll_accept` has no future to hold an identity: its callers share one entry, the latest
/// waker.
#[test]
fn poll_accept_keeps_the_latest_waker_only() {
    within(10, || {
        let (client, server) = pair(Version::V1);
        let mut counters = Vec::new();
        for _ in 0..1000 {
            let (counter, waker) = counting();
            assert!(server
                .poll_accept(&mut Context::from_waker(&waker))
                .is_pending());
            counters.push(counter);
        }
        assert_eq!(server.parked_count(), 1);
        // Connecting sends the SYN at once; the server's transport wakes its waiters.
        let _s = block_on(client.connect()).unwrap();
        let (last, earlier) = counters.split_last().unwrap();
        assert_eq!(last.count(), 1);
        assert!(earlier.iter().all(|c| c.count() == 0));
        let (_, waker) = counting();
        assert!(matches!(
            server.poll_accept(&mut Context::from_waker(&waker)),
            Poll::Ready(Ok(_))
        ));
        assert_eq!(server.parked_count(), 0);
    });
}

mod slow_link;
