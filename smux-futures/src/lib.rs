//! The smux stream multiplexer over any `futures::io` transport, wire-compatible with Go's
//! [xtaci/smux](https://github.com/xtaci/smux).
//!
//! [`Mux<T>`] wraps a transport `T: AsyncRead + AsyncWrite + Unpin + Send` (TCP, TLS, KCP,
//! anything reliable and ordered) and hands out [`MuxStream<T>`]s, each an independent
//! `AsyncRead + AsyncWrite` byte stream. The protocol itself lives in [`smux_proto`]; this
//! crate only moves bytes and wakes tasks.
//!
//! **Lazy and spawn-free**: nothing runs in the background. Any poll of the mux or of a stream
//! drives the shared connection, and a task parked on one stream is woken when that stream
//! changes or when the transport becomes ready. Use [`Mux::drive`] if you want one task to own
//! the connection. For tokio or smol, use `smux-tokio` or `smux-smol`, which add native traits
//! and a timer for keepalive.
//!
//! See [`Mux`] for an example.

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
