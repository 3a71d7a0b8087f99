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
//! to everyone else. Every poll of an operation drives when the task is on duty (also one
//! that completes at once), so a woken task that polls anything of the connection serves the
//! duty. A task may have gone away, though: its operation was cancelled (dropped by a
//! timeout or a `select!`) after it parked. Where that is seen, the duty passes on at once:
//! when a stream, an owned half, a registration or the future of `read_chunk` /
//! `write_chunk` is dropped. Where it cannot be seen (a bare `poll_read`, `poll_write`,
//! `poll_flush`, `poll_close` or `Mux::poll_accept`: the caller's future is not ours) and
//! other tasks wait, the holder is not left alone with the duty:
//! - on a mux whose timer sleeps (every runtime adapter's), a *watchdog* sleep is armed: if
//!   nobody has started a drive [`DUTY_GRACE`] after the hand-off, the duty passes to another
//!   parked task, and so on until one drives; a task gone unseen costs the others at most that
//!   long, and a live holder costs one timer entry per `DUTY_GRACE` at most (a watchdog that
//!   is armed is not armed again);
//! - without one (`NoTimer`, or a timer that cannot sleep where the readiness is reported),
//!   a *deputy* is woken with the holder: a waiter that cannot have gone unseen if there is
//!   one (a registered future: `accept`, `Incoming`), any other parked task otherwise. So a
//!   cancelled read is never the only task woken (two cancelled reads can be, there: the
//!   watchdog is what bounds every case).
//!
//! Tasks woken this way that have gone leave the set (they do not come back to it). When a
//! task on duty is seen to
//! go, the duty passes on: to a new holder if nobody on duty is left, to a new deputy if the
//! one left is not registered (so a holder gone unseen is not left alone when its deputy
//! goes). The duty also passes on when the transport or the timer wakes again before anybody
//! on duty drove.
//!
//! Memory: every entry is keyed by *who* waits, not by the waker it was polled with, so a
//! blocked task costs one entry however often it is polled and whatever waker it brings (a
//! combinator or an executor may hand a different waker to each poll). Stream slots are keyed
//! by stream and direction; connection-wide waiters by a [`Registration`] that the future
//! (`accept`, `drive`, `close`) holds and that removes its entry when the future is dropped,
//! so the set is bounded by the futures alive, not by the futures ever polled.

use std::sync::{Arc, Weak};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use smux_proto::StreamId;

use crate::sync::{AtomicBool, HashMap, HashSet, Mutex, MutexGuard, Ordering};
use crate::timer::{Sleep, Timer};

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
    /// The waiters woken for the read duty (the holder and its deputy) while nobody has
    /// driven since.
    on_duty: [Option<Waiter>; 2],
    /// The last deputy woken, until it parks again: a deputy that finds nothing to do and
    /// parks again does not become the last driver (the holder it covered for stays it).
    deputy: Option<Waiter>,
}

impl Default for Parked {
    fn default() -> Self {
        Parked {
            streams: HashMap::default(),
            connection: HashMap::default(),
            io: HashMap::default(),
            next_key: POLL_ACCEPT + 1,
            drivers: HashSet::default(),
            last_driver: None,
            on_duty: [None; 2],
            deputy: None,
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

/// Held by the future of one stream operation (`read_chunk`, `write_chunk`): dropping the
/// future, done or cancelled, takes what it left parked along and passes the duty on.
pub(crate) struct OperationGuard<'a> {
    wakers: &'a Wakers,
    waiter: Waiter,
}

impl Drop for OperationGuard<'_> {
    fn drop(&mut self) {
        self.wakers.cancel(self.waiter);
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

    /// A deputy for a holder that may have gone away unseen (see the module doc): a
    /// registered connection-wide waiter, which cannot have, else any parked task.
    fn take_deputy(&mut self) -> Option<(Waiter, Waker)> {
        let registered = self.connection.keys().copied().find(|&k| k != POLL_ACCEPT);
        if let Some(key) = registered {
            let waker = self.connection.remove(&key)?;
            return Some((Waiter::Connection(key), waker));
        }
        if let Some(&slot) = self.streams.keys().next() {
            let waker = self.streams.remove(&slot)?;
            return Some((Waiter::Stream(slot), waker));
        }
        let waker = self.connection.remove(&POLL_ACCEPT)?;
        Some((Waiter::Connection(POLL_ACCEPT), waker))
    }

    fn remove(&mut self, waiter: Waiter) -> Option<Waker> {
        match waiter {
            Waiter::Stream(slot) => self.streams.remove(&slot),
            Waiter::Connection(key) => self.connection.remove(&key),
        }
    }

    /// Hands the read duty to a parked task, with a deputy when that task may have gone
    /// away unseen; returns the wakers, to wake outside the lock.
    fn hand_duty(&mut self) -> Handoff {
        let ([holder, _], unsure) = self.hand_duty_alone();
        [holder, if unsure { self.add_deputy() } else { None }]
    }

    /// Hands the read duty to a parked task, alone. Also says whether that task may have
    /// gone away unseen while others wait (a deputy or a watchdog must then back it).
    fn hand_duty_alone(&mut self) -> (Handoff, bool) {
        self.on_duty = [None; 2];
        let Some((holder, waker)) = self.take_duty_holder() else {
            return ([None, None], false);
        };
        self.on_duty[0] = Some(holder);
        let unsure = !is_registered(holder) && !self.is_empty();
        ([Some(waker), None], unsure)
    }

    /// Wakes a deputy beside the holder on duty (see the module doc).
    fn add_deputy(&mut self) -> Option<Waker> {
        let (deputy, waker) = self.take_deputy()?;
        self.on_duty[1] = Some(deputy);
        self.deputy = Some(deputy);
        Some(waker)
    }

    /// Whether no task is parked (waiting for its slot or for the connection).
    fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.connection.is_empty()
    }

    /// `waiters` will never poll again (their stream or their future was dropped): they are no
    /// longer the last driver, and if one of them was woken for the read duty, the duty passes
    /// on (the wakers to wake are returned): to a new holder when nobody on duty is left, to a
    /// new deputy when the one left may have gone unseen (it is not registered). A holder that
    /// went away unseen is never left alone on duty while another task is parked: its deputy
    /// going does not leave the readiness to it. (With nobody parked, the duty stays with it;
    /// a task that parks later drives, the transport being unwatched since the readiness.)
    fn gone(&mut self, waiters: &[Waiter]) -> Handoff {
        if self.last_driver.is_some_and(|w| waiters.contains(&w)) {
            self.last_driver = None;
        }
        let mut was_on_duty = false;
        for slot in &mut self.on_duty {
            if slot.is_some_and(|w| waiters.contains(&w)) {
                *slot = None;
                was_on_duty = true;
            }
        }
        if !was_on_duty {
            return [None, None];
        }
        match self.on_duty {
            [None, None] => self.hand_duty(),
            [Some(left), None] | [None, Some(left)] if !is_registered(left) => {
                self.on_duty = [Some(left), None];
                [self.add_deputy(), None]
            }
            _ => [None, None],
        }
    }
}

/// The tasks a hand-off of the read duty wakes: the holder and maybe a deputy.
type Handoff = [Option<Waker>; 2];

/// Whether `waiter`'s going away is seen: its future holds a [`Registration`].
fn is_registered(waiter: Waiter) -> bool {
    matches!(waiter, Waiter::Connection(key) if key != POLL_ACCEPT)
}

/// How long a task woken for the read duty has to start driving before a watchdog hands the
/// duty on (when that task's going away could not be seen and others wait).
pub(crate) const DUTY_GRACE: Duration = Duration::from_millis(10);

/// The set of parked tasks, shared with the duty waker. Its lock is separate from the
/// session's, so a transport that wakes inline while the session is locked cannot deadlock.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    parked: Mutex<Parked>,
    /// With a timer that sleeps: backs a hand-off of the duty to a task that may have gone
    /// away unseen, instead of a deputy (see the module doc).
    watchdog: Option<Watchdog>,
    /// The transport's last read returned `Pending` (so it holds the duty waker) and no
    /// readiness came since: a task that parks need not drive to be woken for input.
    input_watched: AtomicBool,
    /// The transport or the timer became ready (a task may have been woken for it) and no
    /// drive has started since.
    duty_pending: AtomicBool,
    /// A task was woken for the read duty and no drive has started since.
    duty_woken: AtomicBool,
    /// Drives started (for the watchdog).
    drives: std::sync::atomic::AtomicU64,
}

/// A sleep that hands the read duty on if nobody has driven by its deadline.
struct Watchdog {
    timer: Arc<dyn Timer>,
    /// The wakers it belongs to (a weak reference: the armed sleep holds its waker).
    wakers: Weak<Wakers>,
    /// The sleep armed last (fired or not).
    sleep: std::sync::Mutex<Option<Sleep>>,
    /// A sleep is armed and has not fired.
    armed: std::sync::atomic::AtomicBool,
    /// `Wakers::drives` when the sleep was armed: if a drive started since, the hand-off it
    /// was armed for was served.
    drives_at_arm: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("armed", &self.armed)
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// Arms the sleep unless it is armed already (it then looks at the duty when it fires,
    /// and arms again if a later hand-off may be unserved). `drives` is the count of drives
    /// started so far. Returns whether a sleep is armed: a timer may not sleep in every
    /// context.
    fn arm(&self, drives: u64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if self.armed.swap(true, SeqCst) {
            return true;
        }
        self.drives_at_arm.store(drives, SeqCst);
        let deadline = self.timer.now() + DUTY_GRACE;
        let Some(mut sleep) = self.timer.sleep_until(deadline) else {
            self.armed.store(false, SeqCst);
            return false;
        };
        let waker = Waker::from(Arc::new(WatchdogFired(self.wakers.clone())));
        // A timer may wake its waker inside `poll` (tokio does when the task polling has used
        // its cooperative budget): that wake is not the deadline, and acting on it would arm
        // again from inside this poll, without end. It is noted instead, and the sleep is
        // given up (a deputy stands in this time).
        //
        // The poll may also panic: tokio's does when its runtime is shutting down, and the
        // shutdown fires every pending timer, the mux's among them, whose wake-up can land
        // here. A runtime going away is no reason to abort the process: the sleep is given up
        // the same way.
        let ready = ARMING.with(|arming| {
            arming.set(Some(false));
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sleep.as_mut().poll(&mut Context::from_waker(&waker))
            }));
            let woken_inline = arming.take() == Some(true);
            polled.map_or(true, |ready| ready.is_ready()) || woken_inline
        });
        if ready {
            self.armed.store(false, SeqCst);
            return false;
        }
        // The sleep replaced (fired, or armed for an earlier deadline) is dropped after the
        // lock is released.
        let replaced = self
            .sleep
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(sleep);
        drop(replaced);
        true
    }
}

thread_local! {
    /// Set while this thread polls a watchdog sleep for the first time: `Some(true)` once its
    /// waker was woken from inside that poll.
    static ARMING: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// The waker of the watchdog's sleep.
struct WatchdogFired(Weak<Wakers>);

impl Wake for WatchdogFired {
    fn wake(self: Arc<Self>) {
        if ARMING.with(|arming| arming.get().is_some()) {
            ARMING.with(|arming| arming.set(Some(true)));
            return;
        }
        let Some(wakers) = self.0.upgrade() else {
            return;
        };
        use std::sync::atomic::Ordering::SeqCst;
        let Some(watchdog) = &wakers.watchdog else {
            return;
        };
        watchdog.armed.store(false, SeqCst);
        if !wakers.duty_woken() {
            return;
        }
        let drives = wakers.drives.load(SeqCst);
        if drives == watchdog.drives_at_arm.load(SeqCst) {
            // Nobody has driven since the hand-off: the task woken for it went away unseen
            // (or is very late). Hand the duty on.
            wakers.wake_duty();
        } else {
            // Drives served that hand-off; the one pending now is younger: look again later.
            watchdog.arm(drives);
        }
    }
}

impl Wakers {
    /// The wakers of a mux with `timer`: a watchdog backs the read duty if the timer sleeps,
    /// a deputy otherwise (see the module doc).
    pub(crate) fn new(timer: Arc<dyn Timer>) -> Arc<Wakers> {
        let sleeps = timer.can_sleep();
        Arc::new_cyclic(|me| Wakers {
            watchdog: sleeps.then(|| Watchdog {
                timer,
                wakers: me.clone(),
                sleep: std::sync::Mutex::new(None),
                armed: std::sync::atomic::AtomicBool::new(false),
                drives_at_arm: std::sync::atomic::AtomicU64::new(0),
            }),
            ..Wakers::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, Parked> {
        crate::sync::lock(&self.parked)
    }

    /// Wakes the tasks a hand-off of the duty chose (after the lock is released); from now
    /// on, until somebody drives, an operation that completes drives anyway.
    fn wake_handoff(&self, handoff: Handoff) {
        if handoff[0].is_some() {
            self.duty_pending.store(true, Ordering::SeqCst);
            self.duty_woken.store(true, Ordering::SeqCst);
        }
        handoff.into_iter().flatten().for_each(Waker::wake);
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
        let handoff = parked.gone(&[waiter]);
        drop(parked);
        self.wake_handoff(handoff);
    }

    /// A guard that [cancels](Self::cancel) `waiter` when dropped.
    pub(crate) fn guard(&self, waiter: Waiter) -> OperationGuard<'_> {
        OperationGuard {
            wakers: self,
            waiter,
        }
    }

    /// The operation `waiter` parked for was cancelled, or its owner (an owned half) dropped:
    /// its entries go, and the duty passes on if it held it.
    pub(crate) fn cancel(&self, waiter: Waiter) {
        let mut parked = self.lock();
        parked.remove(waiter);
        if !parked.io.is_empty() {
            parked.io.remove(&waiter);
        }
        let handoff = parked.gone(&[waiter]);
        drop(parked);
        self.wake_handoff(handoff);
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
        if parked.deputy == Some(waiter) {
            parked.deputy = None;
        } else {
            parked.last_driver = Some(waiter);
        }
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
        let slots = [Slot::Read(id), Slot::Write(id)];
        for slot in slots {
            if !parked.streams.is_empty() {
                parked.streams.remove(&slot);
            }
            if !parked.io.is_empty() {
                parked.io.remove(&Waiter::Stream(slot));
            }
        }
        // Both out of the set before the duty passes on, so neither is handed it.
        let handoff = parked.gone(&slots.map(Waiter::Stream));
        drop(parked);
        self.wake_handoff(handoff);
    }

    /// A drive is starting: it reads the transport, which serves the read duty.
    pub(crate) fn duty_served(&self) {
        if self.watchdog.is_some() {
            self.drives
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.duty_pending.store(false, Ordering::SeqCst);
        if self.duty_woken.swap(false, Ordering::SeqCst) {
            self.lock().on_duty = [None; 2];
        }
    }

    /// Whether the transport or the timer became ready and no drive has started since.
    pub(crate) fn duty_pending(&self) -> bool {
        self.duty_pending.load(Ordering::SeqCst)
    }

    /// Whether a task was woken for the read duty and no drive has started since: a task
    /// that was must drive, even if its own operation completed without it.
    pub(crate) fn duty_woken(&self) -> bool {
        self.duty_woken.load(Ordering::SeqCst)
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
    ///
    /// A holder that may have gone away unseen while others wait is backed by the watchdog
    /// (it hands the duty on after [`DUTY_GRACE`] if nobody drove), or, without a timer that
    /// sleeps here, by a deputy woken at once.
    pub(crate) fn wake_duty(&self) {
        self.input_watched.store(false, Ordering::SeqCst);
        // Unserved until a drive starts, even if nobody is parked to be woken for it.
        self.duty_pending.store(true, Ordering::SeqCst);
        let Some(watchdog) = &self.watchdog else {
            let handoff = self.lock().hand_duty();
            self.wake_handoff(handoff);
            return;
        };
        let (handoff, unsure) = self.lock().hand_duty_alone();
        self.wake_handoff(handoff);
        if unsure && !watchdog.arm(self.drives.load(std::sync::atomic::Ordering::SeqCst)) {
            let deputy = self.lock().add_deputy();
            self.wake_handoff([deputy, None]);
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

#[cfg(all(test, not(loom)))]
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

    /// Readiness wakes the holder of the duty: a parked `drive()` first (alone: its going
    /// away is seen), else the last task to park (and drive), else any parked one. A holder
    /// whose going away could be missed (a bare poll) is woken with one deputy, a registered
    /// future first; never more.
    #[test]
    fn the_read_duty_goes_to_a_holder_in_order_of_preference_with_one_deputy() {
        let wakers = Wakers::default();
        let (a, _) = parked_on(&wakers, 1);
        let (b, _) = parked_on(&wakers, 3);
        let (c, _) = parked_on(&wakers, 5);
        wakers.wake_duty();
        let after = woken(&[&a, &b, &c]);
        assert_eq!(after[2], 1, "the last to park");
        assert_eq!(after.iter().sum::<usize>(), 2, "and one deputy: {after:?}");
        wakers.duty_served();

        let driver = wakers.register_driver();
        let (d, w) = counting();
        wakers.park_waiter(driver.waiter(), &w);
        let (e, _) = parked_on(&wakers, 7);
        let before = woken(&[&a, &b, &c, &e]);
        wakers.wake_duty();
        assert_eq!(d.0.load(Ordering::SeqCst), 1, "a drive() first");
        assert_eq!(woken(&[&a, &b, &c, &e]), before, "alone");
        wakers.duty_served();

        // A registered accept future is the deputy of choice.
        let accept = wakers.register();
        let (r, w) = counting();
        wakers.park_waiter(accept.waiter(), &w);
        let (f, _) = parked_on(&wakers, 9);
        let before = woken(&[&a, &b, &c, &e]);
        wakers.wake_duty();
        assert_eq!(
            woken(&[&f, &r]),
            [1, 1],
            "holder 9, deputy the accept future"
        );
        assert_eq!(woken(&[&a, &b, &c, &e]), before);
        wakers.duty_served();
        // Nobody parked: nothing to wake, nothing breaks.
        while wakers.parked_count() > 0 {
            wakers.wake_duty();
            wakers.duty_served();
        }
        wakers.wake_duty();
        assert!(
            wakers.duty_pending(),
            "the readiness stays unserved: the next operation drives"
        );
    }

    /// A task woken for the duty that does not drive before the next readiness (it moved on)
    /// loses the duty to other parked tasks; when every task on duty is seen to go (its
    /// stream, owned half, operation future or registration dropped), the duty passes on at
    /// once; a served duty is not handed on.
    #[test]
    fn the_read_duty_passes_on_when_its_holders_do_not_serve_it() {
        let wakers = Wakers::default();
        let all: Vec<_> = (0..6).map(|i| parked_on(&wakers, 1 + 2 * i)).collect();
        let counts: Vec<&Arc<Count>> = all.iter().map(|(c, _)| c).collect();
        let total = |counts: &[&Arc<Count>]| woken(counts).iter().sum::<usize>();
        wakers.wake_duty();
        assert_eq!(total(&counts), 2);
        assert!(wakers.duty_pending());
        // Neither drives; the timer fires: two others get the duty.
        wakers.wake_duty();
        assert_eq!(total(&counts), 4);
        // Both holders of the duty are seen to go before they drive: after the first, the one
        // left (which may have gone unseen) gets a new deputy; after the second, that deputy
        // gets one.
        let on_duty: Vec<Waiter> = wakers.lock().on_duty.iter().flatten().copied().collect();
        assert_eq!(on_duty.len(), 2);
        wakers.cancel(on_duty[0]);
        assert_eq!(total(&counts), 5, "the one left on duty gets a new deputy");
        wakers.cancel(on_duty[1]);
        assert_eq!(total(&counts), 6, "and its deputy a new one");
        wakers.duty_served();
        assert!(!wakers.duty_pending());
        for (_, waiter) in &all {
            wakers.cancel(*waiter);
        }
        assert_eq!(total(&counts), 6, "a served duty is not handed on");

        // A connection-wide future dropped while on duty (alone: it is registered).
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

    /// Found by the loom model (`loom_tests.rs`): a holder that went away unseen (a bare poll
    /// whose caller moved on) is woken with a deputy; when the deputy is seen to go (here a
    /// dropped `accept` future), the holder must not be left alone on duty, or the readiness
    /// is lost and a reader that waits is never woken.
    #[test]
    fn a_holder_gone_unseen_gets_a_new_deputy_when_its_deputy_goes() {
        let wakers = Wakers::default();
        let (live, _) = parked_on(&wakers, 1);
        let accept = wakers.register();
        let (a, w) = counting();
        wakers.park_waiter(accept.waiter(), &w);
        // Parks last (the holder of choice) and goes away unseen.
        let (unseen, _) = parked_on(&wakers, 5);
        wakers.wake_duty();
        assert_eq!(
            woken(&[&live, &a, &unseen]),
            [0, 1, 1],
            "deputy: the accept"
        );
        drop(accept);
        assert_eq!(woken(&[&live]), [1], "the reader is the new deputy");
    }

    /// A timer whose sleep wakes its waker from inside its first poll (as tokio's does when
    /// the polling task used up its cooperative budget), and never fires after that.
    struct WakesInline;

    impl Timer for WakesInline {
        fn now(&self) -> std::time::Instant {
            std::time::Instant::now()
        }

        fn sleep_until(&self, _deadline: std::time::Instant) -> Option<Sleep> {
            Some(Box::pin(std::future::poll_fn(|cx| {
                cx.waker().wake_by_ref();
                std::task::Poll::<()>::Pending
            })))
        }
    }

    /// A watchdog sleep that wakes inside its first poll is not taken for its deadline
    /// (acting on it armed the watchdog again from inside the poll, until the stack
    /// overflowed): the hand-off falls back to a deputy.
    #[test]
    fn a_watchdog_woken_inside_its_first_poll_falls_back_to_a_deputy() {
        let wakers = Wakers::new(Arc::new(WakesInline));
        let parked: Vec<_> = (0..1000).map(|i| parked_on(&wakers, 1 + 2 * i).0).collect();
        wakers.wake_duty();
        let counts: Vec<&Arc<Count>> = parked.iter().collect();
        assert_eq!(
            woken(&counts).iter().sum::<usize>(),
            2,
            "the holder and a deputy, not every parked task in turn"
        );
        assert!(wakers.duty_woken());
    }
}
