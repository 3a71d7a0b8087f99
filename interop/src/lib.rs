//! Interoperability tests of smux-rs against peers it did not write: Go smux (built from the
//! Debian package) and the Rust crates `async_smux`, `tokio_smux` and `smux`. The tests live
//! in `tests/`; this library only holds helpers they share.
//!
//! - [`go`]: builds the Go peer (`go-peer/main.go`, on Go's own `github.com/xtaci/smux`) once
//!   per test process, spawns it and reads what it reports.
//! - [`payload`], [`checksum`], [`XorShift`]: deterministic test data and its FNV-1a checksum.
//! - [`runtime`]: tokio and smol, each with its smux adapter, behind one trait, for the
//!   tests that run every scenario on both.
//! - [`workload`]: buffer configurations, the progress counter and the stall report texts of
//!   the workload matrix (`tests/workloads.rs`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod go;
pub mod runtime;
pub mod workload;

pub use smux_test_support::{checksum, payload, Checksum, XorShift};
