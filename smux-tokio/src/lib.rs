//! Placeholder: the smux-tokio adapter lands with issue 3.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use smux_proto as proto;
