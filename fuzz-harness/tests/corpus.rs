//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the saved regression
//! inputs (`fuzz/regressions/<target>/`) through the harness on stable Rust, so that `cargo
//! test` catches a change that breaks an invariant on an input the fuzzers already found.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The files of `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read corpus dir").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus and regression input of `target` through `check`; the corpus must not be
/// empty. Reports every failing file, not only the first.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = inputs(&fuzz.join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
    let regressions = inputs(&fuzz.join("regressions").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("read input");
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs: {failed:#?}");
    eprintln!(
        "{target}: {} corpus and {} regression inputs passed",
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn frame_corpus() {
    replay("frame", smux_fuzz_harness::frame);
}

#[test]
fn session_input_corpus() {
    replay("session_input", smux_fuzz_harness::session_input);
}

#[test]
fn session_ops_corpus() {
    replay("session_ops", smux_fuzz_harness::session_ops);
}
