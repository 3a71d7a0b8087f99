//! The `session_input` target: the input format and the checks are documented in
//! `fuzz-harness/src/session_input.rs`, where a stable test replays the corpus through them too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smux_fuzz_harness::session_input(data));
