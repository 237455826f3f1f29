//! What the process-level tests share: the binary with a clean environment, a running
//! `robo-trader run` that is killed on drop and stopped by SIGTERM, read-only access to its
//! database, and the runtime the in-process fake gateway runs on.
//!
//! Each test file includes this module, and each uses part of it.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

pub const BIN: &str = env!("CARGO_BIN_EXE_robo-trader");
pub const POLL: Duration = Duration::from_millis(50);

/// A command for the binary in `dir`, with no inherited ROBO_/IB_/DASH_ settings, so the
/// developer's own environment cannot change a test.
pub fn robo(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ROBO_") || k.starts_with("IB_") || k.starts_with("DASH_") {
            c.env_remove(k.as_ref());
        }
    }
    for k in ["WS_PORT", "LOG_FILE", "RUST_LOG", "ROBO_FAILPOINT"] {
        c.env_remove(k);
    }
    c
}

/// A running `robo-trader run`: its database is `dir/robo.db` and its log `dir/run.log`.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub db: PathBuf,
    pub dir: PathBuf,
}

impl Proc {
    /// `robo-trader --config dir/robo-trader.toml run --db dir/robo.db <args>` with `config`
    /// written to that file, no web ports of its own and stderr to the log; `env` is set on top
    /// of the clean environment.
    pub fn run(dir: &Path, config: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let db = dir.join("robo.db");
        let cfg = dir.join("robo-trader.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("run.log");
        let mut cmd = robo(dir);
        cmd.arg("--config")
            .arg(&cfg)
            .arg("run")
            .arg("--db")
            .arg(&db)
            .args(["--dash-port", "0", "--ws-port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: Some(cmd.spawn().expect("spawn robo-trader")),
            log,
            db,
            dir: dir.to_path_buf(),
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Polls `ok` until it holds; fails with the log's tail on timeout or if the process exits.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut ok: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ok(self) {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "robo-trader exited ({st}) while waiting for {what}; log:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; log:\n{}",
                self.log_tail()
            );
            sleep(POLL);
        }
    }

    /// SIGTERM, then exit 0 within 5 s.
    pub fn stop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.as_ref().unwrap().id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is shared.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                break st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "no exit within 5 s of SIGTERM; log:\n{}",
                self.log_tail()
            );
            sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(0), "log:\n{}", self.log_tail());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A read-only connection, or `None` while the database does not exist yet.
pub fn open_db(path: &Path) -> Option<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    c.busy_timeout(Duration::from_secs(5)).ok()?;
    c.pragma_update(None, "query_only", true).ok()?;
    Some(c)
}

/// A count, or `None` while the database or its tables do not exist yet.
/// Every row of `sql` as a tuple of its columns.
pub fn rows<T>(db: &Connection, sql: &str) -> Vec<T>
where
    T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
{
    db.prepare(sql)
        .unwrap()
        .query_map([], |r| T::try_from(r))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

pub fn try_count(db: &Path, sql: &str) -> Option<i64> {
    open_db(db)?.query_row(sql, [], |r| r.get(0)).ok()
}

/// A count, or 0 while the database or its tables do not exist yet.
pub fn count(db: &Path, sql: &str) -> i64 {
    try_count(db, sql).unwrap_or(0)
}

/// How many times the IB session reached Ready.
pub fn ready_count(db: &Path) -> i64 {
    count(
        db,
        "SELECT COUNT(*) FROM connection_events WHERE state = 'ready'",
    )
}

/// The runtime the in-process fake gateway runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
