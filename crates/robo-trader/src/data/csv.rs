//! The bar-file reader: OHLCV CSV files, one per symbol (`SYMBOL.csv`) or one long file with a
//! `symbol`/`ticker` column, parsed straight from bytes into exact [`RawBar`]s.
//!
//! [`CsvRows`] streams rows out of the reader's buffer one at a time (what `backtest` and
//! `data import` use); [`read_path`]/[`parse_reader`] collect them. Rows of the plain
//! `datetime,open,high,low,close,volume` layout take a hand-written fast path; anything it
//! does not recognise, and every bad row, goes through the general parsers below.
//!
//! Format accepted:
//! - Comma-separated, one header line, LF or CRLF line ends, an optional UTF-8 BOM, optional
//!   double quotes around a field (quoted fields may not contain commas). Blank lines are
//!   ignored.
//! - Header names are case-insensitive: the time column is `datetime`, `timestamp`, `date`
//!   (optionally with a separate `time` column) or `time`; an empty first header also counts
//!   as the date. `open`, `high`, `low`, `close`, `volume` are required; `symbol` or `ticker`
//!   makes it a long file; `adj close` and any other column are ignored.
//! - Times: `YYYY-MM-DD HH:MM:SS` (or `T` as separator, or without seconds) and `YYYYMMDD` /
//!   `YYYY-MM-DD` are New York exchange time, converted to UTC. A date alone stands for that
//!   day's 09:30 New York open, because [`Bar::ts`](robo_core::types::Bar) is the bar's open
//!   time. RFC 3339 with an offset or `Z` is absolute. An all-digit value of 9–11 digits is
//!   Unix epoch seconds; 8 digits is `YYYYMMDD`.
//! - Prices are read from their text into `Decimal`, never through `f64`; exponents (`1e2`) are
//!   refused. Volume is a non-negative integer; a fractional volume (`123.7`) is accepted and
//!   rounded down.
//!
//! Checks per row: field count, parsable time and numbers, prices > 0, high ≥ low, high ≥
//! open/close, low ≤ open/close, and strictly increasing time per symbol. Each failure is a
//! [`CsvError`] naming `file:line` and the reason; with [`ReadOptions::skip_bad_rows`] bad rows
//! are counted in the [`LoadReport`] instead. Header and empty-file problems always fail.
//! Rows of symbols outside [`ReadOptions::symbol_filter`] are not checked; rows outside
//! `from..to` are checked but not kept.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::America::New_York;
use robo_core::types::{Bar, SymbolId, Ts};
use rust_decimal::Decimal;

/// How many row errors a [`LoadReport`] keeps verbatim when bad rows are skipped.
pub const MAX_KEPT_ERRORS: usize = 10;

const NANOS: i64 = 1_000_000_000;
/// The regular open, 09:30, in seconds after local midnight: the stamp of a date-only row.
const DAILY_BAR_SECS: i64 = 9 * 3600 + 30 * 60;

/// What to read and how strictly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Count and skip malformed rows instead of failing on the first one.
    pub skip_bad_rows: bool,
    /// Keep only these symbols (case-insensitive); `None` keeps all.
    pub symbol_filter: Option<Vec<String>>,
    /// Keep bars with `ts >= from`.
    pub from: Option<Ts>,
    /// Keep bars with `ts < to` (half-open, so consecutive windows do not overlap).
    pub to: Option<Ts>,
}

/// One parsed bar; `ts` is the bar's open time in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawBar {
    pub ts: Ts,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: u64,
}

impl RawBar {
    /// The bar as the engine takes it, for `symbol`.
    #[inline]
    pub fn with_symbol(self, symbol: SymbolId) -> Bar {
        Bar {
            symbol,
            ts: self.ts,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
        }
    }
}

/// All kept bars of one symbol, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolBars {
    /// Upper-cased.
    pub symbol: String,
    pub bars: Vec<RawBar>,
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Files read.
    pub files: usize,
    /// Bars kept (returned). Rows filtered out by symbol or time are in neither count.
    pub rows: usize,
    /// Malformed rows skipped (only with `skip_bad_rows`).
    pub skipped: usize,
    /// The first [`MAX_KEPT_ERRORS`] skipped rows' errors, as `file:line: reason`.
    pub first_errors: Vec<String>,
}

/// A file that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: empty file (no header line)")]
    EmptyFile { file: String },
    #[error("{file}:{line}: header but no data rows")]
    NoRows { file: String, line: usize },
    #[error("{file}:{line}: missing column `{column}`")]
    MissingColumn {
        file: String,
        line: usize,
        column: &'static str,
    },
    #[error("{file}:{line}: column `{column}` appears twice")]
    DuplicateColumn {
        file: String,
        line: usize,
        column: String,
    },
    #[error("{file}:{line}: no `symbol`/`ticker` column and no symbol from the file name")]
    NoSymbol { file: String, line: usize },
    #[error("{file}:{line}: {reason}")]
    Row {
        file: String,
        line: usize,
        reason: RowError,
    },
    #[error("{dir}: no *.csv files")]
    NoCsvFiles { dir: String },
    #[error("symbol {symbol} appears in both {first} and {second}")]
    SymbolInTwoFiles {
        symbol: String,
        first: String,
        second: String,
    },
}

/// Why one data row was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("wrong number of fields: expected {expected}, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("unparsable date {text:?}: {why}")]
    BadDate { text: String, why: &'static str },
    #[error("column `{column}`: unparsable number {text:?}: {why}")]
    BadNumber {
        column: &'static str,
        text: String,
        why: &'static str,
    },
    #[error("column `{column}`: price {value} is not positive")]
    NonPositivePrice {
        column: &'static str,
        value: Decimal,
    },
    #[error("high {high} < low {low}")]
    HighBelowLow { high: Decimal, low: Decimal },
    #[error("high {high} is below open {open} or close {close}")]
    HighBelowBody {
        high: Decimal,
        open: Decimal,
        close: Decimal,
    },
    #[error("low {low} is above open {open} or close {close}")]
    LowAboveBody {
        low: Decimal,
        open: Decimal,
        close: Decimal,
    },
    #[error("duplicate timestamp {ts} for {symbol}")]
    DuplicateTs { symbol: String, ts: Ts },
    #[error("unsorted: timestamp {ts} for {symbol} is before the previous row's {prev}")]
    Unsorted { symbol: String, ts: Ts, prev: Ts },
    #[error("empty symbol")]
    EmptySymbol,
    #[error("symbol {text:?} is not valid UTF-8 text")]
    BadSymbol { text: String },
}

/// Reads one CSV file, or every `*.csv` file directly inside a directory (in name order). A
/// file without a symbol column takes its symbol from the file stem. The result is sorted by
/// symbol; symbols left with no bars after filtering are omitted.
pub fn read_path(
    path: &Path,
    opts: &ReadOptions,
) -> Result<(Vec<SymbolBars>, LoadReport), CsvError> {
    let io_err = |p: &Path| {
        let path = p.display().to_string();
        move |source| CsvError::Io { path, source }
    };
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let mut v = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io_err(path))? {
            let p = entry.map_err(io_err(path))?.path();
            let is_csv = p
                .extension()
                .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case("csv"));
            if is_csv && p.is_file() {
                v.push(p);
            }
        }
        v.sort();
        if v.is_empty() {
            return Err(CsvError::NoCsvFiles {
                dir: path.display().to_string(),
            });
        }
        v
    } else {
        vec![path.to_path_buf()]
    };

    let mut report = LoadReport::default();
    let mut out: Vec<SymbolBars> = Vec::new();
    let mut origin: HashMap<String, String> = HashMap::new();
    for f in &files {
        let name = f.display().to_string();
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().trim().to_ascii_uppercase());
        let file = File::open(f).map_err(io_err(f))?;
        let byte_len = file.metadata().ok().map(|m| m.len());
        let reader = BufReader::with_capacity(1 << 16, file);
        let got = parse_sized(&name, stem.as_deref(), reader, opts, &mut report, byte_len)?;
        report.files += 1;
        for sb in got {
            if let Some(first) = origin.get(&sb.symbol) {
                return Err(CsvError::SymbolInTwoFiles {
                    symbol: sb.symbol,
                    first: first.clone(),
                    second: name,
                });
            }
            origin.insert(sb.symbol.clone(), name.clone());
            out.push(sb);
        }
    }
    out.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok((out, report))
}

/// Parses one CSV stream named `name` (used in errors). `default_symbol` names the bars when
/// the file has no symbol column. Symbols come out in order of first appearance; symbols left
/// with no bars after filtering are omitted. Kept and skipped rows are added to `report`.
pub fn parse_reader<R: BufRead>(
    name: &str,
    default_symbol: Option<&str>,
    r: R,
    opts: &ReadOptions,
    report: &mut LoadReport,
) -> Result<Vec<SymbolBars>, CsvError> {
    parse_sized(name, default_symbol, r, opts, report, None)
}

/// [`parse_reader`] with the input's byte length, if known, to size a one-symbol file's bar
/// vector up front (estimated from the first row's length) instead of growing it by doubling.
fn parse_sized<R: BufRead>(
    name: &str,
    default_symbol: Option<&str>,
    r: R,
    opts: &ReadOptions,
    report: &mut LoadReport,
    byte_len: Option<u64>,
) -> Result<Vec<SymbolBars>, CsvError> {
    let mut rows = CsvRows::new(name, default_symbol, r, opts)?;
    let mut out: Vec<SymbolBars> = Vec::new();
    while let Some(row) = rows.next_row(report)? {
        if out.is_empty() && rows.is_single_symbol() {
            if let Some(len) = byte_len {
                // Capped so a misleading first line cannot reserve absurd memory.
                let estimate = len / (row.bytes as u64).max(1) + 16;
                out.push(SymbolBars {
                    symbol: String::new(),
                    bars: Vec::with_capacity(estimate.min(50_000_000) as usize),
                });
            }
        }
        while out.len() <= row.symbol {
            out.push(SymbolBars {
                symbol: String::new(),
                bars: Vec::new(),
            });
        }
        if let Some(dst) = out.get_mut(row.symbol) {
            dst.bars.push(row.bar);
        }
    }
    for (i, sb) in out.iter_mut().enumerate() {
        sb.symbol = rows.symbols().get(i).cloned().unwrap_or_default();
    }
    out.retain(|s| !s.bars.is_empty());
    Ok(out)
}

/// One kept row from [`CsvRows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvRow {
    /// Index into [`CsvRows::symbols`].
    pub symbol: usize,
    pub bar: RawBar,
    /// The row's 1-based line number.
    pub line: usize,
    /// The row's length in bytes with its line end.
    pub bytes: usize,
    /// The byte offset of the row's start in the input.
    pub offset: u64,
}

/// A streaming CSV bar reader: the header is read by [`CsvRows::new`], then each
/// [`CsvRows::next_row`] parses rows straight out of the reader's buffer (no per-row
/// allocation) until one is kept. Memory stays flat however long the input is. Every check
/// of the module docs applies row by row, including the per-symbol order check.
pub struct CsvRows<R> {
    name: String,
    r: R,
    /// A line that straddles the reader's buffer is assembled here.
    buf: Vec<u8>,
    line_no: usize,
    header_line: usize,
    data_rows: usize,
    layout: Layout,
    st: ParseState,
    opts: ReadOptions,
    done: bool,
    /// Bytes consumed so far.
    pos: u64,
}

impl<R> std::fmt::Debug for CsvRows<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRows")
            .field("name", &self.name)
            .field("line_no", &self.line_no)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> CsvRows<R> {
    /// Reads the header. Fails on an empty input, a bad header, or a file with neither a
    /// symbol column nor a `default_symbol`.
    pub fn new(
        name: &str,
        default_symbol: Option<&str>,
        mut r: R,
        opts: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let mut buf: Vec<u8> = Vec::with_capacity(256);
        let mut line_no = 0usize;
        let mut pos = 0u64;
        loop {
            buf.clear();
            let n = r
                .read_until(b'\n', &mut buf)
                .map_err(|source| CsvError::Io {
                    path: name.to_string(),
                    source,
                })?;
            if n == 0 {
                return Err(CsvError::EmptyFile {
                    file: name.to_string(),
                });
            }
            line_no += 1;
            pos += n as u64;
            if line_no == 1 && buf.starts_with(b"\xEF\xBB\xBF") {
                buf.drain(..3);
            }
            if !trim(&buf).is_empty() {
                break;
            }
        }
        let header_line = line_no;
        let layout = Layout::from_header(trim_eol(&buf), name, header_line)?;
        let default_symbol = default_symbol
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty());
        let mut st = ParseState {
            names: Vec::new(),
            last_ts: Vec::new(),
            index: HashMap::new(),
            recent: None,
            scratch: String::new(),
            offsets: NyOffsetCache::default(),
            spans: Vec::with_capacity(layout.n_fields + 1),
            filter: opts.symbol_filter.clone(),
        };
        let mut done = false;
        if layout.symbol.is_none() {
            let Some(sym) = default_symbol else {
                return Err(CsvError::NoSymbol {
                    file: name.to_string(),
                    line: header_line,
                });
            };
            if st.wanted(&sym) {
                st.names.push(sym);
                st.last_ts.push(None);
            } else {
                done = true;
            }
        }
        Ok(CsvRows {
            name: name.to_string(),
            r,
            buf,
            line_no,
            header_line,
            data_rows: 0,
            layout,
            st,
            opts: opts.clone(),
            done,
            pos,
        })
    }

    /// True when the file has no symbol column (all rows are symbol 0).
    pub fn is_single_symbol(&self) -> bool {
        self.layout.symbol.is_none()
    }

    /// The symbols seen so far (upper-cased), in order of first appearance.
    pub fn symbols(&self) -> &[String] {
        &self.st.names
    }

    /// The line number of the last line read.
    pub fn line(&self) -> usize {
        self.line_no
    }

    /// The next kept row, or `None` at the end. A bad row is an error, or with
    /// `skip_bad_rows` is counted in `report` and passed over; kept rows are counted too.
    pub fn next_row(&mut self, report: &mut LoadReport) -> Result<Option<CsvRow>, CsvError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let Self {
                r,
                buf,
                st,
                layout,
                opts,
                name,
                ..
            } = self;
            let io = |source| CsvError::Io {
                path: name.clone(),
                source,
            };
            // Fast path: the whole line is in the reader's buffer.
            let avail = r.fill_buf().map_err(io)?;
            let (outcome, used) = if let Some(pos) = memchr::memchr(b'\n', avail) {
                let line = avail.get(..pos).unwrap_or_default();
                (row_outcome(line, layout, opts, st), pos + 1)
            } else if avail.is_empty() {
                self.done = true;
                if self.data_rows == 0 {
                    return Err(CsvError::NoRows {
                        file: name.clone(),
                        line: self.header_line,
                    });
                }
                return Ok(None);
            } else {
                // The line runs past the buffer (or is the last one without a line end).
                buf.clear();
                buf.extend_from_slice(avail);
                let n = avail.len();
                r.consume(n);
                r.read_until(b'\n', buf).map_err(io)?;
                let line = buf.strip_suffix(b"\n").unwrap_or(buf);
                (row_outcome(line, layout, opts, st), 0)
            };
            let bytes = if used > 0 { used } else { self.buf.len() };
            if used > 0 {
                self.r.consume(used);
            }
            let offset = self.pos;
            self.pos += bytes as u64;
            self.line_no += 1;
            match outcome {
                RowOutcome::Blank => continue,
                RowOutcome::Dropped => self.data_rows += 1,
                RowOutcome::Kept(symbol, bar) => {
                    self.data_rows += 1;
                    report.rows += 1;
                    return Ok(Some(CsvRow {
                        symbol,
                        bar,
                        line: self.line_no,
                        bytes,
                        offset,
                    }));
                }
                RowOutcome::Bad(reason) => {
                    self.data_rows += 1;
                    if !self.opts.skip_bad_rows {
                        self.done = true;
                        return Err(CsvError::Row {
                            file: self.name.clone(),
                            line: self.line_no,
                            reason,
                        });
                    }
                    report.skipped += 1;
                    if report.first_errors.len() < MAX_KEPT_ERRORS {
                        report
                            .first_errors
                            .push(format!("{}:{}: {reason}", self.name, self.line_no));
                    }
                }
            }
        }
    }
}

impl<R: BufRead + std::io::Seek> CsvRows<R> {
    /// Continues at byte `offset`, a line start found by an earlier pass over the same input,
    /// numbering that line `line`. The header and the per-symbol order state are kept, so
    /// rows before `offset` are simply not read.
    pub fn seek_to(&mut self, offset: u64, line: usize) -> Result<(), CsvError> {
        self.r
            .seek(std::io::SeekFrom::Start(offset))
            .map_err(|source| CsvError::Io {
                path: self.name.clone(),
                source,
            })?;
        self.pos = offset;
        self.line_no = line.saturating_sub(1);
        // The earlier pass saw the data rows; do not report "no rows" for an empty tail.
        self.data_rows = self.data_rows.max(1);
        Ok(())
    }

    /// Bytes consumed so far (the offset of the next line).
    pub fn position(&self) -> u64 {
        self.pos
    }
}

enum RowOutcome {
    Blank,
    /// A valid row outside the symbol or time filter.
    Dropped,
    Kept(usize, RawBar),
    Bad(RowError),
}

#[inline]
fn row_outcome(
    line: &[u8],
    layout: &Layout,
    opts: &ReadOptions,
    st: &mut ParseState,
) -> RowOutcome {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() || trim(line).is_empty() {
        return RowOutcome::Blank;
    }
    match st.row(line, layout, opts) {
        Ok(Some((s, b))) => RowOutcome::Kept(s, b),
        Ok(None) => RowOutcome::Dropped,
        Err(e) => RowOutcome::Bad(e),
    }
}

/// Where each needed column sits.
#[derive(Debug)]
struct Layout {
    n_fields: usize,
    date: usize,
    /// A separate time-of-day column next to a date-only `date` column.
    time: Option<usize>,
    open: usize,
    high: usize,
    low: usize,
    close: usize,
    volume: usize,
    symbol: Option<usize>,
    /// Exactly `time,open,high,low,close,volume`: rows may take [`fast_row`].
    plain: bool,
}

impl Layout {
    fn from_header(line: &[u8], file: &str, line_no: usize) -> Result<Self, CsvError> {
        let names: Vec<String> = line
            .split(|&c| c == b',')
            .map(|f| {
                String::from_utf8_lossy(field(f))
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect();
        let find = |want: &[&str]| -> Result<Option<usize>, CsvError> {
            let mut hits = names
                .iter()
                .enumerate()
                .filter(|(_, n)| want.contains(&n.as_str()));
            let first = hits.next().map(|(i, _)| i);
            if let Some((_, n)) = hits.next() {
                return Err(CsvError::DuplicateColumn {
                    file: file.into(),
                    line: line_no,
                    column: n.clone(),
                });
            }
            Ok(first)
        };
        let need = |want: &'static str| -> Result<usize, CsvError> {
            find(&[want])?.ok_or(CsvError::MissingColumn {
                file: file.into(),
                line: line_no,
                column: want,
            })
        };
        let datetime = find(&["datetime", "timestamp", "date_time"])?;
        let date = find(&["date"])?;
        let time = find(&["time"])?;
        let (date, time) = match (datetime, date, time) {
            (Some(dt), _, _) => (dt, None),
            (None, Some(d), t) => (d, t),
            (None, None, Some(t)) => (t, None),
            (None, None, None) if names.first().is_some_and(|n| n.is_empty()) => (0, None),
            (None, None, None) => {
                return Err(CsvError::MissingColumn {
                    file: file.into(),
                    line: line_no,
                    column: "date",
                })
            }
        };
        let mut l = Layout {
            n_fields: names.len(),
            date,
            time,
            open: need("open")?,
            high: need("high")?,
            low: need("low")?,
            close: need("close")?,
            volume: need("volume")?,
            symbol: find(&["symbol", "ticker"])?,
            plain: false,
        };
        l.plain = l.n_fields == 6
            && l.time.is_none()
            && l.symbol.is_none()
            && [l.date, l.open, l.high, l.low, l.close, l.volume] == [0, 1, 2, 3, 4, 5];
        Ok(l)
    }
}

struct ParseState {
    /// Symbols in order of first appearance (upper-cased).
    names: Vec<String>,
    /// The last valid timestamp per symbol (kept or filtered by time), for the order check.
    last_ts: Vec<Option<Ts>>,
    index: HashMap<String, usize>,
    /// The previous row's symbol text and its slot (`None` = filtered out), so runs of one
    /// symbol skip the map lookup.
    recent: Option<(Vec<u8>, Option<usize>)>,
    scratch: String,
    offsets: NyOffsetCache,
    spans: Vec<(usize, usize)>,
    filter: Option<Vec<String>>,
}

impl ParseState {
    fn wanted(&self, sym: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| f.iter().any(|w| w.trim().eq_ignore_ascii_case(sym)))
    }

    /// The output index of a long file's row symbol, or `None` when the filter drops it.
    fn resolve_symbol(&mut self, text: &[u8]) -> Result<Option<usize>, RowError> {
        if text.is_empty() {
            return Err(RowError::EmptySymbol);
        }
        if let Some((prev, slot)) = &self.recent {
            if prev.eq_ignore_ascii_case(text) {
                return Ok(*slot);
            }
        }
        let s = std::str::from_utf8(text).map_err(|_| RowError::BadSymbol {
            text: String::from_utf8_lossy(text).into_owned(),
        })?;
        self.scratch.clear();
        self.scratch.push_str(s);
        self.scratch.make_ascii_uppercase();
        let slot = if let Some(&i) = self.index.get(self.scratch.as_str()) {
            Some(i)
        } else if self.wanted(&self.scratch) {
            let i = self.names.len();
            self.index.insert(self.scratch.clone(), i);
            self.names.push(self.scratch.clone());
            self.last_ts.push(None);
            Some(i)
        } else {
            None
        };
        let mut key = self.recent.take().map(|(k, _)| k).unwrap_or_default();
        key.clear();
        key.extend_from_slice(text);
        self.recent = Some((key, slot));
        Ok(slot)
    }

    /// Parses and checks one data row; `Ok(Some((symbol slot, bar)))` if kept, `Ok(None)` if
    /// filtered out.
    fn row(
        &mut self,
        line: &[u8],
        layout: &Layout,
        opts: &ReadOptions,
    ) -> Result<Option<(usize, RawBar)>, RowError> {
        let (sym, ts, [open, high, low, close], volume) = match layout
            .plain
            .then(|| fast_row(line, &mut self.offsets))
            .flatten()
        {
            Some((ts, prices, volume)) => (0, ts, prices, volume),
            None => match self.general_row(line, layout)? {
                Some(r) => r,
                None => return Ok(None),
            },
        };
        self.order_and_filter(sym, ts, [open, high, low, close], volume, opts)
    }

    /// Every field through the general parsers; `Ok(None)` for a symbol filtered out.
    #[allow(clippy::type_complexity)]
    fn general_row(
        &mut self,
        line: &[u8],
        layout: &Layout,
    ) -> Result<Option<(usize, Ts, [Decimal; 4], u64)>, RowError> {
        split_commas(line, &mut self.spans);
        if self.spans.len() != layout.n_fields {
            return Err(RowError::FieldCount {
                expected: layout.n_fields,
                found: self.spans.len(),
            });
        }
        let sym = match layout.symbol {
            None => 0,
            Some(col) => match self.resolve_symbol(field_at(line, &self.spans, col))? {
                Some(i) => i,
                None => return Ok(None),
            },
        };
        let spans = self.spans.as_slice();
        let get = |i: usize| field_at(line, spans, i);

        let ts = match layout.time {
            None => parse_ts(get(layout.date), &mut self.offsets)?,
            Some(tcol) => parse_date_and_time(get(layout.date), get(tcol), &mut self.offsets)?,
        };
        let open = parse_price(get(layout.open), "open")?;
        let high = parse_price(get(layout.high), "high")?;
        let low = parse_price(get(layout.low), "low")?;
        let close = parse_price(get(layout.close), "close")?;
        let volume = parse_volume(get(layout.volume))?;
        let prices = check_ohlc(open, high, low, close)?;
        Ok(Some((sym, ts, prices, volume)))
    }

    /// The per-symbol order check, then the time filter.
    fn order_and_filter(
        &mut self,
        sym: usize,
        ts: Ts,
        [open, high, low, close]: [Decimal; 4],
        volume: u64,
        opts: &ReadOptions,
    ) -> Result<Option<(usize, RawBar)>, RowError> {
        let symbol_name = || self.names.get(sym).cloned().unwrap_or_default();
        let Some(last) = self.last_ts.get_mut(sym) else {
            return Ok(None);
        };
        if let Some(prev) = *last {
            if ts == prev {
                return Err(RowError::DuplicateTs {
                    symbol: symbol_name(),
                    ts,
                });
            }
            if ts < prev {
                return Err(RowError::Unsorted {
                    symbol: symbol_name(),
                    ts,
                    prev,
                });
            }
        }
        *last = Some(ts);
        if opts.from.is_some_and(|f| ts < f) || opts.to.is_some_and(|t| ts >= t) {
            return Ok(None);
        }
        Ok(Some((
            sym,
            RawBar {
                ts,
                open,
                high,
                low,
                close,
                volume,
            },
        )))
    }
}

/// The hot format, by hand: `YYYY-MM-DD HH:MM:SS` (or 9–11 digit epoch seconds) then four
/// plain decimals and an integer volume, comma-separated, nothing quoted or padded, all checks
/// passing. Anything else (including every bad row) returns `None` and goes through the general
/// parsers, which give the precise error.
#[inline]
fn fast_row(line: &[u8], cache: &mut NyOffsetCache) -> Option<(Ts, [Decimal; 4], u64)> {
    let comma = memchr::memchr(b',', line)?;
    let (date, mut rest) = (line.get(..comma)?, line.get(comma + 1..)?);
    let ts = if date.len() == 19 && date.get(10) == Some(&b' ') {
        let days = match cache.date_text {
            Some((text, days)) if text[..] == date[..10] => days,
            _ => return None,
        };
        let t = parse_time_of_day(date.get(11..)?)?.ok()?;
        local_ts(days, t, cache).ok()?
    } else if (9..=11).contains(&date.len()) {
        secs_to_ts(digits_value(date)?).ok()?
    } else {
        return None;
    };
    let mut m = [0i64; 4];
    let mut sc = [0u32; 4];
    for k in 0..4 {
        let (mant, scale, used) = fast_decimal(rest)?;
        if rest.get(used) != Some(&b',') || mant <= 0 {
            return None;
        }
        m[k] = mant;
        sc[k] = scale;
        rest = rest.get(used + 1..)?;
    }
    let volume = if rest.len() <= 18 {
        digits_value(rest)? as u64
    } else {
        return None;
    };
    let max = *sc.iter().max()?;
    let mut v = [0i64; 4];
    for k in 0..4 {
        v[k] = m[k].checked_mul(*POW10.get((max - sc[k]) as usize)?)?;
    }
    let [o, h, l, c] = v;
    if !(h >= l && h >= o && h >= c && l <= o && l <= c) {
        return None;
    }
    let d = |k: usize| {
        let x = m[k] as u64;
        Decimal::from_parts(x as u32, (x >> 32) as u32, 0, false, sc[k])
    };
    Some((ts, [d(0), d(1), d(2), d(3)], volume))
}

/// Digits with at most one `.`, at most 18 digits: (mantissa, scale, bytes used).
#[inline(always)]
fn fast_decimal(b: &[u8]) -> Option<(i64, u32, usize)> {
    let mut m = 0i64;
    let mut i = 0;
    let mut dot = None;
    let mut digits = 0;
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            m = m * 10 + i64::from(d);
            digits += 1;
            if digits > 18 {
                return None;
            }
        } else if c == b'.' && dot.is_none() {
            dot = Some(i);
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    let scale = dot.map_or(0, |p| (i - p - 1) as u32);
    Some((m, scale, i))
}

/// Fills `spans` with the byte ranges of the comma-separated fields of `line`, eight bytes at a
/// time (SWAR: a comma byte XOR 0x2C is zero, and the zero-byte test finds it).
fn split_commas(line: &[u8], spans: &mut Vec<(usize, usize)>) {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const COMMAS: u64 = 0x2C2C_2C2C_2C2C_2C2C;
    spans.clear();
    let mut start = 0;
    let mut base = 0;
    let mut chunks = line.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ COMMAS;
        // Exact per-byte zero mask: no false positives from borrows.
        let mut found = !((((x & !HIGHS) + !HIGHS) | x) | !HIGHS);
        while found != 0 {
            let i = base + (found.trailing_zeros() / 8) as usize;
            spans.push((start, i));
            start = i + 1;
            found &= found - 1;
        }
        base += 8;
    }
    for (j, &c) in chunks.remainder().iter().enumerate() {
        if c == b',' {
            spans.push((start, base + j));
            start = base + j + 1;
        }
    }
    spans.push((start, line.len()));
}

#[inline]
fn field_at<'a>(line: &'a [u8], spans: &[(usize, usize)], i: usize) -> &'a [u8] {
    spans
        .get(i)
        .and_then(|&(a, b)| line.get(a..b))
        .map(field)
        .unwrap_or(b"")
}

fn trim_eol(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// A field's content: surrounding blanks and one pair of double quotes removed.
fn field(b: &[u8]) -> &[u8] {
    let b = b.trim_ascii();
    match b {
        [b'"', inner @ .., b'"'] => inner.trim_ascii(),
        _ => b,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A parsed price: the fast form is an `i64` mantissa and a decimal scale, compared without
/// building `Decimal`s; mantissas over 18 digits go through `Decimal::from_str`.
#[derive(Debug, Clone, Copy)]
enum Num {
    Fixed { mantissa: i64, scale: u32 },
    Big(Decimal),
}

impl Num {
    #[inline]
    fn to_decimal(self) -> Decimal {
        match self {
            Num::Fixed { mantissa, scale } => {
                let m = mantissa.unsigned_abs();
                Decimal::from_parts(m as u32, (m >> 32) as u32, 0, mantissa < 0, scale)
            }
            Num::Big(d) => d,
        }
    }

    fn is_positive(self) -> bool {
        match self {
            Num::Fixed { mantissa, .. } => mantissa > 0,
            Num::Big(d) => d > Decimal::ZERO,
        }
    }
}

const POW10: [i64; 19] = {
    let mut t = [1i64; 19];
    let mut i = 1;
    while i < 19 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Parses a price: ASCII digits with an optional sign and decimal point. Exponents are refused.
fn parse_decimal(b: &[u8]) -> Result<Num, &'static str> {
    let (neg, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, b),
    };
    let mut mantissa: i64 = 0;
    let mut scale: u32 = 0;
    let mut n_digits = 0usize;
    let mut seen_dot = false;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                n_digits += 1;
                if n_digits <= 18 {
                    mantissa = mantissa * 10 + i64::from(c - b'0');
                }
                if seen_dot {
                    scale += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            b'e' | b'E' => return Err("exponent notation is not accepted"),
            _ => return Err("not a decimal number"),
        }
    }
    if n_digits == 0 {
        return Err(if b.is_empty() { "empty" } else { "no digits" });
    }
    if n_digits <= 18 {
        return Ok(Num::Fixed {
            mantissa: if neg { -mantissa } else { mantissa },
            scale,
        });
    }
    // Only digits, one dot and a sign got here, so the text is valid UTF-8.
    let s = std::str::from_utf8(b).map_err(|_| "not a decimal number")?;
    Decimal::from_str(s)
        .map(Num::Big)
        .map_err(|_| "too many digits for a decimal")
}

#[inline]
fn parse_price(b: &[u8], column: &'static str) -> Result<Num, RowError> {
    match parse_decimal(b) {
        Ok(v) if v.is_positive() => Ok(v),
        Ok(v) => Err(non_positive(column, v)),
        Err(why) => Err(bad_number(column, b, why)),
    }
}

// Building an error is rare; keeping it out of line keeps the hot path small.
#[cold]
#[inline(never)]
fn non_positive(column: &'static str, v: Num) -> RowError {
    RowError::NonPositivePrice {
        column,
        value: v.to_decimal(),
    }
}

#[cold]
#[inline(never)]
fn bad_number(column: &'static str, b: &[u8], why: &'static str) -> RowError {
    RowError::BadNumber {
        column,
        text: text(b),
        why,
    }
}

/// Orders four prices as integers at a common scale when they fit an `i64`, which is almost
/// always; `None` means "compare as `Decimal`".
fn common_scale(nums: [Num; 4]) -> Option<[i64; 4]> {
    let mut max_scale = 0;
    for n in nums {
        match n {
            Num::Fixed { scale, .. } => max_scale = max_scale.max(scale),
            Num::Big(_) => return None,
        }
    }
    let mut out = [0i64; 4];
    for (o, n) in out.iter_mut().zip(nums) {
        if let Num::Fixed { mantissa, scale } = n {
            let k = POW10.get((max_scale - scale) as usize)?;
            *o = mantissa.checked_mul(*k)?;
        }
    }
    Some(out)
}

/// The OHLC consistency checks; returns the prices as `Decimal`s.
fn check_ohlc(o: Num, h: Num, l: Num, c: Num) -> Result<[Decimal; 4], RowError> {
    let (open, high, low, close) = (
        o.to_decimal(),
        h.to_decimal(),
        l.to_decimal(),
        c.to_decimal(),
    );
    let ok = match common_scale([o, h, l, c]) {
        Some([o, h, l, c]) => [h >= l, h >= o && h >= c, l <= o && l <= c],
        None => [
            high >= low,
            high >= open && high >= close,
            low <= open && low <= close,
        ],
    };
    match ok {
        [false, ..] => Err(RowError::HighBelowLow { high, low }),
        [_, false, _] => Err(RowError::HighBelowBody { high, open, close }),
        [_, _, false] => Err(RowError::LowAboveBody { low, open, close }),
        _ => Ok([open, high, low, close]),
    }
}

/// A non-negative integer; a fractional part is accepted and dropped (rounded down).
fn parse_volume(b: &[u8]) -> Result<u64, RowError> {
    let bad = |why| bad_number("volume", b, why);
    let digits = b.strip_prefix(b"+").unwrap_or(b);
    if digits.first() == Some(&b'-') {
        return Err(bad("negative volume"));
    }
    let mut v: u64 = 0;
    let mut n_digits = 0usize;
    let mut seen_dot = false;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                n_digits += 1;
                if !seen_dot {
                    v = v
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(c - b'0')))
                        .ok_or_else(|| bad("too large"))?;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            b'e' | b'E' => return Err(bad("exponent notation is not accepted")),
            _ => return Err(bad("not a whole number")),
        }
    }
    if n_digits == 0 {
        return Err(bad(if b.is_empty() { "empty" } else { "no digits" }));
    }
    Ok(v)
}

/// New York's UTC offset (local − UTC, seconds) for the last day seen: bar files run through
/// one day at a time, so chrono-tz is consulted once per day, not once per row.
#[derive(Debug, Default)]
struct NyOffsetCache {
    day: Option<(i64, DayOffset)>,
    /// The last `YYYY-MM-DD` text of a date-time field and its day number: minute bars repeat
    /// the date ~390 times, so the calendar arithmetic runs once a day.
    date_text: Option<([u8; 10], i64)>,
}

#[derive(Debug, Clone, Copy)]
enum DayOffset {
    Fixed(i64),
    /// A DST switch day: each time of day is resolved by chrono-tz.
    Switch,
}

impl NyOffsetCache {
    /// UTC seconds of New York wall time `secs_of_day` on day `days` (since 1970-01-01).
    fn utc_secs(&mut self, days: i64, secs_of_day: i64) -> Result<i64, &'static str> {
        let kind = match self.day {
            Some((d, k)) if d == days => k,
            _ => {
                let date = naive_date(days).ok_or("date out of range")?;
                let at = |h, m| {
                    date.and_hms_opt(h, m, 0)
                        .and_then(|t| New_York.from_local_datetime(&t).earliest())
                        .map(|t| i64::from(t.offset().fix().local_minus_utc()))
                };
                let k = match (at(0, 0), at(23, 59)) {
                    (Some(a), Some(b)) if a == b => DayOffset::Fixed(a),
                    _ => DayOffset::Switch,
                };
                self.day = Some((days, k));
                k
            }
        };
        match kind {
            DayOffset::Fixed(off) => Ok(days * 86_400 + secs_of_day - off),
            DayOffset::Switch => {
                let date = naive_date(days).ok_or("date out of range")?;
                let secs = u32::try_from(secs_of_day).map_err(|_| "bad time of day")?;
                let t = date
                    .and_hms_opt(secs / 3600, secs / 60 % 60, secs % 60)
                    .ok_or("bad time of day")?;
                New_York
                    .from_local_datetime(&t)
                    .earliest()
                    .map(|t| t.timestamp())
                    .ok_or("time does not exist in America/New_York (DST gap)")
            }
        }
    }
}

fn naive_date(days: i64) -> Option<NaiveDate> {
    let ce = i32::try_from(days.checked_add(719_163)?).ok()?;
    NaiveDate::from_num_days_from_ce_opt(ce)
}

fn secs_to_ts(secs: i64) -> Result<Ts, &'static str> {
    secs.checked_mul(NANOS)
        .map(Ts)
        .ok_or("out of the representable range (1677-2262)")
}

fn digits_value(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 18 {
        return None;
    }
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Days since 1970-01-01 of a valid proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> Result<i64, &'static str> {
    if !(1..=12).contains(&m) {
        return Err("month out of range");
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_len = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max_day = month_len.get((m - 1) as usize).copied().unwrap_or(0);
    if d < 1 || d > max_day {
        return Err("day out of range");
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(era * 146_097 + doe - 719_468)
}

/// `YYYY-MM-DD` or `YYYYMMDD` → days since the epoch.
fn parse_date_only(b: &[u8]) -> Option<Result<i64, &'static str>> {
    let (y, m, d) = match (b.len(), b.get(4), b.get(7)) {
        (10, Some(b'-'), Some(b'-')) => (b.get(..4)?, b.get(5..7)?, b.get(8..10)?),
        (8, ..) => (b.get(..4)?, b.get(4..6)?, b.get(6..8)?),
        _ => return None,
    };
    let (y, m, d) = (digits_value(y)?, digits_value(m)?, digits_value(d)?);
    Some(days_from_civil(y, m, d))
}

/// `HH:MM:SS` or `HH:MM` → seconds after midnight.
fn parse_time_of_day(b: &[u8]) -> Option<Result<i64, &'static str>> {
    let (h, m, s) = match b {
        [h1, h2, b':', m1, m2, b':', s1, s2] => ([*h1, *h2], [*m1, *m2], [*s1, *s2]),
        [h1, h2, b':', m1, m2] => ([*h1, *h2], [*m1, *m2], [b'0', b'0']),
        _ => return None,
    };
    let (h, m, s) = (digits_value(&h)?, digits_value(&m)?, digits_value(&s)?);
    if h > 23 || m > 59 || s > 59 {
        return Some(Err("time of day out of range"));
    }
    Some(Ok(h * 3600 + m * 60 + s))
}

fn bad_date(b: &[u8], why: &'static str) -> RowError {
    RowError::BadDate { text: text(b), why }
}

fn local_ts(days: i64, secs: i64, cache: &mut NyOffsetCache) -> Result<Ts, &'static str> {
    secs_to_ts(cache.utc_secs(days, secs)?)
}

/// Parses a date/time field (see the module docs for the accepted forms).
fn parse_ts(b: &[u8], cache: &mut NyOffsetCache) -> Result<Ts, RowError> {
    let err = |why| bad_date(b, why);
    // Fast paths: exchange-local `YYYY-MM-DD[ T]HH:MM[:SS]` and date-only.
    if b.len() >= 16 && matches!(b.get(10), Some(b' ' | b'T')) {
        if let (Some(date), Some(time)) = (b.get(..10), b.get(11..)) {
            if let Some((text, days)) = cache.date_text {
                if text == date {
                    if let Some(t) = parse_time_of_day(time) {
                        return local_ts(days, t.map_err(err)?, cache).map_err(err);
                    }
                }
            }
            if let (Some(d), Some(t)) = (parse_date_only(date), parse_time_of_day(time)) {
                let days = d.map_err(err)?;
                if let Ok(text) = <[u8; 10]>::try_from(date) {
                    cache.date_text = Some((text, days));
                }
                return local_ts(days, t.map_err(err)?, cache).map_err(err);
            }
        }
    }
    if b.iter().all(u8::is_ascii_digit) && !b.is_empty() {
        return match b.len() {
            8 => match parse_date_only(b) {
                Some(d) => local_ts(d.map_err(err)?, DAILY_BAR_SECS, cache).map_err(err),
                None => Err(err("not a date")),
            },
            9..=11 => secs_to_ts(digits_value(b).ok_or_else(|| err("not a number"))?).map_err(err),
            _ => Err(err(
                "an all-digit date must be YYYYMMDD (8 digits) or epoch seconds (9-11 digits)",
            )),
        };
    }
    if let Some(d) = parse_date_only(b) {
        return local_ts(d.map_err(err)?, DAILY_BAR_SECS, cache).map_err(err);
    }
    // Slow paths: RFC 3339 (absolute), then naive date-times with fractional seconds.
    let s = std::str::from_utf8(b).map_err(|_| err("not UTF-8 text"))?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t
            .timestamp_nanos_opt()
            .map(Ts)
            .ok_or_else(|| err("out of the representable range (1677-2262)"));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            let days = t.date().signed_duration_since(epoch_date()).num_days();
            let secs = i64::from(chrono::Timelike::num_seconds_from_midnight(&t.time()));
            let whole = local_ts(days, secs, cache).map_err(err)?;
            let frac = i64::from(t.and_utc().timestamp_subsec_nanos());
            return whole
                .0
                .checked_add(frac)
                .map(Ts)
                .ok_or_else(|| err("out of range"));
        }
    }
    Err(err(
        "unrecognised format (want YYYY-MM-DD[ HH:MM:SS], YYYYMMDD, RFC 3339 or epoch seconds)",
    ))
}

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

/// Separate `date` and `time` columns, both exchange-local.
fn parse_date_and_time(d: &[u8], t: &[u8], cache: &mut NyOffsetCache) -> Result<Ts, RowError> {
    let days = match parse_date_only(d) {
        Some(r) => r.map_err(|why| bad_date(d, why))?,
        None => {
            return Err(bad_date(
                d,
                "want YYYY-MM-DD or YYYYMMDD next to a time column",
            ))
        }
    };
    let secs = match parse_time_of_day(t) {
        Some(r) => r.map_err(|why| bad_date(t, why))?,
        None => return Err(bad_date(t, "want HH:MM:SS or HH:MM in the time column")),
    };
    local_ts(days, secs, cache).map_err(|why| bad_date(d, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_split(line: &[u8]) -> Vec<(usize, usize)> {
        let mut out = vec![];
        let mut start = 0;
        for (i, &c) in line.iter().enumerate() {
            if c == b',' {
                out.push((start, i));
                start = i + 1;
            }
        }
        out.push((start, line.len()));
        out
    }

    #[test]
    fn swar_split_matches_a_byte_loop() {
        let lines: [&[u8]; 7] = [
            b"",
            b",",
            b",,,,,,,,,,,,,,,,,",
            b"2024-01-02 09:30:00,243.40,244.09,243.34,243.85,237704",
            b"1234567,1234567,\xff\x2c\xac\x2d,\x80\x80\x80\x80\x80\x80\x80,",
            b"abcdefgh,ijklmnop,",
            b"\x2b\x2d\x2c\xac\x6c\xec,",
        ];
        let mut spans = vec![];
        for l in lines {
            split_commas(l, &mut spans);
            assert_eq!(spans, naive_split(l), "{l:?}");
        }
    }

    /// The hand-written row parser agrees with the general one wherever it answers, and
    /// declines (so the general one reports) everything unusual or wrong.
    #[test]
    fn fast_rows_match_the_general_parser() {
        let layout = Layout::from_header(b"datetime,open,high,low,close,volume", "t", 1).unwrap();
        assert!(layout.plain);
        let mk = || ParseState {
            names: vec!["T".into()],
            last_ts: vec![None],
            index: HashMap::new(),
            recent: None,
            scratch: String::new(),
            offsets: NyOffsetCache::default(),
            spans: Vec::new(),
            filter: None,
        };
        let lines: [&[u8]; 14] = [
            b"2024-01-02 09:30:00,243.40,244.09,243.34,243.85,237704",
            b"2024-01-02 09:31:00,243.4,244.090,243.34,243.85,0",
            b"2024-01-02 09:32:00,100,100.00,99.999,100,5",
            b"1704205800,10,11,9,10.5,100",
            b"2024-01-02 09:33:00,.5,1.,0.25,0.5,7",
            b"2024-01-02 09:34:00,0010.50,11,9,10,1",
            b"2024-01-02 09:35:00,10,9,11,10,1",
            b"2024-01-02 09:36:00,-1,1,1,1,1",
            b"2024-01-02 09:37:00, 10,11,9,10,1",
            b"2024-01-02 09:38:00,10,11,9,10,1.5",
            b"2024-01-02 09:39:00,10,11,9,10,1,extra",
            b"2024-01-02 09:40:00,10,11,9,10",
            b"2024-01-02 25:41:00,10,11,9,10,1",
            b"2024-01-02T09:42:00,10,11,9,10,1",
        ];
        let (mut fast, mut general) = (mk(), mk());
        // Prime the date cache as the first row of a day does.
        let _ = general.general_row(lines[0], &layout);
        fast.offsets.date_text = general.offsets.date_text;
        let mut answered = 0;
        for (i, l) in lines.into_iter().enumerate() {
            let want = mk()
                .general_row(l, &layout)
                .map(|r| r.map(|(_, t, p, v)| (t, p, v)));
            match fast_row(l, &mut fast.offsets) {
                Some(got) => {
                    answered += 1;
                    assert_eq!(Ok(Some(got)), want, "{}", String::from_utf8_lossy(l));
                    let scales: Vec<u32> = got.1.iter().map(Decimal::scale).collect();
                    let want_scales: Vec<u32> = want
                        .unwrap()
                        .unwrap()
                        .1
                        .iter()
                        .map(Decimal::scale)
                        .collect();
                    assert_eq!(scales, want_scales);
                }
                None => assert!(i >= 6, "declined {}", String::from_utf8_lossy(l)),
            }
        }
        // The rest are bad, padded, fractional-volume, short, long or `T`-separated rows.
        assert_eq!(answered, 6);
    }

    #[test]
    fn civil_days_match_chrono() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for (y, m, d) in [
            (1970, 1, 1),
            (1900, 3, 1),
            (2000, 2, 29),
            (2024, 12, 31),
            (1677, 9, 22),
        ] {
            let want = NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .signed_duration_since(epoch);
            assert_eq!(
                days_from_civil(y.into(), m.into(), d.into()),
                Ok(want.num_days())
            );
        }
        assert_eq!(days_from_civil(2023, 2, 29), Err("day out of range"));
        assert_eq!(days_from_civil(2023, 0, 1), Err("month out of range"));
    }

    #[test]
    fn fixed_point_prices_compare_across_scales() {
        let n = |s: &str| parse_decimal(s.as_bytes()).unwrap();
        assert_eq!(
            common_scale([n("100"), n("104.06"), n("95.9"), n("100.345")]),
            Some([100_000, 104_060, 95_900, 100_345])
        );
        assert!(check_ohlc(n("100"), n("100.00"), n("99.999"), n("100")).is_ok());
        assert!(check_ohlc(n("100.01"), n("100.00"), n("99.999"), n("100")).is_err());
        assert_eq!(n("-0.50").to_decimal(), Decimal::new(-50, 2));
    }
}
