//! The `frame` target: the input format and the checks are documented in
//! `fuzz-harness/src/frame.rs`, where a stable test replays the corpus through them too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smux_fuzz_harness::frame(data));
