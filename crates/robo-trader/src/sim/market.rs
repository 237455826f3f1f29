//! The simulated market: a deterministic, seeded generator of regular-session minute bars for
//! any list of symbols, used by paper sessions without a broker and to preload history.
//!
//! Model, per symbol: GARCH(1,1) variance (alpha 0.06, beta 0.93) driving unit-variance
//! Student-t(5) shocks, an intraday U-shaped volatility and volume profile, an overnight gap at
//! each session open after the first, a very weak pull of the log price back to its starting
//! level (half-life about three years, so long histories stay in a sane range), cent-rounded
//! prices (open = previous close within a session), wicks proportional to the bar's volatility,
//! and integer volume that rises with the U-shape and with the size of the shock.
//!
//! Each symbol draws from its own xoshiro256** stream seeded from (seed, upper-cased symbol
//! name), so adding, removing or reordering symbols never changes another symbol's bars. The
//! PRNG lives here so that no crate upgrade changes the bars; the transcendental functions
//! (`ln`, `exp`, `cos`) are the platform's, so bars are bit-identical on one platform.
//!
//! The generator knows no calendar: the caller says where each session starts and how many
//! minutes it has.

use robo_core::types::{Bar, SymbolId, Ts};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// The default watchlist. Their starting prices and volatilities come from a built-in table;
/// any other symbol gets them from a hash of its name.
pub const DEFAULT_SYMBOLS: [&str; 22] = [
    "AAPL", "NVDA", "TSLA", "IXHL", "NUAI", "BZAI", "ELTP", "OPEN", "CEG", "VRT", "PLTR", "UPST",
    "TEM", "HTFL", "SDGR", "APLD", "SOFI", "CORZ", "WULF", "QQQ", "SPY", "MSFT",
];

/// The longest session accepted by [`SimMarket::begin_session`]; longer requests are clamped,
/// so a wild `minutes` cannot allocate without bound.
pub const MAX_SESSION_MINUTES: u32 = 1440;

/// Symbols beyond this many are ignored, since a [`SymbolId`] is a `u16`.
pub const MAX_SYMBOLS: usize = u16::MAX as usize + 1;

const GARCH_ALPHA: f64 = 0.06;
const GARCH_BETA: f64 = 0.93;
const T_DOF: f64 = 5.0;
/// Share of a day's variance that arrives overnight (the rest is spread over the session).
const OVERNIGHT_SHARE: f64 = 0.15;
const TRADING_DAYS: f64 = 252.0;
const REGULAR_MINUTES: f64 = 390.0;
/// ln 2 / (3 years of regular minutes).
const MEAN_REVERSION_PER_MINUTE: f64 = std::f64::consts::LN_2 / (3.0 * 252.0 * 390.0);
const NANOS_PER_MINUTE: i64 = 60 * 1_000_000_000;

/// (symbol, starting price in dollars, annualised volatility, mean shares per minute).
const TABLE: [(&str, f64, f64, f64); 22] = [
    ("AAPL", 190.0, 0.28, 120_000.0),
    ("NVDA", 120.0, 0.55, 600_000.0),
    ("TSLA", 250.0, 0.62, 250_000.0),
    ("IXHL", 5.40, 0.78, 40_000.0),
    ("NUAI", 6.20, 0.75, 30_000.0),
    ("BZAI", 7.80, 0.78, 35_000.0),
    ("ELTP", 8.50, 0.70, 25_000.0),
    ("OPEN", 6.50, 0.74, 150_000.0),
    ("CEG", 230.0, 0.45, 8_000.0),
    ("VRT", 110.0, 0.50, 20_000.0),
    ("PLTR", 75.0, 0.62, 200_000.0),
    ("UPST", 60.0, 0.75, 15_000.0),
    ("TEM", 55.0, 0.70, 12_000.0),
    ("HTFL", 30.0, 0.65, 8_000.0),
    ("SDGR", 22.0, 0.55, 4_000.0),
    ("APLD", 12.0, 0.78, 60_000.0),
    ("SOFI", 15.0, 0.55, 150_000.0),
    ("CORZ", 14.0, 0.70, 40_000.0),
    ("WULF", 8.0, 0.78, 50_000.0),
    ("QQQ", 480.0, 0.22, 100_000.0),
    ("SPY", 560.0, 0.20, 150_000.0),
    ("MSFT", 420.0, 0.26, 50_000.0),
];

/// SplitMix64: expands one `u64` into a well-mixed sequence (used to seed xoshiro).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over the upper-cased name, so "aapl" and "AAPL" are the same stream.
fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in name.trim().bytes() {
        h ^= u64::from(b.to_ascii_uppercase());
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// xoshiro256**: small, fast, and fixed here forever.
#[derive(Debug, Clone)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn from_seed(seed: u64) -> Self {
        let mut sm = seed;
        let mut s = [0u64; 4];
        for x in &mut s {
            *x = splitmix64(&mut sm);
        }
        if s == [0; 4] {
            // The all-zero state is xoshiro's one fixed point.
            s[0] = 1;
        }
        Rng { s }
    }

    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform on the open interval (0, 1), so `ln` is always finite.
    fn open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller, one draw per call: simpler state, same distribution).
    fn normal(&mut self) -> f64 {
        let u1 = self.open01();
        let u2 = self.open01();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Student-t(5) scaled to unit variance, capped at ±12 so one draw cannot wreck a series.
    fn student_t(&mut self) -> f64 {
        let z = self.normal();
        let mut chi2 = 0.0;
        for _ in 0..5 {
            let n = self.normal();
            chi2 += n * n;
        }
        let t = z / (chi2 / T_DOF).sqrt().max(1e-6);
        (t * ((T_DOF - 2.0) / T_DOF).sqrt()).clamp(-12.0, 12.0)
    }
}

/// Fixed traits of a symbol: where it starts, how much it moves, how much it trades.
#[derive(Debug, Clone, Copy)]
struct Profile {
    start: f64,
    ann_vol: f64,
    volume_per_minute: f64,
}

fn profile(name: &str) -> Profile {
    let upper = name.trim().to_ascii_uppercase();
    if let Some(&(_, start, ann_vol, volume_per_minute)) = TABLE.iter().find(|(n, ..)| *n == upper)
    {
        return Profile {
            start,
            ann_vol,
            volume_per_minute,
        };
    }
    // Unknown symbols: traits from the name alone, so they do not change with the seed.
    let mut r = Rng::from_seed(name_hash(&upper) ^ 0x005E_ED0F_57A7);
    let u_price = r.open01();
    let u_vol = r.open01();
    let u_volume = r.open01();
    let start = (5f64.ln() + u_price * (500f64.ln() - 5f64.ln())).exp();
    Profile {
        start: (start * 100.0).round() / 100.0,
        ann_vol: 0.25 + 0.45 * u_vol,
        volume_per_minute: (3_000f64.ln() + u_volume * (300_000f64.ln() - 3_000f64.ln())).exp(),
    }
}

/// One symbol's evolving state.
#[derive(Debug, Clone)]
struct SymState {
    rng: Rng,
    /// Latent (unrounded) log price; the observed close is this rounded to the cent.
    log_price: f64,
    anchor: f64,
    /// Conditional variance of the de-seasonalised minute return.
    h: f64,
    /// Unconditional variance of an average regular minute.
    var_minute: f64,
    omega: f64,
    gap_sd: f64,
    volume_per_minute: f64,
    close_cents: i64,
}

impl SymState {
    fn new(seed: u64, name: &str) -> Self {
        let p = profile(name);
        let mut mix = seed ^ name_hash(name).rotate_left(17);
        let stream_seed = splitmix64(&mut mix) ^ name_hash(name);
        let mut rng = Rng::from_seed(stream_seed);
        let day_var = p.ann_vol * p.ann_vol / TRADING_DAYS;
        let var_minute = (1.0 - OVERNIGHT_SHARE) * day_var / REGULAR_MINUTES;
        // Start each symbol in its own volatility regime rather than all at the mean.
        let h = var_minute * (0.5 * rng.normal()).exp();
        let log_price = p.start.ln();
        SymState {
            rng,
            log_price,
            anchor: log_price,
            h,
            var_minute,
            omega: (1.0 - GARCH_ALPHA - GARCH_BETA) * var_minute,
            gap_sd: (OVERNIGHT_SHARE * day_var).sqrt(),
            volume_per_minute: p.volume_per_minute,
            close_cents: to_cents(log_price),
        }
    }

    fn regime(&self) -> f64 {
        (self.h / self.var_minute).sqrt()
    }

    fn apply_gap(&mut self) {
        let g = self.gap_sd * self.regime().min(3.0) * self.rng.student_t();
        self.set_log_price(self.log_price + g);
        self.close_cents = to_cents(self.log_price);
    }

    fn set_log_price(&mut self, lp: f64) {
        // $0.05 .. $1M: cent rounding still means something and exp() stays finite.
        self.log_price = lp.clamp(0.05f64.ln(), 1_000_000f64.ln());
    }

    fn step(&mut self, symbol: SymbolId, ts: Ts, vol_shape: f64, volume_shape: f64) -> Bar {
        let z = self.rng.student_t();
        let sd_unit = self.h.sqrt();
        let sd = vol_shape * sd_unit;
        let pull = MEAN_REVERSION_PER_MINUTE * (self.log_price - self.anchor);
        let r = sd * z - 0.5 * sd * sd - pull;
        let e = sd_unit * z;
        self.h = (self.omega + GARCH_ALPHA * e * e + GARCH_BETA * self.h)
            .clamp(0.05 * self.var_minute, 50.0 * self.var_minute);

        let open = self.close_cents;
        self.set_log_price(self.log_price + r);
        let close = to_cents(self.log_price);
        self.close_cents = close;

        let price = self.log_price.exp();
        let wick_scale = 0.4 * sd * price * 100.0;
        let up = (self.rng.normal().abs() * wick_scale).round() as i64;
        let down = (self.rng.normal().abs() * wick_scale).round() as i64;
        let high = open.max(close).saturating_add(up.max(0));
        let low = (open.min(close) - down.max(0)).max(1);

        let noise = (0.35 * self.rng.normal() - 0.06125).exp();
        let activity = (1.0 + 0.6 * z.abs()) * self.regime().min(4.0);
        let volume = (self.volume_per_minute * volume_shape * noise * activity)
            .round()
            .max(1.0);

        Bar {
            symbol,
            ts,
            open: Decimal::new(open, 2),
            high: Decimal::new(high, 2),
            low: Decimal::new(low, 2),
            close: Decimal::new(close, 2),
            volume: volume as u64,
        }
    }
}

fn to_cents(log_price: f64) -> i64 {
    ((log_price.exp() * 100.0).round() as i64).max(1)
}

/// Volatility and volume multipliers for each minute of an `n`-minute session: high at the
/// open, low at midday, rising into the close. Volatility is scaled so its mean square is 1
/// and volume so its mean is 1, which keeps daily variance and volume independent of `n`.
fn intraday_shapes(n: u32) -> (Vec<f64>, Vec<f64>) {
    let nf = f64::from(n.max(1));
    let mut vol = Vec::with_capacity(n as usize);
    let mut volume = Vec::with_capacity(n as usize);
    for k in 0..n {
        let kf = f64::from(k);
        let x = (kf + 0.5) / nf;
        let edge = (2.0 * x - 1.0).powi(2);
        let from_close = nf - 1.0 - kf;
        vol.push(0.6 + 1.0 * edge + 0.9 * (-kf / 12.0).exp() + 0.3 * (-from_close / 10.0).exp());
        volume.push(0.5 + 1.5 * edge + 1.5 * (-kf / 10.0).exp() + 1.5 * (-from_close / 8.0).exp());
    }
    let rms = (vol.iter().map(|v| v * v).sum::<f64>() / nf).sqrt();
    let mean = volume.iter().sum::<f64>() / nf;
    vol.iter_mut().for_each(|v| *v /= rms);
    volume.iter_mut().for_each(|v| *v /= mean);
    (vol, volume)
}

/// A seeded market of minute bars, one stream per symbol. See the module docs for the model.
#[derive(Debug, Clone)]
pub struct SimMarket {
    symbols: Vec<SymState>,
    session_open: Ts,
    minutes: u32,
    minute: u32,
    sessions_begun: u64,
    vol_shape: Vec<f64>,
    volume_shape: Vec<f64>,
}

impl SimMarket {
    /// A market over `symbols` (bar `symbol` = `SymbolId(index)`). No session is open yet:
    /// call [`begin_session`](Self::begin_session) first.
    pub fn new(seed: u64, symbols: &[String]) -> Self {
        let symbols = symbols
            .iter()
            .take(MAX_SYMBOLS)
            .map(|s| SymState::new(seed, s))
            .collect();
        SimMarket {
            symbols,
            session_open: Ts(0),
            minutes: 0,
            minute: 0,
            sessions_begun: 0,
            vol_shape: Vec::new(),
            volume_shape: Vec::new(),
        }
    }

    /// Starts a new regular session of `minutes` bars (clamped to [`MAX_SESSION_MINUTES`]) at
    /// `session_open`. Every session after the first opens with an overnight gap.
    pub fn begin_session(&mut self, session_open: Ts, minutes: u32) {
        let minutes = minutes.min(MAX_SESSION_MINUTES);
        if self.sessions_begun > 0 {
            self.symbols.iter_mut().for_each(SymState::apply_gap);
        }
        self.sessions_begun += 1;
        self.session_open = session_open;
        self.minute = 0;
        if minutes != self.minutes || self.vol_shape.is_empty() {
            (self.vol_shape, self.volume_shape) = intraday_shapes(minutes);
        }
        self.minutes = minutes;
    }

    /// Clears `out` and fills it with one bar per symbol for the session's next minute `k`
    /// (`ts` = session open + k minutes). Leaves `out` empty when no session is open or the
    /// session is done.
    pub fn next_bars(&mut self, out: &mut Vec<Bar>) {
        out.clear();
        if self.session_done() {
            return;
        }
        let k = self.minute as usize;
        let (Some(&vs), Some(&ws)) = (self.vol_shape.get(k), self.volume_shape.get(k)) else {
            return;
        };
        let ts = Ts(self
            .session_open
            .0
            .saturating_add(i64::from(self.minute) * NANOS_PER_MINUTE));
        out.reserve(self.symbols.len());
        for (i, s) in self.symbols.iter_mut().enumerate() {
            // `new` keeps at most MAX_SYMBOLS, so every index fits a u16.
            out.push(s.step(SymbolId(i as u16), ts, vs, ws));
        }
        self.minute += 1;
    }

    /// Bars generated so far in the current session (the next bar's minute index).
    pub fn minute(&self) -> u32 {
        self.minute
    }

    /// True when the current session has produced all its bars, or none was begun.
    pub fn session_done(&self) -> bool {
        self.minute >= self.minutes
    }

    /// The last close of symbol `sym` (its starting price before any bar, or the gapped open
    /// once a later session has begun). Zero for an index out of range.
    pub fn last_close(&self, sym: usize) -> Decimal {
        self.symbols
            .get(sym)
            .map_or(Decimal::ZERO, |s| Decimal::new(s.close_cents, 2))
    }

    /// Resumes symbol `sym` from `price` (e.g. the last mark of a previous run): the next bar
    /// opens there (after the gap, if a later session begins first) and the slow pull toward
    /// the starting price now pulls toward `price`. Ignored for a price that is not positive
    /// or an index out of range.
    pub fn set_last_close(&mut self, sym: usize, price: Decimal) {
        let Some(s) = self.symbols.get_mut(sym) else {
            return;
        };
        let Some(p) = price.to_f64().filter(|p| p.is_finite() && *p > 0.0) else {
            return;
        };
        s.set_log_price(p.ln());
        s.anchor = s.log_price;
        s.close_cents = to_cents(s.log_price);
    }

    /// How many symbols this market generates.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

/// Generates the given sessions (open instant, minutes) in full: bars in time order, all
/// symbols of a minute together, in symbol order.
pub fn history(seed: u64, symbols: &[String], sessions: &[(Ts, u32)]) -> Vec<Bar> {
    let mut market = SimMarket::new(seed, symbols);
    let total: usize = sessions
        .iter()
        .map(|&(_, m)| m.min(MAX_SESSION_MINUTES) as usize * market.len())
        .sum();
    let mut out = Vec::with_capacity(total);
    let mut minute = Vec::with_capacity(market.len());
    for &(open, minutes) in sessions {
        market.begin_session(open, minutes);
        while !market.session_done() {
            market.next_bars(&mut minute);
            out.extend_from_slice(&minute);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values of xoshiro256** seeded by SplitMix64(0), from the published C code
    /// (splitmix64.c / xoshiro256starstar.c at prng.di.unimi.it).
    #[test]
    fn splitmix_matches_reference() {
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn xoshiro_matches_reference() {
        // State {1, 2, 3, 4}: first outputs 11520, 0, 1509978240, 1215971899390074240.
        let mut r = Rng { s: [1, 2, 3, 4] };
        assert_eq!(r.next_u64(), 11520);
        assert_eq!(r.next_u64(), 0);
        assert_eq!(r.next_u64(), 1_509_978_240);
        assert_eq!(r.next_u64(), 1_215_971_899_390_074_240);
    }

    #[test]
    fn shapes_are_u_shaped_and_normalised() {
        let (vol, volume) = intraday_shapes(390);
        let ms: f64 = vol.iter().map(|v| v * v).sum::<f64>() / 390.0;
        assert!((ms - 1.0).abs() < 1e-9);
        assert!((volume.iter().sum::<f64>() / 390.0 - 1.0).abs() < 1e-9);
        assert!(vol[0] > vol[195] && vol[389] > vol[195]);
        assert!(volume[0] > volume[195] && volume[389] > volume[195]);
    }
}
