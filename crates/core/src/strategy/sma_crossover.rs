//! TODO(helper): SmaCrossover strategy.
use super::{SmaCrossoverParams, Signal, Strategy};
use crate::decision::Inputs;
use crate::types::Bar;

pub struct SmaCrossover;
impl SmaCrossover {
    pub fn new(_p: SmaCrossoverParams) -> Self {
        todo!()
    }
}
impl Strategy for SmaCrossover {
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
