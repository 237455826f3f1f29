//! Market data files: CSV reading.
pub mod csv;
pub mod record;
