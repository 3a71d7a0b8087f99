#!/usr/bin/env bash
# Loopback measurement: Debian kcptun-server in front of a TCP echo, reached through (a) our
# kcptun_client and (b) Debian's kcptun-client; then Debian kcptun-client through our
# kcptun_server; smux versions 1 and 2. Release build. Needs `apt-get install kcptun`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p smux-kcptun --examples
bin="${CARGO_TARGET_DIR:-target}/release/examples"
py=kcptun/bench/echo_bench.py
F="--crypt none --datashard 0 --parityshard 0 --nocomp --quiet"
python3 "$py" echo 18181 & ECHO=$!
trap 'kill $ECHO 2>/dev/null' EXIT
for v in 1 2; do
  kcptun-server -l 127.0.0.1:29931 -t 127.0.0.1:18181 $F --smuxver $v 2>/dev/null & KS=$!
  "$bin/kcptun_server" -l 127.0.0.1:29941 -t 127.0.0.1:18181 $F --smuxver $v 2>/dev/null & OS=$!
  sleep 1.5
  "$bin/kcptun_client" -l 127.0.0.1:12931 -r 127.0.0.1:29931 $F --smuxver $v 2>/dev/null & OC=$!
  kcptun-client -l 127.0.0.1:12932 -r 127.0.0.1:29931 $F --smuxver $v 2>/dev/null & GC=$!
  kcptun-client -l 127.0.0.1:12941 -r 127.0.0.1:29941 $F --smuxver $v 2>/dev/null & GC2=$!
  sleep 1
  python3 "$py" run 12931 "smuxver $v: our kcptun_client -> kcptun-server"
  python3 "$py" run 12932 "smuxver $v: kcptun-client -> kcptun-server"
  python3 "$py" run 12941 "smuxver $v: kcptun-client -> our kcptun_server"
  kill $OC $GC $GC2 $KS $OS; wait $OC $GC $GC2 $KS $OS 2>/dev/null || true
done
