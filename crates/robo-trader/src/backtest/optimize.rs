//! `robo-trader optimize`: a parameter grid run in parallel (rayon), optionally walk-forward.
//!
//! Walk-forward splits the distinct bar timestamps into windows: each fold picks the best grid
//! point on its training window (in-sample), then runs that point on the following test window
//! (out-of-sample), with the training bars used only to warm the strategy up. Only the
//! out-of-sample figures are reported as results; the in-sample ones serve the overfitting
//! warning, raised when the mean out-of-sample score is below half the mean in-sample score.

use std::process::ExitCode;
use std::time::Instant;

use rayon::prelude::*;
use robo_core::types::Ts;
use serde_json::{json, Value};

use super::data::{DataError, DataSource, StreamFilter};
use super::run::{run, RunResult, RunSettings};
use super::{
    apply_params, base_strategy, load_config, opt_f, prepare, usage, InputError, OptimizeArgs,
};
use robo_core::strategy::StrategyConfig;
use std::path::Path;

/// What a grid point is ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Sharpe,
    Sortino,
    TotalReturn,
    Cagr,
    Calmar,
}

impl Metric {
    pub fn parse(s: &str) -> Result<Self, InputError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "sharpe" => Metric::Sharpe,
            "sortino" => Metric::Sortino,
            "total_return" | "return" => Metric::TotalReturn,
            "cagr" => Metric::Cagr,
            "calmar" => Metric::Calmar,
            other => {
                return Err(usage(format!(
                    "--metric {other:?}: expected sharpe, sortino, total_return, cagr or calmar"
                )))
            }
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::Sharpe => "sharpe",
            Metric::Sortino => "sortino",
            Metric::TotalReturn => "total_return",
            Metric::Cagr => "cagr",
            Metric::Calmar => "calmar",
        }
    }
    /// The score of a run; `None` when undefined (no variance, no drawdown…).
    pub fn of(self, r: &RunResult) -> Option<f64> {
        let c = &r.curve;
        match self {
            Metric::Sharpe => c.sharpe,
            Metric::Sortino => c.sortino,
            Metric::TotalReturn => Some(c.total_return),
            Metric::Cagr => c.cagr,
            Metric::Calmar => c.calmar,
        }
        .filter(|v| v.is_finite())
    }
}

/// Parses `--grid k=v1,v2` flags into the cartesian product of `k=v` lists.
pub fn grid_points(grid: &[String]) -> Result<Vec<Vec<String>>, InputError> {
    let mut points: Vec<Vec<String>> = vec![Vec::new()];
    for g in grid {
        let Some((k, vals)) = g.split_once('=') else {
            return Err(usage(format!("--grid {g:?}: expected name=v1,v2,...")));
        };
        let vals: Vec<&str> = vals
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if vals.is_empty() {
            return Err(usage(format!("--grid {g:?}: no values")));
        }
        points = points
            .into_iter()
            .flat_map(|p| {
                vals.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push(format!("{}={v}", k.trim()));
                    q
                })
            })
            .collect();
    }
    Ok(points)
}

/// One grid point that validates, with its settings.
struct Candidate {
    params: Vec<String>,
    settings: RunSettings,
}

fn candidates(
    args: &OptimizeArgs,
    base: &RunSettings,
    start: &StrategyConfig,
) -> Result<(Vec<Candidate>, Vec<String>), InputError> {
    if args.grid.is_empty() {
        return Err(usage("optimize needs at least one --grid name=v1,v2,..."));
    }
    let mut ok = Vec::new();
    let mut invalid = Vec::new();
    for point in grid_points(&args.grid)? {
        let mut all = args.sim.params.clone();
        all.extend(point.iter().cloned());
        match apply_params(start.clone(), &all) {
            Ok((strategy, qty)) => {
                let mut settings = base.clone();
                settings.strategy = strategy;
                if let Some(qty) = qty {
                    settings.sizing = robo_core::sizing::SizingConfig::FixedQty { qty };
                }
                ok.push(Candidate {
                    params: point,
                    settings,
                });
            }
            // An unknown name is a usage error; an invalid combination (fast ≥ slow) is
            // skipped so grids can overlap.
            Err(InputError::Usage(m)) if m.starts_with("unknown parameter") => {
                return Err(InputError::Usage(m))
            }
            Err(e) => invalid.push(format!("{}: {e}", point.join(" "))),
        }
    }
    if ok.is_empty() {
        return Err(usage(format!(
            "no valid grid point ({})",
            invalid.join("; ")
        )));
    }
    Ok((ok, invalid))
}

fn result_row(params: &[String], r: &RunResult) -> Value {
    json!({
        "params": params.join(" "),
        "total_return": r.curve.total_return,
        "cagr": opt_f(r.curve.cagr),
        "sharpe": opt_f(r.curve.sharpe),
        "sortino": opt_f(r.curve.sortino),
        "calmar": opt_f(r.curve.calmar),
        "max_drawdown": r.curve.max_drawdown,
        "trades": r.trades.trades,
        "fills": r.fills,
        "final_equity": r.final_equity,
    })
}

fn rank(m: Metric, a: &RunResult, b: &RunResult) -> std::cmp::Ordering {
    let key = |r: &RunResult| m.of(r).unwrap_or(f64::NEG_INFINITY);
    key(b).total_cmp(&key(a))
}

pub fn optimize_main(config: Option<&Path>, args: &OptimizeArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let metric = Metric::parse(&args.metric)?;
    let cfg = load_config(config)?;
    let (src, base, _skipped) = prepare(&args.sim, cfg.as_ref(), super::data::Residency::Memory)?;
    let start = base_strategy(&args.sim, cfg.as_ref())?;
    let (cands, invalid) = candidates(args, &base, &start)?;
    let out = if args.walk_forward {
        walk_forward(args, metric, &src, &base, &cands)?
    } else {
        let mut results: Vec<(Vec<String>, RunResult)> = cands
            .par_iter()
            .map(|c| run(&src, &c.settings).map(|r| (c.params.clone(), r)))
            .collect::<Result<_, DataError>>()
            .map_err(InputError::from)?;
        results.sort_by(|a, b| rank(metric, &a.1, &b.1));
        json!({
            "metric": metric.name(),
            "runs": results.len(),
            "results": results.iter().map(|(p, r)| result_row(p, r)).collect::<Vec<_>>(),
        })
    };
    let mut out = out;
    out["skipped_grid_points"] = json!(invalid);
    out["elapsed_s"] = json!(t0.elapsed().as_secs_f64());
    if args.json {
        println!("{out}");
    } else {
        print_text(&out);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(v: &Value) {
    if let Some(w) = v.get("warning").and_then(Value::as_str) {
        println!("WARNING: {w}");
    }
    if let Some(rows) = v.get("results").and_then(Value::as_array) {
        println!(
            "{:<28} {:>10} {:>8} {:>8} {:>8} {:>7}",
            "params", "return", "sharpe", "sortino", "max_dd", "trades"
        );
        for r in rows {
            println!(
                "{:<28} {:>10.4} {:>8} {:>8} {:>8.4} {:>7}",
                r["params"].as_str().unwrap_or(""),
                r["total_return"].as_f64().unwrap_or(0.0),
                fmt(&r["sharpe"]),
                fmt(&r["sortino"]),
                r["max_drawdown"].as_f64().unwrap_or(0.0),
                r["trades"]
            );
        }
    }
    if let Some(folds) = v.get("folds").and_then(Value::as_array) {
        println!(
            "{:<12} {:<12} {:<24} {:>9} {:>9} {:>10}",
            "test_from", "test_to", "chosen", "is_score", "oos_score", "oos_return"
        );
        for f in folds {
            println!(
                "{:<12} {:<12} {:<24} {:>9} {:>9} {:>10.4}",
                f["test_from"]
                    .as_str()
                    .unwrap_or("")
                    .get(..10)
                    .unwrap_or(""),
                f["test_to"].as_str().unwrap_or("").get(..10).unwrap_or(""),
                f["chosen"].as_str().unwrap_or(""),
                fmt(&f["in_sample_score"]),
                fmt(&f["out_of_sample"]["score"]),
                f["out_of_sample"]["total_return"].as_f64().unwrap_or(0.0),
            );
        }
        if let Some(o) = v.get("out_of_sample") {
            println!("out-of-sample: {o}");
        }
    }
    println!("elapsed_s {}", v["elapsed_s"]);
}

fn fmt(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{x:.3}"))
}

/// The distinct timestamps of the (filtered) data, in order.
fn timestamps(src: &DataSource, filter: &StreamFilter) -> Result<Vec<i64>, DataError> {
    let mut st = src.stream(filter)?;
    let mut ts = Vec::new();
    while let Some(b) = st.next_bar()? {
        if ts.last() != Some(&b.ts.0) {
            ts.push(b.ts.0);
        }
    }
    Ok(ts)
}

/// Fold boundaries as indices into the timestamps: (train_start, test_start, test_end).
pub fn folds(
    n: usize,
    train: usize,
    test: usize,
    step: usize,
    anchored: bool,
) -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    if train == 0 || test == 0 || step == 0 {
        return v;
    }
    let mut test_start = train;
    while test_start < n {
        let train_start = if anchored { 0 } else { test_start - train };
        v.push((train_start, test_start, (test_start + test).min(n)));
        test_start += step;
    }
    v
}

fn walk_forward(
    args: &OptimizeArgs,
    metric: Metric,
    src: &DataSource,
    base: &RunSettings,
    cands: &[Candidate],
) -> Result<Value, InputError> {
    let ts = timestamps(src, &base.filter)?;
    let step = args.step.unwrap_or(args.test);
    let fs = folds(ts.len(), args.train, args.test, step, args.anchored);
    if fs.is_empty() {
        return Err(usage(format!(
            "walk-forward needs more than --train {} bars (the data has {}), and --test/--step > 0",
            args.train,
            ts.len()
        )));
    }
    let at = |i: usize| ts.get(i).map(|t| Ts(*t));
    let mut rows = Vec::new();
    let (mut is_sum, mut oos_sum, mut scored) = (0.0, 0.0, 0usize);
    let mut oos_growth = 1.0f64;
    let mut oos_trades = 0usize;
    for (train_start, test_start, test_end) in fs {
        let window = |from: Option<Ts>, to: Option<Ts>| StreamFilter {
            from: max_ts(base.filter.from, from),
            to: min_ts(base.filter.to, to),
            nyse_only: base.filter.nyse_only,
        };
        let train_filter = window(at(train_start), at(test_start));
        let mut is: Vec<(usize, RunResult)> = cands
            .par_iter()
            .enumerate()
            .map(|(i, c)| {
                let mut s = c.settings.clone();
                s.filter = train_filter.clone();
                run(src, &s).map(|r| (i, r))
            })
            .collect::<Result<_, DataError>>()?;
        is.sort_by(|a, b| rank(metric, &a.1, &b.1));
        let Some((best, is_run)) = is.first() else {
            continue;
        };
        let mut s = cands[*best].settings.clone();
        s.filter = window(at(train_start), at(test_end));
        s.trade_from = at(test_start);
        let oos = run(src, &s)?;
        let is_score = metric.of(is_run);
        let oos_score = metric.of(&oos);
        if let (Some(a), Some(b)) = (is_score, oos_score) {
            is_sum += a;
            oos_sum += b;
            scored += 1;
        }
        oos_growth *= 1.0 + oos.curve.total_return;
        oos_trades += oos.trades.trades;
        rows.push(json!({
            "train_from": super::run::when(at(train_start)),
            "test_from": super::run::when(at(test_start)),
            "test_to": super::run::when(at(test_end.saturating_sub(1))),
            "chosen": cands[*best].params.join(" "),
            "in_sample_score": opt_f(is_score),
            "out_of_sample": {
                "score": opt_f(oos_score),
                "total_return": oos.curve.total_return,
                "sharpe": opt_f(oos.curve.sharpe),
                "max_drawdown": oos.curve.max_drawdown,
                "trades": oos.trades.trades,
                "final_equity": oos.final_equity,
            },
        }));
    }
    let (is_mean, oos_mean) = if scored > 0 {
        (Some(is_sum / scored as f64), Some(oos_sum / scored as f64))
    } else {
        (None, None)
    };
    let mut out = json!({
        "metric": metric.name(),
        "walk_forward": {"train": args.train, "test": args.test, "step": step, "anchored": args.anchored},
        "folds": rows,
        "out_of_sample": {
            "folds": scored,
            "mean_score": opt_f(oos_mean),
            "compounded_return": oos_growth - 1.0,
            "trades": oos_trades,
        },
        "in_sample_mean_score": opt_f(is_mean),
    });
    if let Some(w) = overfit_warning(metric, is_mean, oos_mean) {
        out["warning"] = json!(w);
    }
    Ok(out)
}

/// The overfitting warning: out-of-sample below half of in-sample (for a positive in-sample
/// score).
pub fn overfit_warning(m: Metric, is_mean: Option<f64>, oos_mean: Option<f64>) -> Option<String> {
    let (is, oos) = (is_mean?, oos_mean?);
    (is > 0.0 && oos < 0.5 * is).then(|| {
        format!(
            "possible overfitting: mean out-of-sample {} {oos:.3} is below half the in-sample {is:.3}",
            m.name()
        )
    })
}

fn max_ts(a: Option<Ts>, b: Option<Ts>) -> Option<Ts> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn min_ts(a: Option<Ts>, b: Option<Ts>) -> Option<Ts> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_the_cartesian_product() {
        let g = grid_points(&["fast=5,10".into(), "slow=20,30,50".into()]).unwrap();
        assert_eq!(g.len(), 6);
        assert_eq!(g[0], vec!["fast=5".to_string(), "slow=20".to_string()]);
        assert_eq!(g[5], vec!["fast=10".to_string(), "slow=50".to_string()]);
        assert!(grid_points(&["fast".into()]).is_err());
        assert!(grid_points(&["fast=".into()]).is_err());
    }

    #[test]
    fn rolling_and_anchored_folds() {
        // 10 bars, train 4, test 3, step 3: tests start at 4 and 7.
        assert_eq!(folds(10, 4, 3, 3, false), vec![(0, 4, 7), (3, 7, 10)]);
        assert_eq!(folds(10, 4, 3, 3, true), vec![(0, 4, 7), (0, 7, 10)]);
        // The last test window is cut at the end.
        assert_eq!(
            folds(9, 4, 3, 2, false),
            vec![(0, 4, 7), (2, 6, 9), (4, 8, 9)]
        );
        assert!(folds(4, 4, 3, 3, false).is_empty());
    }

    #[test]
    fn overfit_warning_threshold() {
        assert!(overfit_warning(Metric::Sharpe, Some(2.0), Some(0.9)).is_some());
        assert!(overfit_warning(Metric::Sharpe, Some(2.0), Some(1.0)).is_none());
        assert!(overfit_warning(Metric::Sharpe, Some(-1.0), Some(-3.0)).is_none());
        assert!(overfit_warning(Metric::Sharpe, None, Some(1.0)).is_none());
    }
}
