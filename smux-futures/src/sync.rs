//! The one way this crate takes a lock, and the synchronization primitives of the driver and
//! the wakers.
//!
//! Built with `--cfg loom` (the model checks, `scripts/loom.sh`), the locks and atomics of
//! `driver.rs` and `wakers.rs` are loom's, so loom explores their interleavings; otherwise
//! they are std's, re-exported as they are (nothing changes, nothing costs). `Arc` stays std's
//! either way: the duty waker is built from an `Arc` (`Waker: From<Arc<impl Wake>>` wants
//! std's), and the reference counts carry no protocol.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
pub(crate) use std::sync::{PoisonError, TryLockError};

/// The hasher of the wakers' maps: the core's fast one with random keys (their keys are
/// stream ids, which the peer chooses); a fixed one under loom, which replays every
/// interleaving from the start and needs the same iteration order each time.
#[cfg(not(loom))]
pub(crate) type Hasher = smux_proto::RandomIdState;
#[cfg(loom)]
pub(crate) type Hasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
/// std's `HashMap` with [`Hasher`].
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, Hasher>;
/// std's `HashSet` with [`Hasher`].
pub(crate) type HashSet<K> = std::collections::HashSet<K, Hasher>;

/// Locks `m`, ignoring poisoning: a task that panicked while holding one of our locks left
/// plain bookkeeping behind (no invariant spans an unwind point), and the other handles of the
/// connection must still be able to close it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
