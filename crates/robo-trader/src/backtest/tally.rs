//! The watching side of a backtest run: the equity curve's and the buy-and-hold benchmark's
//! statistics, the exposure count, the trade book and the chart series.
//!
//! It reads the bars the engine saw, batch by batch, with the one equity point per timestamp
//! and the fills that the engine's side took in that batch. Nothing it computes feeds back into the engine,
//! so it can run on its own thread while the engine runs the next batch ([`TallyRun`]); it
//! does the same arithmetic in the same order wherever it runs, so the figures are identical.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use robo_core::types::{Bar, Side, Ts};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;

use super::metrics::{
    ClosedTrade, CurveStats, CurveSummary, TradeBook, TradeStatsAcc, TradeSummary,
};

/// Points per chart series (the curve is decimated beyond this).
pub const MAX_CHART_POINTS: usize = 2_000;
/// Closed trades and fills kept for the report; beyond this only the statistics grow.
pub const MAX_KEPT_TRADES: usize = 20_000;

/// Batches in flight from the engine's thread to the tally's: bounds the memory between them.
const IN_FLIGHT: usize = 8;

/// The engine's side of one curve point: the equity after every bar of `ts`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub ts: Ts,
    pub equity: Equity,
    /// A position was open.
    pub exposed: bool,
}

/// A point's equity as the engine's side read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Equity {
    /// The ledger's exact shadow in integers of 10^-8, below 2^53 in magnitude.
    Fixed(i64),
    /// Already the nearest `f64`.
    Float(f64),
}

impl Equity {
    /// The nearest `f64`: a fixed value under 2^53 is exact as an `f64`, so one correctly
    /// rounded division by 10^8 gives the nearest value of the same real number
    /// [`f64_of`] would divide.
    #[inline]
    pub fn f64(self) -> f64 {
        match self {
            Equity::Fixed(v) => v as f64 / 1e8,
            Equity::Float(f) => f,
        }
    }
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

/// The engine's side of one fill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillMark {
    pub symbol: usize,
    pub ts: Ts,
    pub side: Side,
    pub qty: i64,
    pub price: Decimal,
    pub commission: Decimal,
}

/// One batch, as the engine's side hands it over.
#[derive(Debug, Default)]
pub struct Batch {
    /// Every bar the engine saw, warm-up bars included, in its order.
    pub bars: Vec<Bar>,
    /// The points taken at this batch's timestamp changes (the point of a timestamp is taken
    /// at the first bar of the next one, so it belongs to that bar's batch).
    pub points: Vec<Point>,
    /// The fills booked while the engine ran these bars, in order.
    pub fills: Vec<FillMark>,
}

/// Keeps every `stride`-th point and doubles the stride when full, so a series of any length
/// ends with between `max` and `2 × max` evenly spaced points.
#[derive(Debug, Clone)]
pub struct Decimator<T> {
    pub points: Vec<T>,
    stride: u64,
    seen: u64,
    /// The index of the next point kept: a multiple of `stride` (no division per point).
    next: u64,
    max: usize,
}

impl<T: Copy> Decimator<T> {
    pub fn new(max: usize) -> Self {
        Decimator {
            points: Vec::new(),
            stride: 1,
            seen: 0,
            next: 0,
            max: max.max(2),
        }
    }

    #[inline]
    pub fn push(&mut self, p: T) {
        if self.seen == self.next {
            self.points.push(p);
            self.next += self.stride;
            if self.points.len() >= 2 * self.max {
                let mut k = 0;
                self.points.retain(|_| {
                    k += 1;
                    k % 2 == 1
                });
                self.stride *= 2;
                self.next = (self.seen / self.stride + 1) * self.stride;
            }
        }
        self.seen += 1;
    }
}

/// `d` as the nearest `f64`. The metrics need one per bar and timestamp, and the general
/// conversion is slow (128-bit arithmetic); a mantissa under 2^53 converts exactly to `f64`, so
/// one correctly rounded division by a power of ten gives the nearest value directly.
#[inline]
pub fn f64_of(d: Decimal) -> f64 {
    let m = d.mantissa();
    match POW10_F64.get(d.scale() as usize) {
        Some(p) if m.unsigned_abs() < 1u128 << 53 => m as i64 as f64 / p,
        _ => d.to_f64().unwrap_or(0.0),
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

/// What the tally needs to know about the run.
#[derive(Debug, Clone)]
pub struct TallySettings {
    /// The symbols, by `SymbolId` index.
    pub names: Vec<String>,
    pub cash: f64,
    pub periods_per_year: f64,
    pub risk_free: f64,
    /// Bars before this instant only warm the strategy up: no point, no benchmark.
    pub trade_from: Option<Ts>,
    /// Keep the chart series.
    pub detail: bool,
}

/// The curve, benchmark and chart state of one run.
#[derive(Debug, Clone)]
pub struct Tally {
    trade_from: Option<Ts>,
    /// The timestamp whose point comes next.
    cur: Option<Ts>,
    curve: CurveStats,
    bench: CurveStats,
    /// Equal-weight buy and hold: each symbol's starting allocation.
    alloc: f64,
    bench_shares: Vec<f64>,
    bench_last: Vec<f64>,
    bench_total: f64,
    points: u64,
    exposed: u64,
    eq_dec: Decimator<(i64, f64, f64)>,
    px_dec: Vec<Decimator<(i64, f64)>>,
    names: Vec<String>,
    detail: bool,
    fills: u64,
    notional: Decimal,
    book: TradeBook,
    stats: TradeStatsAcc,
    closed: Vec<ClosedTrade>,
    fill_rows: Vec<FillRow>,
}

/// The tally's figures at the end.
#[derive(Debug, Clone)]
pub struct TallyResult {
    pub curve: CurveSummary,
    pub benchmark: CurveSummary,
    /// Fraction of curve points with an open position.
    pub exposure: f64,
    /// (ts, equity, benchmark equity).
    pub equity_points: Vec<(i64, f64, f64)>,
    /// Per symbol (ts, close).
    pub prices: Vec<Vec<(i64, f64)>>,
    pub fills: u64,
    /// Σ price × qty over the fills.
    pub notional: Decimal,
    pub trades: TradeSummary,
    /// The first [`MAX_KEPT_TRADES`] closed trades and fills (with `detail`).
    pub closed: Vec<ClosedTrade>,
    pub fill_rows: Vec<FillRow>,
}

impl Tally {
    pub fn new(s: TallySettings) -> Self {
        let n = s.names.len();
        Tally {
            trade_from: s.trade_from,
            cur: None,
            curve: CurveStats::new(s.cash, s.periods_per_year, s.risk_free),
            bench: CurveStats::new(s.cash, s.periods_per_year, s.risk_free),
            alloc: if n > 0 { s.cash / n as f64 } else { 0.0 },
            bench_shares: vec![0.0; n],
            bench_last: vec![0.0; n],
            bench_total: s.cash,
            points: 0,
            exposed: 0,
            eq_dec: Decimator::new(MAX_CHART_POINTS),
            px_dec: if s.detail {
                (0..n).map(|_| Decimator::new(MAX_CHART_POINTS)).collect()
            } else {
                Vec::new()
            },
            book: TradeBook::new(n),
            names: s.names,
            detail: s.detail,
            fills: 0,
            notional: Decimal::ZERO,
            stats: TradeStatsAcc::default(),
            closed: Vec::new(),
            fill_rows: Vec::new(),
        }
    }

    /// One batch.
    pub fn take(&mut self, b: &Batch) {
        self.take_bars(&b.bars, &b.points);
        for f in &b.fills {
            self.fill(f);
        }
    }

    fn take_bars(&mut self, bars: &[Bar], points: &[Point]) {
        let mut pts = points.iter();
        for bar in bars {
            if self.trade_from.is_some_and(|f| bar.ts < f) {
                continue;
            }
            if self.cur != Some(bar.ts) {
                if self.cur.is_some() {
                    if let Some(&p) = pts.next() {
                        self.point(p);
                    }
                }
                self.cur = Some(bar.ts);
            }
            self.track_benchmark(bar);
            if let Some(d) = self.px_dec.get_mut(bar.symbol.index()) {
                d.push((bar.ts.0, f64_of(bar.close)));
            }
        }
        debug_assert!(pts.next().is_none(), "a point without its bar");
    }

    fn point(&mut self, p: Point) {
        let equity = p.equity.f64();
        self.curve.push(p.ts, equity);
        self.bench.push(p.ts, self.bench_total);
        self.points += 1;
        self.exposed += u64::from(p.exposed);
        self.eq_dec.push((p.ts.0, equity, self.bench_total));
    }

    fn fill(&mut self, f: &FillMark) {
        self.fills += 1;
        self.notional += f.price * Decimal::from(f.qty);
        self.book
            .fill(f.symbol, f.side, f.qty, f.price, f.commission, f.ts);
        for t in self.book.closed.drain(..) {
            self.stats.add(t.pnl);
            if self.detail && self.closed.len() < MAX_KEPT_TRADES {
                let name = self.names.get(t.symbol).map_or("?", String::as_str);
                self.closed.push(t.to_closed(name));
            }
        }
        if self.detail && self.fill_rows.len() < MAX_KEPT_TRADES {
            self.fill_rows.push(FillRow {
                symbol: f.symbol,
                ts: f.ts.0,
                side: f.side,
                qty: f.qty,
                price: f.price,
                commission: f.commission,
            });
        }
    }

    /// Equal-weight buy and hold: each symbol gets `alloc` of the starting cash, bought at its
    /// first bar's open (fractional shares, no commission), marked at each close.
    #[inline]
    fn track_benchmark(&mut self, bar: &Bar) {
        let i = bar.symbol.index();
        let (Some(sh), Some(lc)) = (self.bench_shares.get_mut(i), self.bench_last.get_mut(i))
        else {
            return;
        };
        let close = f64_of(bar.close);
        if *lc == 0.0 {
            let open = f64_of(bar.open);
            if open <= 0.0 {
                return;
            }
            *sh = self.alloc / open;
            *lc = open;
        }
        self.bench_total += *sh * (close - *lc);
        *lc = close;
    }

    /// The figures, after the last timestamp's point (`None` when no bar was traded).
    pub fn finish(mut self, last: Option<Point>) -> TallyResult {
        if let Some(p) = last {
            self.point(p);
            // The last point always belongs on the chart.
            if self.eq_dec.points.last().is_some_and(|l| l.0 != p.ts.0) {
                self.eq_dec
                    .points
                    .push((p.ts.0, p.equity.f64(), self.bench_total));
            }
        }
        TallyResult {
            curve: self.curve.finish(),
            benchmark: self.bench.finish(),
            exposure: if self.points > 0 {
                self.exposed as f64 / self.points as f64
            } else {
                0.0
            },
            equity_points: self.eq_dec.points,
            prices: self.px_dec.into_iter().map(|d| d.points).collect(),
            fills: self.fills,
            notional: self.notional,
            trades: self.stats.finish(),
            closed: self.closed,
            fill_rows: self.fill_rows,
        }
    }
}

/// Where the tally runs: in the engine's thread, or on its own, fed batches over a bounded
/// channel. A thread pays off only for long streamed runs; in-memory runs (the optimiser's,
/// which already fill every core) keep it inline.
pub enum TallyRun {
    Inline(Box<Tally>),
    Thread {
        tx: SyncSender<Batch>,
        handle: JoinHandle<Tally>,
    },
}

impl TallyRun {
    /// A tally on its own thread; each batch's bars go to `recycle` once tallied.
    pub fn spawn(t: Tally, recycle: SyncSender<Vec<Bar>>) -> Self {
        let (tx, rx) = sync_channel::<Batch>(IN_FLIGHT);
        let handle = std::thread::spawn(move || {
            let mut t = t;
            // The loop ends when the engine's side drops its sender.
            while let Ok(b) = rx.recv() {
                t.take(&b);
                let _ = recycle.try_send(b.bars);
            }
            t
        });
        TallyRun::Thread { tx, handle }
    }

    /// Tallies one batch; hands back the bars for reuse when it ran inline.
    pub fn take(&mut self, b: Batch) -> Option<Vec<Bar>> {
        match self {
            TallyRun::Inline(t) => {
                t.take(&b);
                Some(b.bars)
            }
            TallyRun::Thread { tx, .. } => {
                // A send fails only if the tally thread died; `finish` reports that.
                let _ = tx.send(b);
                None
            }
        }
    }

    /// Waits for every batch to be tallied and returns the figures, or `None` if the tally
    /// thread panicked.
    pub fn finish(self, last: Option<Point>) -> Option<TallyResult> {
        let t = match self {
            TallyRun::Inline(t) => *t,
            TallyRun::Thread { tx, handle } => {
                drop(tx);
                handle.join().ok()?
            }
        };
        Some(t.finish(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use robo_core::types::SymbolId;

    /// The division-based rule the decimator replaced: keep index `i` when `i % stride == 0`.
    fn by_modulo(n: u64, max: usize) -> Vec<u64> {
        let (mut pts, mut stride, max) = (Vec::new(), 1u64, max.max(2));
        for i in 0..n {
            if i % stride == 0 {
                pts.push(i);
                if pts.len() >= 2 * max {
                    let mut k = 0;
                    pts.retain(|_| {
                        k += 1;
                        k % 2 == 1
                    });
                    stride *= 2;
                }
            }
        }
        pts
    }

    fn bar(sym: u16, ts: i64, close: i64) -> Bar {
        let p = Decimal::new(close, 2);
        Bar {
            symbol: SymbolId(sym),
            ts: Ts(ts),
            open: p,
            high: p,
            low: p,
            close: p,
            volume: 1,
        }
    }

    proptest! {
        #[test]
        fn decimator_keeps_the_multiples_of_its_stride(n in 0u64..20_000, max in 0usize..40) {
            let mut d = Decimator::new(max);
            for i in 0..n {
                d.push(i);
            }
            prop_assert_eq!(d.points, by_modulo(n, max));
        }

        /// Tallying in batches of any size, with each point in its bar's batch, gives the
        /// figures of one pass over the whole run.
        #[test]
        fn batches_change_no_figure(
            closes in proptest::collection::vec((0u16..3, 1i64..100_000, any::<bool>()), 1..300),
            cut in 1usize..50,
            warm in 0i64..40,
        ) {
            let set = TallySettings {
                cash: 100_000.0, periods_per_year: 252.0, risk_free: 0.01,
                names: vec!["A".into(), "B".into(), "C".into()],
                trade_from: Some(Ts(warm)), detail: true,
            };
            // Two or three symbols share a timestamp when `same` says so.
            let mut bars = Vec::new();
            let mut ts = 0;
            for (k, &(sym, c, same)) in closes.iter().enumerate() {
                if !(same && k > 0) {
                    ts += 1;
                }
                bars.push(bar(sym, ts, c));
            }
            bars.sort_by_key(|b| (b.ts, b.symbol.0));
            bars.dedup_by_key(|b| (b.ts, b.symbol.0));
            // Points as the engine's side takes them: at each change of traded timestamp.
            let mut per_bar: Vec<Option<Point>> = Vec::new();
            let mut cur = None;
            for b in &bars {
                let mut p = None;
                if b.ts >= Ts(warm) && cur != Some(b.ts) {
                    if let Some(t) = cur {
                        p = Some(Point { ts: t, equity: Equity::Fixed(9_000_000_000_000 + t.0 * 1_234_567), exposed: t.0 % 2 == 0 });
                    }
                    cur = Some(b.ts);
                }
                per_bar.push(p);
            }
            let last = cur.map(|t| Point { ts: t, equity: Equity::Float(91_000.0), exposed: true });
            let mut whole = Tally::new(set.clone());
            let points: Vec<Point> = per_bar.iter().flatten().copied().collect();
            whole.take(&Batch { bars: bars.clone(), points, fills: Vec::new() });
            let whole = whole.finish(last);
            let mut parts = Tally::new(set);
            for (bs, ps) in bars.chunks(cut).zip(per_bar.chunks(cut)) {
                let points: Vec<Point> = ps.iter().flatten().copied().collect();
                parts.take(&Batch { bars: bs.to_vec(), points, fills: Vec::new() });
            }
            let parts = parts.finish(last);
            prop_assert_eq!(&whole.curve, &parts.curve);
            prop_assert_eq!(&whole.benchmark, &parts.benchmark);
            prop_assert_eq!(whole.exposure.to_bits(), parts.exposure.to_bits());
            prop_assert_eq!(&whole.equity_points, &parts.equity_points);
            prop_assert_eq!(&whole.prices, &parts.prices);
        }
    }
}
