//! `run --record-bars DIR`: every bar the engine is fed, written as one `SYMBOL.csv` per symbol
//! in the format `backtest --data` reads (RFC 3339 UTC times, the exact decimal prices), so a
//! run can be replayed through `backtest` and the two compared decision by decision.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::SecondsFormat;
use robo_core::types::Bar;

/// One buffered CSV writer per symbol. A write failure stops the recording (with the error
/// kept for the caller to report) but never the trading.
#[derive(Debug)]
pub struct BarRecorder {
    dir: PathBuf,
    files: Vec<BufWriter<File>>,
    failed: Option<String>,
}

impl BarRecorder {
    /// Creates `dir` if needed and one file per name (in `SymbolId` order), truncating any
    /// earlier recording.
    pub fn create(dir: &Path, names: &[&str]) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::with_capacity(names.len());
        for n in names {
            let mut w = BufWriter::new(File::create(dir.join(format!("{n}.csv")))?);
            w.write_all(b"datetime,open,high,low,close,volume\n")?;
            files.push(w);
        }
        Ok(BarRecorder {
            dir: dir.to_path_buf(),
            files,
            failed: None,
        })
    }

    pub fn record(&mut self, b: &Bar) {
        if self.failed.is_some() {
            return;
        }
        let Some(w) = self.files.get_mut(b.symbol.index()) else {
            return;
        };
        let t = b.ts.to_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true);
        if let Err(e) = writeln!(
            w,
            "{t},{},{},{},{},{}",
            b.open, b.high, b.low, b.close, b.volume
        ) {
            self.failed = Some(format!("{}: {e}", self.dir.display()));
        }
    }

    /// Flushes every file; the first error of the recording, if any.
    pub fn finish(&mut self) -> Result<(), String> {
        for w in &mut self.files {
            if let Err(e) = w.flush() {
                self.failed
                    .get_or_insert_with(|| format!("{}: {e}", self.dir.display()));
            }
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}
