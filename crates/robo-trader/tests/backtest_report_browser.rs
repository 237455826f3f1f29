//! Acceptance 4: the HTML report of `backtest --report` opens in headless Chromium (driven over
//! the DevTools protocol, see `cdp/`) with no exception, no console or log error and no
//! network request besides the file itself; the rendered page has its charts and tables, and
//! a screenshot lands in `target/screenshots/`.
//!
//! Without `/usr/bin/chromium` the test prints a notice and passes, unless `CI` is set.

// Shared with the dashboard test, which uses the parts this one does not.
#[allow(dead_code)]
mod cdp;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cdp::{Cdp, Chromium};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_robo-trader");
const CHROMIUM: &str = "/usr/bin/chromium";

fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("screenshots")
}

/// Two symbols of a seeded random walk, 2 000 minute bars each, in cents.
fn write_data(dir: &Path) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    for (sym, start) in [("AAA", 10_000i64), ("BBB", 5_000)] {
        let mut s = String::from("datetime,open,high,low,close,volume\n");
        let mut c = start;
        for i in 0..2_000i64 {
            let o = (c + rnd(11) as i64 - 5).max(100);
            c = (o + rnd(21) as i64 - 10).max(100);
            let h = o.max(c) + rnd(5) as i64;
            let l = (o.min(c) - rnd(5) as i64).max(1);
            let cents = |v: i64| format!("{}.{:02}", v / 100, v % 100);
            let _ = writeln!(
                s,
                "{},{},{},{},{},1000",
                1_577_975_400 + i * 60,
                cents(o),
                cents(h),
                cents(l),
                cents(c)
            );
        }
        std::fs::write(dir.join(format!("{sym}.csv")), s).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_offline_without_errors() {
    if !Path::new(CHROMIUM).exists() {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
            panic!("{CHROMIUM} is required when CI is set");
        }
        eprintln!("notice: {CHROMIUM} not installed; skipped the report browser test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_data(&data);
    let report = dir.path().join("out.html");
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["backtest", "--data"])
        .arg(&data)
        .args(["--param", "fast=5", "--param", "slow=20", "--no-risk"])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("file://{}", report.display());

    let browser = Chromium::launch(Path::new(CHROMIUM), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    let cdp = Cdp::connect(&browser.ws_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let page = cdp.new_page().await.unwrap_or_else(|e| panic!("{e}"));
    for domain in ["Runtime", "Log", "Network", "Page"] {
        page.call(&format!("{domain}.enable"), json!({}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    page.viewport(1280, 800, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let since = cdp.event_count();
    page.call("Page.navigate", json!({ "url": url }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cdp.wait_event(since, Duration::from_secs(10), "Page.loadEventFired", |e| {
        e.method == "Page.loadEventFired"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // What rendered: equity, drawdown and one chart per symbol, the metrics and trade tables.
    let svgs = page
        .eval("document.querySelectorAll('svg').length")
        .await
        .unwrap();
    assert!(svgs.as_u64().unwrap_or(0) >= 4, "svg charts: {svgs}");
    let heads = page
        .eval("[...document.querySelectorAll('h2')].map(h => h.textContent)")
        .await
        .unwrap();
    let heads: Vec<String> = heads
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str().map(String::from))
        .collect();
    for want in ["Equity", "Drawdown (%)", "Metrics", "AAA", "BBB"] {
        assert!(heads.iter().any(|h| h == want), "no {want:?} in {heads:?}");
    }
    assert!(
        heads.iter().any(|h| h.starts_with("Closed trades")),
        "{heads:?}"
    );
    // The equity chart really drew something, with a nonzero size.
    let size = page
        .eval("(() => { const r = document.querySelector('svg').getBoundingClientRect(); return r.width * r.height; })()")
        .await
        .unwrap();
    assert!(size.as_f64().unwrap_or(0.0) > 10_000.0, "svg area {size}");

    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("backtest-report-1280x800.png");
    page.screenshot(&shot)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    let events = cdp.events();
    let problems: Vec<String> = events
        .iter()
        .filter_map(|e| match e.method.as_str() {
            "Runtime.exceptionThrown" => {
                Some(format!("exception: {}", e.params["exceptionDetails"]))
            }
            "Runtime.consoleAPICalled" if e.params["type"] == "error" => {
                Some(format!("console.error: {}", e.params["args"]))
            }
            "Log.entryAdded" if e.params["entry"]["level"] == "error" => {
                Some(format!("log error: {}", e.params["entry"]))
            }
            _ => None,
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let requests: Vec<String> = events
        .iter()
        .filter(|e| e.method.starts_with("Network."))
        .filter_map(|e| {
            e.params["request"]["url"]
                .as_str()
                .or(e.params["response"]["url"].as_str())
                .or(e.params["url"].as_str())
                .map(String::from)
        })
        .filter(|u| *u != url)
        .collect();
    assert!(requests.is_empty(), "network beyond the file: {requests:?}");
    // And the file itself was loaded through the Network domain (the check above is live).
    assert!(
        events
            .iter()
            .any(|e| e.method == "Network.requestWillBeSent"
                && e.params["request"]["url"].as_str() == Some(url.as_str())),
        "the Network domain saw no request at all"
    );
    eprintln!("report rendered; screenshot {}", shot.display());
}
