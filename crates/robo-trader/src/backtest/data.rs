//! Where backtest bars come from: CSV (through the shared reader) or the binary bar cache that
//! `data import` writes, merged across symbols into one time-ordered stream.
//!
//! CSV is streamed for `backtest`: one reader per file (per symbol), merged by timestamp.
//! A long file with a symbol column is first scanned once (every row checked, nothing kept but
//! where each symbol's rows lie): if it is in time order it is then read by one reader that
//! puts each timestamp's rows in symbol order; otherwise each symbol gets a reader over its
//! byte range. `optimize`, which replays the data many times, parses it into memory once.
//! Reading and parsing run on a background thread that hands batches of bars to the engine
//! over a bounded channel, so a run's memory does not grow with the number of bars.
//!
//! Cache layout (version 2, all little-endian):
//! - 16-byte header: magic `RTBARS\0\x02`, `u32` price scale (8 decimal places), `u32`
//!   reserved.
//! - Per-symbol sections of fixed 48-byte records: `ts i64` (ns since the epoch, UTC),
//!   `open high low close i64` (mantissas at the header's scale), `volume u64`.
//! - A directory: per symbol `u16` name length, name bytes, `u64` section offset, `u64` count,
//!   `u32` the section's own scale (the most decimals its prices had in the CSV text; loading
//!   divides the mantissas back to it, so a cache run computes with the same decimals as the
//!   CSV run).
//! - A 16-byte trailer: `u64` directory offset, `u32` symbol count, `RTBE`.
//!
//! The trailer comes last so `data import` can stream each section to disk without knowing the
//! counts up front. Loading reads each section in ~1 MB chunks of whole records.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use robo_core::calendar::{self, Calendar};
use robo_core::types::{Bar, SymbolId, Ts};
use rust_decimal::Decimal;

use crate::data::csv::{read_path, CsvError, CsvRows, LoadReport, RawBar, ReadOptions, SymbolBars};

pub const MAGIC: &[u8; 8] = b"RTBARS\0\x02";
const TRAILER_MAGIC: &[u8; 4] = b"RTBE";
/// Prices are stored as integer mantissas with this many decimal places.
pub const SCALE: u32 = 8;
const RECORD: usize = 48;

/// Why bars could not be loaded. Every variant is a problem with the input (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt bar cache: {why}")]
    Corrupt { path: String, why: String },
    #[error("{file}: price {value} (in the rows from line {line}) has more than {SCALE} decimal places or is too large; the cache cannot hold it exactly")]
    TooPrecise {
        file: String,
        line: usize,
        value: Decimal,
    },
    #[error("no bars to test (after the symbol, date and calendar filters)")]
    NoBars,
    #[error("{0} symbols: at most 65535 are supported")]
    TooManySymbols(usize),
    #[error("--symbols: {0} not found in the data")]
    UnknownSymbols(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One symbol's section in a cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSection {
    pub symbol: String,
    pub offset: u64,
    pub count: u64,
    /// The largest decimal scale of the section's prices in the source text.
    pub scale: u32,
}

/// Loaded (or openable) bars, shared by every run of an optimisation.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// CSV bars held in memory, sorted by symbol (`optimize`, which replays them many times).
    Memory(Arc<Vec<SymbolBars>>),
    /// CSV files read afresh by each stream, never held whole (`backtest`).
    Csv(Arc<CsvPlan>),
    /// A cache file; each run opens its own readers.
    Cache {
        path: PathBuf,
        sections: Vec<CacheSection>,
    },
}

/// How `open` holds CSV data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// Parse every row once into memory (fast to replay many times).
    Memory,
    /// Stream the files on every run (memory stays flat however long they are).
    Stream,
}

/// What a streamed CSV source reads: the symbols (sorted; a bar's `SymbolId` is its index
/// here) and the parts that produce them.
#[derive(Debug, Clone)]
pub struct CsvPlan {
    pub symbols: Vec<String>,
    parts: Vec<CsvPart>,
    skip_bad_rows: bool,
}

#[derive(Debug, Clone)]
enum CsvPart {
    /// A file without a symbol column: one symbol, rows in time order (checked as read).
    Single { path: PathBuf, symbol: u16 },
    /// A long file in time order across symbols: one reader, each timestamp's rows put in
    /// symbol order.
    LongSorted { path: PathBuf },
    /// One symbol's rows of a long file that is not in time order across symbols: a reader
    /// filtered to the symbol, from its first row (`offset`, `line`) to the end of its last.
    LongRange {
        path: PathBuf,
        symbol: u16,
        offset: u64,
        line: usize,
        end: u64,
    },
}

/// Filters applied while streaming.
#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    pub from: Option<Ts>,
    pub to: Option<Ts>,
    /// Keep only bars inside the NYSE regular session.
    pub nyse_only: bool,
}

/// True if the file starts with the cache magic (any version).
pub fn is_cache(path: &Path) -> bool {
    let mut head = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head[..7] == MAGIC[..7]
}

/// Read buffer of a streamed CSV file: big reads, few syscalls, still small next to the data.
const CSV_BUF: usize = 1 << 20;

fn stem_of(f: &Path) -> String {
    f.file_stem()
        .map(|s| s.to_string_lossy().trim().to_ascii_uppercase())
        .unwrap_or_default()
}

fn open_rows(path: &Path, opts: &ReadOptions) -> Result<CsvRows<BufReader<File>>, DataError> {
    let file = File::open(path).map_err(io_err(path))?;
    let r = BufReader::with_capacity(CSV_BUF, file);
    Ok(CsvRows::new(
        &path.display().to_string(),
        Some(&stem_of(path)),
        r,
        opts,
    )?)
}

impl CsvPlan {
    /// Looks at every file: the header of a one-symbol file, every row of a long file (which
    /// checks them all and finds where each symbol's rows lie). Nothing is kept but offsets.
    fn scan(
        path: &Path,
        symbols: Option<&[String]>,
        skip_bad_rows: bool,
        report: &mut LoadReport,
    ) -> Result<CsvPlan, DataError> {
        let files = csv_files(path)?;
        let opts = ReadOptions {
            skip_bad_rows,
            symbol_filter: symbols.map(<[String]>::to_vec),
            from: None,
            to: None,
        };
        // (symbol, file) in discovery order; parts name symbols by text until sorted.
        let mut origin: Vec<(String, String)> = Vec::new();
        let mut raw: Vec<(CsvPart, Vec<String>)> = Vec::new();
        for f in &files {
            let name = f.display().to_string();
            let mut rows = open_rows(f, &opts)?;
            report.files += 1;
            let found: Vec<String>;
            if rows.is_single_symbol() {
                found = rows.symbols().to_vec();
                if !found.is_empty() {
                    raw.push((
                        CsvPart::Single {
                            path: f.clone(),
                            symbol: 0,
                        },
                        found.clone(),
                    ));
                }
            } else {
                // (first offset, first line, end offset) per local symbol.
                let mut spans: Vec<(u64, usize, u64)> = Vec::new();
                let mut sorted = true;
                let mut prev = i64::MIN;
                let mut scan_report = LoadReport::default();
                while let Some(row) = rows.next_row(&mut scan_report)? {
                    if row.bar.ts.0 < prev {
                        sorted = false;
                    }
                    prev = row.bar.ts.0;
                    let end = row.offset + row.bytes as u64;
                    match spans.get_mut(row.symbol) {
                        Some(s) => s.2 = end,
                        None => spans.push((row.offset, row.line, end)),
                    }
                }
                report.skipped += scan_report.skipped;
                report.first_errors.extend(scan_report.first_errors);
                found = rows.symbols().to_vec();
                if sorted && !found.is_empty() {
                    raw.push((CsvPart::LongSorted { path: f.clone() }, found.clone()));
                } else {
                    for (sym, (offset, line, end)) in found.iter().zip(spans) {
                        raw.push((
                            CsvPart::LongRange {
                                path: f.clone(),
                                symbol: 0,
                                offset,
                                line,
                                end,
                            },
                            vec![sym.clone()],
                        ));
                    }
                }
            }
            for s in found {
                if let Some((_, first)) = origin.iter().find(|(o, _)| *o == s) {
                    return Err(CsvError::SymbolInTwoFiles {
                        symbol: s,
                        first: first.clone(),
                        second: name,
                    }
                    .into());
                }
                origin.push((s, name.clone()));
            }
        }
        let mut names: Vec<String> = origin.into_iter().map(|(s, _)| s).collect();
        names.sort();
        if names.len() > usize::from(u16::MAX) {
            return Err(DataError::TooManySymbols(names.len()));
        }
        let id = |s: &str| names.binary_search_by(|n| n.as_str().cmp(s)).unwrap_or(0) as u16;
        let parts = raw
            .into_iter()
            .map(|(part, syms)| match part {
                CsvPart::Single { path, .. } => CsvPart::Single {
                    path,
                    symbol: id(&syms[0]),
                },
                CsvPart::LongRange {
                    path,
                    offset,
                    line,
                    end,
                    ..
                } => CsvPart::LongRange {
                    path,
                    symbol: id(&syms[0]),
                    offset,
                    line,
                    end,
                },
                p => p,
            })
            .collect();
        Ok(CsvPlan {
            symbols: names,
            parts,
            skip_bad_rows,
        })
    }
}

impl DataSource {
    /// Opens `path`: a cache (by magic bytes) or CSV file/directory, held as `residency` says.
    /// `symbols` (upper-cased, non-empty) restricts the symbols; one that is absent is an
    /// error.
    pub fn open(
        path: &Path,
        symbols: Option<&[String]>,
        opts: &ReadOptions,
        residency: Residency,
    ) -> Result<(DataSource, LoadReport), DataError> {
        let src = if path.is_file() && is_cache(path) {
            let mut sections = read_directory(path)?;
            if let Some(want) = symbols {
                sections.retain(|s| want.iter().any(|w| w.eq_ignore_ascii_case(&s.symbol)));
            }
            (
                DataSource::Cache {
                    path: path.to_path_buf(),
                    sections,
                },
                LoadReport {
                    files: 1,
                    ..LoadReport::default()
                },
            )
        } else if residency == Residency::Stream {
            let mut report = LoadReport::default();
            let plan = CsvPlan::scan(path, symbols, opts.skip_bad_rows, &mut report)?;
            (DataSource::Csv(Arc::new(plan)), report)
        } else {
            let mut o = opts.clone();
            o.symbol_filter = symbols.map(<[String]>::to_vec);
            let (bars, report) = read_path(path, &o)?;
            (DataSource::Memory(Arc::new(bars)), report)
        };
        if let Some(want) = symbols {
            let have = src.0.symbols();
            let missing: Vec<&str> = want
                .iter()
                .filter(|w| !have.iter().any(|h| h.eq_ignore_ascii_case(w)))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(DataError::UnknownSymbols(missing.join(", ")));
            }
        }
        Ok(src)
    }

    pub fn symbols(&self) -> Vec<String> {
        match self {
            DataSource::Memory(v) => v.iter().map(|s| s.symbol.clone()).collect(),
            DataSource::Csv(p) => p.symbols.clone(),
            DataSource::Cache { sections, .. } => {
                sections.iter().map(|s| s.symbol.clone()).collect()
            }
        }
    }

    /// Puts the symbols named in `order` first, in that order (the rest after them, sorted), so
    /// bars of one timestamp reach the engine in the same order as in `run`, whose symbol ids
    /// follow the watchlist.
    pub fn reorder(&mut self, order: &[String]) {
        let names = self.symbols();
        let rank = |n: &String| {
            order
                .iter()
                .position(|o| o.eq_ignore_ascii_case(n))
                .unwrap_or(usize::MAX)
        };
        let mut perm: Vec<usize> = (0..names.len()).collect();
        perm.sort_by_key(|&i| (rank(&names[i]), i));
        if perm.iter().enumerate().all(|(k, &i)| k == i) {
            return;
        }
        // new id of old id i
        let mut new_id = vec![0u16; names.len()];
        for (k, &i) in perm.iter().enumerate() {
            new_id[i] = k as u16;
        }
        match self {
            DataSource::Memory(v) => {
                let re: Vec<SymbolBars> = perm.iter().map(|&i| v[i].clone()).collect();
                *v = Arc::new(re);
            }
            DataSource::Cache { sections, .. } => {
                *sections = perm.iter().map(|&i| sections[i].clone()).collect();
            }
            DataSource::Csv(plan) => {
                let mut p = (**plan).clone();
                p.symbols = perm.iter().map(|&i| names[i].clone()).collect();
                for part in &mut p.parts {
                    if let CsvPart::Single { symbol, .. } | CsvPart::LongRange { symbol, .. } = part
                    {
                        *symbol = new_id[usize::from(*symbol)];
                    }
                }
                *plan = Arc::new(p);
            }
        }
    }

    /// True when each stream reads files (worth a reader thread); false for memory.
    pub fn is_streamed(&self) -> bool {
        !matches!(self, DataSource::Memory(_))
    }

    /// A fresh merged stream over all symbols.
    pub fn stream(&self, filter: &StreamFilter) -> Result<BarStream, DataError> {
        let cursors = match self {
            DataSource::Memory(v) => (0..v.len())
                .map(|i| Cursor::Memory {
                    data: Arc::clone(v),
                    sym: i,
                    pos: 0,
                })
                .collect(),
            DataSource::Csv(plan) => {
                let mut c = Vec::with_capacity(plan.parts.len());
                for part in &plan.parts {
                    c.push(Cursor::Csv(Box::new(CsvCursor::open(plan, part)?)));
                }
                c
            }
            DataSource::Cache { path, sections } => {
                let mut c = Vec::with_capacity(sections.len());
                for (i, s) in sections.iter().enumerate() {
                    let mut f = File::open(path).map_err(io_err(path))?;
                    f.seek(SeekFrom::Start(s.offset)).map_err(io_err(path))?;
                    c.push(Cursor::Cache(CacheCursor {
                        path: path.clone(),
                        f,
                        buf: Vec::new(),
                        at: 0,
                        left: s.count,
                        scale: s.scale.min(SCALE),
                        last_ts: i64::MIN,
                        symbol: i as u16,
                    }));
                }
                c
            }
        };
        let mut st = BarStream {
            cursors,
            heap: BinaryHeap::new(),
            pending: Vec::new(),
            filter: filter.clone(),
            cal: filter.nyse_only.then(Calendar::nyse),
            session: None,
            filtered: 0,
        };
        st.pending = vec![None; st.cursors.len()];
        for i in 0..st.cursors.len() {
            st.refill(i)?;
        }
        Ok(st)
    }

    /// A stream read by a background thread (for sources that read files), so parsing or
    /// decoding overlaps the engine; otherwise the plain stream.
    pub fn feed(&self, filter: &StreamFilter) -> Result<BarFeed, DataError> {
        let st = self.stream(filter)?;
        if !self.is_streamed() {
            return Ok(BarFeed::Direct(st));
        }
        Ok(BarFeed::Thread(Prefetch::spawn(st)))
    }

    /// The typical spacing between bars in seconds (median of the first gaps of the first
    /// symbol), or `None` with fewer than two bars.
    pub fn bar_spacing_secs(&self) -> Result<Option<i64>, DataError> {
        let mut st = self.stream(&StreamFilter::default())?;
        let first_sym = st.pending.iter().flatten().map(|b| b.symbol).min();
        let Some(sym) = first_sym else {
            return Ok(None);
        };
        let mut ts = Vec::new();
        let mut seen = 0u32;
        while let Some(b) = st.next_bar()? {
            seen += 1;
            if b.symbol == sym {
                ts.push(b.ts.0);
                if ts.len() > 1000 {
                    break;
                }
            }
            // A symbol that stops early must not make this read the whole data.
            if seen > 200_000 {
                break;
            }
        }
        let mut gaps: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
        if gaps.is_empty() {
            return Ok(None);
        }
        gaps.sort_unstable();
        Ok(Some((gaps[gaps.len() / 2] / Ts::NANOS_PER_SEC).max(1)))
    }
}

#[derive(Debug)]
enum Cursor {
    Memory {
        data: Arc<Vec<SymbolBars>>,
        sym: usize,
        pos: usize,
    },
    Csv(Box<CsvCursor>),
    Cache(CacheCursor),
}

/// One reader of a [`CsvPlan`] part.
#[derive(Debug)]
struct CsvCursor {
    rows: CsvRows<BufReader<File>>,
    /// The reader's symbol slots → `SymbolId`s.
    ids: Vec<u16>,
    plan: Arc<CsvPlan>,
    /// Stop at this byte offset (a symbol's range in a long file).
    end: Option<u64>,
    /// Put each timestamp's rows in symbol order (a long time-sorted file).
    regroup: bool,
    /// The current timestamp's rows, in reverse symbol order (popped from the end).
    group: Vec<(u16, RawBar)>,
    ahead: Option<(u16, RawBar)>,
    report: LoadReport,
    /// Bad rows skipped here are new (a one-symbol file); a long file's were counted by the
    /// scan.
    counts_skips: bool,
}

impl CsvCursor {
    fn open(plan: &Arc<CsvPlan>, part: &CsvPart) -> Result<Self, DataError> {
        let mut opts = ReadOptions {
            skip_bad_rows: plan.skip_bad_rows,
            symbol_filter: Some(plan.symbols.clone()),
            from: None,
            to: None,
        };
        let (path, ids, end, regroup, seek) = match part {
            CsvPart::Single { path, symbol } => (path, vec![*symbol], None, false, None),
            CsvPart::LongSorted { path } => {
                // The scan already checked (and with skipping, counted) every row.
                opts.skip_bad_rows = true;
                (path, Vec::new(), None, true, None)
            }
            CsvPart::LongRange {
                path,
                symbol,
                offset,
                line,
                end,
            } => {
                opts.skip_bad_rows = true;
                opts.symbol_filter = plan
                    .symbols
                    .get(usize::from(*symbol))
                    .map(|s| vec![s.clone()]);
                (
                    path,
                    vec![*symbol],
                    Some(*end),
                    false,
                    Some((*offset, *line)),
                )
            }
        };
        let mut rows = open_rows(path, &opts)?;
        if let Some((offset, line)) = seek {
            rows.seek_to(offset, line)?;
        }
        Ok(CsvCursor {
            rows,
            ids,
            plan: Arc::clone(plan),
            end,
            regroup,
            group: Vec::new(),
            ahead: None,
            report: LoadReport::default(),
            counts_skips: matches!(part, CsvPart::Single { .. }),
        })
    }

    /// Always inlined, as `next` is: a bar returned through memory is stored in pieces and
    /// loaded whole by the caller, and that failed store forwarding cost a stall per row.
    #[inline(always)]
    fn read(&mut self) -> Result<Option<(u16, RawBar)>, DataError> {
        if self.end.is_some_and(|e| self.rows.position() >= e) {
            return Ok(None);
        }
        let Some(row) = self.rows.next_row(&mut self.report)? else {
            return Ok(None);
        };
        while self.ids.len() <= row.symbol {
            // A new symbol slot of a long file: find its id by name.
            let name = self.rows.symbols().get(self.ids.len());
            let id = name
                .and_then(|n| self.plan.symbols.iter().position(|s| s == n))
                .unwrap_or(0);
            self.ids.push(id as u16);
        }
        Ok(Some((self.ids[row.symbol], row.bar)))
    }

    #[inline(always)]
    fn next(&mut self) -> Result<Option<(u16, RawBar)>, DataError> {
        if !self.regroup {
            return self.read();
        }
        if let Some(b) = self.group.pop() {
            return Ok(Some(b));
        }
        let first = match self.ahead.take() {
            Some(b) => b,
            None => match self.read()? {
                Some(b) => b,
                None => return Ok(None),
            },
        };
        self.group.push(first);
        loop {
            match self.read()? {
                Some(b) if b.1.ts == first.1.ts => self.group.push(b),
                other => {
                    self.ahead = other;
                    break;
                }
            }
        }
        self.group.sort_unstable_by_key(|b| std::cmp::Reverse(b.0));
        Ok(self.group.pop())
    }
}

/// `m / 10^e` with a constant divisor per arm (a multiply, not a division, in the hot loop).
#[inline(always)]
fn div_pow10(m: i64, e: u32) -> i64 {
    match e {
        0 => m,
        1 => m / 10,
        2 => m / 100,
        3 => m / 1_000,
        4 => m / 10_000,
        5 => m / 100_000,
        6 => m / 1_000_000,
        7 => m / 10_000_000,
        _ => m / 100_000_000,
    }
}

/// Records decoded per read of a cache section (96 KB: the chunk is still in L2 when decoded).
const CACHE_CHUNK: usize = 2_048;

#[derive(Debug)]
struct CacheCursor {
    path: PathBuf,
    f: File,
    buf: Vec<u8>,
    at: usize,
    left: u64,
    /// The section's decimal scale: mantissas are divided by 10^(SCALE − scale).
    scale: u32,
    last_ts: i64,
    symbol: u16,
}

impl CacheCursor {
    fn corrupt(&self, why: String) -> DataError {
        DataError::Corrupt {
            path: self.path.display().to_string(),
            why,
        }
    }

    /// Reads the next chunk of the section; `false` at its end.
    #[inline(never)]
    fn read_chunk(&mut self) -> Result<bool, DataError> {
        if self.left == 0 {
            return Ok(false);
        }
        let n = self.left.min(CACHE_CHUNK as u64) as usize;
        self.buf.resize(n * RECORD, 0);
        self.f
            .read_exact(&mut self.buf)
            .map_err(|e| self.corrupt(format!("truncated section: {e}")))?;
        self.left -= n as u64;
        self.at = 0;
        Ok(true)
    }

    /// Always inlined: returned through memory, the bar was stored in pieces and loaded
    /// whole, and that failed store forwarding cost more than the decoding.
    #[inline(always)]
    fn next_raw(&mut self) -> Result<Option<RawBar>, DataError> {
        if self.at + RECORD > self.buf.len() && !self.read_chunk()? {
            return Ok(None);
        }
        let Some(rec) = self.buf.get(self.at..self.at + RECORD) else {
            return Ok(None);
        };
        self.at += RECORD;
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rec[i * 8..i * 8 + 8]);
            i64::from_le_bytes(b)
        };
        let ts = word(0);
        let [o, h, l, c] = [word(1), word(2), word(3), word(4)];
        let volume = word(5) as u64;
        if ts <= self.last_ts {
            return Err(self.corrupt(format!("timestamps not increasing at {ts}")));
        }
        if o <= 0 || h <= 0 || l <= 0 || c <= 0 || h < l {
            return Err(self.corrupt(format!("bad prices at {ts}")));
        }
        self.last_ts = ts;
        // Back to the scale the CSV text had (the import recorded it), so a cache run does the
        // same decimal arithmetic as a CSV run. Positive i64 mantissas fit Decimal's low words.
        let scale = self.scale;
        let d = |m: i64| {
            let m = div_pow10(m, SCALE - scale) as u64;
            Decimal::from_parts(m as u32, (m >> 32) as u32, 0, false, scale)
        };
        Ok(Some(RawBar {
            ts: Ts(ts),
            open: d(o),
            high: d(h),
            low: d(l),
            close: d(c),
            volume,
        }))
    }
}

/// All symbols' bars in time order; bars with equal timestamps come in symbol order. The
/// `SymbolId` of a bar is its symbol's index in [`DataSource::symbols`].
#[derive(Debug)]
pub struct BarStream {
    cursors: Vec<Cursor>,
    /// (ts, symbol, cursor) of each cursor's pending bar.
    heap: BinaryHeap<Reverse<(i64, u16, u16)>>,
    pending: Vec<Option<Bar>>,
    filter: StreamFilter,
    cal: Option<Calendar>,
    /// The regular session of the last bar's day (cached: the calendar is asked once a day).
    session: Option<(chrono::NaiveDate, Option<(Ts, Ts)>)>,
    /// Bars dropped by the calendar filter.
    pub filtered: u64,
}

impl BarStream {
    /// Always inlined, like the readers under it (see `CsvCursor::read`).
    #[inline(always)]
    fn raw_next(&mut self, i: usize) -> Result<Option<(u16, RawBar)>, DataError> {
        match self.cursors.get_mut(i) {
            Some(Cursor::Memory { data, sym, pos }) => {
                let b = data.get(*sym).and_then(|s| s.bars.get(*pos)).copied();
                *pos += 1;
                Ok(b.map(|b| (*sym as u16, b)))
            }
            Some(Cursor::Csv(c)) => c.next(),
            Some(Cursor::Cache(c)) => Ok(c.next_raw()?.map(|b| (c.symbol, b))),
            None => Ok(None),
        }
    }

    /// Malformed CSV rows skipped so far (with `skip_bad_rows`) while streaming.
    pub fn skipped(&self) -> u64 {
        self.cursors
            .iter()
            .map(|c| match c {
                Cursor::Csv(c) if c.counts_skips => c.report.skipped as u64,
                _ => 0,
            })
            .sum()
    }

    fn refill(&mut self, i: usize) -> Result<(), DataError> {
        loop {
            let Some((sym, b)) = self.raw_next(i)? else {
                self.pending[i] = None;
                return Ok(());
            };
            if self.filter.from.is_some_and(|f| b.ts < f) {
                continue;
            }
            if self.filter.to.is_some_and(|t| b.ts >= t) {
                self.pending[i] = None;
                return Ok(());
            }
            if self.cal.is_some() && !self.in_session(b.ts) {
                self.filtered += 1;
                continue;
            }
            let bar = b.with_symbol(SymbolId(sym));
            // One cursor needs no merge (the common one-file case).
            if self.cursors.len() > 1 {
                self.heap.push(Reverse((b.ts.0, sym, i as u16)));
            }
            self.pending[i] = Some(bar);
            return Ok(());
        }
    }

    fn in_session(&mut self, ts: Ts) -> bool {
        let day = calendar::ny_date(ts);
        let hours = match self.session {
            Some((d, h)) if d == day => h,
            _ => {
                let h = self.cal.as_ref().and_then(|c| c.regular_hours(day));
                self.session = Some((day, h));
                h
            }
        };
        hours.is_some_and(|(open, close)| ts >= open && ts < close)
    }

    /// Appends up to `max` bars to `out` (fewer only at the end). With one cursor the bars go
    /// straight from the reader to `out`, without the merge's bookkeeping.
    pub fn fill_batch(&mut self, out: &mut Vec<Bar>, max: usize) -> Result<(), DataError> {
        if self.cursors.len() != 1 {
            while out.len() < max {
                match self.next_bar()? {
                    Some(b) => out.push(b),
                    None => break,
                }
            }
            return Ok(());
        }
        if let Some(b) = self.pending.first_mut().and_then(Option::take) {
            out.push(b);
        } else {
            return Ok(());
        }
        let unfiltered =
            self.filter.from.is_none() && self.filter.to.is_none() && self.cal.is_none();
        if let (true, Some(Cursor::Cache(c))) = (unfiltered, self.cursors.first_mut()) {
            // The hottest loop of a cache run: decode straight into the batch.
            let symbol = SymbolId(c.symbol);
            while out.len() < max {
                let Some(b) = c.next_raw()? else {
                    return Ok(());
                };
                out.push(b.with_symbol(symbol));
            }
            return self.refill(0);
        }
        while out.len() < max {
            let Some((sym, b)) = self.raw_next(0)? else {
                return Ok(());
            };
            if self.filter.from.is_some_and(|f| b.ts < f) {
                continue;
            }
            if self.filter.to.is_some_and(|t| b.ts >= t) {
                return Ok(());
            }
            if self.cal.is_some() && !self.in_session(b.ts) {
                self.filtered += 1;
                continue;
            }
            out.push(b.with_symbol(SymbolId(sym)));
        }
        // Keep the stream's invariant: the next bar waits in `pending`.
        self.refill(0)
    }

    /// The next bar in (time, symbol) order.
    #[inline]
    pub fn next_bar(&mut self) -> Result<Option<Bar>, DataError> {
        let i = if self.cursors.len() == 1 {
            if self.pending[0].is_none() {
                return Ok(None);
            }
            0
        } else {
            let Some(Reverse((_, _, i))) = self.heap.pop() else {
                return Ok(None);
            };
            usize::from(i)
        };
        let bar = self.pending.get_mut(i).and_then(Option::take);
        self.refill(i)?;
        Ok(bar)
    }
}

/// Bars per message from the reader thread.
const BATCH: usize = 4096;
/// Messages in flight: bounds the memory between the reader and the engine (~3 MB).
const IN_FLIGHT: usize = 8;

enum Msg {
    Bars(Vec<Bar>),
    End { filtered: u64, skipped: u64 },
    Failed(DataError),
}

/// A [`BarStream`] driven by a background thread that sends batches of bars over a bounded
/// channel; empty batches come back to be refilled, so the steady state allocates nothing.
#[derive(Debug)]
pub struct Prefetch {
    rx: Receiver<Msg>,
    back: SyncSender<Vec<Bar>>,
    cur: Vec<Bar>,
    at: usize,
    end: Option<(u64, u64)>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Bars(b) => write!(f, "Bars({})", b.len()),
            Msg::End { .. } => f.write_str("End"),
            Msg::Failed(e) => write!(f, "Failed({e})"),
        }
    }
}

impl Prefetch {
    fn spawn(mut st: BarStream) -> Self {
        let (tx, rx) = sync_channel::<Msg>(IN_FLIGHT);
        let (back, spare) = sync_channel::<Vec<Bar>>(IN_FLIGHT + 2);
        std::thread::spawn(move || loop {
            let mut batch = spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(BATCH));
            batch.clear();
            let failed = st.fill_batch(&mut batch, BATCH).err();
            let last = batch.len() < BATCH || failed.is_some();
            // A closed channel means the consumer is gone: stop reading.
            if !batch.is_empty() && tx.send(Msg::Bars(batch)).is_err() {
                return;
            }
            if last {
                let _ = tx.send(match failed {
                    Some(e) => Msg::Failed(e),
                    None => Msg::End {
                        filtered: st.filtered,
                        skipped: st.skipped(),
                    },
                });
                return;
            }
        });
        Prefetch {
            rx,
            back,
            cur: Vec::new(),
            at: 0,
            end: None,
        }
    }

    /// The next batch from the reader thread; `None` at the end.
    fn next_batch(&mut self) -> Result<Option<Vec<Bar>>, DataError> {
        if self.at < self.cur.len() {
            // Bars taken one by one leave the rest of their batch here.
            let mut rest = std::mem::take(&mut self.cur);
            rest.drain(..self.at);
            self.at = 0;
            return Ok(Some(rest));
        }
        self.recv()
    }

    /// The next message's batch; `None` once the end was reported.
    fn recv(&mut self) -> Result<Option<Vec<Bar>>, DataError> {
        if self.end.is_some() {
            return Ok(None);
        }
        match self.rx.recv() {
            Ok(Msg::Bars(b)) => Ok(Some(b)),
            Ok(Msg::End { filtered, skipped }) => {
                self.end = Some((filtered, skipped));
                Ok(None)
            }
            Ok(Msg::Failed(e)) => Err(e),
            Err(_) => Err(Self::reader_stopped()),
        }
    }

    fn reader_stopped() -> DataError {
        DataError::Corrupt {
            path: "<reader thread>".into(),
            why: "the data reader stopped".into(),
        }
    }

    #[inline]
    fn next_bar(&mut self) -> Result<Option<Bar>, DataError> {
        loop {
            if let Some(b) = self.cur.get(self.at) {
                self.at += 1;
                return Ok(Some(*b));
            }
            let Some(b) = self.recv()? else {
                return Ok(None);
            };
            let used = std::mem::replace(&mut self.cur, b);
            let _ = self.back.try_send(used);
            self.at = 0;
        }
    }
}

/// Where a run's bars come from: a stream read in this thread, or by a reader thread.
#[derive(Debug)]
pub enum BarFeed {
    Direct(BarStream),
    Thread(Prefetch),
}

impl BarFeed {
    #[inline]
    pub fn next_bar(&mut self) -> Result<Option<Bar>, DataError> {
        match self {
            BarFeed::Direct(s) => s.next_bar(),
            BarFeed::Thread(p) => p.next_bar(),
        }
    }

    /// The next batch of bars in (time, symbol) order, `None` at the end. `reuse` is a spent
    /// batch whose memory the next one may take (an empty `Vec` when there is none); don't mix
    /// with [`Self::next_bar`] except to take the rest of a batch.
    pub fn next_batch(&mut self, mut reuse: Vec<Bar>) -> Result<Option<Vec<Bar>>, DataError> {
        match self {
            BarFeed::Direct(s) => {
                reuse.clear();
                s.fill_batch(&mut reuse, BATCH)?;
                Ok((!reuse.is_empty()).then_some(reuse))
            }
            BarFeed::Thread(p) => {
                if reuse.capacity() > 0 {
                    let _ = p.back.try_send(reuse);
                }
                p.next_batch()
            }
        }
    }

    /// Bars dropped by the calendar filter (complete once the feed is exhausted).
    pub fn filtered(&self) -> u64 {
        match self {
            BarFeed::Direct(s) => s.filtered,
            BarFeed::Thread(p) => p.end.map_or(0, |e| e.0),
        }
    }

    /// Malformed rows skipped while streaming (complete once the feed is exhausted).
    pub fn skipped(&self) -> u64 {
        match self {
            BarFeed::Direct(s) => s.skipped(),
            BarFeed::Thread(p) => p.end.map_or(0, |e| e.1),
        }
    }
}

fn read_directory(path: &Path) -> Result<Vec<CacheSection>, DataError> {
    let corrupt = |why: &str| DataError::Corrupt {
        path: path.display().to_string(),
        why: why.to_string(),
    };
    let mut f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    if len < 32 {
        return Err(corrupt("shorter than header and trailer"));
    }
    let mut head = [0u8; 16];
    f.read_exact(&mut head).map_err(io_err(path))?;
    if &head[..8] != MAGIC {
        return Err(corrupt(
            "an older cache format version; run `robo-trader data import` again",
        ));
    }
    let scale = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if scale != SCALE {
        return Err(corrupt("unexpected price scale"));
    }
    f.seek(SeekFrom::Start(len - 16)).map_err(io_err(path))?;
    let mut tr = [0u8; 16];
    f.read_exact(&mut tr).map_err(io_err(path))?;
    if &tr[12..16] != TRAILER_MAGIC {
        return Err(corrupt("missing trailer (incomplete import?)"));
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&tr[0..8]);
    let dir_off = u64::from_le_bytes(w);
    let n = u32::from_le_bytes([tr[8], tr[9], tr[10], tr[11]]);
    if dir_off < 16 || dir_off > len - 16 {
        return Err(corrupt("directory offset out of range"));
    }
    if n > u32::from(u16::MAX) {
        return Err(corrupt("too many symbols"));
    }
    f.seek(SeekFrom::Start(dir_off)).map_err(io_err(path))?;
    let mut r = BufReader::new(f.take(len - 16 - dir_off));
    let mut sections = Vec::new();
    for _ in 0..n {
        let mut l = [0u8; 2];
        r.read_exact(&mut l)
            .map_err(|_| corrupt("directory truncated"))?;
        let mut name = vec![0u8; usize::from(u16::from_le_bytes(l))];
        r.read_exact(&mut name)
            .map_err(|_| corrupt("directory truncated"))?;
        let mut nums = [0u8; 20];
        r.read_exact(&mut nums)
            .map_err(|_| corrupt("directory truncated"))?;
        w.copy_from_slice(&nums[0..8]);
        let offset = u64::from_le_bytes(w);
        w.copy_from_slice(&nums[8..16]);
        let count = u64::from_le_bytes(w);
        let sec_scale = u32::from_le_bytes([nums[16], nums[17], nums[18], nums[19]]);
        if sec_scale > SCALE {
            return Err(corrupt("section scale above the file's"));
        }
        let end = count
            .checked_mul(RECORD as u64)
            .and_then(|b| b.checked_add(offset));
        if offset < 16 || end.is_none_or(|e| e > dir_off) {
            return Err(corrupt("section outside the file"));
        }
        let symbol = String::from_utf8(name).map_err(|_| corrupt("symbol not UTF-8"))?;
        sections.push(CacheSection {
            symbol,
            offset,
            count,
            scale: sec_scale,
        });
    }
    sections.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok(sections)
}

/// What `data import` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub files: usize,
    pub symbols: usize,
    pub bars: u64,
    pub skipped: usize,
    pub bytes: u64,
}

struct CacheWriter {
    path: PathBuf,
    w: BufWriter<File>,
    pos: u64,
    dir: Vec<CacheSection>,
}

impl CacheWriter {
    fn create(path: &Path) -> Result<Self, DataError> {
        let f = File::create(path).map_err(io_err(path))?;
        let mut cw = CacheWriter {
            path: path.to_path_buf(),
            w: BufWriter::with_capacity(1 << 20, f),
            pos: 0,
            dir: Vec::new(),
        };
        let mut head = [0u8; 16];
        head[..8].copy_from_slice(MAGIC);
        head[8..12].copy_from_slice(&SCALE.to_le_bytes());
        cw.put(&head)?;
        Ok(cw)
    }

    fn put(&mut self, b: &[u8]) -> Result<(), DataError> {
        self.w.write_all(b).map_err(io_err(&self.path))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn begin(&mut self, symbol: &str) {
        self.dir.push(CacheSection {
            symbol: symbol.to_string(),
            offset: self.pos,
            count: 0,
            scale: 0,
        });
    }

    fn bar(&mut self, b: &RawBar, file: &str, line: usize) -> Result<(), DataError> {
        let mut scale = 0;
        let mut m = |v: Decimal| -> Result<i64, DataError> {
            let too = || DataError::TooPrecise {
                file: file.to_string(),
                line,
                value: v,
            };
            if v.scale() > SCALE {
                return Err(too());
            }
            scale = scale.max(v.scale());
            let mut x = v;
            x.rescale(SCALE);
            i64::try_from(x.mantissa()).map_err(|_| too())
        };
        let mut rec = [0u8; RECORD];
        rec[0..8].copy_from_slice(&b.ts.0.to_le_bytes());
        for (k, v) in [b.open, b.high, b.low, b.close].into_iter().enumerate() {
            rec[8 + k * 8..16 + k * 8].copy_from_slice(&m(v)?.to_le_bytes());
        }
        rec[40..48].copy_from_slice(&b.volume.to_le_bytes());
        self.put(&rec)?;
        if let Some(s) = self.dir.last_mut() {
            s.count += 1;
            s.scale = s.scale.max(scale);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<u64, DataError> {
        self.dir.retain(|s| s.count > 0);
        let dir_off = self.pos;
        let dir = std::mem::take(&mut self.dir);
        for s in &dir {
            let name = s.symbol.as_bytes();
            let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            self.put(&len.to_le_bytes())?;
            self.put(&name[..usize::from(len)])?;
            self.put(&s.offset.to_le_bytes())?;
            self.put(&s.count.to_le_bytes())?;
            self.put(&s.scale.to_le_bytes())?;
        }
        let mut tr = [0u8; 16];
        tr[0..8].copy_from_slice(&dir_off.to_le_bytes());
        tr[8..12].copy_from_slice(&(dir.len() as u32).to_le_bytes());
        tr[12..16].copy_from_slice(TRAILER_MAGIC);
        self.put(&tr)?;
        self.w.flush().map_err(io_err(&self.path))?;
        Ok(self.pos)
    }
}

/// Converts a CSV file or directory into a cache at `out`, streaming: each symbol's rows are
/// read by the same per-part readers a streamed backtest uses and written as they come, so
/// memory stays flat however long the input is. A failed import removes the partial output.
pub fn import(input: &Path, out: &Path, skip_bad_rows: bool) -> Result<ImportReport, DataError> {
    let res = import_inner(input, out, skip_bad_rows);
    if res.is_err() {
        let _ = std::fs::remove_file(out);
    }
    res
}

fn csv_files(input: &Path) -> Result<Vec<PathBuf>, DataError> {
    let meta = std::fs::metadata(input).map_err(io_err(input))?;
    if !meta.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut v = Vec::new();
    for e in std::fs::read_dir(input).map_err(io_err(input))? {
        let p = e.map_err(io_err(input))?.path();
        let csv = p
            .extension()
            .is_some_and(|x| x.to_string_lossy().eq_ignore_ascii_case("csv"));
        if csv && p.is_file() {
            v.push(p);
        }
    }
    v.sort();
    if v.is_empty() {
        return Err(CsvError::NoCsvFiles {
            dir: input.display().to_string(),
        }
        .into());
    }
    Ok(v)
}

fn import_inner(input: &Path, out: &Path, skip: bool) -> Result<ImportReport, DataError> {
    let mut lr = LoadReport::default();
    let plan = Arc::new(CsvPlan::scan(input, None, skip, &mut lr)?);
    let mut w = CacheWriter::create(out)?;
    let mut rep = ImportReport {
        files: lr.files,
        ..ImportReport::default()
    };
    let mut skipped = lr.skipped as u64;
    for (id, sym) in plan.symbols.iter().enumerate() {
        w.begin(sym);
        // The parts holding this symbol: its own file, its range, or a time-sorted long file
        // read with a filter to it.
        for part in &plan.parts {
            let (path, filtered) = match part {
                CsvPart::Single { path, symbol } | CsvPart::LongRange { path, symbol, .. } => {
                    if usize::from(*symbol) != id {
                        continue;
                    }
                    (path, None)
                }
                CsvPart::LongSorted { path } => (path, Some(sym)),
            };
            let one = match filtered {
                None => part.clone(),
                Some(s) => {
                    // Does this long file hold the symbol at all?
                    let mut probe = LoadReport::default();
                    let o = ReadOptions {
                        skip_bad_rows: true,
                        symbol_filter: Some(vec![s.clone()]),
                        from: None,
                        to: None,
                    };
                    let mut rows = open_rows(path, &o)?;
                    let Some(first) = rows.next_row(&mut probe)? else {
                        continue;
                    };
                    CsvPart::LongRange {
                        path: path.clone(),
                        symbol: id as u16,
                        offset: first.offset,
                        line: first.line,
                        end: u64::MAX,
                    }
                }
            };
            let name = path.display().to_string();
            let mut c = CsvCursor::open(&plan, &one)?;
            while let Some((_, b)) = c.next()? {
                let line = c.rows.line();
                w.bar(&b, &name, line)?;
                rep.bars += 1;
            }
            if c.counts_skips {
                skipped += c.report.skipped as u64;
            }
        }
    }
    rep.skipped = skipped as usize;
    rep.symbols = w.dir.iter().filter(|s| s.count > 0).count();
    rep.bytes = w.finish()?;
    Ok(rep)
}
