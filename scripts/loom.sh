#!/usr/bin/env bash
# Model checks of smux-futures' lock and wake-up protocol with loom (the driver's two locks,
# `again`, the read duty and its hand-offs, flush waiters): see "Model checking" in
# ARCHITECTURE.md and smux-futures/src/loom_tests.rs. About a minute or two on two cores.
#
# `--cfg loom` rebuilds every crate, so the build has a target directory of its own.
# LOOM_MAX_PREEMPTIONS=N sets every check's bound (deeper is much slower; the checks set
# their own otherwise). Arguments go to the test harness: test name filters (default: all
# the checks), `--nocapture`, ...
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
# Loom's own failure output names the interleaving; a backtrace per panic only adds noise.
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"
filtered=no
for arg in "$@"; do
  case "$arg" in -*) ;; *) filtered=yes ;; esac
done
if [ "$filtered" = no ]; then
  set -- loom_tests "$@"
fi
cargo test -p smux-futures --release --lib -- --nocapture "$@"
