//! TODO(helper): combiner.
use super::{CombinerParams, Signal, Strategy};
use crate::decision::Inputs;
use crate::types::Bar;

pub struct Combiner;
impl Combiner {
    pub fn new(_p: &CombinerParams) -> Self {
        todo!()
    }
}
impl Strategy for Combiner {
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
