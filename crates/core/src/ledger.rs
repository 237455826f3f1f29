//! TODO: ledger.
