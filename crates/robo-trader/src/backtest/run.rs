//! One backtest run: the same `PaperSession` (engine + paper broker) that `run` drives, fed
//! from a [`BarStream`](super::data::BarStream), with the equity curve, the benchmark and the
//! trade book kept on the side.
//!
//! The curve has one point per distinct timestamp, taken after every bar of that timestamp
//! went through the session: equity = cash + positions at their last close. Nothing is closed
//! at the end; an order still working after the last bar never fills.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use robo_core::engine::{Engine, EngineConfig};
use robo_core::events::{Command, Record};
use robo_core::paper::{PaperBroker, PaperConfig};
use robo_core::risk::RiskLimits;
use robo_core::risk::Verdict;
use robo_core::session::{PaperSession, SessionHooks};
use robo_core::sizing::SizingConfig;
use robo_core::stops::StopConfig;
use robo_core::strategy::StrategyConfig;
use robo_core::types::{Tif, Ts};
use rust_decimal::Decimal;

use super::data::{BarFeed, DataError, DataSource, StreamFilter};
use super::metrics::{ts_text, ClosedTrade, CurveSummary, TradeSummary};
use super::tally::{f64_of, Equity, Point, Tally};
pub use super::tally::{FillRow, MAX_CHART_POINTS, MAX_KEPT_TRADES};

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub strategy: StrategyConfig,
    pub sizing: SizingConfig,
    pub cash: Decimal,
    pub paper: PaperConfig,
    pub risk: RiskLimits,
    pub stops: StopConfig,
    pub filter: StreamFilter,
    pub risk_free: f64,
    pub periods_per_year: f64,
    pub bar_seconds: i64,
    /// Bars before this instant only warm the strategy up (walk-forward test windows).
    pub trade_from: Option<Ts>,
    /// Keep fills, trades and chart series for a report.
    pub detail: bool,
    /// Write every decision and fill as a JSON line here (`--decisions-out`).
    pub decisions_out: Option<std::path::PathBuf>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub symbols: Vec<String>,
    pub bars: u64,
    /// Bars dropped by `--calendar nyse`.
    pub off_calendar: u64,
    /// Malformed rows skipped while streaming (`--skip-bad-rows`).
    pub skipped_rows: u64,
    pub fills: u64,
    /// Orders the risk gate refused, per check (`RiskCheck::as_str`).
    pub refusals: std::collections::BTreeMap<&'static str, u64>,
    pub final_equity: Decimal,
    pub cash: Decimal,
    pub commissions: Decimal,
    pub traded_notional: Decimal,
    pub curve: CurveSummary,
    pub benchmark: CurveSummary,
    pub trades: TradeSummary,
    /// Fraction of curve points with an open position.
    pub exposure: f64,
    /// Traded notional / average equity.
    pub turnover: f64,
    /// Positions still open at the end: (symbol, qty).
    pub open_positions: Vec<(String, i64)>,
    pub first_ts: Option<Ts>,
    pub last_ts: Option<Ts>,
    pub sim_s: f64,
    // Detail (empty unless `detail`):
    pub closed: Vec<ClosedTrade>,
    pub fill_rows: Vec<FillRow>,
    /// (ts, equity, benchmark equity).
    pub equity_points: Vec<(i64, f64, f64)>,
    /// Per symbol (ts, close).
    pub prices: Vec<Vec<(i64, f64)>>,
}

struct Hooks<'a> {
    names: &'a [String],
    tally: Tally,
    log: Option<DecisionLog>,
    /// Orders the risk gate refused, per check.
    refusals: std::collections::BTreeMap<&'static str, u64>,
}

/// `--decisions-out`: decisions and fills as JSON lines, with the texts `run`'s database
/// stores (RFC 3339 millisecond times, normalised decimals), so the two can be compared.
struct DecisionLog {
    w: BufWriter<File>,
    path: String,
    failed: Option<std::io::Error>,
}

fn ts_millis(t: Ts) -> String {
    t.to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn dec_text(d: Decimal) -> String {
    let n = d.normalize();
    if n.is_zero() {
        "0".into()
    } else {
        n.to_string()
    }
}

impl DecisionLog {
    fn write(&mut self, names: &[String], rec: &Record) {
        if self.failed.is_some() {
            return;
        }
        let name = |i: usize| names.get(i).map_or("?", String::as_str);
        let v = match rec {
            Record::Decision(d) => {
                let (verdict, check) = match &d.verdict {
                    None => (None, None),
                    Some(Verdict::Approved) => (Some("approved"), None),
                    Some(Verdict::Refused { check, .. }) => (Some("refused"), Some(check.as_str())),
                };
                serde_json::json!({
                    "kind": "decision",
                    "ts": ts_millis(d.ts),
                    "symbol": name(d.symbol.index()),
                    "close": dec_text(d.close),
                    "signal": d.signal.direction.as_str(),
                    "reason": d.signal.reason.to_string(),
                    "action": serde_json::to_value(d.action).unwrap_or_default(),
                    "verdict": verdict,
                    "refused_check": check,
                })
            }
            Record::Fill(f) => serde_json::json!({
                "kind": "fill",
                "ts": ts_millis(f.ts),
                "symbol": name(f.symbol.index()),
                "side": f.side.as_str(),
                "quantity": f.qty,
                "price": dec_text(f.price),
                "commission": dec_text(f.commission),
            }),
            _ => return,
        };
        if let Err(e) = writeln!(self.w, "{v}") {
            self.failed = Some(e);
        }
    }

    fn finish(mut self) -> Result<(), DataError> {
        let r = match self.failed.take() {
            Some(e) => Err(e),
            None => self.w.flush(),
        };
        r.map_err(|source| DataError::Io {
            path: self.path,
            source,
        })
    }
}

impl SessionHooks for Hooks<'_> {
    fn decision(&mut self, d: &robo_core::decision::Decision) {
        if let Some(log) = &mut self.log {
            log.write(self.names, &Record::Decision(Box::new(*d)));
        }
    }

    fn command(&mut self, cmd: &Command) {
        let Command::Persist(rec) = cmd else {
            return;
        };
        if let Some(log) = &mut self.log {
            log.write(self.names, rec);
        }
        match rec {
            Record::Risk(r) => *self.refusals.entry(r.check.as_str()).or_default() += 1,
            Record::Fill(f) => self.tally.fill(f),
            _ => {}
        }
    }
}

/// The ledger's equity for a curve point: its exact fixed-point shadow when it has one (the
/// tally converts it, off the engine's thread), else the `Decimal` sum as the nearest `f64`.
///
/// Inlined, with the rare `Decimal` path out of line and answering in a register: a call that
/// returns the enum through memory, re-read at once as wider words, stalls every point.
#[inline(always)]
fn equity_of(led: &robo_core::ledger::Ledger) -> Equity {
    match led.equity_fixed_i64() {
        // Under 2^53 the tally's one division is correctly rounded (see `Equity::f64`).
        Some(v) if v.unsigned_abs() < 1u64 << 53 => Equity::Fixed(v),
        _ => Equity::Float(decimal_equity(led)),
    }
}

#[cold]
#[inline(never)]
fn decimal_equity(led: &robo_core::ledger::Ledger) -> f64 {
    f64_of(led.equity())
}

/// Runs one backtest over `src`.
pub fn run(src: &DataSource, s: &RunSettings) -> Result<RunResult, DataError> {
    let t0 = Instant::now();
    let names = src.symbols();
    let n = names.len();
    let ecfg = EngineConfig {
        strategy: s.strategy.clone(),
        risk: s.risk.clone(),
        sizing: s.sizing,
        stops: s.stops,
        starting_cash: s.cash,
        bar_seconds: s.bar_seconds.max(1),
        decisions: s.decisions_out.is_some(),
        equity_every_secs: 0,
        // No session-close expiry in a backtest: an order works until its next bar.
        tif: Tif::Gtc,
        // Nobody subscribes to a backtest's live updates; its records are all it keeps.
        publish: false,
    };
    let engine = Engine::new(ecfg, n);
    let broker = PaperBroker::new(s.paper, n);
    let mut session = PaperSession::new(engine, broker);
    let mut stream = src.feed(&s.filter)?;
    let mut hooks = Hooks {
        names: &names,
        tally: Tally::new(
            names.clone(),
            f64_of(s.cash),
            s.periods_per_year,
            s.risk_free,
            s.detail,
            matches!(stream, BarFeed::Thread(_)),
        ),
        log: match &s.decisions_out {
            Some(p) => Some(DecisionLog {
                w: BufWriter::new(File::create(p).map_err(|source| DataError::Io {
                    path: p.display().to_string(),
                    source,
                })?),
                path: p.display().to_string(),
                failed: None,
            }),
            None => None,
        },
        refusals: Default::default(),
    };
    let mut bars = 0u64;
    let mut cur: Option<Ts> = None;
    let mut first_ts = None;
    let mut n_ts = 0u64;
    let mut spare = Vec::new();
    while let Some(batch) = stream.next_batch(std::mem::take(&mut spare))? {
        for bar in &batch {
            if s.trade_from.is_some_and(|f| bar.ts < f) {
                session.engine.warm_up(bar);
                let mut sink = Vec::new();
                session.broker.on_bar(bar, &mut sink);
                continue;
            }
            if cur != Some(bar.ts) {
                if let Some(t) = cur {
                    hooks.tally.point(point(t, &session));
                }
                cur = Some(bar.ts);
                first_ts.get_or_insert(bar.ts);
                // `run` prunes at each session close; a backtest has none, so finished orders
                // would pile up (hundreds of MB over millions of bars).
                n_ts += 1;
                if n_ts.is_multiple_of(4096) {
                    session.engine.prune_closed_orders();
                }
            }
            bars += 1;
            session.on_bar(bar, &mut hooks);
            hooks.tally.bar(bar);
        }
        hooks.tally.flush();
        spare = batch;
    }
    let last = cur.map(|t| point(t, &session));
    let tallied = hooks.tally.finish(last).ok_or_else(|| DataError::Corrupt {
        path: "<curves thread>".into(),
        why: "the metrics thread stopped".into(),
    })?;

    if let Some(log) = hooks.log.take() {
        log.finish()?;
    }
    let led = session.engine.ledger();
    let final_equity = led.equity();
    let turnover = if tallied.curve.avg_equity > 0.0 {
        f64_of(tallied.notional) / tallied.curve.avg_equity
    } else {
        0.0
    };
    let open_positions = led
        .positions()
        .filter(|p| p.qty != 0)
        .map(|p| {
            (
                names.get(p.symbol.index()).cloned().unwrap_or_default(),
                p.qty,
            )
        })
        .collect();
    Ok(RunResult {
        bars,
        refusals: hooks.refusals,
        off_calendar: stream.filtered(),
        skipped_rows: stream.skipped(),
        fills: tallied.fills,
        final_equity,
        cash: led.cash(),
        commissions: led.commissions(),
        traded_notional: tallied.notional,
        benchmark: tallied.benchmark,
        curve: tallied.curve,
        trades: tallied.trades,
        exposure: tallied.exposure,
        turnover,
        open_positions,
        first_ts,
        last_ts: cur,
        sim_s: t0.elapsed().as_secs_f64(),
        closed: tallied.closed,
        fill_rows: tallied.fill_rows,
        equity_points: tallied.equity_points,
        prices: tallied.prices,
        symbols: names,
    })
}

/// The engine's side of the curve point of `t`, once every bar of `t` went through.
#[inline(always)]
fn point(t: Ts, session: &PaperSession) -> Point {
    let led = session.engine.ledger();
    Point {
        ts: t,
        equity: equity_of(led),
        exposed: led.open_positions() > 0,
    }
}

/// Text of a timestamp for output.
pub fn when(t: Option<Ts>) -> Option<String> {
    t.map(ts_text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use robo_core::ledger::Ledger;
    use robo_core::types::{ClientOrderId, ExecId, Fill, Side, SymbolId};

    proptest! {
        /// The shadow-based equity is the very `f64` the `Decimal` one converts to.
        #[test]
        fn equity_from_the_shadow_is_the_same_f64(
            cash in 1i64..10_000_000_000,
            cash_scale in 0u32..4,
            fills in proptest::collection::vec((1i64..500, 1i64..1_000_000, 0u32..5, any::<bool>()), 0..6),
            mark in 1i64..1_000_000,
            mark_scale in 0u32..6,
        ) {
            let mut led = Ledger::new(1, Decimal::new(cash, cash_scale));
            for (k, (qty, px, scale, buy)) in fills.into_iter().enumerate() {
                let f = Fill {
                    exec_id: ExecId::from(format!("E{k}")),
                    order_id: ClientOrderId(k as u64 + 1),
                    symbol: SymbolId(0),
                    side: if buy { Side::Buy } else { Side::Sell },
                    qty,
                    price: Decimal::new(px, scale),
                    commission: Decimal::new(100, 2),
                    ts: Ts(k as i64),
                };
                let _ = led.try_apply_fill(&f);
            }
            led.mark(SymbolId(0), Decimal::new(mark, mark_scale));
            prop_assert_eq!(equity_of(&led).f64().to_bits(), f64_of(led.equity()).to_bits());
        }
    }
}
