//! TODO(helper): Breakout strategy.
use super::{BreakoutParams, Signal, Strategy};
use crate::decision::Inputs;
use crate::types::Bar;

pub struct Breakout;
impl Breakout {
    pub fn new(_p: BreakoutParams) -> Self {
        todo!()
    }
}
impl Strategy for Breakout {
    fn name(&self) -> &'static str {
        todo!()
    }
    fn warmup_bars(&self) -> usize {
        todo!()
    }
    fn is_ready(&self) -> bool {
        todo!()
    }
    fn on_bar(&mut self, _bar: &Bar) -> Signal {
        todo!()
    }
    fn inputs(&self, _out: &mut Inputs) {
        todo!()
    }
}
