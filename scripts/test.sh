#!/usr/bin/env bash
# Runs every test of the workspace. Needs only cargo; builds the fuzz targets too when a nightly
# toolchain is installed (cargo-fuzz is installed from crates.io if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== unit, integration and doc tests"
cargo test --workspace --all-targets
cargo test --workspace --doc

echo "== benchmarks compile"
cargo bench --workspace --no-run

if cargo +nightly --version >/dev/null 2>&1; then
  echo "== fuzz targets build (nightly)"
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
  (cd fuzz && cargo +nightly fuzz build)
else
  echo "== NOTE: no nightly toolchain, so the fuzz targets were not built (see fuzz/README.md)"
fi
echo "== all tests passed"
