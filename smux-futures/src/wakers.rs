//! Who waits for what, and the fan-out waker handed to the transport.
//!
//! Tasks park with a [`Slot`]: the reader or writer of one stream, or a connection-wide
//! waiter (accept, connect, drive, close). Session events wake exactly the matching slot. The
//! transport and the timer are given a [`FanOut`] waker instead of any one task's: when the
//! transport becomes ready it wakes every parked task, so the connection makes progress even if
//! the task that last polled it has gone away (its future was dropped). Parked tasks are taken
//! out of the set when woken, so each readiness wakes each task at most once.

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
#[derive(Debug, Clone, Copy)]
pub(crate) enum Waiter {
    /// A task waiting on one stream.
    Stream(Slot),
    /// A connection-wide waiter (accept, drive, close).
    Connection,
}

#[derive(Debug, Default)]
struct Parked {
    streams: HashMap<Slot, Waker>,
    /// Connection-wide waiters: accept, drive, close. Few, deduplicated with `will_wake`.
    connection: Vec<Waker>,
    /// Tasks that wanted to drive while another task was driving: woken when it is done.
    io: Vec<Waker>,
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

    /// Parks the current task.
    pub(crate) fn park_waiter(&self, waiter: Waiter, waker: &Waker) {
        match waiter {
            Waiter::Stream(slot) => self.park(slot, waker),
            Waiter::Connection => self.park_connection(waker),
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
            Waiter::Connection => parked.connection.retain(|w| !w.will_wake(waker)),
        }
    }

    /// Forgets the slots of a stream that is gone.
    pub(crate) fn forget_stream(&self, id: StreamId) {
        let mut parked = self.lock();
        if !parked.streams.is_empty() {
            parked.streams.remove(&Slot::Read(id));
            parked.streams.remove(&Slot::Write(id));
        }
    }

    /// Parks the current task on a stream slot.
    fn park(&self, slot: Slot, waker: &Waker) {
        let mut parked = self.lock();
        match parked.streams.get_mut(&slot) {
            Some(w) if w.will_wake(waker) => {}
            Some(w) => w.clone_from(waker),
            None => {
                parked.streams.insert(slot, waker.clone());
            }
        }
    }

    /// Parks the current task as a connection-wide waiter.
    fn park_connection(&self, waker: &Waker) {
        let mut parked = self.lock();
        if !parked.connection.iter().any(|w| w.will_wake(waker)) {
            parked.connection.push(waker.clone());
        }
    }

    /// Parks the current task until the task driving the connection is done.
    pub(crate) fn park_io(&self, waker: &Waker) {
        let mut parked = self.lock();
        if !parked.io.iter().any(|w| w.will_wake(waker)) {
            parked.io.push(waker.clone());
        }
    }

    /// Takes the tasks waiting for a drive to end.
    pub(crate) fn take_io(&self, out: &mut Vec<Waker>) {
        let mut parked = self.lock();
        if !parked.io.is_empty() {
            out.append(&mut parked.io);
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
        out.append(&mut self.lock().connection);
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
        connection.into_iter().for_each(Waker::wake);
        io.into_iter().for_each(Waker::wake);
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
