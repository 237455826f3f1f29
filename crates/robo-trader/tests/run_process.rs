//! Process-level tests of the `robo-trader` binary: `run` under SIGTERM, restart, SIGKILL and
//! named crash points, the single-runner lock, config refusals, `market-hours`, and the kill
//! switch. Every test runs the real binary in its own temporary directory (the cwd, so no
//! `./robo-trader.toml` leaks in) and checks the database with SQL and exact decimal
//! arithmetic computed here, independently of the store's own code.

mod harness;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::str::FromStr;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use harness::robo;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;

const SYMBOLS: &str = "AAPL,MSFT,SPY,QQQ,NVDA";
const STARTING_CASH: Decimal = dec!(100000);
const POLL: Duration = Duration::from_millis(50);
/// Generous: the machine is shared, and a debug build at max speed still trades within ~1 s.
const TRADE_DEADLINE: Duration = Duration::from_secs(30);
const OPEN_STATES: [&str; 3] = ["new", "submitted", "partially_filled"];

// ---------------------------------------------------------------------------------------------
// Processes

/// One test's directory and database.
struct Sandbox {
    dir: tempfile::TempDir,
    db: PathBuf,
    runs: u32,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("robo.db");
        Sandbox { dir, db, runs: 0 }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `robo-trader run` on this sandbox's database; stderr goes to a log file (a pipe
    /// nobody reads would fill and stall the trader).
    fn run(&mut self, speed: &str, symbols: &str, env: &[(&str, &str)]) -> Runner {
        self.runs += 1;
        let log = self.path().join(format!("run-{}.log", self.runs));
        let mut c = robo(self.path());
        c.arg("run")
            .arg("--db")
            .arg(&self.db)
            .args(["--dash-port", "0", "--ws-port", "0"])
            .args(["--sim-speed", speed, "--symbols", symbols])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"));
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().expect("spawn robo-trader run");
        Runner {
            pid: child.id(),
            child: Some(child),
            log,
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        robo(self.path())
            .args(args)
            .arg("--db")
            .arg(&self.db)
            .output()
            .expect("run robo-trader")
    }

    fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status --json failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    fn kill_switch(&self, setting: &str) {
        let out = self.cli(&["kill-switch", setting]);
        assert!(
            out.status.success(),
            "kill-switch {setting} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn conn(&self) -> Connection {
        // Read-write flags without CREATE (SQLite may need to create the WAL index when no
        // writer runs), and query_only so this connection never writes.
        let c = Connection::open_with_flags(
            &self.db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open the database");
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.pragma_update(None, "query_only", true).unwrap();
        c
    }
}

/// A running `robo-trader run`; killed on drop so a failing test leaves nothing behind.
struct Runner {
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
}

impl Runner {
    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid; no memory is shared.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log tail) if the process has exited.
    fn assert_alive(&mut self, during: &str) {
        let child = self.child.as_mut().expect("still owned");
        if let Some(st) = child.try_wait().expect("try_wait") {
            panic!(
                "robo-trader exited ({st}) while {during}; log tail:\n{}",
                self.log_tail()
            );
        }
    }

    /// Polls `probe` every 50 ms until it yields, the deadline passes, or the process dies.
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            self.assert_alive(&format!("waiting for {what}"));
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; log tail:\n{}",
                self.log_tail()
            );
            sleep(POLL);
        }
    }

    /// Waits for the process to exit by itself; returns its status and how long it took.
    fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let t0 = Instant::now();
        loop {
            let child = self.child.as_mut().expect("still owned");
            if let Some(st) = child.try_wait().expect("try_wait") {
                self.child = None;
                return (st, t0.elapsed());
            }
            assert!(
                t0.elapsed() < timeout,
                "robo-trader did not exit within {timeout:?}; log tail:\n{}",
                self.log_tail()
            );
            sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then a clean exit (status 0) within 5 s.
    fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let (st, took) = self.wait_exit(Duration::from_secs(5));
        assert_eq!(
            st.code(),
            Some(0),
            "SIGTERM must exit 0 (got {st} after {took:?}); log tail:\n{}",
            self.log_tail()
        );
    }

    fn sigkill(mut self) {
        self.signal(libc::SIGKILL);
        let (st, _) = self.wait_exit(Duration::from_secs(5));
        assert_eq!(st.signal(), Some(libc::SIGKILL), "{st}");
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the database

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// For polling a database another process is creating: `None` until the file and its tables
/// exist.
fn try_count(sb: &Sandbox, sql: &str, arg: i64) -> Option<i64> {
    if !sb.db.exists() {
        return None;
    }
    let c = Connection::open_with_flags(
        &sb.db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    c.busy_timeout(Duration::from_secs(5)).ok()?;
    c.pragma_update(None, "query_only", true).ok()?;
    let sql = sql.replace("?1", &arg.to_string());
    c.query_row(&sql, [], |r| r.get(0)).ok()
}

fn fill_count(sb: &Sandbox) -> i64 {
    count(&sb.conn(), "SELECT COUNT(*) FROM fills")
}

fn dec(s: &str, what: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|e| panic!("{what}: {s:?} is not a decimal: {e}"))
}

fn json_dec(v: &Value, key: &str) -> Decimal {
    let s = v
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("status.{key} is not a decimal string: {v}"));
    dec(s, key)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FillRow {
    id: i64,
    exec_id: String,
    order_id: String,
    symbol: String,
    side: String,
    qty: i64,
    price: Decimal,
    commission: Decimal,
    ts: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OrderRow {
    id: String,
    seq: i64,
    symbol: String,
    side: String,
    qty: i64,
    purpose: String,
    state: String,
    filled: i64,
    created: String,
}

fn read_fills(c: &Connection) -> Vec<FillRow> {
    let mut st = c
        .prepare(
            "SELECT id, exec_id, order_id, symbol, side, quantity, price, commission, ts
             FROM fills ORDER BY id",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
            ))
        })
        .unwrap();
    rows.map(|r| {
        let (id, exec_id, order_id, symbol, side, qty, price, commission, ts) = r.unwrap();
        FillRow {
            price: dec(&price, "fills.price"),
            commission: dec(&commission, "fills.commission"),
            id,
            exec_id,
            order_id,
            symbol,
            side,
            qty,
            ts,
        }
    })
    .collect()
}

fn read_orders(c: &Connection) -> Vec<OrderRow> {
    let mut st = c
        .prepare(
            "SELECT id, seq, symbol, side, quantity, purpose, state, filled_qty, created_ts
             FROM orders ORDER BY seq",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok(OrderRow {
                id: r.get(0)?,
                seq: r.get(1)?,
                symbol: r.get(2)?,
                side: r.get(3)?,
                qty: r.get(4)?,
                purpose: r.get(5)?,
                state: r.get(6)?,
                filled: r.get(7)?,
                created: r.get(8)?,
            })
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn max_seq(c: &Connection) -> i64 {
    count(c, "SELECT COALESCE(MAX(seq), 0) FROM orders")
}

/// One symbol's FIFO book, computed here from the fills alone.
#[derive(Debug, Default)]
struct Book {
    qty: i64,
    /// Open lots: signed shares and entry price, oldest first.
    lots: VecDeque<(i64, Decimal)>,
    /// Closed-lot P&L minus every commission.
    realized: Decimal,
    commissions: Decimal,
}

impl Book {
    fn apply(&mut self, signed: i64, price: Decimal, commission: Decimal) {
        self.qty += signed;
        self.commissions += commission;
        self.realized -= commission;
        let mut q = signed;
        while q != 0 {
            let Some(front) = self.lots.front_mut() else {
                break;
            };
            if front.0.signum() == q.signum() {
                break;
            }
            let dir = front.0.signum();
            let m = q.abs().min(front.0.abs());
            self.realized += (price - front.1) * Decimal::from(m * dir);
            front.0 -= m * dir;
            q += m * dir;
            if front.0 == 0 {
                self.lots.pop_front();
            }
        }
        if q != 0 {
            self.lots.push_back((q, price));
        }
    }

    fn cost_basis(&self) -> Decimal {
        self.lots.iter().map(|(q, p)| Decimal::from(*q) * p).sum()
    }
}

/// Everything the invariant check read, for the tests' own further checks.
#[derive(Debug)]
struct Ledger {
    fills: Vec<FillRow>,
    orders: Vec<OrderRow>,
    status: Value,
    cash: Decimal,
}

impl Ledger {
    fn open_order_ids(&self) -> BTreeSet<String> {
        self.orders
            .iter()
            .filter(|o| OPEN_STATES.contains(&o.state.as_str()))
            .map(|o| o.id.clone())
            .collect()
    }
}

/// The acceptance invariants, on a database no process is writing: positions, cash and P&L
/// follow exactly from `fills`; the derived tables and `status --json` agree; every fill
/// belongs to a recorded order and no order is over-filled.
fn check_invariants(sb: &Sandbox, when: &str) -> Ledger {
    let c = sb.conn();
    let start: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'starting_cash'",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{when}: no starting cash in meta: {e}"));
    assert_eq!(dec(&start, "meta.starting_cash"), STARTING_CASH, "{when}");

    let fills = read_fills(&c);
    let orders = read_orders(&c);

    // Cash and FIFO books from the fills alone, in exact decimals.
    let mut cash = STARTING_CASH;
    let mut books: BTreeMap<String, Book> = BTreeMap::new();
    for f in &fills {
        let notional = f.price * Decimal::from(f.qty);
        let signed = match f.side.as_str() {
            "BUY" => {
                cash -= notional;
                f.qty
            }
            "SELL" => {
                cash += notional;
                -f.qty
            }
            other => panic!("{when}: fill {} has side {other:?}", f.exec_id),
        };
        assert!(f.qty > 0, "{when}: fill {} qty {}", f.exec_id, f.qty);
        assert!(f.price > Decimal::ZERO, "{when}: fill {}", f.exec_id);
        assert!(f.commission >= Decimal::ZERO, "{when}: fill {}", f.exec_id);
        cash -= f.commission;
        books
            .entry(f.symbol.clone())
            .or_default()
            .apply(signed, f.price, f.commission);
    }

    // The derived `positions` table agrees, symbol by symbol.
    let mut st = c
        .prepare(
            "SELECT symbol, quantity, cost_basis, realized_pnl, commissions FROM positions
             ORDER BY symbol",
        )
        .unwrap();
    let table: BTreeMap<String, (i64, Decimal, Decimal, Decimal)> = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .unwrap()
        .map(|r| {
            let (s, q, b, p, cm) = r.unwrap();
            let v = (
                q,
                dec(&b, "positions.cost_basis"),
                dec(&p, "positions.realized_pnl"),
                dec(&cm, "positions.commissions"),
            );
            (s, v)
        })
        .collect();
    for (sym, b) in &books {
        let Some((q, basis, realized, comm)) = table.get(sym) else {
            panic!("{when}: {sym} has fills but no positions row");
        };
        assert_eq!(*q, b.qty, "{when}: positions.quantity of {sym}");
        assert_eq!(
            *basis,
            b.cost_basis(),
            "{when}: positions.cost_basis of {sym}"
        );
        assert_eq!(
            *realized, b.realized,
            "{when}: positions.realized_pnl of {sym}"
        );
        assert_eq!(
            *comm, b.commissions,
            "{when}: positions.commissions of {sym}"
        );
    }
    for (sym, (q, ..)) in &table {
        assert!(
            books.contains_key(sym) || *q == 0,
            "{when}: positions has {q} {sym} with no fills"
        );
    }

    // Orders: ids are C<seq>; every fill belongs to a recorded order of the same symbol and
    // side; no order is filled beyond its quantity; filled_qty is the sum of its fills.
    let by_id: HashMap<&str, &OrderRow> = orders.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut filled: HashMap<&str, i64> = HashMap::new();
    for o in &orders {
        assert_eq!(o.id, format!("C{}", o.seq), "{when}: order id vs seq");
        assert!(o.qty > 0, "{when}: order {} qty {}", o.id, o.qty);
    }
    let mut execs = BTreeSet::new();
    for f in &fills {
        assert!(
            execs.insert(f.exec_id.as_str()),
            "{when}: exec_id {} twice",
            f.exec_id
        );
        let Some(o) = by_id.get(f.order_id.as_str()) else {
            panic!("{when}: fill {} of unknown order {}", f.exec_id, f.order_id);
        };
        assert_eq!(
            (&o.symbol, &o.side),
            (&f.symbol, &f.side),
            "{when}: fill {} vs its order",
            f.exec_id
        );
        *filled.entry(f.order_id.as_str()).or_default() += f.qty;
    }
    for o in &orders {
        let n = filled.get(o.id.as_str()).copied().unwrap_or(0);
        assert!(
            n <= o.qty,
            "{when}: order {} of {} shares has {n} filled (sent twice?)",
            o.id,
            o.qty
        );
        assert_eq!(o.filled, n, "{when}: orders.filled_qty of {}", o.id);
        if o.state == "filled" {
            assert_eq!(n, o.qty, "{when}: order {} is filled", o.id);
        }
    }

    // `status --json` agrees with all of it.
    let status = sb.status();
    assert_eq!(json_dec(&status, "starting_cash"), STARTING_CASH, "{when}");
    assert_eq!(json_dec(&status, "cash"), cash, "{when}: status cash");
    assert_eq!(
        status["fills"].as_i64(),
        Some(fills.len() as i64),
        "{when}: status fills"
    );
    let mine: BTreeMap<String, i64> = books
        .iter()
        .filter(|(_, b)| b.qty != 0)
        .map(|(s, b)| (s.clone(), b.qty))
        .collect();
    let theirs: BTreeMap<String, i64> = status["positions"]
        .as_array()
        .expect("status.positions")
        .iter()
        .map(|p| {
            (
                p["symbol"].as_str().expect("symbol").to_string(),
                p["quantity"].as_i64().expect("quantity"),
            )
        })
        .collect();
    assert_eq!(theirs, mine, "{when}: status positions");
    for p in status["positions"].as_array().unwrap() {
        let sym = p["symbol"].as_str().unwrap();
        assert_eq!(
            json_dec(p, "unrealized_pnl"),
            json_dec(p, "market_value") - books[sym].cost_basis(),
            "{when}: unrealized P&L of {sym}"
        );
    }
    let realized: Decimal = books.values().map(|b| b.realized).sum();
    let commissions: Decimal = books.values().map(|b| b.commissions).sum();
    assert_eq!(json_dec(&status, "realized_pnl"), realized, "{when}");
    assert_eq!(json_dec(&status, "commissions"), commissions, "{when}");
    let equity = json_dec(&status, "equity");
    assert_eq!(
        equity,
        cash + json_dec(&status, "market_value"),
        "{when}: equity = cash + market value"
    );
    assert_eq!(
        equity - STARTING_CASH,
        realized + json_dec(&status, "unrealized_pnl"),
        "{when}: equity - start = realized + unrealized"
    );
    let ledger = Ledger {
        fills,
        orders,
        status,
        cash,
    };
    let status_open: BTreeSet<String> = ledger.status["open_orders"]
        .as_array()
        .expect("status.open_orders")
        .iter()
        .map(|o| o["id"].as_str().expect("open order id").to_string())
        .collect();
    assert_eq!(status_open, ledger.open_order_ids(), "{when}: open orders");
    ledger
}

/// The orders a crashed run left open are settled now: none is open any more.
fn assert_settled(ledger: &Ledger, left_open: &BTreeSet<String>, when: &str) {
    for id in left_open {
        let o = ledger
            .orders
            .iter()
            .find(|o| &o.id == id)
            .unwrap_or_else(|| panic!("{when}: order {id} vanished"));
        assert!(
            o.state == "cancelled" || o.state == "filled",
            "{when}: order {id} left open by the crashed run is {:?}",
            o.state
        );
    }
}

/// The run row of this process: (ended, exit_reason).
fn run_row(c: &Connection, pid: u32) -> Option<(Option<String>, Option<String>)> {
    c.query_row(
        "SELECT ended, exit_reason FROM runs WHERE pid = ?1 ORDER BY id DESC LIMIT 1",
        [pid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .unwrap()
}

/// Waits until this run has recorded itself (and so holds the lock and has opened the store).
fn wait_registered(sb: &Sandbox, r: &mut Runner) {
    let pid = r.pid;
    r.wait_for("the run to be recorded in runs", TRADE_DEADLINE, || {
        let sql = "SELECT COUNT(*) FROM runs WHERE pid = ?1 AND ended IS NULL";
        try_count(sb, sql, i64::from(pid)).filter(|n| *n > 0)
    });
}

fn wait_fills_above(sb: &Sandbox, r: &mut Runner, n: i64) -> i64 {
    r.wait_for(&format!("more than {n} fills"), TRADE_DEADLINE, || {
        try_count(sb, "SELECT COUNT(*) FROM fills", 0).filter(|k| *k > n)
    })
}

// ---------------------------------------------------------------------------------------------
// 1. SIGTERM

#[test]
fn sigterm_exits_zero_and_the_ledger_matches_the_fills() {
    let mut sb = Sandbox::new();
    let mut r = sb.run("max", SYMBOLS, &[]);
    // At least one exit too, so realized P&L and FIFO matching are exercised.
    r.wait_for("5 fills including a sell", TRADE_DEADLINE, || {
        let n = try_count(&sb, "SELECT COUNT(*) FROM fills", 0)?;
        let sells = try_count(&sb, "SELECT COUNT(*) FROM fills WHERE side = 'SELL'", 0)?;
        (n >= 5 && sells > 0).then_some(())
    });
    let pid = r.pid;
    r.stop();

    let l = check_invariants(&sb, "after SIGTERM");
    assert!(l.fills.len() >= 5, "{} fills", l.fills.len());
    assert!(
        l.open_order_ids().is_empty(),
        "a clean stop leaves no open order: {:?}",
        l.open_order_ids()
    );
    assert!(l.cash != STARTING_CASH, "trading moved the cash");
    let (ended, reason) = run_row(&sb.conn(), pid).expect("run row");
    assert!(ended.is_some(), "a clean stop records its end");
    assert!(
        reason.as_deref().unwrap_or("").contains("SIGTERM"),
        "exit reason {reason:?}"
    );
    assert_eq!(
        l.status["last_exit_reason"].as_str(),
        reason.as_deref(),
        "status.last_exit_reason"
    );
}

/// A SIGTERM the moment the run is on record (a supervisor stopping it while it starts) still
/// drains and ends the run: the handlers are in before the run row is written. Polled every
/// millisecond so the signal lands inside the start-up (web server, token, trader thread).
#[test]
fn sigterm_as_soon_as_the_run_is_recorded_still_stops_cleanly() {
    let mut sb = Sandbox::new();
    let mut r = sb.run("max", SYMBOLS, &[]);
    let pid = r.pid;
    let deadline = Instant::now() + TRADE_DEADLINE;
    let sql = "SELECT COUNT(*) FROM runs WHERE pid = ?1";
    while try_count(&sb, sql, i64::from(pid)).is_none_or(|n| n == 0) {
        r.assert_alive("waiting for the run row");
        assert!(Instant::now() < deadline, "the run was never recorded");
        sleep(Duration::from_millis(1));
    }
    r.stop();
    let (ended, reason) = run_row(&sb.conn(), pid).expect("run row");
    assert!(ended.is_some(), "the run's end is recorded");
    assert!(
        reason.as_deref().unwrap_or("").contains("SIGTERM"),
        "exit reason {reason:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Restart

/// The fields of `status --json` a restart must not change.
fn resumable(s: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in [
        "starting_cash",
        "cash",
        "equity",
        "market_value",
        "realized_pnl",
        "unrealized_pnl",
        "commissions",
        "positions",
        "open_orders",
        "fills",
        "trading_state",
        "trading_state_detail",
    ] {
        out.insert(k.into(), s.get(k).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

#[test]
fn restart_resumes_exactly() {
    let mut sb = Sandbox::new();
    let mut r = sb.run("max", SYMBOLS, &[]);
    wait_fills_above(&sb, &mut r, 4);
    r.stop();
    let before = check_invariants(&sb, "after the first run");
    assert!(before.open_order_ids().is_empty());

    // Real-time pacing: the next bar is a simulated minute away, so nothing trades while we
    // compare.
    let mut r = sb.run("1", SYMBOLS, &[]);
    wait_registered(&sb, &mut r);
    // Let it restore, warm up and flush whatever it writes at start.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) && !r.log_text().contains("market ready") {
        sleep(POLL);
    }
    sleep(Duration::from_millis(300));
    r.assert_alive("resuming");
    let during = sb.status();
    assert_eq!(
        resumable(&during),
        resumable(&before.status),
        "status while the restarted run is up"
    );
    assert_eq!(fill_count(&sb), before.fills.len() as i64);
    r.stop();

    // Trade again: new orders continue the id sequence, the old fills stay as they were.
    let old_max = max_seq(&sb.conn());
    let mut r = sb.run("max", SYMBOLS, &[]);
    wait_fills_above(&sb, &mut r, before.fills.len() as i64);
    r.stop();
    let after = check_invariants(&sb, "after the third run");
    assert!(after.open_order_ids().is_empty());
    assert_eq!(
        after.fills[..before.fills.len()],
        before.fills[..],
        "earlier fills are untouched"
    );
    let new_orders: Vec<&OrderRow> = after.orders.iter().filter(|o| o.seq > old_max).collect();
    assert!(!new_orders.is_empty(), "the third run placed orders");
    assert_eq!(
        after.orders.len(),
        before.orders.len() + new_orders.len(),
        "no order id was reused"
    );
    for f in &after.fills[before.fills.len()..] {
        let seq: i64 = f.order_id.trim_start_matches('C').parse().unwrap();
        assert!(
            seq > old_max,
            "new fill {} belongs to old order {}",
            f.exec_id,
            f.order_id
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Crashes

/// Runs with a failpoint armed until the process aborts there, checks the invariants on the
/// crashed database, restarts until more fills arrive, stops, and checks again.
fn crash_at(failpoint: &str) {
    let mut sb = Sandbox::new();
    // A history first, so the crash hits a ledger with fills and positions in it (a failpoint
    // fires at its first hit).
    let mut r = sb.run("max", SYMBOLS, &[]);
    wait_fills_above(&sb, &mut r, 9);
    r.stop();
    let history = check_invariants(&sb, "before the crash");

    let mut r = sb.run("max", SYMBOLS, &[("ROBO_FAILPOINT", failpoint)]);
    let (st, _) = r.wait_exit(TRADE_DEADLINE);
    assert_eq!(
        st.signal(),
        Some(libc::SIGABRT),
        "the run should abort at {failpoint} ({st}); log tail:\n{}",
        r.log_tail()
    );
    assert!(
        r.log_text()
            .contains(&format!("failpoint \"{failpoint}\" reached")),
        "it aborted somewhere else; log tail:\n{}",
        r.log_tail()
    );
    let (ended, _) = run_row(&sb.conn(), r.pid).expect("the crashed run's row");
    assert_eq!(ended, None, "a crashed run records no end");
    let crashed = check_invariants(&sb, &format!("after the crash at {failpoint}"));
    assert_eq!(
        crashed.fills[..history.fills.len()],
        history.fills[..],
        "the crash lost no earlier fill"
    );
    let left_open = crashed.open_order_ids();
    if matches!(failpoint, "after_intent_commit" | "after_send") {
        // The intent is durable before the order goes anywhere, so the crash leaves it open.
        assert!(
            !left_open.is_empty(),
            "{failpoint}: the committed intent should be in the database"
        );
    }

    let mut r = sb.run("max", SYMBOLS, &[]);
    wait_fills_above(&sb, &mut r, crashed.fills.len() as i64);
    r.stop();
    let after = check_invariants(&sb, &format!("after restarting from {failpoint}"));
    assert!(after.open_order_ids().is_empty());
    assert_settled(&after, &left_open, failpoint);
    assert_eq!(
        after.fills[..crashed.fills.len()],
        crashed.fills[..],
        "the crashed run's fills are untouched"
    );
}

#[test]
fn kill_minus_nine_keeps_the_invariants_after_intent_commit() {
    crash_at("after_intent_commit");
}

#[test]
fn kill_minus_nine_keeps_the_invariants_after_intent_commit_hook() {
    crash_at("after_intent_commit_hook");
}

#[test]
fn kill_minus_nine_keeps_the_invariants_after_send() {
    crash_at("after_send");
}

#[test]
fn kill_minus_nine_keeps_the_invariants_after_fill() {
    crash_at("after_fill");
}

#[test]
fn kill_minus_nine_keeps_the_invariants_mid_batch() {
    crash_at("mid_batch");
}

/// A small deterministic generator (xorshift64*), so the kill delays repeat run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn seeded_random_kills() {
    let mut rng = Rng(0x5EED_2026_1127);
    let mut sb = Sandbox::new();
    let mut seen = 0i64;
    let mut left_open = BTreeSet::new();
    let mut prev_fills: Vec<FillRow> = Vec::new();
    for round in 1..=3 {
        let delay = Duration::from_millis(150 + rng.next() % 751);
        let mut r = sb.run("max", SYMBOLS, &[]);
        wait_fills_above(&sb, &mut r, seen);
        sleep(delay);
        r.sigkill();
        let when = format!("after SIGKILL {round} ({delay:?} after a fill)");
        let l = check_invariants(&sb, &when);
        // This run started by settling what the previous kill left open.
        assert_settled(&l, &left_open, &when);
        assert_eq!(l.fills[..prev_fills.len()], prev_fills[..], "{when}");
        left_open = l.open_order_ids();
        seen = l.fills.len() as i64;
        prev_fills = l.fills;
    }
    let mut r = sb.run("max", SYMBOLS, &[]);
    wait_fills_above(&sb, &mut r, seen);
    r.stop();
    let l = check_invariants(&sb, "after the restart");
    assert!(l.open_order_ids().is_empty());
    assert_settled(&l, &left_open, "after the restart");
    assert_eq!(l.fills[..prev_fills.len()], prev_fills[..]);
}

/// Partial fills (one share per bar of a 60-share order) leave orders half-filled at every kill:
/// none may be over-filled or stay open after the restart.
#[test]
fn seeded_kills_with_partial_fills() {
    let mut rng = Rng(0xBADC_0FFE);
    let mut sb = Sandbox::new();
    std::fs::write(
        sb.path().join("robo-trader.toml"),
        // Orders of 60 shares filling about one share per bar, with limits that let them.
        "[paper]\nmax_volume_pct = 0.00001\n\
         [sizing]\nmode = \"fixed_qty\"\nqty = 60\n\
         [risk]\nmax_position_pct = 0.3\nmax_order_notional = 40000\n\
         max_daily_notional = 100000000\ndaily_loss_pct = 0.5\nmax_drawdown_pct = 0.9\n",
    )
    .unwrap();
    let (mut seen, mut left_open, mut partial) = (0i64, BTreeSet::new(), 0usize);
    for round in 1..=2 {
        let delay = Duration::from_millis(300 + rng.next() % 601);
        let mut r = sb.run("max", SYMBOLS, &[]);
        wait_fills_above(&sb, &mut r, seen);
        sleep(delay);
        r.sigkill();
        let when = format!("after SIGKILL {round} with partial fills");
        let l = check_invariants(&sb, &when);
        assert_settled(&l, &left_open, &when);
        partial += l
            .orders
            .iter()
            .filter(|o| o.filled > 0 && o.filled < o.qty)
            .count();
        left_open = l.open_order_ids();
        seen = l.fills.len() as i64;
    }
    assert!(
        partial > 0,
        "the kills should catch partially filled orders"
    );
    let mut r = sb.run("max", SYMBOLS, &[]);
    wait_fills_above(&sb, &mut r, seen);
    r.stop();
    let l = check_invariants(&sb, "after the restart with partial fills");
    assert!(l.open_order_ids().is_empty());
    assert_settled(&l, &left_open, "after the restart with partial fills");
}

/// After a kill the sim clock must resume after everything already traded: the same minutes
/// are not traded twice, and fills and orders never go back in time.
#[test]
fn a_restart_after_a_kill_never_goes_back_in_sim_time() {
    let mut sb = Sandbox::new();
    let mut seen = 0;
    for _ in 0..2 {
        let mut r = sb.run("max", SYMBOLS, &[]);
        wait_fills_above(&sb, &mut r, seen);
        sleep(Duration::from_millis(400));
        r.sigkill();
        seen = fill_count(&sb);
    }
    let mut r = sb.run("max", SYMBOLS, &[]);
    wait_fills_above(&sb, &mut r, seen);
    r.stop();
    let l = check_invariants(&sb, "after kills and a restart");
    for w in l.fills.windows(2) {
        assert!(
            w[1].ts >= w[0].ts,
            "fill {} at {} comes after fill {} at {}",
            w[1].exec_id,
            w[1].ts,
            w[0].exec_id,
            w[0].ts
        );
    }
    for w in l.orders.windows(2) {
        assert!(
            w[1].created >= w[0].created,
            "order {} created at {} after order {} at {}",
            w[1].id,
            w[1].created,
            w[0].id,
            w[0].created
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. One runner per database

#[test]
fn second_run_refuses_naming_the_pid() {
    let mut sb = Sandbox::new();
    let mut first = sb.run("1", SYMBOLS, &[]);
    wait_registered(&sb, &mut first);

    let t0 = Instant::now();
    let mut second = sb.run("max", SYMBOLS, &[]);
    // The refusal takes tens of milliseconds; the 2 s is a figure for the closing note,
    // so a loaded CI machine gets slack here instead of a flaky failure.
    let (st, took) = second.wait_exit(Duration::from_secs(10));
    assert!(!st.success(), "the second run must refuse ({st})");
    eprintln!("second run refused in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let err = second.log_text();
    assert!(
        err.contains(&first.pid.to_string()),
        "stderr must name pid {}: {err}",
        first.pid
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    first.assert_alive("a second run was refused");
    first.stop();
}

/// A dashboard port already taken is refused before the run is recorded: the error names the
/// address and the flag, and no run row is left without an end.
#[test]
fn a_dashboard_port_in_use_is_refused_without_an_open_run() {
    let sb = Sandbox::new();
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a port");
    let port = taken.local_addr().unwrap().port().to_string();
    let out = robo(sb.path())
        .arg("run")
        .arg("--db")
        .arg(&sb.db)
        .args(["--dash-port", &port, "--ws-port", "0", "--sim-speed", "max"])
        .args(["--symbols", SYMBOLS])
        .stdin(Stdio::null())
        .output()
        .expect("run robo-trader");
    assert!(!out.status.success(), "a taken port must refuse the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("--dash-port"),
        "stderr must name the address and the flag: {err}"
    );
    let open = try_count(&sb, "SELECT COUNT(*) FROM runs WHERE ended IS NULL", 0);
    assert_eq!(open, Some(0), "no run may be left open");
    drop(taken);
}

// ---------------------------------------------------------------------------------------------
// 5. Bad config

fn dir_listing(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let bytes = if meta.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                (bytes, meta.modified().unwrap()),
            )
        })
        .collect()
}

/// Runs `run` with this config file (if any) and flags; expects exit 2, one stderr line
/// naming `key`, and a directory left exactly as it was.
fn refuses(toml: Option<&str>, flags: &[&str], key: &str, db_exists: bool) {
    let sb = Sandbox::new();
    if db_exists {
        // Create and migrate the database as `run` would.
        drop(robo_trader::store::Store::open(&sb.db).expect("create the database"));
        assert!(sb.db.exists());
    }
    if let Some(t) = toml {
        std::fs::write(sb.path().join("robo-trader.toml"), t).unwrap();
    }
    let before = dir_listing(sb.path());
    // A coarse mtime clock would hide a write made right after the snapshot.
    sleep(Duration::from_millis(20));
    let mut cmd = robo(sb.path());
    cmd.arg("run").arg("--db").arg(&sb.db);
    // Given twice, a flag would be refused by clap for that reason instead.
    if !flags.contains(&"--dash-port") {
        cmd.args(["--dash-port", "0"]);
    }
    let out = cmd
        .args(["--ws-port", "0", "--sim-speed", "max"])
        .args(flags)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let case = format!("{toml:?} {flags:?} (db exists: {db_exists})");
    assert_eq!(out.status.code(), Some(2), "{case}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{case}: one line: {err}");
    assert!(err.contains(key), "{case}: stderr must name {key}: {err}");
    assert_eq!(sb.db.exists(), db_exists, "{case}");
    assert!(
        dir_listing(sb.path()) == before,
        "{case}: the directory changed: {:?}",
        dir_listing(sb.path()).keys().collect::<Vec<_>>()
    );
}

#[test]
fn bad_config_exits_2_and_leaves_the_db_untouched() {
    let unknown = "[risk]\nmax_postion_pct = 0.1\n";
    let bad_value = "[risk]\nmax_position_pct = \"abc\"\n";
    for db_exists in [false, true] {
        refuses(Some(unknown), &[], "risk.max_postion_pct", db_exists);
        refuses(Some(bad_value), &[], "risk.max_position_pct", db_exists);
        refuses(None, &["--symbols", ""], "--symbols", db_exists);
        refuses(None, &["--dash-port", "70000"], "--dash-port", db_exists);
    }
}

/// A `--db` whose directory does not exist is a bad parameter: exit 2, one line naming the flag
/// and the directory, and nothing created (no directory, lock file or log).
#[test]
fn a_db_in_a_missing_directory_exits_2_and_creates_nothing() {
    let sb = Sandbox::new();
    let missing = sb.path().join("missing");
    let out = robo(sb.path())
        .arg("run")
        .arg("--db")
        .arg(missing.join("robo.db"))
        .args(["--dash-port", "0", "--ws-port", "0", "--sim-speed", "max"])
        .output()
        .expect("run robo-trader");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("--db") && err.contains(&missing.display().to_string()),
        "stderr must name --db and the directory: {err}"
    );
    assert!(!missing.exists(), "the directory must not be created");
    assert!(dir_listing(sb.path()).is_empty(), "nothing may be written");
}

// ---------------------------------------------------------------------------------------------
// 6. market-hours

fn market_hours(at: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = robo(dir.path())
        .args(["market-hours", "--at", at, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn market_hours_json() {
    // The day after Thanksgiving 2026: an early close at 13:00.
    let v = market_hours("2026-11-27T10:00:00-05:00");
    assert_eq!(v["session"], "regular", "{v}");
    assert_eq!(v["is_open"], true, "{v}");
    assert_eq!(v["close"], "2026-11-27T13:00:00-05:00", "{v}");
    // Thanksgiving itself: closed; the next open is Friday's.
    let v = market_hours("2026-11-26T10:00:00-05:00");
    assert_eq!(v["session"], "closed", "{v}");
    assert_eq!(v["is_open"], false, "{v}");
    assert_eq!(v["next_open"], "2026-11-27T09:30:00-05:00", "{v}");
}

// ---------------------------------------------------------------------------------------------
// 7. Kill switch

fn entries_after(sb: &Sandbox, seq: i64) -> Option<i64> {
    let sql = "SELECT COUNT(*) FROM orders WHERE purpose = 'entry' AND seq > ?1";
    try_count(sb, sql, seq)
}

fn trading_state(status: &Value) -> &str {
    match &status["trading_state"] {
        Value::String(s) => s,
        Value::Object(o) => o.get("state").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    }
}

#[test]
fn kill_switch_is_obeyed_within_a_second() {
    let mut sb = Sandbox::new();
    let all = robo_trader::config::DEFAULT_SYMBOLS.join(",");
    let mut r = sb.run("max", &all, &[]);
    r.wait_for("entries flowing", TRADE_DEADLINE, || {
        entries_after(&sb, 0).filter(|n| *n >= 5).map(drop)
    });
    // They keep flowing: a fresh entry (generous: the machine may be busy with other tests).
    let seq = max_seq(&sb.conn());
    r.wait_for("another entry", Duration::from_secs(30), || {
        entries_after(&sb, seq).filter(|n| *n > 0).map(drop)
    });

    sb.kill_switch("on");
    let on = Instant::now();
    r.wait_for(
        "one second after the kill switch",
        Duration::from_secs(10),
        || (on.elapsed() >= Duration::from_secs(1)).then_some(()),
    );
    let cutoff = max_seq(&sb.conn());
    while on.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            entries_after(&sb, cutoff),
            Some(0),
            "an entry was placed more than a second after the kill switch"
        );
        sleep(POLL);
    }
    let open_entries = try_count(
        &sb,
        "SELECT COUNT(*) FROM orders WHERE purpose = 'entry'
         AND state IN ('new', 'submitted', 'partially_filled') AND seq <= ?1",
        cutoff,
    );
    assert_eq!(
        open_entries,
        Some(0),
        "halting cancels working entry orders"
    );
    r.assert_alive("halted");
    let status = sb.status();
    assert_eq!(trading_state(&status), "halted", "{status}");

    sb.kill_switch("off");
    r.wait_for("entries to resume", Duration::from_secs(15), || {
        entries_after(&sb, cutoff).filter(|n| *n > 0).map(drop)
    });
    r.stop();
    let l = check_invariants(&sb, "after the kill-switch test");
    assert_eq!(trading_state(&l.status), "active");
}

// ---------------------------------------------------------------------------------------------
// The checker itself

/// The invariant check must catch a damaged ledger, or the tests above prove nothing. Each
/// case damages a copy of a real database in one way.
#[test]
fn the_invariant_check_catches_a_damaged_ledger() {
    let mut sb = Sandbox::new();
    let mut r = sb.run("max", SYMBOLS, &[]);
    wait_fills_above(&sb, &mut r, 9);
    r.stop();
    check_invariants(&sb, "intact");
    let cases = [
        (
            "a fill's price moved",
            "UPDATE fills SET price = price || '1' WHERE id = (SELECT MAX(id) FROM fills)",
        ),
        (
            "a position off by one share",
            "UPDATE positions SET quantity = quantity + 1
             WHERE symbol = (SELECT symbol FROM fills ORDER BY id LIMIT 1)",
        ),
        (
            "an order filled twice",
            "INSERT INTO fills (exec_id, order_id, symbol, side, quantity, price, commission, ts)
             SELECT exec_id || '-again', order_id, symbol, side, quantity, price, commission, ts
             FROM fills ORDER BY id LIMIT 1",
        ),
        (
            "filled_qty disagrees with the fills",
            "UPDATE orders SET filled_qty = filled_qty - 1
             WHERE id = (SELECT order_id FROM fills ORDER BY id LIMIT 1)",
        ),
        (
            "a fill of an unknown order",
            "UPDATE fills SET order_id = 'C999999' WHERE id = 1",
        ),
        (
            "an order left open",
            "UPDATE orders SET state = 'submitted'
             WHERE id = (SELECT order_id FROM fills ORDER BY id LIMIT 1)",
        ),
    ];
    for (case, sql) in cases {
        let copy = Sandbox::new();
        for suffix in ["", "-wal"] {
            let from = PathBuf::from(format!("{}{suffix}", sb.db.display()));
            if from.exists() {
                std::fs::copy(&from, format!("{}{suffix}", copy.db.display())).unwrap();
            }
        }
        let c = Connection::open(&copy.db).unwrap();
        assert_eq!(c.execute(sql, []).unwrap(), 1, "{case}: one row changed");
        drop(c);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let l = check_invariants(&copy, case);
            // Clean-stop tests also require no open order.
            assert!(l.open_order_ids().is_empty(), "{case}: open orders");
        }));
        assert!(caught.is_err(), "the check missed: {case}");
    }
}

/// The trading state persists across restarts until an operator changes it: a run started
/// halted trades bars but places no entry and no signal exit (stops may still protect).
#[test]
fn the_kill_switch_persists_across_a_restart() {
    let mut sb = Sandbox::new();
    let mut r = sb.run("max", SYMBOLS, &[]);
    r.wait_for("entries", TRADE_DEADLINE, || {
        entries_after(&sb, 0).filter(|n| *n > 0).map(drop)
    });
    r.stop();
    sb.kill_switch("on");
    let seq = max_seq(&sb.conn());
    let decisions = count(&sb.conn(), "SELECT COUNT(*) FROM decisions");

    let mut r = sb.run("max", SYMBOLS, &[]);
    // Proof that bars are being traded: a thousand more decision rows (200 bars of 5 symbols;
    // the first run placed its first entry within a few bars).
    r.wait_for("bars to be traded", TRADE_DEADLINE, || {
        try_count(&sb, "SELECT COUNT(*) FROM decisions", 0).filter(|n| *n > decisions + 1000)
    });
    assert_eq!(
        try_count(
            &sb,
            "SELECT COUNT(*) FROM orders WHERE seq > ?1 AND purpose IN ('entry', 'signal_exit')",
            seq
        ),
        Some(0),
        "a halted run placed entries or signal exits (only protective exits may go out)"
    );
    r.stop();
    let l = check_invariants(&sb, "after the halted run");
    assert_eq!(trading_state(&l.status), "halted");
}

/// `kill-switch` on a path with no database must not create an empty one and report success:
/// an operator who mistyped `--db` would believe the trader halted.
#[test]
fn kill_switch_on_a_missing_database_refuses() {
    let sb = Sandbox::new();
    let out = sb.cli(&["kill-switch", "on"]);
    assert!(
        !out.status.success(),
        "kill-switch on a missing database reported success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("robo.db"), "the error names the path: {err}");
    assert!(!sb.db.exists(), "kill-switch created {}", sb.db.display());
}
