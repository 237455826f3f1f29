//! The batching writer: a dedicated thread that owns its own connection and commits whatever
//! is queued as one transaction, so the engine never waits on the disk.
//!
//! The queue is a bounded `std::sync::mpsc::sync_channel`. `send` never blocks while there is
//! room; when the queue is full (the disk has fallen far behind) it retries for up to
//! [`WriterOptions::send_block`] and then fails with [`StoreError::QueueFull`] rather than
//! stall the engine forever.
//!
//! A batch ends at `max_batch` ops, `linger` after its first op, or at a barrier (a flush, an
//! intent, shutdown). Each op runs in its own savepoint: a bad op is rolled back alone, logged,
//! and reported by the next `flush`, and the rest of the batch commits. Batches commit with
//! `synchronous=NORMAL`; intents commit alone with `synchronous=FULL` (which also makes every
//! earlier batch durable, since the WAL is fsynced up to that commit).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

use robo_core::types::OrderRequest;

use super::ops::{apply_op, durably, write_intent, WriteOp};
use super::{failpoint, schema, StoreError};

/// Tuning for the writer thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Queue capacity in ops. The channel preallocates its slots, about 1 KB each.
    pub queue: usize,
    /// Most ops in one transaction.
    pub max_batch: usize,
    /// How long a batch waits for more ops after its first.
    pub linger: Duration,
    /// How long `send` retries a full queue before giving up.
    pub send_block: Duration,
    /// How long `commit_intent` waits for its acknowledgement.
    pub intent_timeout: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            queue: 8192,
            max_batch: 1000,
            linger: Duration::from_millis(50),
            send_block: Duration::from_secs(2),
            intent_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Ops committed.
    pub committed: u64,
    /// Ops rolled back (their error was logged and reported by `flush`).
    pub failed: u64,
    /// Transactions committed (batches and intents).
    pub transactions: u64,
}

type Ack = SyncSender<Result<(), StoreError>>;

// Sized by `WriteOp` on purpose; see its doc.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Op(WriteOp),
    Intent {
        req: OrderRequest,
        symbol: String,
        ack: Ack,
    },
    Flush(Ack),
    Shutdown(Ack),
}

#[derive(Default)]
struct Shared {
    committed: AtomicU64,
    failed: AtomicU64,
    transactions: AtomicU64,
    /// Errors since the last flush: (count, first message).
    errors: Mutex<(u64, Option<String>)>,
}

impl Shared {
    fn note_error(&self, what: &str, e: &StoreError) {
        tracing::error!(error = %e, "store writer: {what}");
        if let Ok(mut g) = self.errors.lock() {
            g.0 += 1;
            if g.1.is_none() {
                g.1 = Some(format!("{what}: {e}"));
            }
        }
    }
    fn take_errors(&self) -> Result<(), StoreError> {
        let mut g = self.errors.lock().map_err(|_| StoreError::WriterGone)?;
        let (n, first) = std::mem::take(&mut *g);
        match first {
            Some(first) => Err(StoreError::WriteFailed { count: n, first }),
            None => Ok(()),
        }
    }
}

/// A handle on the writer thread. Clones share the thread; `shutdown` on any of them stops it.
#[derive(Clone)]
pub struct StoreWriter {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    opts: WriterOptions,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("stats", &self.stats())
            .finish()
    }
}

impl StoreWriter {
    /// Opens a connection to an already-migrated database (see `Store::open`) and starts the
    /// thread.
    pub fn spawn(path: &Path, opts: WriterOptions) -> Result<StoreWriter, StoreError> {
        let conn = Connection::open(path)?;
        schema::configure_writer(&conn)?;
        schema::check_version(&conn)?;
        let (tx, rx) = mpsc::sync_channel(opts.queue.max(1));
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let path_buf: PathBuf = path.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let mut w = Worker {
                    conn,
                    rx,
                    shared: thread_shared,
                    opts,
                    path: path_buf,
                };
                w.run();
            })
            .map_err(|e| StoreError::Setup(format!("cannot start the store writer thread: {e}")))?;
        Ok(StoreWriter {
            tx,
            shared,
            thread: Arc::new(Mutex::new(Some(handle))),
            opts,
        })
    }

    /// Queues one op. Returns at once while the queue has room; see the module doc for a
    /// full queue.
    pub fn try_send(&self, op: WriteOp) -> Result<(), StoreError> {
        self.push(Msg::Op(op), Instant::now() + self.opts.send_block)
    }

    /// [`try_send`](Self::try_send) for callers that cannot act on a failure: it is logged,
    /// counted as failed, and reported by the next [`flush`](Self::flush).
    pub fn send(&self, op: WriteOp) {
        if let Err(e) = self.try_send(op) {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            self.shared.note_error("an op could not be queued", &e);
        }
    }

    fn push(&self, msg: Msg, deadline: Instant) -> Result<(), StoreError> {
        let mut msg = match self.tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::WriterGone),
            Err(TrySendError::Full(m)) => m,
        };
        // `SyncSender::send_timeout` is unstable, so poll with a short sleep.
        loop {
            if Instant::now() >= deadline {
                return Err(StoreError::QueueFull {
                    capacity: self.opts.queue,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(StoreError::WriterGone),
                Err(TrySendError::Full(m)) => msg = m,
            }
        }
    }

    fn round_trip(
        &self,
        make: impl FnOnce(Ack) -> Msg,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        self.push(make(ack_tx), deadline)?;
        let left = deadline.saturating_duration_since(Instant::now());
        match ack_rx.recv_timeout(left) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(StoreError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(StoreError::WriterGone),
        }
    }

    /// Writes the order's intent (state `new`) and returns once it is committed with
    /// `synchronous=FULL`, after everything sent before it. Call before handing the order to
    /// a broker.
    pub fn commit_intent(&self, req: &OrderRequest, symbol_name: &str) -> Result<(), StoreError> {
        let symbol = symbol_name.to_string();
        self.round_trip(
            |ack| Msg::Intent {
                req: *req,
                symbol,
                ack,
            },
            self.opts.intent_timeout,
        )
    }

    /// Waits until every op sent so far is committed. Reports (and clears) any op that failed
    /// since the last flush.
    pub fn flush(&self, timeout: Duration) -> Result<(), StoreError> {
        self.round_trip(Msg::Flush, timeout)
    }

    /// Flushes, stops the thread and joins it. Later sends from any clone fail with
    /// [`StoreError::WriterGone`].
    pub fn shutdown(&self, timeout: Duration) -> Result<(), StoreError> {
        let handle = match self.thread.lock() {
            Ok(mut g) => g.take(),
            Err(_) => return Err(StoreError::WriterGone),
        };
        let Some(handle) = handle else {
            return Ok(()); // another clone already shut it down
        };
        let result = self.round_trip(Msg::Shutdown, timeout);
        // The thread answered (with or without errors to report) and is exiting: join it.
        // On a timeout it may still be stuck on the disk, so leave it detached.
        if matches!(result, Ok(()) | Err(StoreError::WriteFailed { .. })) {
            handle
                .join()
                .map_err(|_| StoreError::Setup("the store writer thread panicked".into()))?;
        }
        result
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            committed: self.shared.committed.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            transactions: self.shared.transactions.load(Ordering::Relaxed),
        }
    }
}

struct Worker {
    conn: Connection,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    opts: WriterOptions,
    path: PathBuf,
}

/// What ended a batch.
#[allow(clippy::large_enum_variant)]
enum Barrier {
    None,
    Msg(Msg),
    Disconnected,
}

impl Worker {
    fn run(&mut self) {
        tracing::debug!(path = %self.path.display(), "store writer started");
        loop {
            let first = match self.rx.recv() {
                Ok(m) => m,
                Err(_) => return, // every handle dropped and nothing queued
            };
            let mut batch = Vec::new();
            let barrier = match first {
                Msg::Op(op) => {
                    batch.push(op);
                    self.fill_batch(&mut batch)
                }
                other => Barrier::Msg(other),
            };
            if !batch.is_empty() {
                self.commit_batch(&batch);
            }
            match barrier {
                Barrier::None => {}
                Barrier::Disconnected => return,
                Barrier::Msg(Msg::Op(_)) => unreachable_op(),
                Barrier::Msg(Msg::Intent { req, symbol, ack }) => {
                    let r = durably(&mut self.conn, |c| write_intent(c, &req, &symbol));
                    if r.is_ok() {
                        self.shared.transactions.fetch_add(1, Ordering::Relaxed);
                        failpoint("after_intent_commit");
                    }
                    let _ = ack.send(r);
                }
                Barrier::Msg(Msg::Flush(ack)) => {
                    let _ = ack.send(self.shared.take_errors());
                }
                Barrier::Msg(Msg::Shutdown(ack)) => {
                    // Checkpoint so the main file is current for readers that copy it.
                    let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
                    let _ = ack.send(self.shared.take_errors());
                    return;
                }
            }
        }
    }

    /// Adds queued ops until the batch is full, the linger expires or a barrier arrives.
    fn fill_batch(&self, batch: &mut Vec<WriteOp>) -> Barrier {
        let deadline = Instant::now() + self.opts.linger;
        while batch.len() < self.opts.max_batch {
            // Drain what is already queued without touching the clock.
            let next = match self.rx.try_recv() {
                Ok(m) => Ok(m),
                Err(TryRecvError::Disconnected) => return Barrier::Disconnected,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Barrier::None;
                    }
                    self.rx.recv_timeout(left)
                }
            };
            match next {
                Ok(Msg::Op(op)) => batch.push(op),
                Ok(other) => return Barrier::Msg(other),
                Err(RecvTimeoutError::Timeout) => return Barrier::None,
                Err(RecvTimeoutError::Disconnected) => return Barrier::Disconnected,
            }
        }
        Barrier::None
    }

    /// Commits the batch, retrying the whole transaction if it could not begin or commit
    /// (e.g. another process held the write lock past the busy timeout).
    fn commit_batch(&mut self, batch: &[WriteOp]) {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            match self.try_commit(batch) {
                Ok((ok, failed)) => {
                    self.shared.committed.fetch_add(ok, Ordering::Relaxed);
                    self.shared.failed.fetch_add(failed, Ordering::Relaxed);
                    self.shared.transactions.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "store writer: batch failed, retrying");
                    std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
                }
                Err(e) => {
                    self.shared
                        .failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.shared
                        .note_error(&format!("a batch of {} ops was lost", batch.len()), &e);
                }
            }
        }
    }

    /// Returns (ops applied, ops rolled back).
    fn try_commit(&mut self, batch: &[WriteOp]) -> Result<(u64, u64), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let half = batch.len() / 2;
        let (mut ok, mut failed) = (0u64, 0u64);
        for (i, op) in batch.iter().enumerate() {
            if i == half && i > 0 {
                failpoint("mid_batch");
            }
            tx.execute_batch("SAVEPOINT op")?;
            match apply_op(&tx, op) {
                Ok(()) => {
                    tx.execute_batch("RELEASE op")?;
                    ok += 1;
                }
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO op; RELEASE op")?;
                    failed += 1;
                    self.shared
                        .note_error(&format!("op {} rolled back", op_name(op)), &e);
                }
            }
        }
        tx.commit()?;
        Ok((ok, failed))
    }
}

#[cold]
fn unreachable_op() {
    // `fill_batch` pushes ops into the batch and returns only non-op messages as barriers.
    tracing::error!("store writer: an op was treated as a barrier and dropped");
}

fn op_name(op: &WriteOp) -> &'static str {
    use robo_core::events::Record;
    match op {
        WriteOp::Record { rec, .. } => match rec {
            Record::Decision(_) => "decision",
            Record::Risk(_) => "risk event",
            Record::State(_) => "state change",
            Record::OrderStatus { .. } => "order status",
            Record::Fill(_) => "fill",
            Record::Equity { .. } => "equity",
        },
        WriteOp::TradingState { .. } => "trading state",
        WriteOp::Connection { .. } => "connection event",
        WriteOp::BrokerId { .. } => "broker id",
        WriteOp::Marks { .. } => "marks",
        WriteOp::SymbolFeedsReset { .. } => "symbol feeds reset",
        WriteOp::SymbolFeed { .. } => "symbol feed",
        WriteOp::BrokerAccount(_) => "broker account",
        WriteOp::RunEnded { .. } => "run end",
    }
}
