//! The one way this crate takes a lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, ignoring poisoning: a task that panicked while holding one of our locks left
/// plain bookkeeping behind (no invariant spans an unwind point), and the other handles of the
/// connection must still be able to close it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
