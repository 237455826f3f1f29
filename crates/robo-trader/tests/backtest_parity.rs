//! Acceptance 5: `run` on the sim market for one sim day, with its bars recorded, and
//! `backtest` over those bars with the same config make the identical decisions and fills.
//! Everything that could differ (warm-up history, starting cash, sizing, risk, stops,
//! commission, fill model and slippage, the order of symbols within a timestamp) comes from
//! the one config file or from the recording, not from special cases.

mod harness;

use std::process::Output;

use harness::{robo, rows};
use rusqlite::Connection;
use serde_json::Value;

const DAY_OPEN: &str = "2025-03-04T14:30:00Z";
const DAY_CLOSE: &str = "2025-03-04T21:00:00Z";

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

type DecisionRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);
type FillRow = (String, String, String, i64, String, String);

#[test]
fn one_sim_day_replays_to_identical_decisions_and_fills() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // Symbols deliberately not in name order: within a timestamp both sides must feed the
    // engine in watchlist order (risk limits depend on it). Tight limits and stops so the day
    // has entries, exits, stop exits and refusals.
    std::fs::write(
        p.join("cfg.toml"),
        r#"symbols = ["SPY", "AAPL", "MSFT"]
starting_cash = "250000"
[strategy]
name = "sma_crossover"
fast = 5
slow = 20
[sizing]
mode = "fixed_fraction"
fraction = "0.05"
[risk]
max_position_pct = "0.1"
max_order_notional = "20000"
[stops]
stop_loss_pct = "0.003"
trailing_pct = "0.004"
[paper]
fill = "next_open"
slippage_bps = "1"
commission = { model = "ib_fixed" }
"#,
    )
    .unwrap();

    ok(
        robo(p)
            .args(["--config", "cfg.toml", "run", "--db", "run.db"])
            .args(["--dash-port", "0", "--ws-port", "0", "--sim-speed", "max"])
            .args(["--sim-start", DAY_OPEN, "--sim-until", DAY_CLOSE])
            .args(["--record-bars", "bars"])
            .output()
            .unwrap(),
        "run",
    );
    for s in ["SPY", "AAPL", "MSFT"] {
        assert!(p.join("bars").join(format!("{s}.csv")).is_file(), "{s}.csv");
    }

    let out = ok(
        robo(p)
            .args(["--config", "cfg.toml", "backtest", "--data", "bars"])
            .args([
                "--trade-from",
                DAY_OPEN,
                "--decisions-out",
                "bt.jsonl",
                "--json",
            ])
            .output()
            .unwrap(),
        "backtest",
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Only the traded session counts as bars; the warm-up history does not.
    assert_eq!(summary["bars"].as_u64(), Some(3 * 390), "{summary}");
    assert_eq!(summary["starting_cash"], "250000");

    let db = Connection::open(p.join("run.db")).unwrap();
    let run_decisions: Vec<DecisionRow> = rows(
        &db,
        "SELECT ts, symbol, close, signal, action, verdict, refused_check
         FROM decisions ORDER BY id",
    );
    let run_fills: Vec<FillRow> = rows(
        &db,
        "SELECT ts, symbol, side, quantity, price, commission FROM fills ORDER BY id",
    );

    let text = std::fs::read_to_string(p.join("bt.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let o = |v: &Value, k: &str| v[k].as_str().map(str::to_string);
    let bt_decisions: Vec<DecisionRow> = lines
        .iter()
        .filter(|v| v["kind"] == "decision")
        .map(|v| {
            (
                s(v, "ts"),
                s(v, "symbol"),
                s(v, "close"),
                s(v, "signal"),
                s(v, "action"),
                o(v, "verdict"),
                o(v, "refused_check"),
            )
        })
        .collect();
    let bt_fills: Vec<FillRow> = lines
        .iter()
        .filter(|v| v["kind"] == "fill")
        .map(|v| {
            (
                s(v, "ts"),
                s(v, "symbol"),
                s(v, "side"),
                v["quantity"].as_i64().unwrap_or(-1),
                s(v, "price"),
                s(v, "commission"),
            )
        })
        .collect();

    // The day must exercise the interesting paths, or identical output proves little.
    assert_eq!(run_decisions.len(), 3 * 390);
    let count = |a: &str| run_decisions.iter().filter(|d| d.4 == a).count();
    assert!(count("entered") > 0 && count("exited") + count("stop_triggered") > 0);
    assert!(count("refused") > 0, "no risk refusal in the day");
    assert!(run_fills.len() >= 4, "{run_fills:?}");
    // Symbols within a timestamp in watchlist order, on both sides.
    assert_eq!(run_decisions[0].1, "SPY");
    assert_eq!(run_decisions[1].1, "AAPL");

    for (i, (a, b)) in run_decisions.iter().zip(&bt_decisions).enumerate() {
        assert_eq!(a, b, "decision {i} differs (run, backtest)");
    }
    assert_eq!(run_decisions.len(), bt_decisions.len());
    assert_eq!(run_fills, bt_fills);
    assert_eq!(summary["fills"].as_u64(), Some(run_fills.len() as u64));
}
