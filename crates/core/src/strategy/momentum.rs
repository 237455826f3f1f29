//! TODO(helper): Momentum strategy.
use super::{MomentumParams, Signal, Strategy};
use crate::decision::Inputs;
use crate::types::Bar;

pub struct Momentum;
impl Momentum {
    pub fn new(_p: MomentumParams) -> Self {
        todo!()
    }
}
impl Strategy for Momentum {
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
