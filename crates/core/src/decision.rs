//! The decision record: for one bar of one symbol, the indicator inputs, the signal, what the
//! engine did, and every risk check with pass or fail.
//!
//! A `Decision` is `Copy` and fixed-size (no `String`, no `Vec`), so recording it on the hot
//! path costs no allocation. Human text is produced by `Display` when it is read.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::risk::{CheckOutcome, RiskCheck, Verdict};
use crate::strategy::Signal;
use crate::types::{Price, SymbolId, Ts};

/// Up to 8 named indicator values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Inputs {
    items: [(&'static str, f64); 8],
    len: u8,
}

impl Inputs {
    pub fn clear(&mut self) {
        self.len = 0;
    }
    /// Adds a value; beyond 8 values the rest are dropped (a strategy has fewer).
    pub fn push(&mut self, name: &'static str, value: f64) {
        if (self.len as usize) < self.items.len() {
            self.items[self.len as usize] = (name, value);
            self.len += 1;
        }
    }
    pub fn as_slice(&self) -> &[(&'static str, f64)] {
        &self.items[..self.len as usize]
    }
    pub fn get(&self, name: &str) -> Option<f64> {
        self.as_slice()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

impl Serialize for Inputs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.len as usize))?;
        for (k, v) in self.as_slice() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// What the engine did with the bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Strategy still warming up.
    WarmingUp,
    /// No signal, or a signal that needs nothing (buy while already long).
    None,
    /// An entry order was placed.
    Entered,
    /// An exit order was placed.
    Exited,
    /// A stop (fixed, trailing or take-profit) triggered an exit.
    StopTriggered,
    /// The signal wanted an order and the risk gate refused it.
    Refused,
}

/// The result of every risk check on the order this bar wanted, if it wanted one.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Checks {
    #[serde(serialize_with = "ser_checks")]
    items: [Option<(RiskCheck, CheckOutcome)>; 16],
}

fn ser_checks<S: Serializer>(
    items: &[Option<(RiskCheck, CheckOutcome)>; 16],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(None)?;
    for (c, o) in items.iter().flatten() {
        seq.serialize_element(&CheckView {
            check: *c,
            outcome: *o,
        })?;
    }
    seq.end()
}

#[derive(Serialize)]
struct CheckView {
    check: RiskCheck,
    #[serde(flatten)]
    outcome: CheckOutcome,
}

impl Checks {
    pub fn clear(&mut self) {
        self.items = [None; 16];
    }
    pub fn push(&mut self, check: RiskCheck, outcome: CheckOutcome) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some((check, outcome));
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &(RiskCheck, CheckOutcome)> {
        self.items.iter().flatten()
    }
}

/// One decision: a bar, a signal, an action and the checks behind it.
/// Written for people and the store; never read back into the core.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    pub symbol: SymbolId,
    pub ts: Ts,
    pub close: Price,
    pub inputs: Inputs,
    pub signal: Signal,
    pub action: Action,
    pub verdict: Option<Verdict>,
    pub checks: Checks,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {} ({})",
            self.action,
            self.signal.direction.as_str(),
            self.signal.reason
        )
    }
}
