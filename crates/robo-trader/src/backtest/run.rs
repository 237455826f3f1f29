//! One backtest run: the same `PaperSession` (engine + paper broker) that `run` drives, fed
//! from a [`BarStream`], with the equity curve, the benchmark and the trade book kept on the
//! side.
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
use robo_core::types::{Bar, Side, Tif, Ts};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;

use super::data::{DataError, DataSource, StreamFilter};
use super::metrics::{
    ts_text, ClosedTrade, CurveStats, CurveSummary, TradeBook, TradeStatsAcc, TradeSummary,
};

/// Closed trades and fills kept for the report; beyond this only the statistics grow.
pub const MAX_KEPT_TRADES: usize = 20_000;
/// Points per chart series (the curve is decimated beyond this).
pub const MAX_CHART_POINTS: usize = 2_000;

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

/// One fill, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FillRow {
    pub symbol: usize,
    pub ts: i64,
    pub side: Side,
    pub qty: i64,
    pub price: Decimal,
    pub commission: Decimal,
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

/// Keeps every `stride`-th point and doubles the stride when full, so a series of any length
/// ends with between `max` and `2 × max` evenly spaced points.
#[derive(Debug, Clone)]
pub struct Decimator<T> {
    pub points: Vec<T>,
    stride: u64,
    seen: u64,
    max: usize,
}

impl<T: Copy> Decimator<T> {
    pub fn new(max: usize) -> Self {
        Decimator {
            points: Vec::new(),
            stride: 1,
            seen: 0,
            max: max.max(2),
        }
    }
    #[inline]
    pub fn push(&mut self, p: T) {
        if self.seen.is_multiple_of(self.stride) {
            self.points.push(p);
            if self.points.len() >= 2 * self.max {
                let mut k = 0;
                self.points.retain(|_| {
                    k += 1;
                    k % 2 == 1
                });
                self.stride *= 2;
            }
        }
        self.seen += 1;
    }
}

struct Hooks<'a> {
    names: &'a [String],
    fills: u64,
    notional: Decimal,
    book: TradeBook,
    stats: TradeStatsAcc,
    detail: bool,
    closed: Vec<ClosedTrade>,
    fill_rows: Vec<FillRow>,
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
        if let Record::Risk(r) = rec {
            *self.refusals.entry(r.check.as_str()).or_default() += 1;
        }
        let Record::Fill(f) = rec else {
            return;
        };
        self.fills += 1;
        self.notional += f.price * Decimal::from(f.qty);
        let i = f.symbol.index();
        self.book
            .fill(i, f.side, f.qty, f.price, f.commission, f.ts);
        for t in self.book.closed.drain(..) {
            self.stats.add(t.pnl);
            if self.detail && self.closed.len() < MAX_KEPT_TRADES {
                let name = self.names.get(t.symbol).map_or("?", String::as_str);
                self.closed.push(t.to_closed(name));
            }
        }
        if self.detail && self.fill_rows.len() < MAX_KEPT_TRADES {
            self.fill_rows.push(FillRow {
                symbol: i,
                ts: f.ts.0,
                side: f.side,
                qty: f.qty,
                price: f.price,
                commission: f.commission,
            });
        }
    }
}

/// `d` as the nearest `f64`. The metrics need one per bar and timestamp, and the general
/// conversion is slow (128-bit arithmetic); a mantissa under 2^53 converts exactly to `f64`, so
/// one correctly rounded division by a power of ten gives the nearest value directly.
#[inline]
fn f64_of(d: Decimal) -> f64 {
    let m = d.mantissa();
    match POW10_F64.get(d.scale() as usize) {
        Some(p) if m.unsigned_abs() < 1u128 << 53 => m as i64 as f64 / p,
        _ => d.to_f64().unwrap_or(0.0),
    }
}

/// The ledger's equity as the nearest `f64`, from its exact fixed-point shadow when it has
/// one: `v / 10^8` with `v` under 2^53 is one correctly rounded division of the same real
/// number [`f64_of`] divides, so the result is the same `f64`, without building the
/// `Decimal` sum on every timestamp.
#[inline]
fn equity_f64(led: &robo_core::ledger::Ledger) -> f64 {
    match led.equity_fixed() {
        Some(v) if v.unsigned_abs() < 1u128 << 53 => v as i64 as f64 / 1e8,
        _ => f64_of(led.equity()),
    }
}

/// 10^0 ..= 10^22, each exact in an `f64`.
const POW10_F64: [f64; 23] = {
    let mut t = [1.0f64; 23];
    let mut i = 1;
    while i < 23 {
        t[i] = t[i - 1] * 10.0;
        i += 1;
    }
    t
};

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
    let mut hooks = Hooks {
        names: &names,
        fills: 0,
        notional: Decimal::ZERO,
        book: TradeBook::new(n),
        stats: TradeStatsAcc::default(),
        detail: s.detail,
        closed: Vec::new(),
        fill_rows: Vec::new(),
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
    let cash0 = f64_of(s.cash);
    let mut curve = CurveStats::new(cash0, s.periods_per_year, s.risk_free);
    let mut bench = CurveStats::new(cash0, s.periods_per_year, s.risk_free);
    let alloc = if n > 0 { cash0 / n as f64 } else { 0.0 };
    let mut bench_shares = vec![0.0f64; n];
    let mut bench_last = vec![0.0f64; n];
    let mut bench_total = cash0;
    let mut eq_dec = Decimator::new(MAX_CHART_POINTS);
    let mut px_dec: Vec<Decimator<(i64, f64)>> = if s.detail {
        (0..n).map(|_| Decimator::new(MAX_CHART_POINTS)).collect()
    } else {
        Vec::new()
    };

    let mut stream = src.feed(&s.filter)?;
    let mut bars = 0u64;
    let mut cur: Option<Ts> = None;
    let mut first_ts = None;
    let mut n_ts = 0u64;
    let mut points = 0u64;
    let mut exposed = 0u64;
    let mut point = |t: Ts,
                     session: &PaperSession,
                     curve: &mut CurveStats,
                     bench: &mut CurveStats,
                     bench_total: f64,
                     eq_dec: &mut Decimator<(i64, f64, f64)>| {
        let led = session.engine.ledger();
        let eq = equity_f64(led);
        curve.push(t, eq);
        bench.push(t, bench_total);
        points += 1;
        if led.open_positions() > 0 {
            exposed += 1;
        }
        eq_dec.push((t.0, eq, bench_total));
    };
    while let Some(bar) = stream.next_bar()? {
        if s.trade_from.is_some_and(|f| bar.ts < f) {
            session.engine.warm_up(&bar);
            let mut sink = Vec::new();
            session.broker.on_bar(&bar, &mut sink);
            continue;
        }
        if cur != Some(bar.ts) {
            if let Some(t) = cur {
                point(
                    t,
                    &session,
                    &mut curve,
                    &mut bench,
                    bench_total,
                    &mut eq_dec,
                );
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
        session.on_bar(&bar, &mut hooks);
        track_benchmark(
            &bar,
            alloc,
            &mut bench_shares,
            &mut bench_last,
            &mut bench_total,
        );
        if let Some(d) = px_dec.get_mut(bar.symbol.index()) {
            d.push((bar.ts.0, f64_of(bar.close)));
        }
    }
    if let Some(t) = cur {
        point(
            t,
            &session,
            &mut curve,
            &mut bench,
            bench_total,
            &mut eq_dec,
        );
    }
    // The last point always belongs on the chart.
    if let (Some(t), Some(last)) = (cur, eq_dec.points.last().copied()) {
        if last.0 != t.0 {
            let eq = f64_of(session.engine.ledger().equity());
            eq_dec.points.push((t.0, eq, bench_total));
        }
    }

    if let Some(log) = hooks.log.take() {
        log.finish()?;
    }
    let led = session.engine.ledger();
    let final_equity = led.equity();
    let curve_sum = curve.finish();
    let turnover = if curve_sum.avg_equity > 0.0 {
        f64_of(hooks.notional) / curve_sum.avg_equity
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
        fills: hooks.fills,
        final_equity,
        cash: led.cash(),
        commissions: led.commissions(),
        traded_notional: hooks.notional,
        benchmark: bench.finish(),
        curve: curve_sum,
        trades: hooks.stats.finish(),
        exposure: if points > 0 {
            exposed as f64 / points as f64
        } else {
            0.0
        },
        turnover,
        open_positions,
        first_ts,
        last_ts: cur,
        sim_s: t0.elapsed().as_secs_f64(),
        closed: hooks.closed,
        fill_rows: hooks.fill_rows,
        equity_points: eq_dec.points,
        prices: px_dec.into_iter().map(|d| d.points).collect(),
        symbols: names,
    })
}

/// Equal-weight buy and hold: each symbol gets `alloc` of the starting cash, bought at its
/// first bar's open (fractional shares, no commission), marked at each close.
fn track_benchmark(bar: &Bar, alloc: f64, shares: &mut [f64], last: &mut [f64], total: &mut f64) {
    let i = bar.symbol.index();
    let (Some(sh), Some(lc)) = (shares.get_mut(i), last.get_mut(i)) else {
        return;
    };
    let close = f64_of(bar.close);
    if *lc == 0.0 {
        let open = f64_of(bar.open);
        if open <= 0.0 {
            return;
        }
        *sh = alloc / open;
        *lc = open;
    }
    *total += *sh * (close - *lc);
    *lc = close;
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
    use robo_core::types::{ClientOrderId, ExecId, Fill, SymbolId};

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
            prop_assert_eq!(equity_f64(&led).to_bits(), f64_of(led.equity()).to_bits());
        }
    }
}
