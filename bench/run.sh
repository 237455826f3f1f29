#!/usr/bin/env bash
# Benchmark: robo-trader (release) vs backtrader, backtesting.py and vectorbt on the same
# minute-bar CSV and the same SMA(10)/SMA(30) long-only 100-share strategy, $1 minimum
# commission, next-open fills, $1M cash. Not a test; not run by `cargo test`.
#
#   bench/run.sh [BARS]          (default 1000000; peers that fail to install are skipped)
set -euo pipefail
BARS=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/bench/out}
mkdir -p "$OUT"
CSV=$OUT/SPY_$BARS.csv

[ -f "$CSV" ] || python3 "$ROOT/bench/gen.py" "$BARS" "$CSV"
(cd "$ROOT" && cargo build --release -p robo-trader --bin robo-trader >&2)
BIN=$ROOT/target/release/robo-trader

VENV=$OUT/venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2 || true
fi
for pkg in backtrader backtesting vectorbt; do
  "$VENV/bin/python" -c "import $pkg" 2>/dev/null || "$VENV/bin/pip" install -q "$pkg" >&2 || echo "($pkg did not install)" >&2
done

RES=$OUT/results.jsonl
: > "$RES"
# robo-trader: peak RSS from /usr/bin/time -v.
/usr/bin/time -v "$BIN" backtest --data "$CSV" --strategy sma_crossover --param fast=10 \
  --param slow=30 --param qty=100 --no-risk --cash 1000000 --fill next_open \
  --commission ib-fixed --json > "$OUT/robo.json" 2> "$OUT/robo.time"
RSS=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2/1024}' "$OUT/robo.time")
python3 - "$OUT/robo.json" "$RSS" >> "$RES" <<'PY'
import json, sys
v = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(json.dumps({"tool": "robo-trader", "bars": v["bars"], "elapsed_s": v["elapsed_s"],
  "bars_per_s": v["bars_per_s"], "fills": v["fills"], "final_equity": float(v["final_equity"]),
  "peak_rss_mb": float(sys.argv[2])}))
PY
for tool in backtrader backtesting vectorbt; do
  if "$VENV/bin/python" -c "import $tool" 2>/dev/null; then
    timeout 3600 "$VENV/bin/python" "$ROOT/bench/peers.py" "$tool" "$CSV" >> "$RES" \
      2> "$OUT/$tool.err" || echo "($tool failed: see $OUT/$tool.err)" >&2
  fi
done

python3 - "$RES" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
robo = next((r for r in rows if r["tool"] == "robo-trader"), None)
print(f"{'tool':<12} {'bars':>9} {'elapsed_s':>10} {'bars/s':>12} {'peak MB':>8} {'fills':>7} {'final equity':>14} {'robo speedup':>12}")
for r in rows:
    ratio = robo["bars_per_s"] / r["bars_per_s"] if robo and r["bars_per_s"] else float("nan")
    print(f"{r['tool']:<12} {r['bars']:>9} {r['elapsed_s']:>10.2f} {r['bars_per_s']:>12.0f} "
          f"{r['peak_rss_mb']:>8.0f} {r['fills']:>7} {r['final_equity']:>14.2f} {ratio:>11.1f}x")
PY
