//! Combiner: several strategies on one symbol, merged into one signal by vote or by weight.
//!
//! Every member sees every bar (so all stay warm). The combiner warms up until its slowest
//! member is ready.
//! - Vote: a direction wins with at least `min_agree` votes and more votes than the opposite
//!   direction; strength is the mean strength of the members that voted for it.
//! - Weighted: score = Σ wᵢ·strengthᵢ·dirᵢ / Σ wᵢ (buy +1, sell −1, hold 0; missing weights
//!   are 1). It acts when |score| ≥ `threshold`, with strength |score|. Zero total weight
//!   always holds.

use super::{CombineMethod, CombinerParams, Direction, Reason, Signal, Strategy};
use crate::decision::Inputs;
use crate::types::Bar;

/// Names for the members' signed strengths in the decision record (first six members).
const MEMBER_NAMES: [&str; 6] = [
    "member_0", "member_1", "member_2", "member_3", "member_4", "member_5",
];

pub struct Combiner {
    method: CombineMethod,
    members: Vec<Box<dyn Strategy>>,
    weights: Vec<f64>,
    threshold: f64,
    min_agree: usize,
    /// The members' signals on the last bar, reused so a bar allocates nothing.
    last: Vec<Signal>,
    /// Buy votes, sell votes (Vote) or the score (Weighted) behind the last signal.
    tally: Tally,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tally {
    None,
    Votes { buy: usize, sell: usize },
    Score(f64),
}

impl Combiner {
    pub fn new(p: &CombinerParams) -> Self {
        let members = p.members.iter().map(|m| m.build()).collect();
        Combiner::with_members(p.method, members, &p.weights, p.threshold, p.min_agree)
    }

    /// A combiner over ready-made members. `weights[i]` applies to `members[i]`; missing or
    /// invalid (negative, non-finite) weights count as 1.
    pub fn with_members(
        method: CombineMethod,
        members: Vec<Box<dyn Strategy>>,
        weights: &[f64],
        threshold: f64,
        min_agree: usize,
    ) -> Self {
        let weights = (0..members.len())
            .map(|i| {
                weights
                    .get(i)
                    .copied()
                    .filter(|w| w.is_finite() && *w >= 0.0)
                    .unwrap_or(1.0)
            })
            .collect();
        let last = vec![Signal::WARMING_UP; members.len()];
        Combiner {
            method,
            members,
            weights,
            threshold,
            min_agree,
            last,
            tally: Tally::None,
        }
    }

    fn vote(&mut self) -> Signal {
        let (mut buy, mut sell, mut buy_str, mut sell_str) = (0usize, 0usize, 0.0, 0.0);
        for s in &self.last {
            match s.direction {
                Direction::Buy => {
                    buy += 1;
                    buy_str += s.strength;
                }
                Direction::Sell => {
                    sell += 1;
                    sell_str += s.strength;
                }
                Direction::Hold => {}
            }
        }
        self.tally = Tally::Votes { buy, sell };
        let n = self.last.len() as f64;
        let args = [buy as f64, sell as f64, n];
        if buy >= self.min_agree && buy > sell {
            Signal::buy(
                buy_str / buy as f64,
                Reason::new("{0} buy votes vs {1} sell of {2} members", args),
            )
        } else if sell >= self.min_agree && sell > buy {
            Signal::sell(
                sell_str / sell as f64,
                Reason::new("{1} sell votes vs {0} buy of {2} members", args),
            )
        } else {
            Signal::hold(Reason::new(
                "{0} buy and {1} sell votes of {2} members: no majority",
                args,
            ))
        }
    }

    fn weighted(&mut self) -> Signal {
        let total: f64 = self.weights.iter().sum();
        let signed: f64 = self
            .last
            .iter()
            .zip(&self.weights)
            .map(|(s, w)| w * s.strength * sign(s.direction))
            .sum();
        let score = if total > 0.0 { signed / total } else { 0.0 };
        self.tally = Tally::Score(score);
        let args = [score, self.threshold, total];
        if score > 0.0 && score >= self.threshold {
            Signal::buy(
                score,
                Reason::new("weighted score {0} ≥ threshold {1}", args),
            )
        } else if score < 0.0 && -score >= self.threshold {
            Signal::sell(
                -score,
                Reason::new("weighted score {0} ≤ −threshold {1}", args),
            )
        } else {
            Signal::hold(Reason::new("weighted score {0} within threshold {1}", args))
        }
    }
}

fn sign(d: Direction) -> f64 {
    match d {
        Direction::Buy => 1.0,
        Direction::Sell => -1.0,
        Direction::Hold => 0.0,
    }
}

impl Strategy for Combiner {
    fn name(&self) -> &'static str {
        "combined"
    }
    fn warmup_bars(&self) -> usize {
        self.members
            .iter()
            .map(|m| m.warmup_bars())
            .max()
            .unwrap_or(0)
    }
    fn is_ready(&self) -> bool {
        self.members.iter().all(|m| m.is_ready())
    }
    fn on_bar(&mut self, bar: &Bar) -> Signal {
        for (m, slot) in self.members.iter_mut().zip(self.last.iter_mut()) {
            *slot = m.on_bar(bar);
        }
        if !self.is_ready() {
            self.tally = Tally::None;
            return Signal::WARMING_UP;
        }
        match self.method {
            CombineMethod::Vote => self.vote(),
            CombineMethod::Weighted => self.weighted(),
        }
    }
    fn inputs(&self, out: &mut Inputs) {
        match self.tally {
            Tally::None => {}
            Tally::Votes { buy, sell } => {
                out.push("buy_votes", buy as f64);
                out.push("sell_votes", sell as f64);
            }
            Tally::Score(s) => out.push("score", s),
        }
        for (name, s) in MEMBER_NAMES.iter().zip(&self.last) {
            out.push(name, s.strength * sign(s.direction));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{BreakoutParams, MeanReversionParams, MomentumParams, StrategyConfig};
    use crate::types::{SymbolId, Ts};
    use rust_decimal::Decimal;

    /// A member that replays a script of (direction, strength), warm after `warmup` bars.
    struct Scripted {
        script: Vec<(Direction, f64)>,
        warmup: usize,
        seen: usize,
    }

    impl Strategy for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn warmup_bars(&self) -> usize {
            self.warmup
        }
        fn is_ready(&self) -> bool {
            self.seen >= self.warmup
        }
        fn on_bar(&mut self, _bar: &Bar) -> Signal {
            let (d, s) = self
                .script
                .get(self.seen)
                .copied()
                .unwrap_or((Direction::Hold, 0.0));
            self.seen += 1;
            match d {
                Direction::Buy => Signal::buy(s, Reason::text("scripted")),
                Direction::Sell => Signal::sell(s, Reason::text("scripted")),
                Direction::Hold => Signal::hold(Reason::text("scripted")),
            }
        }
        fn inputs(&self, _out: &mut Inputs) {}
    }

    fn member(script: &[(Direction, f64)], warmup: usize) -> Box<dyn Strategy> {
        Box::new(Scripted {
            script: script.to_vec(),
            warmup,
            seen: 0,
        })
    }

    fn bar(i: usize) -> Bar {
        let px = Decimal::new(10_000, 2);
        Bar {
            symbol: SymbolId(0),
            ts: Ts::from_secs(i as i64),
            open: px,
            high: px,
            low: px,
            close: px,
            volume: 1,
        }
    }

    use Direction::{Buy, Hold, Sell};

    /// Three members, warm from the start, each with a one-bar script.
    fn three(
        a: (Direction, f64),
        b: (Direction, f64),
        c: (Direction, f64),
    ) -> Vec<Box<dyn Strategy>> {
        vec![member(&[a], 0), member(&[b], 0), member(&[c], 0)]
    }

    #[test]
    fn vote_needs_min_agree_and_a_majority() {
        let mut c = Combiner::with_members(
            CombineMethod::Vote,
            three((Buy, 0.4), (Buy, 0.8), (Sell, 1.0)),
            &[],
            0.5,
            2,
        );
        let s = c.on_bar(&bar(0));
        assert_eq!(s.direction, Buy);
        assert!((s.strength - 0.6).abs() < 1e-12, "{}", s.strength);
        assert_eq!(s.reason.args, [2.0, 1.0, 3.0]);
        assert_eq!(
            s.reason.to_string(),
            "2.00 buy votes vs 1.00 sell of 3.00 members"
        );

        // One buy is not enough with min_agree 2.
        let mut c = Combiner::with_members(
            CombineMethod::Vote,
            three((Buy, 1.0), (Hold, 0.0), (Hold, 0.0)),
            &[],
            0.5,
            2,
        );
        assert_eq!(c.on_bar(&bar(0)).direction, Hold);

        // Two sells, two buys: a tie is no majority.
        let members = vec![
            member(&[(Buy, 1.0)], 0),
            member(&[(Buy, 1.0)], 0),
            member(&[(Sell, 1.0)], 0),
            member(&[(Sell, 1.0)], 0),
        ];
        let mut c = Combiner::with_members(CombineMethod::Vote, members, &[], 0.5, 2);
        assert_eq!(c.on_bar(&bar(0)).direction, Hold);

        let mut c = Combiner::with_members(
            CombineMethod::Vote,
            three((Sell, 0.5), (Sell, 1.0), (Hold, 0.0)),
            &[],
            0.5,
            2,
        );
        let s = c.on_bar(&bar(0));
        assert_eq!(s.direction, Sell);
        assert!((s.strength - 0.75).abs() < 1e-12);
        let mut inp = Inputs::default();
        c.inputs(&mut inp);
        assert_eq!(inp.get("sell_votes"), Some(2.0));
        assert_eq!(inp.get("member_1"), Some(-1.0));
    }

    #[test]
    fn weighted_score_against_threshold() {
        // (2·0.9·1 + 1·0.6·1 + 1·1.0·(−1)) / 4 = 1.4 / 4 = 0.35.
        let mk = || three((Buy, 0.9), (Buy, 0.6), (Sell, 1.0));
        let mut c = Combiner::with_members(CombineMethod::Weighted, mk(), &[2.0, 1.0], 0.3, 1);
        let s = c.on_bar(&bar(0));
        assert_eq!(s.direction, Buy);
        assert!((s.strength - 0.35).abs() < 1e-12);
        assert!((s.reason.args[0] - 0.35).abs() < 1e-12);
        let mut c = Combiner::with_members(CombineMethod::Weighted, mk(), &[2.0, 1.0], 0.4, 1);
        assert_eq!(c.on_bar(&bar(0)).direction, Hold);
        // Weighting the seller up flips it: (0.9 + 0.6 − 3·1.0) / 5 = −0.3.
        let mut c = Combiner::with_members(CombineMethod::Weighted, mk(), &[1.0, 1.0, 3.0], 0.3, 1);
        let s = c.on_bar(&bar(0));
        assert_eq!(s.direction, Sell);
        assert!((s.strength - 0.3).abs() < 1e-12);
        // Zero total weight never acts.
        let mut c = Combiner::with_members(CombineMethod::Weighted, mk(), &[0.0, 0.0, 0.0], 0.0, 1);
        assert_eq!(c.on_bar(&bar(0)).direction, Hold);
    }

    #[test]
    fn warms_up_until_the_slowest_member_is_ready() {
        let members = vec![member(&[(Buy, 1.0); 5], 1), member(&[(Buy, 1.0); 5], 3)];
        let mut c = Combiner::with_members(CombineMethod::Vote, members, &[], 0.5, 1);
        assert_eq!(c.warmup_bars(), 3);
        assert_eq!(c.on_bar(&bar(0)), Signal::WARMING_UP);
        assert_eq!(c.on_bar(&bar(1)), Signal::WARMING_UP);
        assert!(!c.is_ready());
        assert_eq!(c.on_bar(&bar(2)).direction, Buy);
        assert!(c.is_ready());
    }

    #[test]
    fn builds_members_from_config_and_holds_on_a_flat_market() {
        let p = CombinerParams::default();
        let mut c = Combiner::new(&p);
        let expected = [
            StrategyConfig::Momentum(MomentumParams::default())
                .build()
                .warmup_bars(),
            StrategyConfig::MeanReversion(MeanReversionParams::default())
                .build()
                .warmup_bars(),
            StrategyConfig::Breakout(BreakoutParams::default())
                .build()
                .warmup_bars(),
        ];
        assert_eq!(expected, [35, 20, 21]);
        assert_eq!(c.warmup_bars(), 35);
        for i in 0..100 {
            let s = c.on_bar(&bar(i));
            if i < 34 {
                assert_eq!(s, Signal::WARMING_UP, "bar {i}");
            } else {
                assert_eq!(s.direction, Hold, "bar {i}");
            }
        }
        let mut inp = Inputs::default();
        c.inputs(&mut inp);
        assert_eq!(inp.get("buy_votes"), Some(0.0));
        assert_eq!(inp.get("member_2"), Some(0.0));
    }
}
