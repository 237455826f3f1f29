//! TODO(helper): MeanReversion strategy.
use super::{MeanReversionParams, Signal, Strategy};
use crate::decision::Inputs;
use crate::types::Bar;

pub struct MeanReversion;
impl MeanReversion {
    pub fn new(_p: MeanReversionParams) -> Self {
        todo!()
    }
}
impl Strategy for MeanReversion {
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
