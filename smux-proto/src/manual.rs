//! Long-form reference, beside the API: what smux-rs guarantees and how it is configured.
//! The same text is in `smux-proto/doc/` for reading on the repository page; its Rust examples
//! compile as doctests here.

#[doc = include_str!("../doc/guarantees.md")]
pub mod guarantees {}

#[doc = include_str!("../doc/configuration.md")]
pub mod configuration {}
