//! Where backtest bars come from: CSV (through the shared reader) or the binary bar cache that
//! `data import` writes, merged across symbols into one time-ordered stream.
//!
//! Cache layout (all little-endian):
//! - 16-byte header: magic `RTBARS\0\x01`, `u32` price scale (decimal places), `u32` reserved.
//! - Per-symbol sections of fixed 48-byte records: `ts i64` (ns since the epoch, UTC),
//!   `open high low close i64` (mantissas at the header's scale), `volume u64`.
//! - A directory: per symbol `u16` name length, name bytes, `u64` section offset, `u64` count.
//! - A 16-byte trailer: `u64` directory offset, `u32` symbol count, `RTBE`.
//!
//! The trailer comes last so `data import` can stream each section to disk without knowing the
//! counts up front. A backtest over a cache keeps one buffered reader per symbol and never holds
//! the bars in memory, so its footprint does not grow with the number of bars.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use robo_core::calendar::{self, Calendar};
use robo_core::types::{Bar, SymbolId, Ts};
use rust_decimal::Decimal;

use crate::data::csv::{
    parse_reader, read_path, CsvError, LoadReport, RawBar, ReadOptions, RowError, SymbolBars,
};

pub const MAGIC: &[u8; 8] = b"RTBARS\0\x01";
const TRAILER_MAGIC: &[u8; 4] = b"RTBE";
/// Prices are stored as integer mantissas with this many decimal places.
pub const SCALE: u32 = 8;
const RECORD: usize = 48;
/// CSV rows parsed per chunk when streaming a one-symbol file into the cache.
const CHUNK_ROWS: usize = 65_536;

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
}

/// Loaded (or openable) bars, shared by every run of an optimisation.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// CSV bars held in memory, sorted by symbol.
    Memory(Arc<Vec<SymbolBars>>),
    /// A cache file; each run opens its own readers.
    Cache {
        path: PathBuf,
        scale: u32,
        sections: Vec<CacheSection>,
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

/// True if the file starts with the cache magic.
pub fn is_cache(path: &Path) -> bool {
    let mut head = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == MAGIC
}

impl DataSource {
    /// Opens `path`: a cache (by magic bytes) or CSV file/directory. `symbols` (upper-cased,
    /// non-empty) restricts the symbols; one that is absent is an error.
    pub fn open(
        path: &Path,
        symbols: Option<&[String]>,
        opts: &ReadOptions,
    ) -> Result<(DataSource, LoadReport), DataError> {
        let src = if path.is_file() && is_cache(path) {
            let (scale, mut sections) = read_directory(path)?;
            if let Some(want) = symbols {
                sections.retain(|s| want.iter().any(|w| w.eq_ignore_ascii_case(&s.symbol)));
            }
            (
                DataSource::Cache {
                    path: path.to_path_buf(),
                    scale,
                    sections,
                },
                LoadReport {
                    files: 1,
                    ..LoadReport::default()
                },
            )
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
            DataSource::Cache { sections, .. } => {
                sections.iter().map(|s| s.symbol.clone()).collect()
            }
        }
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
            DataSource::Cache {
                path,
                scale,
                sections,
            } => {
                let mut c = Vec::with_capacity(sections.len());
                for s in sections {
                    let mut f = File::open(path).map_err(io_err(path))?;
                    f.seek(SeekFrom::Start(s.offset)).map_err(io_err(path))?;
                    c.push(Cursor::Cache(CacheCursor {
                        path: path.clone(),
                        r: BufReader::with_capacity(1 << 16, f),
                        left: s.count,
                        scale: *scale,
                        last_ts: i64::MIN,
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

    /// The typical spacing between bars in seconds (median of the first gaps of the first
    /// symbol), or `None` with fewer than two bars.
    pub fn bar_spacing_secs(&self) -> Result<Option<i64>, DataError> {
        let mut st = self.stream(&StreamFilter::default())?;
        let first_sym = st.pending.iter().flatten().map(|b| b.symbol).min();
        let Some(sym) = first_sym else {
            return Ok(None);
        };
        let mut ts = Vec::new();
        while let Some(b) = st.next_bar()? {
            if b.symbol == sym {
                ts.push(b.ts.0);
                if ts.len() > 1000 {
                    break;
                }
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
    Cache(CacheCursor),
}

#[derive(Debug)]
struct CacheCursor {
    path: PathBuf,
    r: BufReader<File>,
    left: u64,
    scale: u32,
    last_ts: i64,
}

impl CacheCursor {
    fn corrupt(&self, why: String) -> DataError {
        DataError::Corrupt {
            path: self.path.display().to_string(),
            why,
        }
    }

    fn next_raw(&mut self) -> Result<Option<RawBar>, DataError> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut rec = [0u8; RECORD];
        self.r
            .read_exact(&mut rec)
            .map_err(|e| self.corrupt(format!("truncated section: {e}")))?;
        self.left -= 1;
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rec[i * 8..i * 8 + 8]);
            b
        };
        let ts = i64::from_le_bytes(word(0));
        let [o, h, l, c] = [1, 2, 3, 4].map(|i| i64::from_le_bytes(word(i)));
        let volume = u64::from_le_bytes(word(5));
        if ts <= self.last_ts {
            return Err(self.corrupt(format!("timestamps not increasing at {ts}")));
        }
        if o <= 0 || h <= 0 || l <= 0 || c <= 0 || h < l {
            return Err(self.corrupt(format!("bad prices at {ts}")));
        }
        self.last_ts = ts;
        // Normalised so a cache gives the same decimal scales (and speed) as the CSV text.
        let d = |m: i64| Decimal::new(m, self.scale).normalize();
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
    heap: BinaryHeap<Reverse<(i64, u16)>>,
    pending: Vec<Option<Bar>>,
    filter: StreamFilter,
    cal: Option<Calendar>,
    /// The regular session of the last bar's day (cached: the calendar is asked once a day).
    session: Option<(chrono::NaiveDate, Option<(Ts, Ts)>)>,
    /// Bars dropped by the calendar filter.
    pub filtered: u64,
}

impl BarStream {
    fn raw_next(&mut self, i: usize) -> Result<Option<RawBar>, DataError> {
        match self.cursors.get_mut(i) {
            Some(Cursor::Memory { data, sym, pos }) => {
                let b = data.get(*sym).and_then(|s| s.bars.get(*pos)).copied();
                *pos += 1;
                Ok(b)
            }
            Some(Cursor::Cache(c)) => c.next_raw(),
            None => Ok(None),
        }
    }

    fn refill(&mut self, i: usize) -> Result<(), DataError> {
        loop {
            let Some(b) = self.raw_next(i)? else {
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
            let bar = Bar {
                symbol: SymbolId(i as u16),
                ts: b.ts,
                open: b.open,
                high: b.high,
                low: b.low,
                close: b.close,
                volume: b.volume,
            };
            self.heap.push(Reverse((b.ts.0, i as u16)));
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

    /// The next bar in (time, symbol) order.
    #[inline]
    pub fn next_bar(&mut self) -> Result<Option<Bar>, DataError> {
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let i = usize::from(i);
        let bar = self.pending.get_mut(i).and_then(Option::take);
        self.refill(i)?;
        Ok(bar)
    }
}

fn read_directory(path: &Path) -> Result<(u32, Vec<CacheSection>), DataError> {
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
    let scale = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if scale > 18 {
        return Err(corrupt("price scale above 18"));
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
        let mut nums = [0u8; 16];
        r.read_exact(&mut nums)
            .map_err(|_| corrupt("directory truncated"))?;
        w.copy_from_slice(&nums[0..8]);
        let offset = u64::from_le_bytes(w);
        w.copy_from_slice(&nums[8..16]);
        let count = u64::from_le_bytes(w);
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
        });
    }
    sections.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok((scale, sections))
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
            w: BufWriter::with_capacity(1 << 16, f),
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

    fn begin(&mut self, symbol: &str, file: &str) -> Result<(), DataError> {
        if let Some(s) = self.dir.iter().find(|s| s.symbol == symbol) {
            return Err(DataError::Csv(CsvError::SymbolInTwoFiles {
                symbol: s.symbol.clone(),
                first: "an earlier file".into(),
                second: file.to_string(),
            }));
        }
        self.dir.push(CacheSection {
            symbol: symbol.to_string(),
            offset: self.pos,
            count: 0,
        });
        Ok(())
    }

    fn bar(&mut self, b: &RawBar, file: &str, line: usize) -> Result<(), DataError> {
        let m = |v: Decimal| -> Result<i64, DataError> {
            let too = || DataError::TooPrecise {
                file: file.to_string(),
                line,
                value: v,
            };
            if v.scale() > SCALE {
                return Err(too());
            }
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

/// Converts a CSV file or directory into a cache at `out`. One-symbol files (no `symbol`
/// column) are streamed in chunks, so memory stays flat however long they are; long files with
/// a symbol column are parsed whole. A failed import removes the partial output.
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
    let files = csv_files(input)?;
    let mut w = CacheWriter::create(out)?;
    let mut rep = ImportReport::default();
    let opts = ReadOptions {
        skip_bad_rows: skip,
        ..ReadOptions::default()
    };
    for f in &files {
        let name = f.display().to_string();
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().trim().to_ascii_uppercase())
            .unwrap_or_default();
        let file = File::open(f).map_err(io_err(f))?;
        let mut r = BufReader::with_capacity(1 << 16, file);
        let mut lr = LoadReport::default();
        // Header: first non-blank line (with the BOM, which the reader strips itself).
        let mut header = Vec::new();
        let mut line_no = 0usize;
        loop {
            header.clear();
            if r.read_until(b'\n', &mut header).map_err(io_err(f))? == 0 {
                return Err(CsvError::EmptyFile { file: name }.into());
            }
            line_no += 1;
            if !header.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        if !header.ends_with(b"\n") {
            header.push(b'\n');
        }
        let header_line = line_no;
        let long = String::from_utf8_lossy(&header)
            .split(',')
            .map(|h| h.trim().trim_matches('"').trim().to_ascii_lowercase())
            .any(|h| h == "symbol" || h == "ticker");
        if long {
            let mut buf = header.clone();
            r.read_to_end(&mut buf).map_err(io_err(f))?;
            let got = parse_reader(&name, Some(&stem), &buf[..], &opts, &mut lr)
                .map_err(|e| shift_line(e, header_line - 1))?;
            for sb in got {
                w.begin(&sb.symbol, &name)?;
                for b in &sb.bars {
                    w.bar(b, &name, 0)?;
                }
                rep.bars += sb.bars.len() as u64;
            }
        } else {
            w.begin(&stem, &name)?;
            let mut chunk = header.clone();
            let mut rows = 0usize;
            let mut first_line = line_no + 1;
            let mut last_ts: Option<Ts> = None;
            let mut any_rows = false;
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line).map_err(io_err(f))?;
                if n > 0 {
                    line_no += 1;
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    chunk.extend_from_slice(&line);
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        rows += 1;
                    }
                }
                if (n == 0 && rows > 0) || rows >= CHUNK_ROWS {
                    any_rows = true;
                    // In the chunk, the header is line 1 and the first data line is line 2.
                    let shift = first_line - 2;
                    let got = parse_reader(&name, Some(&stem), &chunk[..], &opts, &mut lr)
                        .map_err(|e| shift_line(e, shift))?;
                    for sb in got {
                        for b in &sb.bars {
                            if let Some(prev) = last_ts.filter(|p| b.ts <= *p) {
                                let reason = if b.ts == prev {
                                    RowError::DuplicateTs {
                                        symbol: sb.symbol.clone(),
                                        ts: b.ts,
                                    }
                                } else {
                                    RowError::Unsorted {
                                        symbol: sb.symbol.clone(),
                                        ts: b.ts,
                                        prev,
                                    }
                                };
                                if skip {
                                    lr.skipped += 1;
                                    continue;
                                }
                                return Err(CsvError::Row {
                                    file: name.clone(),
                                    line: first_line,
                                    reason,
                                }
                                .into());
                            }
                            w.bar(b, &name, first_line)?;
                            last_ts = Some(b.ts);
                            rep.bars += 1;
                        }
                    }
                    chunk.truncate(header.len());
                    rows = 0;
                    first_line = line_no + 1;
                }
                if n == 0 {
                    break;
                }
            }
            if !any_rows {
                return Err(CsvError::NoRows {
                    file: name,
                    line: header_line,
                }
                .into());
            }
        }
        rep.files += 1;
        rep.skipped += lr.skipped;
    }
    rep.symbols = w.dir.iter().filter(|s| s.count > 0).count();
    rep.bytes = w.finish()?;
    Ok(rep)
}

/// Moves a chunk-relative line number back to the file's numbering.
fn shift_line(e: CsvError, by: usize) -> DataError {
    match e {
        CsvError::Row { file, line, reason } => CsvError::Row {
            file,
            line: line + by,
            reason,
        },
        other => other,
    }
    .into()
}
