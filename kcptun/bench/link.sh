#!/usr/bin/env bash
# Through an emulated path (udp_link.py: 20 ms each way, 20 Mbit/s each way, a 128 KiB
# drop-tail queue): Debian kcptun-server in front of a TCP echo, reached through our
# kcptun_client and through Debian's kcptun-client, smux versions 1 and 2. 16 MiB echoed,
# then 200 one-byte requests and replies. Release build. Needs `apt-get install kcptun`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p smux-kcptun --examples
bin="${CARGO_TARGET_DIR:-target}/release/examples"
py=kcptun/bench/echo_bench.py
F="--crypt none --datashard 0 --parityshard 0 --nocomp --quiet"
export ECHO_MIB=16 ECHO_ROUND_TRIPS=200
python3 "$py" echo 18182 & ECHO=$!
python3 kcptun/bench/udp_link.py 29952 29932 --delay-ms 20 --rate-mbit 20 --queue-kib 128 & LINK=$!
trap 'kill $ECHO $LINK 2>/dev/null' EXIT
for v in 1 2; do
  kcptun-server -l 127.0.0.1:29932 -t 127.0.0.1:18182 $F --smuxver $v 2>/dev/null & KS=$!
  sleep 1
  "$bin/kcptun_client" -l 127.0.0.1:12951 -r 127.0.0.1:29952 $F --smuxver $v 2>/dev/null & OC=$!
  kcptun-client -l 127.0.0.1:12952 -r 127.0.0.1:29952 $F --smuxver $v 2>/dev/null & GC=$!
  sleep 1
  python3 "$py" run 12951 "smuxver $v: our kcptun_client -> 40 ms / 20 Mbit/s -> kcptun-server"
  python3 "$py" run 12952 "smuxver $v: kcptun-client -> 40 ms / 20 Mbit/s -> kcptun-server"
  kill $OC $GC $KS; wait $OC $GC $KS 2>/dev/null || true
done
