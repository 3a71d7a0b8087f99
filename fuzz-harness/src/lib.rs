//! The checks behind the `smux-proto` fuzz targets in `fuzz/`, as a library so that the
//! cargo-fuzz targets (nightly) are one-line wrappers and a stable test
//! (`tests/corpus.rs`) replays the committed corpus and regression inputs through the same
//! code. Every function takes one raw fuzzer input and panics when an invariant is broken.
//!
//! - [`frame`]: arbitrary bytes through `FrameDecoder`, in arbitrary fragmentation.
//! - [`session_input`]: one `Session` fed arbitrary peer bytes, driven like an application.
//! - [`session_ops`]: a client and a server connected in memory, driven by arbitrary
//!   operations, checking end-to-end delivery, the wire, flow control and the budgets.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod frame;
mod session_input;
mod session_ops;
mod shared;

pub use frame::frame;
pub use session_input::session_input;
pub use session_ops::{run_session_ops, session_ops, Input, Op};
