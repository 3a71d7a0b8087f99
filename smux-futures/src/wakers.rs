//! Who waits for what, and the read duty.
//!
//! Tasks park with a [`Slot`]: the reader or writer of one stream, or a connection-wide
//! waiter (accept, connect, drive, close). Session events wake exactly the matching slot.
//!
//! The transport and the timer are given the [`Duty`] waker instead of any one task's. Their
//! readiness is news for nobody in particular until someone reads the transport, so it wakes
//! exactly one parked task, the holder of the *read duty*, which drives the connection; the
//! events that drive produces then wake the tasks they concern. The holder is, in order of
//! preference: a task in `Mux::drive()` (it keeps the duty for good), the task that parked and
//! drove last (in a request/response exchange, the one waiting for the reply), any parked
//! task. So the work per frame does not grow with the number of parked tasks.
//!
//! Liveness: a task woken for the duty must drive, or the readiness it was woken for is lost
//! to everyone else. Every poll of an operation that cannot complete drives, so a woken task
//! that polls anything of the connection serves the duty. When it cannot any more, the duty
//! passes to another parked task: when its stream or its registration is dropped, and when
//! the transport or the timer wakes again before it drove (it moved on to wait for something
//! else; the keepalive timer guarantees such a wake).
//!
//! Memory: every entry is keyed by *who* waits, not by the waker it was polled with, so a
//! blocked task costs one entry however often it is polled and whatever waker it brings (a
//! combinator or an executor may hand a different waker to each poll). Stream slots are keyed
//! by stream and direction; connection-wide waiters by a [`Registration`] that the future
//! (`accept`, `drive`, `close`) holds and that removes its entry when the future is dropped,
//! so the set is bounded by the futures alive, not by the futures ever polled.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Registrations of `Mux::drive()` futures: the first choice for the read duty.
    drivers: HashSet<u64>,
    /// The waiter that parked and drove last: the next choice for the read duty.
    last_driver: Option<Waiter>,
    /// The waiter woken for the read duty that has not driven yet.
    on_duty: Option<Waiter>,
}

impl Default for Parked {
    fn default() -> Self {
        Parked {
            streams: HashMap::new(),
            connection: HashMap::new(),
            io: HashMap::new(),
            next_key: POLL_ACCEPT + 1,
            drivers: HashSet::new(),
            last_driver: None,
            on_duty: None,
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
        self.wakers.unregister(self.key);
    }
}

impl Parked {
    /// The parked waiter that should take the read duty now, out of the set with its waker.
    fn take_duty_holder(&mut self) -> Option<(Waiter, Waker)> {
        let driver = self
            .drivers
            .iter()
            .copied()
            .find(|key| self.connection.contains_key(key));
        if let Some(key) = driver {
            let waker = self.connection.remove(&key)?;
            return Some((Waiter::Connection(key), waker));
        }
        if let Some(waiter) = self.last_driver {
            if let Some(waker) = self.remove(waiter) {
                return Some((waiter, waker));
            }
        }
        if let Some(&slot) = self.streams.keys().next() {
            let waker = self.streams.remove(&slot)?;
            return Some((Waiter::Stream(slot), waker));
        }
        let &key = self.connection.keys().next()?;
        let waker = self.connection.remove(&key)?;
        Some((Waiter::Connection(key), waker))
    }

    fn remove(&mut self, waiter: Waiter) -> Option<Waker> {
        match waiter {
            Waiter::Stream(slot) => self.streams.remove(&slot),
            Waiter::Connection(key) => self.connection.remove(&key),
        }
    }

    /// Hands the read duty to a parked task; returns its waker, to wake outside the lock.
    fn hand_duty(&mut self) -> Option<Waker> {
        let (waiter, waker) = self.take_duty_holder()?;
        self.on_duty = Some(waiter);
        Some(waker)
    }

    /// `waiter` will never poll again (its stream or its future was dropped): it is no longer
    /// the last driver, and if it was woken for the read duty, the duty passes on (the waker
    /// to wake is returned).
    fn gone(&mut self, waiter: Waiter) -> Option<Waker> {
        if self.last_driver == Some(waiter) {
            self.last_driver = None;
        }
        if self.on_duty == Some(waiter) {
            self.on_duty = None;
            return self.hand_duty();
        }
        None
    }
}

/// The set of parked tasks, shared with the duty waker. Its lock is separate from the
/// session's, so a transport that wakes inline while the session is locked cannot deadlock.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    parked: Mutex<Parked>,
    /// The transport's last read returned `Pending` (so it holds the duty waker) and no
    /// readiness came since: a task that parks need not drive to be woken for input.
    input_watched: AtomicBool,
}

impl Wakers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Parked> {
        crate::sync::lock(&self.parked)
    }

    /// A new connection-wide waiter identity, for one `accept`, `drive` or `close` future.
    pub(crate) fn register(&self) -> Registration<'_> {
        Registration {
            wakers: self,
            key: self.register_key(),
        }
    }

    /// The key of a new connection-wide waiter, for a holder that outlives a borrow (such as
    /// `Incoming`), which must [`unregister`](Self::unregister) it when dropped.
    pub(crate) fn register_key(&self) -> u64 {
        let mut parked = self.lock();
        let key = parked.next_key;
        parked.next_key += 1;
        key
    }

    /// Drops what the connection-wide waiter `key` left parked, handing the read duty on if
    /// it held it.
    pub(crate) fn unregister(&self, key: u64) {
        let waiter = Waiter::Connection(key);
        let mut parked = self.lock();
        parked.connection.remove(&key);
        parked.io.remove(&waiter);
        parked.drivers.remove(&key);
        let handoff = parked.gone(waiter);
        drop(parked);
        if let Some(w) = handoff {
            w.wake();
        }
    }

    /// A registration for a `Mux::drive()` future, which takes the read duty whenever parked.
    pub(crate) fn register_driver(&self) -> Registration<'_> {
        let registration = self.register();
        self.lock().drivers.insert(registration.key);
        registration
    }

    /// Parks the current task, which then drives (so it becomes the last driver).
    pub(crate) fn park_waiter(&self, waiter: Waiter, waker: &Waker) {
        let mut parked = self.lock();
        parked.last_driver = Some(waiter);
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
        let mut handoff = None;
        for slot in [Slot::Read(id), Slot::Write(id)] {
            if !parked.streams.is_empty() {
                parked.streams.remove(&slot);
            }
            if !parked.io.is_empty() {
                parked.io.remove(&Waiter::Stream(slot));
            }
            handoff = handoff.or(parked.gone(Waiter::Stream(slot)));
        }
        drop(parked);
        if let Some(w) = handoff {
            w.wake();
        }
    }

    /// A drive is starting: it reads the transport, which serves the read duty.
    pub(crate) fn duty_served(&self) {
        self.lock().on_duty = None;
    }

    /// Sets whether the transport is watched for input (see `input_watched`).
    pub(crate) fn watch_input(&self, watched: bool) {
        self.input_watched.store(watched, Ordering::SeqCst);
    }

    /// Whether the transport holds the duty waker for input and no readiness came since.
    pub(crate) fn input_watched(&self) -> bool {
        self.input_watched.load(Ordering::SeqCst)
    }

    /// The transport or the timer is ready: wakes the holder of the read duty. A task woken
    /// for it before that has not driven since: the duty passes to another parked task.
    pub(crate) fn wake_duty(&self) {
        self.input_watched.store(false, Ordering::SeqCst);
        let waker = self.lock().hand_duty();
        if let Some(w) = waker {
            w.wake();
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

    /// Takes the waker of one slot, to wake after the session lock is released; the waiter
    /// that is driving (`me`) is only unparked: it looks again when its drive returns.
    pub(crate) fn take(&self, slot: Slot, me: Option<Waiter>, out: &mut Vec<Waker>) {
        if let Some(w) = self.lock().streams.remove(&slot) {
            if me != Some(Waiter::Stream(slot)) {
                out.push(w);
            }
        }
    }

    /// Takes the connection-wide waiters (except `me`, as for [`take`](Self::take)).
    pub(crate) fn take_connection(&self, me: Option<Waiter>, out: &mut Vec<Waker>) {
        out.extend(
            self.lock()
                .connection
                .drain()
                .filter(|&(key, _)| me != Some(Waiter::Connection(key)))
                .map(|(_, w)| w),
        );
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

/// The waker given to the transport and the timer: wakes the holder of the read duty.
#[derive(Debug)]
pub(crate) struct Duty(pub(crate) Arc<Wakers>);

impl Wake for Duty {
    fn wake(self: Arc<Self>) {
        self.0.wake_duty();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake_duty();
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

    fn parked_on(wakers: &Wakers, id: u32) -> (Arc<Count>, Waiter) {
        let (c, w) = counting();
        let waiter = Waiter::Stream(Slot::Read(StreamId::new(id)));
        wakers.park_waiter(waiter, &w);
        (c, waiter)
    }

    fn woken(counts: &[&Arc<Count>]) -> Vec<usize> {
        counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect()
    }

    /// Readiness wakes one task: a parked `drive()` first, else the last task to park (and
    /// drive), else any parked one; never several.
    #[test]
    fn the_read_duty_goes_to_one_task_in_order_of_preference() {
        let wakers = Wakers::default();
        let (a, _) = parked_on(&wakers, 1);
        let (b, _) = parked_on(&wakers, 3);
        wakers.wake_duty();
        assert_eq!(woken(&[&a, &b]), [0, 1], "the last to park");
        wakers.duty_served();

        let driver = wakers.register_driver();
        let (d, w) = counting();
        wakers.park_waiter(driver.waiter(), &w);
        let (e, _) = parked_on(&wakers, 5);
        wakers.wake_duty();
        assert_eq!(woken(&[&a, &b, &d, &e]), [0, 1, 1, 0], "a drive() first");
        wakers.duty_served();

        // The last driver (5) is still parked: it is next; then only 1 is left.
        wakers.wake_duty();
        wakers.duty_served();
        wakers.wake_duty();
        wakers.duty_served();
        assert_eq!(woken(&[&a, &b, &d, &e]), [1, 1, 1, 1]);
        // Nobody parked: nothing to wake, nothing breaks.
        wakers.wake_duty();
        assert_eq!(wakers.parked_count(), 0);
    }

    /// A task woken for the duty that does not drive before the next readiness (it moved on)
    /// loses the duty to another parked task; one whose stream or future is dropped hands it
    /// on at once.
    #[test]
    fn the_read_duty_passes_on_when_its_holder_does_not_serve_it() {
        let wakers = Wakers::default();
        let (a, _) = parked_on(&wakers, 1);
        let (b, _) = parked_on(&wakers, 3);
        let (c, _) = parked_on(&wakers, 5);
        let (d, _) = parked_on(&wakers, 7);
        wakers.wake_duty();
        assert_eq!(woken(&[&a, &b, &c, &d]), [0, 0, 0, 1]);
        // 7 never drives; the timer fires: someone else gets the duty.
        wakers.wake_duty();
        let after = woken(&[&a, &b, &c, &d]);
        assert_eq!(after.iter().sum::<usize>(), 2);
        assert_eq!(after[3], 1);
        // The new holder's stream is dropped before it drives: the duty passes at once.
        let holder = after.iter().position(|&n| n == 1).unwrap();
        wakers.forget_stream(StreamId::new(1 + 2 * holder as u32));
        assert_eq!(woken(&[&a, &b, &c, &d]).iter().sum::<usize>(), 3);
        wakers.duty_served();
        wakers.forget_stream(StreamId::new(9));
        assert_eq!(
            woken(&[&a, &b, &c, &d]).iter().sum::<usize>(),
            3,
            "a served duty is not handed on"
        );

        // The same for a connection-wide future dropped while on duty.
        let wakers = Wakers::default();
        let (a, _) = parked_on(&wakers, 1);
        let registration = wakers.register();
        let (r, w) = counting();
        wakers.park_waiter(registration.waiter(), &w);
        wakers.wake_duty();
        assert_eq!(woken(&[&a, &r]), [0, 1]);
        drop(registration);
        assert_eq!(woken(&[&a, &r]), [1, 1]);
    }
}
