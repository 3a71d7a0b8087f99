//! What the end-to-end benchmark (`e2e.rs`) and the link benchmark (`link.rs`) share: the
//! peers and how they are set up on a connected socket pair, the bulk scenario, and the
//! harness that runs every case in a child process.
//!
//! Each bench target includes this module with `mod common;` and uses a part of it, so the
//! parts the other one uses are dead code there.
#![allow(dead_code)]

pub mod bulk;
pub mod harness;
pub mod peers;
