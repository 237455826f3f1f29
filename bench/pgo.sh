#!/usr/bin/env bash
# Profile-guided build of robo-trader: the same code, laid out by where a backtest spends its
# time (hot paths together, the order path's rare branches out of the way). Not a test, and
# not what `cargo build --release` makes; the figures from it are reported beside the plain
# build's.
#
#   bench/pgo.sh             builds $PGO_DIR/use/release/robo-trader (prints the path)
#   PGO=1 bench/run.sh       the harness, with this binary (it runs this script first)
#   PGO_REUSE=1 bench/pgo.sh  keep the last profile (no new training) if there is one
#
# The training runs are NOT the measured ones: other data (generated with other seeds, 22
# symbols of 20k bars and one of 300k) and other settings (the four strategies combined with
# the risk gate, and the SMA crossover with and without the gate), so the profile says which
# paths are hot in a backtest, not what one benchmark does. Decision records are off in all of
# them, so this binary is for backtests: `run` writes a decision record per bar, a path the
# profile calls cold. Needs rustup's llvm-tools (installed here if missing) for an
# llvm-profdata that matches rustc's LLVM.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGO=${PGO_DIR:-$ROOT/target/pgo}
export CARGO_TERM_COLOR=never

sysroot=$(rustc --print sysroot)
find_profdata() { find "$sysroot/lib/rustlib" -name llvm-profdata -type f 2>/dev/null | head -1; }
PROFDATA=$(find_profdata)
if [ -z "$PROFDATA" ] && command -v rustup >/dev/null; then
  rustup component add llvm-tools >&2
  PROFDATA=$(find_profdata)
fi
if [ -z "$PROFDATA" ]; then
  echo "pgo.sh: no llvm-profdata for $(rustc -V); install rustup's llvm-tools component" >&2
  exit 2
fi

# Steps 1 to 3: an instrumented build, the training runs, and the merged profile.
train() {
  # 1. An instrumented build.
  rm -rf "$PGO/raw"
  mkdir -p "$PGO/raw" "$PGO/train"
  (cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$PGO/raw" \
    cargo build --release --locked -p robo-trader --bin robo-trader --target-dir "$PGO/gen" >&2)
  GEN=$PGO/gen/release/robo-trader

  # 2. Training runs, on data of their own.
  T=$PGO/train
  [ -d "$T/s22" ] || python3 "$ROOT/bench/gen.py" 20000 "$T/s22" 7 --symbols 22
  [ -f "$T/one.csv" ] || python3 "$ROOT/bench/gen.py" 300000 "$T/one.csv" 7
  "$GEN" data import "$T/one.csv" -o "$T/one.rtb" > /dev/null
  SMA=(--strategy sma_crossover --param fast=10 --param slow=30 --param qty=100 --cash 1000000
       --fill next_open --commission ib-fixed --json)
  "$GEN" --config "$ROOT/bench/all4.toml" backtest --data "$T/s22" --json > /dev/null
  "$GEN" backtest --data "$T/s22" --cash 1000000 --json > /dev/null
  "$GEN" backtest --data "$T/one.rtb" "${SMA[@]}" --no-risk > /dev/null
  "$GEN" backtest --data "$T/one.csv" "${SMA[@]}" --no-risk > /dev/null
  "$GEN" backtest --data "$T/one.rtb" "${SMA[@]}" --param qty=50 > /dev/null
  "$GEN" data check "$T/one.rtb" > /dev/null

  # 3. The profile.
  "$PROFDATA" merge -o "$PGO/merged.profdata" "$PGO/raw"
}

if [ -n "${PGO_REUSE:-}" ] && [ -f "$PGO/merged.profdata" ]; then
  echo "pgo.sh: reusing $PGO/merged.profdata" >&2
else
  train
fi

# 4. The build that uses the profile.
USE="-Cprofile-use=$PGO/merged.profdata"
(cd "$ROOT" && RUSTFLAGS="$USE" \
  cargo build --release --locked -p robo-trader --bin robo-trader --target-dir "$PGO/use" >&2)
echo "$PGO/use/release/robo-trader"

