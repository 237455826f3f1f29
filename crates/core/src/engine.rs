//! TODO: engine.
