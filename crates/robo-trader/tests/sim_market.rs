//! The simulated market: determinism, bar invariants and the statistical shape of its output.

use robo_core::types::{Bar, SymbolId, Ts};
use robo_trader::sim::market::{history, SimMarket, DEFAULT_SYMBOLS};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

fn syms(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// `n` weekday-ish sessions at 14:30 UTC, one day apart.
fn sessions(n: usize) -> Vec<(Ts, u32)> {
    // 2024-01-02 14:30:00 UTC = 1704205800.
    (0..n)
        .map(|d| (Ts::from_secs(1_704_205_800 + 86_400 * d as i64), 390))
        .collect()
}

fn closes_of(bars: &[Bar], sym: u16) -> Vec<f64> {
    bars.iter()
        .filter(|b| b.symbol == SymbolId(sym))
        .map(|b| b.close.to_f64().unwrap())
        .collect()
}

fn default_syms() -> Vec<String> {
    DEFAULT_SYMBOLS.iter().map(|s| s.to_string()).collect()
}

#[test]
fn same_seed_same_bars_other_seed_other_bars() {
    let s = default_syms();
    let a = history(42, &s, &sessions(3));
    let b = history(42, &s, &sessions(3));
    let c = history(43, &s, &sessions(3));
    assert_eq!(a.len(), 22 * 390 * 3);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Not merely one bar apart: most closes differ.
    let differing = a.iter().zip(&c).filter(|(x, y)| x.close != y.close).count();
    assert!(differing > a.len() / 2, "only {differing} closes differ");
}

#[test]
fn a_symbols_stream_does_not_depend_on_the_others() {
    let alone = history(7, &syms(&["AAPL"]), &sessions(2));
    let crowd = history(7, &syms(&["MSFT", "ZZZ", "aapl", "QQQ"]), &sessions(2));
    let from_crowd: Vec<Bar> = crowd
        .iter()
        .filter(|b| b.symbol == SymbolId(2))
        .map(|b| Bar {
            symbol: SymbolId(0),
            ..*b
        })
        .collect();
    assert_eq!(alone, from_crowd);
}

#[test]
fn bars_are_ordered_stamped_and_consistent() {
    let s = default_syms();
    let sess = sessions(5);
    let bars = history(1, &s, &sess);
    for (i, b) in bars.iter().enumerate() {
        let minute_index = i / 22;
        let (open_ts, _) = sess[minute_index / 390];
        assert_eq!(b.symbol, SymbolId((i % 22) as u16));
        assert_eq!(b.ts, open_ts.plus_secs(60 * (minute_index % 390) as i64));
        for p in [b.open, b.high, b.low, b.close] {
            assert!(p > Decimal::ZERO, "non-positive price in {b:?}");
            assert_eq!(p.scale(), 2, "not 2 dp: {p}");
        }
        assert!(b.high >= b.open.max(b.close), "{b:?}");
        assert!(b.open.max(b.close) >= b.open.min(b.close));
        assert!(b.open.min(b.close) >= b.low, "{b:?}");
        assert!(b.volume > 0);
    }
    // Within a session each open is the previous close.
    for sym in 0..22u16 {
        let mine: Vec<&Bar> = bars.iter().filter(|b| b.symbol == SymbolId(sym)).collect();
        for w in mine.windows(2) {
            if (w[1].ts.0 - w[0].ts.0) == 60_000_000_000 {
                assert_eq!(w[1].open, w[0].close);
            }
        }
    }
}

#[test]
fn starting_prices_are_plausible() {
    let names = default_syms();
    let m = SimMarket::new(3, &names);
    for (i, n) in names.iter().enumerate() {
        let p = m.last_close(i);
        assert!(
            p >= Decimal::from(5) && p <= Decimal::from(600),
            "{n} starts at {p}"
        );
    }
    // Unknown symbols get a price from their name: inside $5..$500, same for any seed.
    let odd = syms(&["FOO", "BARX", "Q1", "LONGNAME"]);
    for i in 0..odd.len() {
        let p = SimMarket::new(1, &odd).last_close(i);
        assert!(
            p >= Decimal::from(5) && p <= Decimal::from(500),
            "{} starts at {p}",
            odd[i]
        );
        assert_eq!(p, SimMarket::new(99, &odd).last_close(i));
    }
    assert_eq!(m.last_close(22), Decimal::ZERO);
}

#[test]
fn stepping_api_matches_history() {
    let s = syms(&["SPY", "TSLA"]);
    let sess = sessions(2);
    let mut m = SimMarket::new(11, &s);
    let mut out = vec![];
    m.next_bars(&mut out);
    assert!(
        out.is_empty() && m.session_done(),
        "no bars before a session begins"
    );
    let mut all = vec![];
    for &(open, minutes) in &sess {
        m.begin_session(open, minutes);
        assert_eq!(m.minute(), 0);
        while !m.session_done() {
            m.next_bars(&mut out);
            assert_eq!(out.len(), 2);
            all.extend_from_slice(&out);
        }
        assert_eq!(m.minute(), 390);
        assert_eq!(m.last_close(1), all.last().unwrap().close);
        m.next_bars(&mut out);
        assert!(out.is_empty());
    }
    assert_eq!(all, history(11, &s, &sess));
}

#[test]
fn early_close_sessions_have_their_length() {
    let bars = history(5, &syms(&["AAPL"]), &[(Ts::from_secs(1_704_205_800), 210)]);
    assert_eq!(bars.len(), 210);
    assert_eq!(bars[209].ts, Ts::from_secs(1_704_205_800 + 209 * 60));
}

fn autocorr(x: &[f64], lag: usize) -> f64 {
    let n = x.len();
    let mean = x.iter().sum::<f64>() / n as f64;
    let var: f64 = x.iter().map(|v| (v - mean).powi(2)).sum();
    let cov: f64 = (lag..n).map(|i| (x[i] - mean) * (x[i - lag] - mean)).sum();
    cov / var
}

#[test]
fn volatility_clusters() {
    // 10 sessions of AAPL (3,900 bars); gaps excluded, intraday minute log returns only. The
    // U-shape alone also correlates |r|, so returns are first divided by each minute's average
    // |r| across sessions, leaving the GARCH clustering.
    let bars = history(2024, &syms(&["AAPL"]), &sessions(10));
    let mut abs_by_minute = vec![vec![]; 390];
    for (i, w) in bars.windows(2).enumerate() {
        let k = (i + 1) % 390;
        if k != 0 {
            let r = (w[1].close.to_f64().unwrap() / w[0].close.to_f64().unwrap()).ln();
            abs_by_minute[k].push(r.abs());
        }
    }
    let avg: Vec<f64> = abs_by_minute
        .iter()
        .map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
        .collect();
    let mut deseasonal = vec![];
    for (i, w) in bars.windows(2).enumerate() {
        let k = (i + 1) % 390;
        if k != 0 {
            let r = (w[1].close.to_f64().unwrap() / w[0].close.to_f64().unwrap()).ln();
            deseasonal.push(r.abs() / avg[k]);
        }
    }
    let ac1 = autocorr(&deseasonal, 1);
    assert!(ac1 > 0.05, "lag-1 autocorrelation of |r| is {ac1}");
    // And shocks themselves are nearly uncorrelated (a random walk, not a trend machine).
    let rets: Vec<f64> = bars
        .windows(2)
        .map(|w| (w[1].close.to_f64().unwrap() / w[0].close.to_f64().unwrap()).ln())
        .collect();
    let ac_r = autocorr(&rets, 1);
    assert!(ac_r.abs() < 0.1, "lag-1 autocorrelation of r is {ac_r}");
}

#[test]
fn volume_is_u_shaped() {
    let bars = history(9, &default_syms(), &sessions(5));
    let mut first = (0f64, 0usize);
    let mut mid = (0f64, 0usize);
    let mut last = (0f64, 0usize);
    for (i, b) in bars.iter().enumerate() {
        let k = (i / 22) % 390;
        let v = b.volume as f64;
        if k < 30 {
            first = (first.0 + v, first.1 + 1);
        } else if (180..210).contains(&k) {
            mid = (mid.0 + v, mid.1 + 1);
        } else if k >= 360 {
            last = (last.0 + v, last.1 + 1);
        }
    }
    let (f, m, l) = (
        first.0 / first.1 as f64,
        mid.0 / mid.1 as f64,
        last.0 / last.1 as f64,
    );
    assert!(
        f > 1.3 * m && l > 1.3 * m,
        "first {f}, midday {m}, last {l}"
    );
}

#[test]
fn sessions_open_with_a_gap() {
    let s = default_syms();
    let bars = history(77, &s, &sessions(10));
    let (mut gaps, mut total) = (0, 0);
    for sym in 0..22u16 {
        let mine: Vec<&Bar> = bars.iter().filter(|b| b.symbol == SymbolId(sym)).collect();
        for d in 1..10 {
            total += 1;
            if mine[d * 390].open != mine[d * 390 - 1].close {
                gaps += 1;
            }
        }
    }
    assert!(
        gaps * 10 >= total * 8,
        "{gaps} gaps in {total} session opens"
    );
}

#[test]
fn sma_crossover_trades_several_times_per_session() {
    let s = default_syms();
    let n_sessions = 5;
    let bars = history(31, &s, &sessions(n_sessions));
    let mut crosses = 0usize;
    for sym in 0..22u16 {
        let c = closes_of(&bars, sym);
        let mut last_sign = 0i32;
        for i in 19..c.len() {
            let fast = c[i - 9..=i].iter().sum::<f64>() / 10.0;
            let slow = c[i - 19..=i].iter().sum::<f64>() / 20.0;
            let sign = if fast > slow + 1e-9 {
                1
            } else if fast < slow - 1e-9 {
                -1
            } else {
                0
            };
            if sign != 0 {
                if last_sign != 0 && sign != last_sign {
                    crosses += 1;
                }
                last_sign = sign;
            }
        }
    }
    let per_session = crosses as f64 / (22 * n_sessions) as f64;
    assert!(
        per_session >= 5.0,
        "{per_session} crosses per symbol-session"
    );
}

#[test]
fn annualised_volatility_looks_like_stocks() {
    // 40 sessions of close-to-close minute log returns, gaps included.
    let s = default_syms();
    let n = 40;
    let bars = history(5, &s, &sessions(n));
    let mut vols = vec![];
    for sym in 0..22u16 {
        let c = closes_of(&bars, sym);
        let ss: f64 = c.windows(2).map(|w| (w[1] / w[0]).ln().powi(2)).sum();
        let ann = (ss / n as f64 * 252.0).sqrt();
        assert!(
            (0.12..=1.1).contains(&ann),
            "{} annualised vol {ann}",
            s[sym as usize]
        );
        vols.push(ann);
    }
    vols.sort_by(|a, b| a.total_cmp(b));
    let median = vols[11];
    assert!(
        (0.3..=0.8).contains(&median),
        "median annualised vol {median}"
    );
}

#[test]
fn daily_ranges_look_like_stocks() {
    // SPY's median intraday range should be a fraction of a percent to a few percent.
    let bars = history(8, &syms(&["SPY"]), &sessions(20));
    let mut ranges: Vec<f64> = bars
        .chunks(390)
        .map(|d| {
            let hi = d.iter().map(|b| b.high).max().unwrap().to_f64().unwrap();
            let lo = d.iter().map(|b| b.low).min().unwrap().to_f64().unwrap();
            hi / lo - 1.0
        })
        .collect();
    ranges.sort_by(|a, b| a.total_cmp(b));
    let median = ranges[10];
    assert!(
        (0.003..=0.03).contains(&median),
        "SPY median daily range {median}"
    );
}
