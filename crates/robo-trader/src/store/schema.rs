//! The schema's migrations (embedded SQL, applied in order) and the per-connection settings.
//!
//! The version is `PRAGMA user_version`: migration `n` (1-based) moves it from `n - 1` to `n`
//! inside one `BEGIN IMMEDIATE` transaction, so two processes opening a fresh file at once
//! cannot both apply it, and a crash mid-migration leaves the old version intact.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Every migration, in order. Append only: never edit one that has shipped.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_symbol_feeds.sql"),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits for another writer before giving up. Generous: an operator's
/// kill switch must not fail because the trader's writer was committing a batch on a busy
/// disk (seen at 5 s under a full parallel test run).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Settings for a connection that writes: WAL, NORMAL sync (durable intents switch to FULL
/// for their own transaction), a busy timeout.
pub(crate) fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Setup(format!(
            "could not switch the database to WAL mode (it reports {mode:?})"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`]. Safe to call on every open.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    if user_version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let current = user_version(&tx)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    if current < 0 {
        return Err(StoreError::Setup(format!(
            "PRAGMA user_version is {current}"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Setup(format!("migration {} failed: {e}", i + 1)))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// For read-only openers: the schema must already be exactly ours.
pub(crate) fn check_version(conn: &Connection) -> Result<(), StoreError> {
    let v = user_version(conn)?;
    match v {
        v if v == SCHEMA_VERSION => Ok(()),
        v if v > SCHEMA_VERSION => Err(StoreError::TooNew {
            found: v,
            supported: SCHEMA_VERSION,
        }),
        v => Err(StoreError::TooOld {
            found: v,
            supported: SCHEMA_VERSION,
        }),
    }
}
