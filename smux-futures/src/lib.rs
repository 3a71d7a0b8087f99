#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod driver;
mod incoming;
mod mux;
mod recycle;
mod split;
mod stream;
mod sync;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
#[cfg(test)]
mod tests;
mod timer;
mod wakers;

pub use incoming::Incoming;
pub use mux::Mux;
pub use smux_proto::{
    self as proto, Config as MuxConfig, InputPause, SessionSnapshot, Side, Stats, StreamId,
    StreamSnapshot, Version,
};
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReuniteError};
pub use stream::MuxStream;
#[cfg(feature = "async-io")]
pub use timer::AsyncIoTimer;
pub use timer::{NoTimer, Sleep, Timer};
