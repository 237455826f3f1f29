//! Streaming indicators against reference vectors from TA-Lib / numpy
//! (tests/data/indicators/expected.csv, made by generate.py beside it from the first 300 IBM
//! daily bars), plus warm-up lengths, reset and edge cases computed by hand.

use std::collections::HashMap;

use robo_core::indicators::{
    Atr, Bands, Bollinger, Donchian, Ema, HistVol, Macd, Obv, Roc, Rsi, Sma, Vwap, ZScore,
};

const EXPECTED: &str = include_str!("data/indicators/expected.csv");
/// VWAP session length used by generate.py.
const SESSION: usize = 50;

struct Reference {
    cols: HashMap<String, Vec<Option<f64>>>,
}

impl Reference {
    fn load() -> Self {
        let mut lines = EXPECTED.lines();
        let header: Vec<String> = lines
            .next()
            .expect("header")
            .split(',')
            .map(str::to_owned)
            .collect();
        let mut cols: HashMap<String, Vec<Option<f64>>> =
            header.iter().map(|h| (h.clone(), Vec::new())).collect();
        for (ln, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "row {ln}");
            for (h, c) in header.iter().zip(cells) {
                let v = if c.is_empty() {
                    None
                } else {
                    Some(c.parse::<f64>().expect("float"))
                };
                cols.get_mut(h).expect("col").push(v);
            }
        }
        assert_eq!(cols["close"].len(), 300);
        Reference { cols }
    }
    fn input(&self, name: &str) -> Vec<f64> {
        self.cols[name]
            .iter()
            .map(|v| v.expect("input present"))
            .collect()
    }
    fn close(&self) -> Vec<f64> {
        self.input("close")
    }
    fn hlcv(&self) -> Vec<(f64, f64, f64, f64)> {
        let (h, l, c, v) = (
            self.input("high"),
            self.input("low"),
            self.input("close"),
            self.input("volume"),
        );
        (0..h.len()).map(|i| (h[i], l[i], c[i], v[i])).collect()
    }

    /// Checks `got` against column `name` to 1e-9 (relative above 1), including where each
    /// side is still warming up, and that the first value comes at bar `warmup`.
    fn check(&self, name: &str, got: &[Option<f64>], warmup: usize) {
        let want = self
            .cols
            .get(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        assert_eq!(got.len(), want.len(), "{name}: length");
        let first = want.iter().position(Option::is_some).expect("some value");
        assert_eq!(first + 1, warmup, "{name}: reference warm-up");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            match (g, w) {
                (Some(g), Some(w)) => {
                    let tol = 1e-9 * w.abs().max(1.0);
                    assert!((g - w).abs() <= tol, "{name}[{i}]: got {g}, want {w}");
                }
                (None, None) => {}
                _ => panic!("{name}[{i}]: got {g:?}, want {w:?}"),
            }
        }
    }
}

fn split(bands: &[Option<Bands>]) -> [Vec<Option<f64>>; 3] {
    [
        bands.iter().map(|b| b.map(|b| b.upper)).collect(),
        bands.iter().map(|b| b.map(|b| b.middle)).collect(),
        bands.iter().map(|b| b.map(|b| b.lower)).collect(),
    ]
}

#[test]
fn sma_matches_talib() {
    let r = Reference::load();
    for n in [10, 3] {
        let mut ind = Sma::new(n);
        assert_eq!(ind.warmup_period(), n);
        let got: Vec<_> = r.close().iter().map(|&x| ind.update(x)).collect();
        r.check(&format!("sma_{n}"), &got, n);
        assert!(ind.is_ready());
        assert_eq!(ind.value(), *got.last().unwrap());
    }
}

#[test]
fn ema_matches_talib() {
    let r = Reference::load();
    for n in [10, 3] {
        let mut ind = Ema::new(n);
        assert_eq!(ind.warmup_period(), n);
        let got: Vec<_> = r.close().iter().map(|&x| ind.update(x)).collect();
        r.check(&format!("ema_{n}"), &got, n);
        assert_eq!(ind.value(), *got.last().unwrap());
    }
}

#[test]
fn rsi_matches_talib() {
    let r = Reference::load();
    for n in [14, 2] {
        let mut ind = Rsi::new(n);
        assert_eq!(ind.warmup_period(), n + 1);
        let got: Vec<_> = r.close().iter().map(|&x| ind.update(x)).collect();
        r.check(&format!("rsi_{n}"), &got, n + 1);
    }
}

#[test]
fn macd_matches_talib() {
    let r = Reference::load();
    for (f, s, g) in [(12, 26, 9), (3, 7, 4)] {
        let mut ind = Macd::new(f, s, g);
        assert_eq!(ind.warmup_period(), s + g - 1);
        let got: Vec<_> = r.close().iter().map(|&x| ind.update(x)).collect();
        let tag = format!("{f}_{s}_{g}");
        let w = s + g - 1;
        r.check(
            &format!("macd_{tag}"),
            &got.iter().map(|o| o.map(|o| o.macd)).collect::<Vec<_>>(),
            w,
        );
        r.check(
            &format!("macdsignal_{tag}"),
            &got.iter().map(|o| o.map(|o| o.signal)).collect::<Vec<_>>(),
            w,
        );
        r.check(
            &format!("macdhist_{tag}"),
            &got.iter()
                .map(|o| o.map(|o| o.histogram))
                .collect::<Vec<_>>(),
            w,
        );
    }
}

#[test]
fn bollinger_matches_talib() {
    let r = Reference::load();
    for (n, k) in [(20, 2.0), (5, 1.5)] {
        let mut ind = Bollinger::new(n, k);
        assert_eq!(ind.warmup_period(), n);
        let got: Vec<_> = r.close().iter().map(|&x| ind.update(x)).collect();
        let [u, m, l] = split(&got);
        let tag = format!("{n}_{k:?}");
        r.check(&format!("bbupper_{tag}"), &u, n);
        r.check(&format!("bbmiddle_{tag}"), &m, n);
        r.check(&format!("bblower_{tag}"), &l, n);
    }
}

#[test]
fn atr_matches_talib() {
    let r = Reference::load();
    for n in [14, 3] {
        let mut ind = Atr::new(n);
        assert_eq!(ind.warmup_period(), n + 1);
        let got: Vec<_> = r
            .hlcv()
            .iter()
            .map(|&(h, l, c, _)| ind.update(h, l, c))
            .collect();
        r.check(&format!("atr_{n}"), &got, n + 1);
    }
}

#[test]
fn zscore_matches_talib_sma_and_stddev() {
    let r = Reference::load();
    for n in [20, 5] {
        let mut ind = ZScore::new(n);
        assert_eq!(ind.warmup_period(), n);
        let got: Vec<_> = r.close().iter().map(|&x| ind.update(x)).collect();
        r.check(&format!("zscore_{n}"), &got, n);
    }
}

#[test]
fn donchian_matches_talib_max_min() {
    let r = Reference::load();
    for n in [20, 5] {
        let mut ind = Donchian::new(n);
        assert_eq!(ind.warmup_period(), n);
        let got: Vec<_> = r
            .hlcv()
            .iter()
            .map(|&(h, l, _, _)| ind.update(h, l))
            .collect();
        let [u, m, l] = split(&got);
        r.check(&format!("donchupper_{n}"), &u, n);
        r.check(&format!("donchmiddle_{n}"), &m, n);
        r.check(&format!("donchlower_{n}"), &l, n);
    }
}

#[test]
fn roc_matches_talib() {
    let r = Reference::load();
    for n in [10, 1] {
        let mut ind = Roc::new(n);
        assert_eq!(ind.warmup_period(), n + 1);
        let got: Vec<_> = r.close().iter().map(|&x| ind.update(x)).collect();
        r.check(&format!("roc_{n}"), &got, n + 1);
    }
}

#[test]
fn obv_matches_talib() {
    let r = Reference::load();
    let mut ind = Obv::new();
    assert_eq!(ind.warmup_period(), 1);
    let got: Vec<_> = r
        .hlcv()
        .iter()
        .map(|&(_, _, c, v)| ind.update(c, v))
        .collect();
    r.check("obv", &got, 1);
}

#[test]
fn vwap_matches_numpy_with_session_resets() {
    let r = Reference::load();
    let mut ind = Vwap::new();
    assert_eq!(ind.warmup_period(), 1);
    let got: Vec<_> = r
        .hlcv()
        .iter()
        .enumerate()
        .map(|(i, &(h, l, c, v))| {
            if i % SESSION == 0 {
                ind.reset();
                assert!(!ind.is_ready());
            }
            ind.update(h, l, c, v)
        })
        .collect();
    r.check(&format!("vwap_{SESSION}"), &got, 1);
}

#[test]
fn hist_vol_matches_numpy() {
    let r = Reference::load();
    for n in [20, 5] {
        let mut ind = HistVol::new(n, 252.0);
        assert_eq!(ind.warmup_period(), n + 1);
        let got: Vec<_> = r.close().iter().map(|&x| ind.update(x)).collect();
        r.check(&format!("hv_{n}_252"), &got, n + 1);
    }
}

#[test]
fn reset_restarts_warm_up_and_reproduces_the_reference() {
    let r = Reference::load();
    let closes = r.close();
    let mut rsi = Rsi::new(14);
    let mut macd = Macd::new(12, 26, 9);
    let mut bb = Bollinger::new(20, 2.0);
    let mut atr = Atr::new(14);
    let mut don = Donchian::new(20);
    let mut hv = HistVol::new(20, 252.0);
    for &(h, l, c, _) in r.hlcv().iter().rev().take(100) {
        rsi.update(c);
        macd.update(c);
        bb.update(c);
        atr.update(h, l, c);
        don.update(h, l);
        hv.update(c);
    }
    assert!(rsi.is_ready() && macd.is_ready() && bb.is_ready() && atr.is_ready());
    rsi.reset();
    macd.reset();
    bb.reset();
    atr.reset();
    don.reset();
    hv.reset();
    assert!(!rsi.is_ready() && rsi.value().is_none());
    assert!(
        !macd.is_ready() && !bb.is_ready() && !atr.is_ready() && !don.is_ready() && !hv.is_ready()
    );
    let got: Vec<_> = closes.iter().map(|&x| rsi.update(x)).collect();
    r.check("rsi_14", &got, 15);
    let got: Vec<_> = closes
        .iter()
        .map(|&x| macd.update(x).map(|o| o.histogram))
        .collect();
    r.check("macdhist_12_26_9", &got, 34);
    let got: Vec<_> = closes
        .iter()
        .map(|&x| bb.update(x).map(|b| b.lower))
        .collect();
    r.check("bblower_20_2.0", &got, 20);
    let got: Vec<_> = r
        .hlcv()
        .iter()
        .map(|&(h, l, c, _)| atr.update(h, l, c))
        .collect();
    r.check("atr_14", &got, 15);
    let got: Vec<_> = r
        .hlcv()
        .iter()
        .map(|&(h, l, _, _)| don.update(h, l).map(|b| b.upper))
        .collect();
    r.check("donchupper_20", &got, 20);
    let got: Vec<_> = closes.iter().map(|&x| hv.update(x)).collect();
    r.check("hv_20_252", &got, 21);
}

#[test]
fn rsi_by_hand_and_flat_is_neutral() {
    // Changes +1, +1, −1 → seed gain 2/3, loss 1/3 → RSI 66.67; then −1:
    // gain (2/3·2 + 0)/3 = 4/9, loss (1/3·2 + 1)/3 = 5/9 → 44.44.
    let mut rsi = Rsi::new(3);
    assert_eq!(rsi.update(10.0), None);
    assert_eq!(rsi.update(11.0), None);
    assert_eq!(rsi.update(12.0), None);
    let a = rsi.update(11.0).unwrap();
    assert!((a - 200.0 / 3.0).abs() < 1e-12, "{a}");
    let b = rsi.update(10.0).unwrap();
    assert!((b - 400.0 / 9.0).abs() < 1e-12, "{b}");
    let mut flat = Rsi::new(3);
    let v: Vec<_> = [5.0; 6].iter().map(|&x| flat.update(x)).collect();
    assert_eq!(v[5], Some(50.0));
}

#[test]
fn flat_series_edge_cases() {
    let mut z = ZScore::new(4);
    let mut bb = Bollinger::new(4, 2.0);
    let mut hv = HistVol::new(3, 252.0);
    for _ in 0..10 {
        z.update(101.37);
        bb.update(101.37);
        hv.update(101.37);
    }
    assert_eq!(z.value(), Some(0.0));
    let b = bb.value().unwrap();
    assert_eq!((b.upper, b.lower), (b.middle, b.middle));
    assert_eq!(hv.value(), Some(0.0));
    // ROC of a zero base is 0, as in TA-Lib.
    let mut roc = Roc::new(1);
    roc.update(0.0);
    assert_eq!(roc.update(5.0), Some(0.0));
    let up = roc.update(6.0).unwrap();
    assert!((up - 20.0).abs() < 1e-12, "{up}");
}

#[test]
fn donchian_by_hand() {
    let mut d = Donchian::new(3);
    assert_eq!(d.update(10.0, 5.0), None);
    assert_eq!(d.update(12.0, 6.0), None);
    let b = d.update(11.0, 4.0).unwrap();
    assert_eq!((b.upper, b.middle, b.lower), (12.0, 8.0, 4.0));
    let b = d.update(9.0, 7.0).unwrap(); // window: (12,6) (11,4) (9,7)
    assert_eq!((b.upper, b.lower), (12.0, 4.0));
    let b = d.update(8.0, 8.0).unwrap(); // (11,4) (9,7) (8,8)
    assert_eq!((b.upper, b.lower), (11.0, 4.0));
    let b = d.update(8.0, 8.0).unwrap(); // (9,7) (8,8) (8,8)
    assert_eq!((b.upper, b.lower), (9.0, 7.0));
}

#[test]
fn zero_periods_are_treated_as_one() {
    let mut s = Sma::new(0);
    assert_eq!(s.warmup_period(), 1);
    assert_eq!(s.update(3.0), Some(3.0));
    let mut e = Ema::new(0);
    assert_eq!(e.update(3.0), Some(3.0));
    assert_eq!(e.update(5.0), Some(5.0));
    let m = Macd::new(26, 12, 9);
    assert_eq!(m.warmup_period(), 34);
}
