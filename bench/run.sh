#!/usr/bin/env bash
# Benchmark: robo-trader (release) vs backtrader, backtesting.py and vectorbt on the same
# minute-bar CSV and the same SMA(10)/SMA(30) long-only 100-share strategy, $1 minimum
# commission, next-open fills, $1M cash. Not a test; not run by `cargo test`.
#
#   bench/run.sh [BARS]             default 1000000 (or $BARS)
#   BARS=10000000 PEERS= bench/run.sh   robo-trader only, on 10M bars (CSV and cache)
#   PGO=1 bench/run.sh              robo-trader built by bench/pgo.sh (profile-guided)
#
# robo-trader runs three ways: from the CSV (streamed), from the binary cache written by
# `data import`, and load-only (`data check`, no engine) on both, so the table shows how much
# of a run is reading. PEERS (default "backtrader backtesting vectorbt") picks the peers; peers
# that fail to install are skipped. BENCH_OUT (default bench/out) holds data and results. REPS
# (default 5) is how many times each robo-trader row runs; the table shows the median run,
# and the host's effective clock (G cycles/s, crates/core/benches/support/clock.rs) probed
# just before that run: this host's speed swings up to 2x between seconds and minutes, and
# bars/s with it.
set -euo pipefail
BARS=${1:-${BARS:-1000000}}
PEERS=${PEERS-backtrader backtesting vectorbt}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/bench/out}
mkdir -p "$OUT"
CSV=$OUT/SPY_$BARS.csv
CACHE=$OUT/SPY_$BARS.rtb

[ -f "$CSV" ] || python3 "$ROOT/bench/gen.py" "$BARS" "$CSV"
if [ -n "${PGO:-}" ]; then
  BIN=$("$ROOT/bench/pgo.sh" | tail -1)
  BUILD="profile-guided build (bench/pgo.sh)"
else
  (cd "$ROOT" && cargo build --release -p robo-trader --bin robo-trader >&2)
  BIN=$ROOT/target/release/robo-trader
  BUILD="cargo build --release"
fi
(cd "$ROOT" && cargo build --release -p robo-core --example clock >&2)
CLOCK=$ROOT/target/release/examples/clock
"$BIN" data import "$CSV" -o "$CACHE" > "$OUT/import.json"
# The import just wrote the cache; flush it now rather than during the timed runs.
sync

RES=$OUT/results.jsonl
: > "$RES"
# robo-trader's rows: label, then the command's arguments. Each runs REPS times (default 5; a
# run takes a second or less and this host's speed swings up to 2x between seconds); the row
# is the median run by bars/s, with the slowest and fastest beside it. Peak RSS from
# /usr/bin/time -v, the largest of the runs.
REPS=${REPS:-5}
robo() {
  local label=$1; shift
  local runs=()
  for ((k = 1; k <= REPS; k++)); do
    "$CLOCK" > "$OUT/robo.$k.clock"
    /usr/bin/time -v "$BIN" "$@" > "$OUT/robo.$k.json" 2> "$OUT/robo.$k.time"
    runs+=("$OUT/robo.$k.json" "$OUT/robo.$k.time" "$OUT/robo.$k.clock")
  done
  python3 - "$label" "${runs[@]}" >> "$RES" <<'PY'
import json, re, sys
label, files = sys.argv[1], sys.argv[2:]
runs = []
for out, tm, clk in zip(files[::3], files[1::3], files[2::3]):
    v = json.loads(open(out).read().strip().splitlines()[-1])
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(tm).read()).group(1)) / 1024
    c = open(clk).read().strip()
    v["clock_ghz"] = None if c == "-" else float(c)
    runs.append((v, rss))
runs.sort(key=lambda r: r[0]["bars_per_s"])
v = runs[len(runs) // 2][0]
print(json.dumps({"tool": label, "bars": v["bars"], "elapsed_s": v["elapsed_s"],
  "bars_per_s": v["bars_per_s"], "fills": v.get("fills"),
  "final_equity": float(v["final_equity"]) if "final_equity" in v else None,
  "peak_rss_mb": max(r for _, r in runs), "clock_ghz": v["clock_ghz"],
  "runs_bars_per_s": [r["bars_per_s"] for r, _ in runs],
  "runs_clock_ghz": [r["clock_ghz"] for r, _ in runs]}))
PY
}
SMA=(--strategy sma_crossover --param fast=10 --param slow=30 --param qty=100 --no-risk
     --cash 1000000 --fill next_open --commission ib-fixed --json)
robo robo-csv backtest --data "$CSV" "${SMA[@]}"
robo robo-cache backtest --data "$CACHE" "${SMA[@]}"
robo load-csv data check "$CSV"
robo load-cache data check "$CACHE"

if [ -n "$PEERS" ]; then
  VENV=$OUT/venv
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >&2 || true
  fi
  for pkg in $PEERS; do
    "$VENV/bin/python" -c "import $pkg" 2>/dev/null || "$VENV/bin/pip" install -q "$pkg" >&2 || echo "($pkg did not install)" >&2
  done
  for tool in $PEERS; do
    if "$VENV/bin/python" -c "import $tool" 2>/dev/null; then
      timeout 3600 "$VENV/bin/python" "$ROOT/bench/peers.py" "$tool" "$CSV" >> "$RES" \
        2> "$OUT/$tool.err" || echo "($tool failed: see $OUT/$tool.err)" >&2
    fi
  done
fi

python3 - "$RES" "$OUT/import.json" "$BUILD" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
imp = json.loads(open(sys.argv[2]).read())
print(f"robo-trader: {sys.argv[3]}")
by = {r["tool"]: r for r in rows}
csv, cache = by.get("robo-csv"), by.get("robo-cache")
def ratio(a, r):
    return f"{a['bars_per_s'] / r['bars_per_s']:.1f}x" if a and r["bars_per_s"] else "-"
def spread(r):
    v = r.get("runs_bars_per_s")
    return f"{min(v) / 1e6:.1f}-{max(v) / 1e6:.1f}M (n={len(v)})" if v else "1 run"
def clock(r):
    c = r.get("clock_ghz")
    return f"{c:.2f}" if c else "-"
print(f"{'tool':<12} {'bars':>9} {'elapsed_s':>10} {'bars/s':>12} {'peak MB':>8} {'fills':>7} "
      f"{'final equity':>14} {'csv ratio':>9} {'cache ratio':>11} {'clock':>5}  runs")
for r in rows:
    fills = "-" if r["fills"] is None else r["fills"]
    eq = "-" if r["final_equity"] is None else f"{r['final_equity']:.2f}"
    print(f"{r['tool']:<12} {r['bars']:>9} {r['elapsed_s']:>10.2f} {r['bars_per_s']:>12.0f} "
          f"{r['peak_rss_mb']:>8.0f} {fills:>7} {eq:>14} {ratio(csv, r):>9} {ratio(cache, r):>11}"
          f" {clock(r):>5}  {spread(r)}")
print(f"(data import: {imp['bars']} bars in {imp['elapsed_s']:.2f} s; load-* rows read and check "
      "the bars without running the engine; robo-trader's rows are the median of their runs, "
      "the peers' one run each; ratios are robo-trader's bars/s over the row's; clock is the "
      "host's effective G cycles/s probed just before robo-trader's median run)")
PY
