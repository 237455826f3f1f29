//! The SQLite store: orders, fills, FIFO lots and positions, equity, decisions, risk events,
//! the trading state, runs and connection events, in one WAL-mode file (docs/SCHEMA.md).
//!
//! Two write paths. [`StoreWriter`] batches the engine's records on its own thread so the
//! engine never waits on the disk; order intents go through it too, synchronously and durably
//! (`synchronous=FULL`), because an order must be on disk before a broker sees it. [`Store`]
//! writes directly for the few things that happen outside the event loop (the `kill-switch`
//! CLI, run bookkeeping) and serves every read: the restart state and the `status` summary,
//! both of which work while another process is writing.
//!
//! Money and prices are stored as exact decimal text, timestamps as RFC 3339 UTC text.

mod codec;
mod fifo;
mod ops;
mod read;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags};

use robo_core::types::{Money, OrderRequest, Price, Qty, Side, TradingState, Ts};

pub use ops::{BrokerAccountRow, SymbolFeedState, WriteOp};
pub use read::{FillRow, OrderRow, PersistedState, RunRow};
pub use schema::SCHEMA_VERSION;
pub use writer::{StoreWriter, WriterOptions, WriterStats};

use codec::{dec_text, parse_dec, parse_side, ts_text, At};

/// Everything the store can refuse or fail at. Messages say what to do next where they can.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot set up the database: {0}")]
    Setup(String),
    #[error("no database at {0}; run robo-trader once to create it")]
    NotFound(PathBuf),
    #[error(
        "the database's schema version {found} is newer than this build supports ({supported}); \
         use a newer robo-trader"
    )]
    TooNew { found: i64, supported: i64 },
    #[error(
        "the database's schema version {found} is older than {supported}; open it once with \
         robo-trader (not read-only) to migrate it"
    )]
    TooOld { found: i64, supported: i64 },
    #[error("{table}.{column} of row {row}: {detail}")]
    Corrupt {
        table: String,
        column: String,
        row: String,
        detail: String,
    },
    #[error("refused to write: {0}")]
    Invalid(String),
    #[error("order {0} already has an intent row; client order ids must never be reused")]
    DuplicateOrder(String),
    #[error("{context}: symbol {symbol:?} is not in the configured universe")]
    UnknownSymbol { symbol: String, context: String },
    #[error("the store writer's queue ({capacity} ops) stayed full: the disk is not keeping up")]
    QueueFull { capacity: usize },
    #[error("the store writer did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the store writer has stopped")]
    WriterGone,
    #[error("{count} store write(s) failed since the last flush; the first: {first}")]
    WriteFailed { count: u64, first: String },
    #[error("this store was opened read-only")]
    ReadOnly,
    #[error("the store's connection lock was poisoned by a panic")]
    Poisoned,
}

/// Aborts the process when the environment variable `ROBO_FAILPOINT` equals `name`; crash
/// tests use it to die at an exact point. The variable is read once.
pub fn failpoint(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var("ROBO_FAILPOINT")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if armed.as_deref() == Some(name) {
        eprintln!("robo-trader: failpoint {name:?} reached, aborting");
        std::process::abort();
    }
}

/// What a run records when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub started: Ts,
    pub pid: u32,
    /// A hash of the effective config, to tell runs apart.
    pub config_fingerprint: String,
    /// The binary's version.
    pub version: String,
}

/// One symbol's derived position (a row of `positions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRow {
    pub symbol: String,
    /// Signed shares.
    pub quantity: Qty,
    /// Per share, rounded to 6 places.
    pub avg_cost: Price,
    /// Exact signed sum of the open lots' `remaining x price`.
    pub cost_basis: Money,
    /// Closed lots' P&L net of every commission paid in this symbol.
    pub realized_pnl: Money,
    pub commissions: Money,
}

/// One FIFO lot (a row of `lots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotRow {
    pub symbol: String,
    pub open_exec_id: String,
    /// `Buy` for a long lot, `Sell` for a short one.
    pub side: Side,
    pub quantity: Qty,
    pub remaining: Qty,
    pub price: Price,
}

/// A handle on the database for direct writes and all reads. `Sync`: share it in an `Arc`.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    read_only: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database, in WAL mode with a 5 s busy
    /// timeout. Safe to call on every start and from several processes.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        schema::configure_writer(&conn)?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            read_only: false,
        })
    }

    /// Opens an existing database for reading only (`PRAGMA query_only`), e.g. for `status`
    /// while a runner writes. Never creates or migrates.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotFound(path.to_path_buf()));
        }
        // Read-write flags (without CREATE) let SQLite create the WAL index if no writer is
        // running; query_only keeps this connection from writing anything. Fall back to a
        // true read-only open on a read-only file system.
        let rw = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, rw)
            .or_else(|_| Connection::open_with_flags(path, ro))?;
        conn.busy_timeout(schema::BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        schema::check_version(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            read_only: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    fn writable(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.conn()
    }

    /// Runs `f` inside one read transaction, so multi-query reads see one snapshot.
    fn snapshot<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let out = f(&tx)?;
        tx.finish()?;
        Ok(out)
    }

    /// Starts the batching writer thread on this database.
    pub fn start_writer(&self, opts: WriterOptions) -> Result<StoreWriter, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        StoreWriter::spawn(&self.path, opts)
    }

    /// Writes the order's intent (state `new`) durably, bypassing the writer thread. Prefer
    /// [`StoreWriter::commit_intent`] while a writer runs, so the intent is ordered after
    /// everything already queued.
    pub fn commit_intent(&self, req: &OrderRequest, symbol_name: &str) -> Result<(), StoreError> {
        let mut conn = self.writable()?;
        ops::durably(&mut conn, |c| ops::write_intent(c, req, symbol_name))
    }

    /// Applies one op now, in its own transaction (tests, CLI tools).
    pub fn write(&self, op: &WriteOp) -> Result<(), StoreError> {
        let mut conn = self.writable()?;
        let tx = conn.transaction()?;
        ops::apply_op(&tx, op)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets the trading state durably and bumps its version (the `kill-switch` CLI, from
    /// another process while a runner polls [`Store::trading_state_version`]).
    pub fn set_trading_state(
        &self,
        state: TradingState,
        cause: &str,
        source: &str,
        ts: Ts,
    ) -> Result<(), StoreError> {
        let mut conn = self.writable()?;
        ops::durably(&mut conn, |c| {
            ops::write_trading_state(c, state, cause, source, ts)
        })
    }

    pub fn trading_state(&self) -> Result<TradingState, StoreError> {
        Ok(read::trading_state(&*self.conn()?)?.0)
    }

    /// A counter that changes on every trading-state write (one indexed row read: cheap to
    /// poll). Compare states, not just versions: the runner's own writes bump it too.
    pub fn trading_state_version(&self) -> Result<i64, StoreError> {
        Ok(read::trading_state(&*self.conn()?)?.1)
    }

    /// Records the start of a run; returns its id for `WriteOp::RunEnded` / `end_run`.
    pub fn begin_run(&self, info: &RunInfo) -> Result<i64, StoreError> {
        let mut conn = self.writable()?;
        ops::durably(&mut conn, |c| {
            c.execute(
                "INSERT INTO runs (started, pid, config_fingerprint, version)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    ts_text(info.started),
                    info.pid,
                    info.config_fingerprint,
                    info.version
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn end_run(&self, run_id: i64, ended: Ts, exit_reason: &str) -> Result<(), StoreError> {
        let mut conn = self.writable()?;
        let op = WriteOp::RunEnded {
            run_id,
            ended,
            exit_reason: exit_reason.to_string(),
        };
        ops::durably(&mut conn, |c| ops::apply_op(c, &op))
    }

    /// Records the starting cash on first use and returns the recorded value (which wins over
    /// `cash` on later runs: the account's history started with it).
    pub fn init_starting_cash(&self, cash: Money) -> Result<Money, StoreError> {
        let mut conn = self.writable()?;
        ops::durably(&mut conn, |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('starting_cash', ?1)
                 ON CONFLICT (key) DO NOTHING",
                [dec_text(cash)],
            )?;
            Ok(read::starting_cash(c)?.unwrap_or(cash))
        })
    }

    pub fn starting_cash(&self) -> Result<Option<Money>, StoreError> {
        read::starting_cash(&*self.conn()?)
    }

    /// The latest event time anything in the database carries (fills, orders, decisions,
    /// equity). A restart after a crash resumes after it, because the periodic sim-clock mark
    /// can lag the last records by a batch.
    pub fn latest_activity(&self) -> Result<Option<Ts>, StoreError> {
        let conn = self.conn()?;
        let text: Option<String> = conn.query_row(
            "SELECT MAX(t) FROM (
                 SELECT MAX(ts) AS t FROM fills
                 UNION ALL SELECT MAX(created_ts) FROM orders
                 UNION ALL SELECT MAX(ts) FROM decisions
                 UNION ALL SELECT MAX(ts) FROM equity)",
            [],
            |r| r.get(0),
        )?;
        text.map(|t| {
            codec::parse_ts(
                &t,
                At {
                    table: "activity",
                    column: "ts",
                    row: "max",
                },
            )
        })
        .transpose()
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        ops::meta_get(&*self.conn()?, key)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        ops::meta_set(&*self.writable()?, key, value)
    }

    /// What a restarting runner resumes from, read in one snapshot.
    pub fn load_state(&self) -> Result<PersistedState, StoreError> {
        self.snapshot(read::load_state)
    }

    /// The `status` summary (see docs/SCHEMA.md for its fields), read in one snapshot.
    pub fn status_json(&self) -> Result<serde_json::Value, StoreError> {
        self.snapshot(read::status_json)
    }

    /// Every fill, in arrival order.
    pub fn fills(&self) -> Result<Vec<FillRow>, StoreError> {
        read::fills(&*self.conn()?)
    }

    /// Every order (open or not), oldest first.
    pub fn orders(&self) -> Result<Vec<OrderRow>, StoreError> {
        self.snapshot(|c| read::orders(c, false))
    }

    /// Recomputes `lots` and `positions` from `fills` in one transaction; returns the number
    /// of fills replayed.
    pub fn rebuild_positions(&self) -> Result<usize, StoreError> {
        let mut conn = self.writable()?;
        let tx = conn.transaction()?;
        let n = fifo::rebuild(&tx)?;
        tx.commit()?;
        Ok(n)
    }

    /// Every symbol's derived position, flat ones included, by symbol.
    pub fn positions(&self) -> Result<Vec<PositionRow>, StoreError> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT symbol, quantity, avg_cost, cost_basis, realized_pnl, commissions
             FROM positions ORDER BY symbol",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (symbol, quantity, avg, basis, realized, comm) = row?;
            let at = |column| At {
                table: "positions",
                column,
                row: &symbol,
            };
            out.push(PositionRow {
                avg_cost: parse_dec(&avg, at("avg_cost"))?,
                cost_basis: parse_dec(&basis, at("cost_basis"))?,
                realized_pnl: parse_dec(&realized, at("realized_pnl"))?,
                commissions: parse_dec(&comm, at("commissions"))?,
                symbol,
                quantity,
            });
        }
        Ok(out)
    }

    /// Every lot, open and closed, in opening order.
    pub fn lots(&self) -> Result<Vec<LotRow>, StoreError> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT id, symbol, open_exec_id, side, quantity, remaining, price FROM lots ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, symbol, open_exec_id, side, quantity, remaining, price) = row?;
            let idt = id.to_string();
            let at = |column| At {
                table: "lots",
                column,
                row: &idt,
            };
            out.push(LotRow {
                side: parse_side(&side, at("side"))?,
                price: parse_dec(&price, at("price"))?,
                symbol,
                open_exec_id,
                quantity,
                remaining,
            });
        }
        Ok(out)
    }
}
