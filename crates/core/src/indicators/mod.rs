//! TODO: indicators.
