//! `robo-trader backtest`, `data import` and `optimize` through the binary: exactness against
//! an independent integer reference, hand-computed fills, the binary cache, the report, and a
//! clear exit code 2 for each kind of malformed input.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_robo-trader"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("spawn robo-trader")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => Decimal::from_str(s).unwrap(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).unwrap(),
        other => panic!("not a number: {other}"),
    }
}

/// splitmix64: a fixed, seeded generator so the data is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

/// One bar in cents.
#[derive(Clone, Copy)]
struct B {
    o: i64,
    h: i64,
    l: i64,
    c: i64,
}

/// Minute bars around $1.00 (so IB's 1% cap and its rounding matter), in cents, with small
/// integer steps so the two averages tie now and then.
fn gen_bars(n: usize, seed: u64) -> Vec<B> {
    let mut r = Rng(seed);
    let mut v = Vec::with_capacity(n);
    let mut c = 100i64;
    for _ in 0..n {
        let o = (c + r.below(3) - 1).max(50);
        let drift = if o > 130 {
            -1
        } else if o < 70 {
            1
        } else {
            0
        };
        c = (o + r.below(5) - 2 + drift).max(50);
        let h = o.max(c) + r.below(3);
        let l = (o.min(c) - r.below(3)).max(1);
        v.push(B { o, h, l, c });
    }
    v
}

fn cents(x: i64) -> String {
    format!("{}.{:02}", x / 100, x % 100)
}

fn write_csv(path: &Path, bars: &[B], t0: i64, step: i64) {
    let mut s = String::with_capacity(bars.len() * 40 + 64);
    s.push_str("datetime,open,high,low,close,volume\n");
    for (i, b) in bars.iter().enumerate() {
        let _ = writeln!(
            s,
            "{},{},{},{},{},1000",
            t0 + i as i64 * step,
            cents(b.o),
            cents(b.h),
            cents(b.l),
            cents(b.c)
        );
    }
    std::fs::write(path, s).unwrap();
}

/// IB fixed in cents: min(max(0.005 × q, $1), 1% × value), rounded half away from zero.
fn ib_fixed_cents(qty: i64, price_cents: i64) -> i64 {
    // In hundredths of a cent: 0.005 $/share = 50; $1 = 10 000; 1% of value = value in cents.
    let raw = (qty * 50).max(10_000).min(qty * price_cents);
    (raw + 50) / 100
}

/// The independent reference: SMA sums, sign change with ties keeping the previous sign,
/// long-only, next-open fills. Returns (fills, final equity in cents).
fn reference(bars: &[B], fast: usize, slow: usize, qty: i64, cash0: i64) -> (u64, i64) {
    let (mut fs, mut ss) = (0i64, 0i64);
    let mut cash = cash0;
    let mut pos = 0i64;
    let mut pending: Option<bool> = None; // Some(true) = buy
    let mut last: Option<Ordering> = None;
    let mut fills = 0u64;
    for (i, b) in bars.iter().enumerate() {
        if let Some(buy) = pending.take() {
            let comm = ib_fixed_cents(qty, b.o);
            if buy {
                cash -= b.o * qty + comm;
                pos += qty;
            } else {
                cash += b.o * qty - comm;
                pos -= qty;
            }
            fills += 1;
        }
        fs += b.c;
        ss += b.c;
        if i >= fast {
            fs -= bars[i - fast].c;
        }
        if i >= slow {
            ss -= bars[i - slow].c;
        }
        if i + 1 < slow.max(fast) {
            continue;
        }
        // fast_sum / fast vs slow_sum / slow, exactly.
        let now = (i128::from(fs) * slow as i128).cmp(&(i128::from(ss) * fast as i128));
        if now == Ordering::Equal {
            continue;
        }
        let before = last.replace(now);
        match (before, now) {
            (Some(Ordering::Less), Ordering::Greater) if pos == 0 => pending = Some(true),
            (Some(Ordering::Greater), Ordering::Less) if pos > 0 => pending = Some(false),
            _ => {}
        }
    }
    let last_close = bars.last().map_or(0, |b| b.c);
    (fills, cash + pos * last_close)
}

fn bar_count() -> usize {
    std::env::var("ROBO_BT_BARS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

const SMA_ARGS: [&str; 16] = [
    "--strategy",
    "sma_crossover",
    "--param",
    "fast=10",
    "--param",
    "slow=30",
    "--param",
    "qty=100",
    "--no-risk",
    "--cash",
    "1000000",
    "--fill",
    "next_open",
    "--commission",
    "ib-fixed",
    "--json",
];

/// Acceptance: fills and final equity equal the reference to the cent, from the CSV and from
/// the binary cache. 200k bars by default (debug builds); `ROBO_BT_BARS=1000000` for 1M.
#[test]
fn sma_minute_bars_match_the_integer_reference_exactly() {
    let n = bar_count();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("SPY.csv");
    let bars = gen_bars(n, 42);
    // 2020-01-02 14:30 UTC, one bar a minute, around the clock (bars are used as given).
    write_csv(&csv, &bars, 1_577_975_400, 60);
    let (ref_fills, ref_equity) = reference(&bars, 10, 30, 100, 1_000_000 * 100);
    assert!(ref_fills > 100, "the data should trade: {ref_fills}");

    let mut args = vec!["backtest", "--data", csv.to_str().unwrap()];
    args.extend(SMA_ARGS);
    let v = json_of(&run(&args));
    assert_eq!(v["bars"].as_u64(), Some(n as u64));
    assert_eq!(v["symbols"], serde_json::json!(["SPY"]));
    assert_eq!(v["fills"].as_u64(), Some(ref_fills));
    assert_eq!(dec(&v["final_equity"]), Decimal::new(ref_equity, 2));
    assert!(v["elapsed_s"].as_f64().unwrap() > 0.0);
    assert!(v["bars_per_s"].as_f64().unwrap() > 0.0);
    eprintln!(
        "{n} bars: {} fills, final equity {}, {:.0} bars/s",
        v["fills"], v["final_equity"], v["bars_per_s"]
    );

    // The same through the cache.
    let cache = dir.path().join("spy.rtb");
    let out = run(&[
        "data",
        "import",
        csv.to_str().unwrap(),
        "-o",
        cache.to_str().unwrap(),
    ]);
    let imp = json_of(&out);
    assert_eq!(imp["bars"].as_u64(), Some(n as u64));
    let mut args = vec!["backtest", "--data", cache.to_str().unwrap()];
    args.extend(SMA_ARGS);
    let c = json_of(&run(&args));
    assert_eq!(c["fills"].as_u64(), Some(ref_fills));
    assert_eq!(dec(&c["final_equity"]), Decimal::new(ref_equity, 2));

    // 150 shares: 1% of the value is 1.5 × price in cents, so odd prices hit the half-cent
    // rounding of IB's cap.
    let (fills150, equity150) = reference(&bars, 10, 30, 150, 1_000_000 * 100);
    let args: Vec<&str> = args
        .into_iter()
        .map(|a| if a == "qty=100" { "qty=150" } else { a })
        .collect();
    let c = json_of(&run(&args));
    assert_eq!(c["fills"].as_u64(), Some(fills150));
    assert_eq!(dec(&c["final_equity"]), Decimal::new(equity150, 2));
}

fn daily_csv(dir: &Path, name: &str, rows: &[(&str, &str, &str, &str, &str)]) -> PathBuf {
    let p = dir.join(name);
    let mut s = String::from("date,open,high,low,close,volume\n");
    for (d, o, h, l, c) in rows {
        let _ = writeln!(s, "{d},{o},{h},{l},{c},1000");
    }
    std::fs::write(&p, s).unwrap();
    p
}

/// Closes 10 11 12 11 10 11 12 with SMA(1)/SMA(2): the first warm bar (day 2) sets "above";
/// day 4 crosses below (flat, long-only: nothing); day 6 crosses above: buy 100.
fn small_series(dir: &Path) -> PathBuf {
    daily_csv(
        dir,
        "ABC.csv",
        &[
            ("2024-01-02", "10", "10", "10", "10"),
            ("2024-01-03", "11", "11", "11", "11"),
            ("2024-01-04", "12", "12", "12", "12"),
            ("2024-01-05", "11", "11", "11", "11"),
            ("2024-01-08", "10", "10", "10", "10"),
            ("2024-01-09", "10.5", "11", "10.5", "11"),
            ("2024-01-10", "11.5", "12", "11.5", "12"),
        ],
    )
}

fn small_run(csv: &Path, fill: &str) -> Value {
    json_of(&run(&[
        "backtest",
        "--data",
        csv.to_str().unwrap(),
        "--param",
        "fast=1",
        "--param",
        "slow=2",
        "--no-risk",
        "--fill",
        fill,
        "--json",
    ]))
}

/// With the risk gate on, 100 shares of a $11 stock is 1,100 of $1,000 cash's 2% limit (20):
/// every entry is refused. The summary counts the refusals per check, and the run says why
/// it has no fills instead of printing zeros alone.
#[test]
fn refusals_are_counted_and_a_run_without_fills_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let csv = small_series(dir.path());
    let backtest = |extra: &[&str]| {
        let mut args = vec!["backtest", "--data", csv.to_str().unwrap()];
        args.extend(["--param", "fast=1", "--param", "slow=2", "--json"]);
        args.extend_from_slice(extra);
        run(&args)
    };
    let out = backtest(&["--cash", "1000"]);
    let v = json_of(&out);
    assert_eq!(v["fills"], 0);
    assert_eq!(v["refusals"]["position_size"], 1, "{v}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no fills") && err.contains("position_size") && err.contains("--no-risk"),
        "{err}"
    );
    // A run that trades carries no such note, and no refusals.
    let out = backtest(&["--no-risk"]);
    let v = json_of(&out);
    assert_eq!(v["fills"], 1);
    assert_eq!(v["refusals"], serde_json::json!({}));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("no fills"));
}

#[test]
fn next_open_and_close_fills_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let csv = small_series(dir.path());
    // next_open: the buy signalled on 01-09 fills at 01-10's open 11.50, $1 commission;
    // marked at 12: 100 000 − 1 150 − 1 + 1 200.
    let v = small_run(&csv, "next_open");
    assert_eq!(v["fills"].as_u64(), Some(1));
    assert_eq!(dec(&v["final_equity"]), Decimal::from(100_049));
    assert_eq!(v["open_positions"][0]["qty"].as_i64(), Some(100));
    // close: fills at 01-09's close 11: 100 000 − 1 100 − 1 + 1 200.
    let v = small_run(&csv, "close");
    assert_eq!(v["fills"].as_u64(), Some(1));
    assert_eq!(dec(&v["final_equity"]), Decimal::from(100_099));
    // Buy and hold: bought at 10 (first open), now 12: +20%.
    let bh = v["benchmark"]["total_return"].as_f64().unwrap();
    assert!((bh - 0.2).abs() < 1e-12, "{bh}");
    assert_eq!(v["bars"].as_u64(), Some(7));
}

#[test]
fn slippage_moves_fills_against_the_trader() {
    let dir = tempfile::tempdir().unwrap();
    let csv = small_series(dir.path());
    let v = json_of(&run(&[
        "backtest",
        "--data",
        csv.to_str().unwrap(),
        "--param",
        "fast=1",
        "--param",
        "slow=2",
        "--no-risk",
        "--slippage-bps",
        "100",
        "--commission",
        "zero",
        "--json",
    ]));
    // Buy at 11.50 × 1.01 = 11.615: 100 000 − 1 161.50 + 1 200.
    assert_eq!(
        dec(&v["final_equity"]),
        Decimal::from_str("100038.50").unwrap()
    );
}

#[test]
fn report_is_one_self_contained_html_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("XYZ.csv");
    let bars = gen_bars(3_000, 7);
    write_csv(&csv, &bars, 1_577_975_400, 60);
    let report = dir.path().join("out.html");
    let out = run(&[
        "backtest",
        "--data",
        csv.to_str().unwrap(),
        "--param",
        "fast=5",
        "--param",
        "slow=20",
        "--no-risk",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&report).unwrap();
    // Equity, drawdown and one symbol chart.
    assert!(html.matches("<svg").count() >= 3, "charts missing");
    assert!(html.contains("Closed trades"));
    assert!(html.contains("sharpe"));
    assert!(html.contains("<polygon") || html.contains("<polyline") || html.contains("<path"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
}

#[test]
fn directory_of_symbols_and_symbol_filter() {
    let dir = tempfile::tempdir().unwrap();
    small_series(dir.path());
    daily_csv(
        dir.path(),
        "DEF.csv",
        &[
            ("2024-01-02", "20", "20", "20", "20"),
            ("2024-01-03", "20", "21", "20", "21"),
        ],
    );
    let v = json_of(&run(&[
        "backtest",
        "--data",
        dir.path().to_str().unwrap(),
        "--no-risk",
        "--json",
    ]));
    assert_eq!(v["symbols"], serde_json::json!(["ABC", "DEF"]));
    assert_eq!(v["bars"].as_u64(), Some(9));
    let v = json_of(&run(&[
        "backtest",
        "--data",
        dir.path().to_str().unwrap(),
        "--symbols",
        "def",
        "--json",
    ]));
    assert_eq!(v["bars"].as_u64(), Some(2));
    let out = run(&[
        "backtest",
        "--data",
        dir.path().to_str().unwrap(),
        "--symbols",
        "NOPE",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // --from/--to are inclusive days.
    let v = json_of(&run(&[
        "backtest",
        "--data",
        dir.path().to_str().unwrap(),
        "--from",
        "2024-01-03",
        "--to",
        "2024-01-05",
        "--json",
    ]));
    assert_eq!(v["bars"].as_u64(), Some(4));
}

/// Runs a backtest on `body` as ABC.csv and expects exit 2 with `needle` in the message.
fn expect_input_error(body: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ABC.csv");
    std::fs::write(&p, body).unwrap();
    let out = run(&["backtest", "--data", p.to_str().unwrap(), "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{body:?}: {err}");
    assert!(
        err.contains(needle),
        "{body:?}: expected {needle:?} in {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn malformed_inputs_exit_2_with_file_and_line() {
    let h = "date,open,high,low,close,volume\n";
    expect_input_error(
        "date,open,high,low,volume\n2024-01-02,1,1,1,1\n",
        "missing column `close`",
    );
    expect_input_error(
        &format!("{h}2024-01-02,1,1,1,1,1\n2024-13-45,1,1,1,1,1\n"),
        "ABC.csv:3: unparsable date",
    );
    expect_input_error(
        &format!("{h}2024-01-02,-1,1,1,1,1\n"),
        "ABC.csv:2: column `open`",
    );
    expect_input_error(
        &format!("{h}2024-01-02,1,1,2,1,1\n"),
        "ABC.csv:2: high 1 < low 2",
    );
    expect_input_error(
        &format!("{h}2024-01-02,1,1,1,1,1\n2024-01-02,1,1,1,1,1\n"),
        "ABC.csv:3: duplicate timestamp",
    );
    expect_input_error(
        &format!("{h}2024-01-03,1,1,1,1,1\n2024-01-02,1,1,1,1,1\n"),
        "ABC.csv:3: unsorted",
    );
    expect_input_error("", "empty file");
    expect_input_error(h, "header but no data rows");
}

#[test]
fn bad_options_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let csv = small_series(dir.path());
    let data = csv.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--param", "fats=3"], "unknown parameter \"fats\""),
        (
            &["--param", "fast=30", "--param", "slow=10"],
            "must be less than slow",
        ),
        (&["--param", "qty=-5"], "qty"),
        (&["--strategy", "nope"], "unknown strategy"),
        (&["--from", "yesterday"], "--from"),
        (&["--commission", "bps:x"], "--commission"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["backtest", "--data", data];
        args.extend_from_slice(extra);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    let out = run(&["backtest", "--data", "/nonexistent/x.csv"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn import_streams_in_chunks_and_keeps_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("AAA.csv");
    let mut bars = gen_bars(150_000, 3);
    // Line 100 002 (data row 100 001): high below low, in the second chunk.
    bars[100_000].h = 1;
    bars[100_000].l = 2;
    write_csv(&csv, &bars, 1_577_975_400, 60);
    let cache = dir.path().join("a.rtb");
    let out = run(&[
        "data",
        "import",
        csv.to_str().unwrap(),
        "-o",
        cache.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("AAA.csv:100002: high"), "{err}");
    assert!(!cache.exists(), "a failed import leaves no cache");

    // An out-of-order row exactly at a chunk boundary (data row 65 537 = line 65 538).
    let mut s = String::from("datetime,open,high,low,close,volume\n");
    for i in 0..70_000i64 {
        let t = if i == 65_536 {
            1_577_975_400
        } else {
            1_577_975_400 + i * 60
        };
        let _ = writeln!(s, "{t},1,1,1,1,1");
    }
    std::fs::write(&csv, s).unwrap();
    let out = run(&[
        "data",
        "import",
        csv.to_str().unwrap(),
        "-o",
        cache.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("AAA.csv:65538: unsorted"), "{err}");

    // A corrupt cache is refused clearly.
    std::fs::write(&cache, b"RTBARS\0\x01garbage").unwrap();
    let out = run(&["backtest", "--data", cache.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("corrupt bar cache"), "{err}");
}

#[test]
fn optimize_grid_and_walk_forward() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("SPY.csv");
    write_csv(&csv, &gen_bars(4_000, 11), 1_577_975_400, 86_400);
    let data = csv.to_str().unwrap();
    let v = json_of(&run(&[
        "optimize",
        "--data",
        data,
        "--no-risk",
        "--grid",
        "fast=5,10",
        "--grid",
        "slow=10,30",
        "--json",
    ]));
    // fast=10, slow=10 is invalid and skipped: 3 runs.
    assert_eq!(v["runs"].as_u64(), Some(3));
    assert_eq!(v["skipped_grid_points"].as_array().map(Vec::len), Some(1));
    let rows = v["results"].as_array().unwrap();
    let s: Vec<f64> = rows
        .iter()
        .map(|r| r["sharpe"].as_f64().unwrap_or(f64::NEG_INFINITY))
        .collect();
    assert!(
        s.windows(2).all(|w| w[0] >= w[1]),
        "sorted by sharpe: {s:?}"
    );

    // Each grid point equals the same backtest run alone.
    let best = &rows[0];
    let params: Vec<String> = best["params"]
        .as_str()
        .unwrap()
        .split(' ')
        .flat_map(|p| ["--param".to_string(), p.to_string()])
        .collect();
    let mut args: Vec<&str> = vec!["backtest", "--data", data, "--no-risk", "--json"];
    args.extend(params.iter().map(String::as_str));
    let single = json_of(&run(&args));
    assert_eq!(single["final_equity"], best["final_equity"]);

    let v = json_of(&run(&[
        "optimize",
        "--data",
        data,
        "--no-risk",
        "--grid",
        "fast=5,10",
        "--grid",
        "slow=20,30",
        "--walk-forward",
        "--train",
        "1000",
        "--test",
        "500",
        "--json",
    ]));
    // Tests start at 1000, 1500, …, 3500: six folds.
    assert_eq!(v["folds"].as_array().map(Vec::len), Some(6));
    assert!(v["out_of_sample"]["compounded_return"].is_number());
    let out = run(&["optimize", "--data", data, "--grid", "fats=1,2"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn calendar_filter_drops_off_hours_bars() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("SPY.csv");
    // 2024-01-02 (Tuesday) from 14:00 UTC (09:00 New York), one bar a minute for 2 hours:
    // 30 bars before the 09:30 open, 90 inside.
    write_csv(&csv, &gen_bars(120, 5), 1_704_204_000, 60);
    let base = ["backtest", "--data", csv.to_str().unwrap(), "--json"];
    let v = json_of(&run(&base));
    assert_eq!(v["bars"].as_u64(), Some(120));
    let mut args = base.to_vec();
    args.extend(["--calendar", "nyse"]);
    let v = json_of(&run(&args));
    assert_eq!(v["bars"].as_u64(), Some(90));
    assert_eq!(v["off_calendar_bars"].as_u64(), Some(30));
}

/// Three symbols of generated minute bars, as per-symbol files, as one long file in time order
/// and as one long file grouped by symbol: the streamed readers must give the same run, and the
/// cache of each the same again.
#[test]
fn long_files_stream_like_per_symbol_files() {
    let dir = tempfile::tempdir().unwrap();
    let per = dir.path().join("per");
    std::fs::create_dir(&per).unwrap();
    let syms = ["CCC", "AAA", "BBB"];
    let series: Vec<Vec<B>> = (0..3).map(|k| gen_bars(3000, 7 + k as u64)).collect();
    let t0 = 1_577_975_400i64;
    let row = |s: &str, i: usize, b: &B| {
        format!(
            "{},{s},{},{},{},{},1000\n",
            t0 + i as i64 * 60,
            cents(b.o),
            cents(b.h),
            cents(b.l),
            cents(b.c)
        )
    };
    let mut sorted = String::from("timestamp,symbol,open,high,low,close,volume\n");
    let mut grouped = sorted.clone();
    for i in 0..3000 {
        for (s, bars) in syms.iter().zip(&series) {
            sorted.push_str(&row(s, i, &bars[i]));
        }
    }
    for (s, bars) in syms.iter().zip(&series) {
        write_csv(&per.join(format!("{s}.csv")), bars, t0, 60);
        for (i, b) in bars.iter().enumerate() {
            grouped.push_str(&row(s, i, b));
        }
    }
    let long_sorted = dir.path().join("sorted.csv");
    let long_grouped = dir.path().join("grouped.csv");
    std::fs::write(&long_sorted, &sorted).unwrap();
    std::fs::write(&long_grouped, &grouped).unwrap();

    let go = |data: &Path| {
        let mut args = vec!["backtest", "--data", data.to_str().unwrap()];
        args.extend_from_slice(&SMA_ARGS);
        let mut v = json_of(&run(&args));
        for k in ["elapsed_s", "sim_s", "bars_per_s"] {
            v[k] = Value::Null;
        }
        v
    };
    let base = go(&per);
    assert_eq!(base["bars"].as_u64(), Some(9000));
    assert_eq!(base["symbols"], serde_json::json!(["AAA", "BBB", "CCC"]));
    // Independent: each symbol alone is the integer reference; fills add up.
    let want_fills: u64 = series
        .iter()
        .map(|b| reference(b, 10, 30, 100, 100_000_000).0)
        .sum();
    assert_eq!(base["fills"].as_u64(), Some(want_fills));
    for data in [&long_sorted, &long_grouped] {
        assert_eq!(go(data), base, "{}", data.display());
        let cache = dir.path().join("c.rtb");
        let out = run(&[
            "data",
            "import",
            data.to_str().unwrap(),
            "-o",
            cache.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(go(&cache), base, "cache of {}", data.display());
    }

    // A duplicate inside the long file is found with its line, however the file is read.
    let bad = sorted.replacen(
        &row("AAA", 5, &series[1][5]),
        &row("AAA", 4, &series[1][5]),
        1,
    );
    std::fs::write(&long_sorted, bad).unwrap();
    let out = run(&[
        "backtest",
        "--data",
        long_sorted.to_str().unwrap(),
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    // Header line 1, three rows per minute: AAA's row of minute 5 is line 2 + 5·3 + 1.
    assert!(err.contains("sorted.csv:18: duplicate timestamp"), "{err}");
}

/// `backtest --config`: the file's strategy, sizing, cash, commission, fill model and stops
/// are used, and CLI flags override them.
#[test]
fn config_file_is_honored_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = small_series(dir.path());
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "starting_cash = \"50000\"\n\
         [strategy]\nname = \"sma_crossover\"\nfast = 1\nslow = 2\n\
         [sizing]\nmode = \"fixed_qty\"\nqty = 10\n\
         [risk]\nenabled = false\n\
         [stops]\nstop_loss_pct = \"0.5\"\n\
         [paper]\nfill = \"close\"\ncommission = { model = \"per_share\", rate = \"0.5\" }\n",
    )
    .unwrap();
    let go = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            cfg.to_str().unwrap(),
            "backtest",
            "--data",
            csv.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        json_of(&run(&args))
    };
    // From the file: buy 10 at 01-09's close 11 (fill = close), commission 10 × 0.5 = 5;
    // marked at 12: 50 000 − 110 − 5 + 120.
    let v = go(&[]);
    assert_eq!(v["starting_cash"], "50000");
    assert_eq!(v["fills"].as_u64(), Some(1));
    assert_eq!(v["qty"].as_i64(), Some(10));
    assert_eq!(dec(&v["commissions"]), Decimal::from(5));
    assert_eq!(dec(&v["final_equity"]), Decimal::from(50_005));
    // Flags win: next_open (11.50 on 01-10), 100 shares, ib-fixed ($1), $100 000.
    let v = go(&[
        "--fill",
        "next_open",
        "--param",
        "qty=100",
        "--commission",
        "ib-fixed",
        "--cash",
        "100000",
    ]);
    assert_eq!(dec(&v["final_equity"]), Decimal::from(100_049));
    // A bad config is an input error (exit 2) naming the key.
    std::fs::write(&cfg, "[strategy]\nname = \"sma_crossover\"\nfats = 3\n").unwrap();
    let out = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "backtest",
        "--data",
        csv.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("fats"), "{err}");
}

/// `--skip-bad-rows` counts each bad row once, whether the streaming reader or a long file's
/// scan finds it, in `backtest` and in `data import`.
#[test]
fn skipped_rows_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("ONE.csv");
    std::fs::write(
        &one,
        "date,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n2024-01-03,1,1,2,1,1\n\
         2024-01-04,1,1,1,1,1\n2024-01-05,x,1,1,1,1\n2024-01-08,1,1,1,1,1\n",
    )
    .unwrap();
    let long = dir.path().join("long.csv");
    std::fs::write(
        &long,
        "date,symbol,open,high,low,close,volume\n2024-01-02,A,1,1,1,1,1\n2024-01-02,B,1,1,1,1,1\n\
         2024-01-03,A,1,1,2,1,1\n2024-01-03,B,1,1,1,1,1\n2024-01-04,A,1,1,1,1,1\n",
    )
    .unwrap();
    for (data, bars, skipped) in [(&one, 3, 2), (&long, 4, 1)] {
        let v = json_of(&run(&[
            "backtest",
            "--data",
            data.to_str().unwrap(),
            "--skip-bad-rows",
            "--json",
        ]));
        assert_eq!(v["bars"].as_u64(), Some(bars), "{}", data.display());
        assert_eq!(
            v["skipped_rows"].as_u64(),
            Some(skipped),
            "{}",
            data.display()
        );
        let cache = dir.path().join("c.rtb");
        let v = json_of(&run(&[
            "data",
            "import",
            data.to_str().unwrap(),
            "-o",
            cache.to_str().unwrap(),
            "--skip-bad-rows",
        ]));
        assert_eq!(v["bars"].as_u64(), Some(bars));
        assert_eq!(
            v["skipped_rows"].as_u64(),
            Some(skipped),
            "{}",
            data.display()
        );
    }
}

/// The shipped `bench/all4.toml` (the 22-symbol figure's and `bench/pgo.sh`'s config) loads,
/// and a backtest under it runs the four strategies combined.
#[test]
fn the_shipped_all_four_config_runs_the_combined_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let csv = small_series(dir.path());
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/all4.toml");
    let v = json_of(&run(&[
        "--config",
        cfg,
        "backtest",
        "--data",
        csv.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["strategy"]["name"], "combined", "{v}");
    let names: Vec<&str> = v["strategy"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["sma_crossover", "momentum", "mean_reversion", "breakout"]
    );
}
