//! The watching side of a backtest run: the equity curve's and the buy-and-hold benchmark's
//! statistics, the exposure count, the trade book and the chart series. Nothing here feeds
//! back into the engine.
//!
//! It runs in the engine's thread, bar by bar: its floating-point chains (a division per
//! point) then overlap the engine's work. Measured on the 10M-bar benchmark, the same work on
//! a thread of its own, or on the reader thread, cost 40–70% more CPU and no wall time.

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

/// The curve, benchmark, trade and chart state of one run.
#[derive(Debug, Clone)]
pub struct Tally {
    curve: CurveStats,
    bench: CurveStats,
    points: u64,
    exposed: u64,
    /// Equal-weight buy and hold: each symbol's starting allocation.
    alloc: f64,
    shares: Vec<f64>,
    last: Vec<f64>,
    total: f64,
    eq_dec: Decimator<(i64, f64, f64)>,
    px_dec: Vec<Decimator<(i64, f64)>>,
    /// The symbols, by `SymbolId` index.
    names: Vec<String>,
    /// Keep the charts and the first trades and fills for the report.
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
    /// `cash` is also the benchmark's, split equally over the symbols.
    pub fn new(
        names: Vec<String>,
        cash: f64,
        periods_per_year: f64,
        risk_free: f64,
        detail: bool,
    ) -> Self {
        let n = names.len();
        Tally {
            curve: CurveStats::new(cash, periods_per_year, risk_free),
            bench: CurveStats::new(cash, periods_per_year, risk_free),
            points: 0,
            exposed: 0,
            alloc: if n > 0 { cash / n as f64 } else { 0.0 },
            shares: vec![0.0; n],
            last: vec![0.0; n],
            total: cash,
            eq_dec: Decimator::new(MAX_CHART_POINTS),
            px_dec: if detail {
                (0..n).map(|_| Decimator::new(MAX_CHART_POINTS)).collect()
            } else {
                Vec::new()
            },
            book: TradeBook::new(n),
            names,
            detail,
            fills: 0,
            notional: Decimal::ZERO,
            stats: TradeStatsAcc::default(),
            closed: Vec::new(),
            fill_rows: Vec::new(),
        }
    }

    /// A traded bar (not a warm-up one), after the engine saw it: the benchmark and the
    /// price chart.
    #[inline]
    pub fn bar(&mut self, bar: &Bar) {
        self.track(bar);
        if let Some(d) = self.px_dec.get_mut(bar.symbol.index()) {
            d.push((bar.ts.0, f64_of(bar.close)));
        }
    }

    /// Equal-weight buy and hold: each symbol gets `alloc` of the starting cash, bought at its
    /// first bar's open (fractional shares, no commission), marked at each close.
    #[inline]
    fn track(&mut self, bar: &Bar) {
        let i = bar.symbol.index();
        let (Some(sh), Some(lc)) = (self.shares.get_mut(i), self.last.get_mut(i)) else {
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
        self.total += *sh * (close - *lc);
        *lc = close;
    }

    /// The point of a timestamp, once every bar of it went through the engine.
    #[inline]
    pub fn point(&mut self, p: Point) {
        let equity = p.equity.f64();
        self.curve.push(p.ts, equity);
        self.bench.push(p.ts, self.total);
        self.points += 1;
        self.exposed += u64::from(p.exposed);
        self.eq_dec.push((p.ts.0, equity, self.total));
    }

    pub fn fill(&mut self, f: &FillMark) {
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

    /// The figures, after the last timestamp's point (`None` when no bar was traded).
    pub fn finish(mut self, last: Option<Point>) -> TallyResult {
        if let Some(p) = last {
            self.point(p);
            // The last point always belongs on the chart.
            if self.eq_dec.points.last().is_some_and(|l| l.0 != p.ts.0) {
                self.eq_dec
                    .points
                    .push((p.ts.0, p.equity.f64(), self.total));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        #[test]
        fn decimator_keeps_the_multiples_of_its_stride(n in 0u64..20_000, max in 0usize..40) {
            let mut d = Decimator::new(max);
            for i in 0..n {
                d.push(i);
            }
            prop_assert_eq!(d.points, by_modulo(n, max));
        }

        /// A fixed equity converts to the `f64` the `Decimal` of the same value does.
        #[test]
        fn fixed_equity_is_the_decimal_f64(v in -(1i64 << 53) + 1..(1i64 << 53)) {
            let d = Decimal::from_i128_with_scale(i128::from(v), 8);
            prop_assert_eq!(Equity::Fixed(v).f64().to_bits(), f64_of(d).to_bits());
        }
    }
}
