//! Interoperability tests of smux-rs against peers it did not write: Go smux (built from the
//! Debian package) and the Rust crates `async_smux`, `tokio_smux` and `smux`. The tests live
//! in `tests/`; this library only holds helpers they share.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
