#!/usr/bin/env bash
# Runs every test of the workspace. Installs Go, Go smux and kcptun from Debian when missing
# (the interop tests run a real Go smux peer; smux-kcptun's tests run Debian's kcptun-client
# and kcptun-server); builds the fuzz targets too when a nightly toolchain
# is installed (cargo-fuzz is installed from crates.io if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/xtaci/smux ] \
  || ! command -v kcptun-server >/dev/null 2>&1 || ! command -v kcptun-client >/dev/null 2>&1; then
  echo "== installing Go, Go smux and kcptun (Debian packages golang-go, golang-github-xtaci-smux-dev, kcptun)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq golang-go golang-github-xtaci-smux-dev kcptun
fi

echo "== unit, integration and doc tests"
cargo test --workspace --all-targets
cargo test --workspace --doc

echo "== model checks of the driver's locks and wake-ups (loom; see ARCHITECTURE.md)"
bash scripts/loom.sh

echo "== optional features: tracing has its own test, and is not compiled in by default"
cargo test -p smux-tokio --features tracing --test tracing
if cargo tree -p smux-tokio -p smux-smol -e normal --prefix none | grep -q '^tracing '; then
  echo "tracing is compiled in without the feature" >&2
  exit 1
fi

echo "== benchmarks compile"
cargo bench --workspace --no-run

echo "== end-to-end benchmark harness, smoke run (tiny sizes: checks that it works, measures nothing)"
SMUX_BENCH_SMOKE=1 cargo bench -p smux-benches --bench e2e

if cargo +nightly --version >/dev/null 2>&1; then
  echo "== fuzz targets build (nightly)"
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
  (cd fuzz && cargo +nightly fuzz build)
else
  echo "== NOTE: no nightly toolchain, so the fuzz targets were not built (see fuzz/README.md)"
fi
echo "== all tests passed"
