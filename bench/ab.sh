#!/usr/bin/env bash
# Paired A/B of robo-trader builds on one backtest: runs each binary in turn, ROUNDS times,
# and prints the median and best wall time and the median user CPU of each. On a noisy host
# only figures from one such run compare. Not a test.
#
#   bench/ab.sh ROUNDS BIN_A BIN_B [BIN...]
#   DATA=path/to/SPY_10000000.rtb bench/ab.sh 10 /tmp/old/robo-trader target/release/robo-trader
#
# DATA (default bench/out/SPY_10000000.rtb, made by `BARS=10000000 PEERS= bench/run.sh`) is the
# input; the strategy is the harness's SMA(10)/SMA(30), 100 shares, --no-risk.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=$1; shift
DATA=${DATA:-$ROOT/bench/out/SPY_10000000.rtb}
ARGS=(--strategy sma_crossover --param fast=10 --param slow=30 --param qty=100 --no-risk
      --cash 1000000 --fill next_open --commission ib-fixed --json)
BARS=$("$1" data check "$DATA" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bars"])')
for _ in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    /usr/bin/time -f "$bin %e %U" "$bin" backtest --data "$DATA" "${ARGS[@]}" > /dev/null
  done
done 2>&1 | python3 -c '
import collections, statistics as st, sys
bars = int(sys.argv[1])
runs = collections.defaultdict(list)
for line in sys.stdin:
    parts = line.split()
    if len(parts) == 3:
        runs[parts[0]].append((float(parts[1]), float(parts[2])))
for b, v in runs.items():
    wall = st.median(w for w, _ in v); best = min(w for w, _ in v)
    print(f"{b}: wall median {wall:.3f} s ({bars / wall / 1e6:.2f}M bars/s), best {best:.3f} s "
          f"({bars / best / 1e6:.2f}M), user CPU median {st.median(u for _, u in v):.3f} s")
' "$BARS"
