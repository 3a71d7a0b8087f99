//! Benchmarks for smux-rs live in `benches/`.
