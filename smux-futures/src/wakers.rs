//! Who waits for what, and the fan-out waker handed to the transport.
//!
//! Tasks park with a [`Slot`]: the reader or writer of one stream, or a connection-wide
//! waiter (accept, connect, drive, close). Session events wake exactly the matching slot. The
//! transport and the timer are given a [`FanOut`] waker instead of any one task's: when the
//! transport becomes ready it wakes every parked task, so the connection makes progress even if
//! the task that last polled it has gone away (its future was dropped). Parked tasks are taken
//! out of the set when woken, so each readiness wakes each task at most once.
//!
//! Memory: every entry is keyed by *who* waits, not by the waker it was polled with, so a
//! blocked task costs one entry however often it is polled and whatever waker it brings (a
//! combinator or an executor may hand a different waker to each poll). Stream slots are keyed
//! by stream and direction; connection-wide waiters by a [`Registration`] that the future
//! (`accept`, `drive`, `close`) holds and that removes its entry when the future is dropped,
//! so the set is bounded by the futures alive, not by the futures ever polled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};

use smux_proto::StreamId;

/// What a parked task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    Read(StreamId),
    Write(StreamId),
}

/// Who parks in [`Driver::poll_op`](crate::driver::Driver::poll_op).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Waiter {
    /// A task waiting on one stream.
    Stream(Slot),
    /// A connection-wide waiter (accept, drive, close), by the key of its [`Registration`]
    /// ([`POLL_ACCEPT`] for the bare `Mux::poll_accept`).
    Connection(u64),
}

/// The connection-wide key of `Mux::poll_accept`, which has no future to hold a registration:
/// its callers share one entry, and only the waker of the latest call is kept.
pub(crate) const POLL_ACCEPT: u64 = 0;

#[derive(Debug)]
struct Parked {
    streams: HashMap<Slot, Waker>,
    /// Connection-wide waiters (accept, drive, close), one per registration.
    connection: HashMap<u64, Waker>,
    /// Tasks that wanted to drive while another task was driving, one per waiter: woken when
    /// the drive is done.
    io: HashMap<Waiter, Waker>,
    /// The key the next registration gets (0 is [`POLL_ACCEPT`]).
    next_key: u64,
}

impl Default for Parked {
    fn default() -> Self {
        Parked {
            streams: HashMap::new(),
            connection: HashMap::new(),
            io: HashMap::new(),
            next_key: POLL_ACCEPT + 1,
        }
    }
}

/// Stores `waker` under `key`, replacing (without a clone when it would wake the same task)
/// whatever waker the same waiter left there before.
fn store<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Waker>, key: K, waker: &Waker) {
    match map.get_mut(&key) {
        Some(w) if w.will_wake(waker) => {}
        Some(w) => w.clone_from(waker),
        None => {
            map.insert(key, waker.clone());
        }
    }
}

/// A connection-wide waiter's identity, held by its future: dropping the future drops the
/// waker it parked.
pub(crate) struct Registration<'a> {
    wakers: &'a Wakers,
    key: u64,
}

impl Registration<'_> {
    /// Who this registration parks as.
    pub(crate) fn waiter(&self) -> Waiter {
        Waiter::Connection(self.key)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut parked = self.wakers.lock();
        parked.connection.remove(&self.key);
        parked.io.remove(&Waiter::Connection(self.key));
    }
}

/// The set of parked tasks, shared with the fan-out waker. Its lock is separate from the
/// session's, so a transport that wakes inline while the session is locked cannot deadlock.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    parked: Mutex<Parked>,
}

impl Wakers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Parked> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection-wide waiter identity, for one `accept`, `drive` or `close` future.
    pub(crate) fn register(&self) -> Registration<'_> {
        let mut parked = self.lock();
        let key = parked.next_key;
        parked.next_key += 1;
        Registration { wakers: self, key }
    }

    /// Parks the current task.
    pub(crate) fn park_waiter(&self, waiter: Waiter, waker: &Waker) {
        let mut parked = self.lock();
        match waiter {
            Waiter::Stream(slot) => store(&mut parked.streams, slot, waker),
            Waiter::Connection(key) => store(&mut parked.connection, key, waker),
        }
    }

    /// Unparks a task whose wait ended without a wake-up (the drive it did itself made the
    /// operation complete), so idle streams hold no stale wakers.
    pub(crate) fn unpark_waiter(&self, waiter: Waiter, waker: &Waker) {
        let mut parked = self.lock();
        match waiter {
            Waiter::Stream(slot) => {
                if parked
                    .streams
                    .get(&slot)
                    .is_some_and(|w| w.will_wake(waker))
                {
                    parked.streams.remove(&slot);
                }
            }
            Waiter::Connection(key) => {
                if parked
                    .connection
                    .get(&key)
                    .is_some_and(|w| w.will_wake(waker))
                {
                    parked.connection.remove(&key);
                }
            }
        }
    }

    /// Forgets the slots of a stream that is gone, including a wait for the drive to end that
    /// its reader or writer left (nobody polls for it any more).
    pub(crate) fn forget_stream(&self, id: StreamId) {
        let mut parked = self.lock();
        for slot in [Slot::Read(id), Slot::Write(id)] {
            if !parked.streams.is_empty() {
                parked.streams.remove(&slot);
            }
            if !parked.io.is_empty() {
                parked.io.remove(&Waiter::Stream(slot));
            }
        }
    }

    /// Parks the current task until the task driving the connection is done.
    pub(crate) fn park_io(&self, waiter: Waiter, waker: &Waker) {
        store(&mut self.lock().io, waiter, waker);
    }

    /// Takes the tasks waiting for a drive to end.
    pub(crate) fn take_io(&self, out: &mut Vec<Waker>) {
        let mut parked = self.lock();
        if !parked.io.is_empty() {
            out.extend(parked.io.drain().map(|(_, w)| w));
        }
    }

    /// Takes the waker of one slot, to wake after the session lock is released.
    pub(crate) fn take(&self, slot: Slot, out: &mut Vec<Waker>) {
        if let Some(w) = self.lock().streams.remove(&slot) {
            out.push(w);
        }
    }

    /// Takes the connection-wide waiters.
    pub(crate) fn take_connection(&self, out: &mut Vec<Waker>) {
        out.extend(self.lock().connection.drain().map(|(_, w)| w));
    }

    /// Wakes every parked task.
    pub(crate) fn wake_all(&self) {
        let (streams, connection, io) = {
            let mut parked = self.lock();
            (
                std::mem::take(&mut parked.streams),
                std::mem::take(&mut parked.connection),
                std::mem::take(&mut parked.io),
            )
        };
        streams.into_values().for_each(Waker::wake);
        connection.into_values().for_each(Waker::wake);
        io.into_values().for_each(Waker::wake);
    }

    /// Number of parked tasks (for tests).
    #[cfg(test)]
    pub(crate) fn parked_count(&self) -> usize {
        let parked = self.lock();
        parked.streams.len() + parked.connection.len() + parked.io.len()
    }
}

/// The waker given to the transport and the timer: wakes every parked task.
#[derive(Debug)]
pub(crate) struct FanOut(pub(crate) Arc<Wakers>);

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.0.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    /// A waiter that keeps finding the connection busy (another task driving), with a fresh
    /// waker each time, costs one entry until the drive ends; then only its latest waker is
    /// woken. A registration dropped meanwhile takes its entries along.
    #[test]
    fn io_waiters_are_keyed_by_who_waits() {
        let wakers = Wakers::default();
        let reader = Waiter::Stream(Slot::Read(StreamId::new(1)));
        let mut counts = Vec::new();
        for _ in 0..1000 {
            let (c, w) = counting();
            wakers.park_io(reader, &w);
            counts.push(c);
        }
        assert_eq!(wakers.parked_count(), 1);

        let registration = wakers.register();
        let (gone, w) = counting();
        wakers.park_waiter(registration.waiter(), &w);
        wakers.park_io(registration.waiter(), &w);
        assert_eq!(wakers.parked_count(), 3);
        drop(registration);
        assert_eq!(wakers.parked_count(), 1);

        let mut out = Vec::new();
        wakers.take_io(&mut out);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(wakers.parked_count(), 0);
        let (last, earlier) = counts.split_last().unwrap();
        assert_eq!(last.0.load(Ordering::SeqCst), 1);
        assert!(earlier.iter().all(|c| c.0.load(Ordering::SeqCst) == 0));
        assert_eq!(gone.0.load(Ordering::SeqCst), 0);
    }

    /// A stream that is dropped while its reader and writer wait for another task's drive
    /// leaves nothing parked, and its stale wakers are not woken when the drive ends.
    #[test]
    fn forgetting_a_stream_takes_its_io_waits_along() {
        let wakers = Wakers::default();
        let (gone, w) = counting();
        for id in 1..=100 {
            let id = StreamId::new(id);
            wakers.park_waiter(Waiter::Stream(Slot::Read(id)), &w);
            wakers.park_io(Waiter::Stream(Slot::Read(id)), &w);
            wakers.park_io(Waiter::Stream(Slot::Write(id)), &w);
        }
        let (kept, k) = counting();
        wakers.park_io(Waiter::Stream(Slot::Read(StreamId::new(1000))), &k);
        assert_eq!(wakers.parked_count(), 301);
        for id in 1..=100 {
            wakers.forget_stream(StreamId::new(id));
        }
        assert_eq!(wakers.parked_count(), 1);
        let mut out = Vec::new();
        wakers.take_io(&mut out);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(gone.0.load(Ordering::SeqCst), 0);
        assert_eq!(kept.0.load(Ordering::SeqCst), 1);
    }
}
