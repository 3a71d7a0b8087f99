#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The model checks (`--cfg loom`) leave out the test suites that use the test-only helpers.
#![cfg_attr(all(test, loom), allow(dead_code))]

mod driver;
mod incoming;
#[cfg(all(test, loom))]
mod loom_tests;
mod mux;
mod recycle;
#[cfg(unix)]
mod socket;
mod split;
mod stream;
mod sync;
// Not under `--cfg loom` (the model checks): they use std's locks, and loom's would panic
// outside a model.
#[cfg(all(any(test, feature = "test-util"), not(loom)))]
pub mod test_util;
#[cfg(all(test, not(loom)))]
mod tests;
mod timer;
mod wakers;

pub use incoming::Incoming;
pub use mux::Mux;
pub use smux_proto::{
    self as proto, Config as MuxConfig, InputPause, SessionSnapshot, Side, Stats, StreamId,
    StreamSnapshot, Version,
};
#[cfg(unix)]
pub use socket::{limit_unsent, RECOMMENDED_UNSENT_LIMIT};
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReuniteError};
pub use stream::MuxStream;
#[cfg(feature = "async-io")]
pub use timer::AsyncIoTimer;
pub use timer::{NoTimer, Sleep, Timer};
