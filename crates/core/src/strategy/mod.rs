//! Strategies behind one trait. A strategy instance serves one symbol: it sees that symbol's
//! bars in order and answers each with a [`Signal`] that carries a strength and a reason.
//!
//! Parameters come from config ([`StrategyConfig`]); [`StrategyConfig::build`] makes one
//! instance per symbol.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::Inputs;
use crate::types::Bar;

pub mod breakout;
pub mod combiner;
pub mod mean_reversion;
pub mod momentum;
pub mod sma_crossover;

/// Which way a signal points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Buy,
    Sell,
    #[default]
    Hold,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Buy => "buy",
            Direction::Sell => "sell",
            Direction::Hold => "hold",
        }
    }
}

/// A human-readable reason without allocation: a template whose `{0}`, `{1}`, `{2}` are
/// replaced by `args` (two decimals) when displayed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reason {
    pub template: &'static str,
    pub args: [f64; 3],
}

impl Reason {
    pub const fn new(template: &'static str, args: [f64; 3]) -> Self {
        Reason { template, args }
    }
    pub const fn text(template: &'static str) -> Self {
        Reason {
            template,
            args: [0.0; 3],
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.template;
        while let Some(i) = rest.find('{') {
            f.write_str(&rest[..i])?;
            let tail = &rest[i..];
            let idx = match tail.as_bytes().get(1..3) {
                Some([d @ b'0'..=b'2', b'}']) => Some((d - b'0') as usize),
                _ => None,
            };
            match idx {
                Some(k) => {
                    write!(f, "{:.2}", self.args[k])?;
                    rest = &tail[3..];
                }
                None => {
                    f.write_str("{")?;
                    rest = &tail[1..];
                }
            }
        }
        f.write_str(rest)
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(_d: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "reasons are written for people, not read back",
        ))
    }
}

/// A strategy's answer to one bar.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Signal {
    pub direction: Direction,
    /// 0.0 ..= 1.0.
    pub strength: f64,
    pub reason: Reason,
}

impl Signal {
    pub const fn hold(reason: Reason) -> Self {
        Signal {
            direction: Direction::Hold,
            strength: 0.0,
            reason,
        }
    }
    pub fn buy(strength: f64, reason: Reason) -> Self {
        Signal {
            direction: Direction::Buy,
            strength: strength.clamp(0.0, 1.0),
            reason,
        }
    }
    pub fn sell(strength: f64, reason: Reason) -> Self {
        Signal {
            direction: Direction::Sell,
            strength: strength.clamp(0.0, 1.0),
            reason,
        }
    }
    pub const WARMING_UP: Signal = Signal::hold(Reason::text("warming up"));
}

/// One strategy instance for one symbol.
pub trait Strategy: Send {
    fn name(&self) -> &'static str;
    /// Bars needed before the first real signal.
    fn warmup_bars(&self) -> usize;
    /// True once `warmup_bars` bars have been seen.
    fn is_ready(&self) -> bool;
    /// Feeds the next bar (in time order) and returns the signal for it.
    fn on_bar(&mut self, bar: &Bar) -> Signal;
    /// The indicator values behind the last signal, for the decision record. Only called when
    /// decision records are on.
    fn inputs(&self, out: &mut Inputs);
}

/// SMA crossover: buy when the fast SMA crosses above the slow one, sell when it crosses below.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmaCrossoverParams {
    pub fast: usize,
    pub slow: usize,
}
impl Default for SmaCrossoverParams {
    fn default() -> Self {
        SmaCrossoverParams { fast: 10, slow: 20 }
    }
}

/// Momentum: RSI leaving oversold/overbought, confirmed by the MACD histogram's sign.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MomentumParams {
    pub rsi_period: usize,
    pub oversold: f64,
    pub overbought: f64,
    pub macd_fast: usize,
    pub macd_slow: usize,
    pub macd_signal: usize,
}
impl Default for MomentumParams {
    fn default() -> Self {
        MomentumParams {
            rsi_period: 14,
            oversold: 30.0,
            overbought: 70.0,
            macd_fast: 12,
            macd_slow: 26,
            macd_signal: 9,
        }
    }
}

/// Mean reversion: close outside the Bollinger band, with RSI and z-score agreeing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeanReversionParams {
    pub bb_period: usize,
    pub bb_k: f64,
    pub rsi_period: usize,
    pub rsi_low: f64,
    pub rsi_high: f64,
    pub z_period: usize,
    pub z_entry: f64,
}
impl Default for MeanReversionParams {
    fn default() -> Self {
        MeanReversionParams {
            bb_period: 20,
            bb_k: 2.0,
            rsi_period: 14,
            rsi_low: 30.0,
            rsi_high: 70.0,
            z_period: 20,
            z_entry: 2.0,
        }
    }
}

/// Breakout: close above the previous N-bar Donchian high on a volume surge (sell below the low).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakoutParams {
    pub period: usize,
    pub volume_factor: f64,
    pub volume_period: usize,
}
impl Default for BreakoutParams {
    fn default() -> Self {
        BreakoutParams {
            period: 20,
            volume_factor: 1.5,
            volume_period: 20,
        }
    }
}

/// How the combiner merges its members' signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CombineMethod {
    /// Majority of non-hold votes, at least `min_agree` of them.
    #[default]
    Vote,
    /// Sum of weight × strength × direction; acts past `threshold`.
    Weighted,
}

/// The combiner's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CombinerParams {
    pub method: CombineMethod,
    pub members: Vec<StrategyConfig>,
    /// One weight per member (Weighted); missing weights count as 1.
    pub weights: Vec<f64>,
    /// Weighted: |score| needed to act, as a fraction of the total weight.
    pub threshold: f64,
    /// Vote: non-hold votes needed in one direction.
    pub min_agree: usize,
}
impl Default for CombinerParams {
    fn default() -> Self {
        CombinerParams {
            method: CombineMethod::Vote,
            members: vec![
                StrategyConfig::Momentum(MomentumParams::default()),
                StrategyConfig::MeanReversion(MeanReversionParams::default()),
                StrategyConfig::Breakout(BreakoutParams::default()),
            ],
            weights: vec![],
            threshold: 0.5,
            min_agree: 2,
        }
    }
}

/// A strategy and its parameters, as written in config (`name = "sma_crossover"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum StrategyConfig {
    SmaCrossover(SmaCrossoverParams),
    Momentum(MomentumParams),
    MeanReversion(MeanReversionParams),
    Breakout(BreakoutParams),
    Combined(CombinerParams),
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig::SmaCrossover(SmaCrossoverParams::default())
    }
}

/// A parameter that makes no sense, named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("strategy parameter `{param}`: {problem}")]
pub struct ParamError {
    pub param: &'static str,
    pub problem: String,
}

impl StrategyConfig {
    pub const NAMES: [&'static str; 5] = [
        "sma_crossover",
        "momentum",
        "mean_reversion",
        "breakout",
        "combined",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            StrategyConfig::SmaCrossover(_) => "sma_crossover",
            StrategyConfig::Momentum(_) => "momentum",
            StrategyConfig::MeanReversion(_) => "mean_reversion",
            StrategyConfig::Breakout(_) => "breakout",
            StrategyConfig::Combined(_) => "combined",
        }
    }

    /// The default parameters of a strategy by name.
    pub fn default_for(name: &str) -> Option<Self> {
        Some(match name {
            "sma_crossover" | "sma" => StrategyConfig::SmaCrossover(Default::default()),
            "momentum" => StrategyConfig::Momentum(Default::default()),
            "mean_reversion" => StrategyConfig::MeanReversion(Default::default()),
            "breakout" => StrategyConfig::Breakout(Default::default()),
            "combined" | "combiner" => StrategyConfig::Combined(Default::default()),
            _ => return None,
        })
    }

    /// Checks the parameters, naming the first bad one.
    pub fn validate(&self) -> Result<(), ParamError> {
        fn pos(param: &'static str, v: usize) -> Result<(), ParamError> {
            if v == 0 {
                return Err(ParamError {
                    param,
                    problem: "must be at least 1".into(),
                });
            }
            Ok(())
        }
        fn finite_pos(param: &'static str, v: f64) -> Result<(), ParamError> {
            if !(v.is_finite() && v > 0.0) {
                return Err(ParamError {
                    param,
                    problem: format!("must be a positive number, got {v}"),
                });
            }
            Ok(())
        }
        match self {
            StrategyConfig::SmaCrossover(p) => {
                pos("fast", p.fast)?;
                pos("slow", p.slow)?;
                if p.fast >= p.slow {
                    return Err(ParamError {
                        param: "fast",
                        problem: format!("must be less than slow ({} >= {})", p.fast, p.slow),
                    });
                }
            }
            StrategyConfig::Momentum(p) => {
                pos("rsi_period", p.rsi_period)?;
                pos("macd_fast", p.macd_fast)?;
                pos("macd_slow", p.macd_slow)?;
                pos("macd_signal", p.macd_signal)?;
                if p.macd_fast >= p.macd_slow {
                    return Err(ParamError {
                        param: "macd_fast",
                        problem: "must be less than macd_slow".into(),
                    });
                }
                if !(0.0 < p.oversold && p.oversold < p.overbought && p.overbought < 100.0) {
                    return Err(ParamError {
                        param: "oversold",
                        problem: "need 0 < oversold < overbought < 100".into(),
                    });
                }
            }
            StrategyConfig::MeanReversion(p) => {
                pos("bb_period", p.bb_period)?;
                pos("rsi_period", p.rsi_period)?;
                pos("z_period", p.z_period)?;
                finite_pos("bb_k", p.bb_k)?;
                finite_pos("z_entry", p.z_entry)?;
                if !(0.0 < p.rsi_low && p.rsi_low < p.rsi_high && p.rsi_high < 100.0) {
                    return Err(ParamError {
                        param: "rsi_low",
                        problem: "need 0 < rsi_low < rsi_high < 100".into(),
                    });
                }
            }
            StrategyConfig::Breakout(p) => {
                pos("period", p.period)?;
                pos("volume_period", p.volume_period)?;
                finite_pos("volume_factor", p.volume_factor)?;
            }
            StrategyConfig::Combined(p) => {
                if p.members.is_empty() {
                    return Err(ParamError {
                        param: "members",
                        problem: "needs at least one strategy".into(),
                    });
                }
                for m in &p.members {
                    m.validate()?;
                }
                for w in &p.weights {
                    if !w.is_finite() || *w < 0.0 {
                        return Err(ParamError {
                            param: "weights",
                            problem: format!("must be >= 0, got {w}"),
                        });
                    }
                }
                if !(p.threshold.is_finite() && p.threshold >= 0.0 && p.threshold <= 1.0) {
                    return Err(ParamError {
                        param: "threshold",
                        problem: "must be between 0 and 1".into(),
                    });
                }
                pos("min_agree", p.min_agree)?;
            }
        }
        Ok(())
    }

    /// One new instance for one symbol.
    pub fn build(&self) -> Box<dyn Strategy> {
        match self {
            StrategyConfig::SmaCrossover(p) => Box::new(sma_crossover::SmaCrossover::new(*p)),
            StrategyConfig::Momentum(p) => Box::new(momentum::Momentum::new(*p)),
            StrategyConfig::MeanReversion(p) => Box::new(mean_reversion::MeanReversion::new(*p)),
            StrategyConfig::Breakout(p) => Box::new(breakout::Breakout::new(*p)),
            StrategyConfig::Combined(p) => Box::new(combiner::Combiner::new(p)),
        }
    }
}

/// A strategy the engine holds per symbol. The default (SMA crossover) is a concrete variant,
/// so the per-bar call can be inlined; the others go through the trait object.
pub enum AnyStrategy {
    SmaCrossover(sma_crossover::SmaCrossover),
    Other(Box<dyn Strategy>),
}

impl StrategyConfig {
    /// One new instance for one symbol, as the engine holds it.
    pub fn build_any(&self) -> AnyStrategy {
        match self {
            StrategyConfig::SmaCrossover(p) => {
                AnyStrategy::SmaCrossover(sma_crossover::SmaCrossover::new(*p))
            }
            other => AnyStrategy::Other(other.build()),
        }
    }
}

impl AnyStrategy {
    /// [`Strategy::on_bar`] for a caller that already has `fx(bar.close)` (the engine
    /// converts the close once per bar for the ledger's mark and the averages).
    #[inline]
    pub fn on_bar_given(&mut self, bar: &Bar, close_fx: Option<i64>) -> Signal {
        match self {
            AnyStrategy::SmaCrossover(s) => s.on_close_given(bar.close, close_fx),
            AnyStrategy::Other(s) => s.on_bar(bar),
        }
    }
}

impl Strategy for AnyStrategy {
    fn name(&self) -> &'static str {
        match self {
            AnyStrategy::SmaCrossover(s) => s.name(),
            AnyStrategy::Other(s) => s.name(),
        }
    }
    fn warmup_bars(&self) -> usize {
        match self {
            AnyStrategy::SmaCrossover(s) => s.warmup_bars(),
            AnyStrategy::Other(s) => s.warmup_bars(),
        }
    }
    #[inline]
    fn is_ready(&self) -> bool {
        match self {
            AnyStrategy::SmaCrossover(s) => s.is_ready(),
            AnyStrategy::Other(s) => s.is_ready(),
        }
    }
    #[inline]
    fn on_bar(&mut self, bar: &Bar) -> Signal {
        match self {
            AnyStrategy::SmaCrossover(s) => s.on_bar(bar),
            AnyStrategy::Other(s) => s.on_bar(bar),
        }
    }
    fn inputs(&self, out: &mut Inputs) {
        match self {
            AnyStrategy::SmaCrossover(s) => s.inputs(out),
            AnyStrategy::Other(s) => s.inputs(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_formats_args() {
        let r = Reason::new("fast {0} crossed above slow {1}", [10.123, 9.5, 0.0]);
        assert_eq!(r.to_string(), "fast 10.12 crossed above slow 9.50");
        assert_eq!(Reason::text("a {x} b").to_string(), "a {x} b");
    }

    #[test]
    fn config_parses_from_toml_like_json() {
        let c: StrategyConfig =
            serde_json::from_str(r#"{"name":"sma_crossover","fast":5,"slow":30}"#).unwrap();
        assert_eq!(
            c,
            StrategyConfig::SmaCrossover(SmaCrossoverParams { fast: 5, slow: 30 })
        );
        assert!(
            serde_json::from_str::<StrategyConfig>(r#"{"name":"sma_crossover","fats":5}"#).is_err()
        );
        assert!(
            StrategyConfig::SmaCrossover(SmaCrossoverParams { fast: 30, slow: 5 })
                .validate()
                .is_err()
        );
    }
}
