//! The `--report out.html` page: one self-contained file (inline SVG from plotters, inline CSS,
//! no script, no network) with the equity and drawdown charts, one price chart per symbol with
//! the fills marked, the metrics table and the trade list.
//!
//! Plotters is built without fonts, so the charts carry no text; the axis ranges are printed
//! under each chart in HTML instead.

use std::fmt::Write as _;

use plotters::prelude::*;
use robo_core::types::{Side, Ts};
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;

use super::metrics::ts_text;
use super::run::{RunResult, RunSettings, MAX_KEPT_TRADES};

const W: u32 = 960;
const H: u32 = 280;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn day(t: i64) -> String {
    ts_text(Ts(t))
}

/// (min, max) padded so a flat series still has a range.
fn bounds(it: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = it
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-6).max(1e-9);
    (lo - pad, hi + pad)
}

type Series<'a> = (&'a [(i64, f64)], RGBColor);

/// One line chart (several series) with optional buy/sell markers; returns the SVG text.
fn line_chart(
    series: &[Series<'_>],
    buys: &[(i64, f64)],
    sells: &[(i64, f64)],
    area: bool,
) -> String {
    let mut svg = String::new();
    let all = series.iter().flat_map(|(s, _)| s.iter());
    let (x0, x1) = match (
        all.clone().map(|p| p.0).min(),
        all.clone().map(|p| p.0).max(),
    ) {
        (Some(a), Some(b)) if b > a => (a, b),
        (Some(a), _) => (a, a + 1),
        _ => (0, 1),
    };
    let (y0, y1) = bounds(
        all.map(|p| p.1)
            .chain(buys.iter().chain(sells).map(|p| p.1)),
    );
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .margin(8)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            for k in 1..4 {
                let y = y0 + (y1 - y0) * f64::from(k) / 4.0;
                chart.draw_series(LineSeries::new([(x0, y), (x1, y)], RGBColor(225, 225, 225)))?;
            }
            for (s, color) in series {
                if area {
                    chart.draw_series(AreaSeries::new(
                        s.iter().copied(),
                        0.0f64.clamp(y0, y1),
                        color.mix(0.35),
                    ))?;
                }
                chart.draw_series(LineSeries::new(s.iter().copied(), color))?;
            }
            chart.draw_series(
                buys.iter()
                    .map(|&p| TriangleMarker::new(p, 5, GREEN.filled())),
            )?;
            chart.draw_series(sells.iter().map(|&p| Cross::new(p, 4, RED.stroke_width(2))))?;
            root.present()?;
            Ok(())
        })();
        if let Err(e) = drawn {
            drop(root);
            return format!("<p>chart not drawn: {}</p>", esc(&e.to_string()));
        }
    }
    let _ = write!(
        svg,
        "<div class=axis>x: {} … {} &nbsp; y: {:.2} … {:.2}</div>",
        day(x0),
        day(x1),
        y0,
        y1
    );
    svg
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.6}"),
            _ => n.to_string(),
        },
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// The whole page.
pub fn html(r: &RunResult, s: &RunSettings, summary: &Value) -> String {
    let mut h = String::with_capacity(1 << 20);
    let title = format!(
        "Backtest: {} on {}",
        s.strategy.name(),
        r.symbols.join(", ")
    );
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><title>{}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222}}\
         table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child{{text-align:left}}.axis{{font-size:12px;color:#666;margin-bottom:16px}}\
         .legend span{{display:inline-block;margin-right:16px}}</style></head><body><h1>{}</h1>",
        esc(&title),
        esc(&title)
    );

    // Equity vs the benchmark.
    let eq: Vec<(i64, f64)> = r.equity_points.iter().map(|p| (p.0, p.1)).collect();
    let bh: Vec<(i64, f64)> = r.equity_points.iter().map(|p| (p.0, p.2)).collect();
    h.push_str("<h2>Equity</h2><div class=legend><span style=color:#1f5fbf>■ strategy</span><span style=color:#999>■ equal-weight buy and hold</span></div>");
    h.push_str(&line_chart(
        &[(&bh, RGBColor(160, 160, 160)), (&eq, RGBColor(31, 95, 191))],
        &[],
        &[],
        false,
    ));

    // Drawdown from the running peak (of the charted points), as a negative percentage.
    let mut peak = f64::NEG_INFINITY;
    let dd: Vec<(i64, f64)> = eq
        .iter()
        .map(|&(t, e)| {
            peak = peak.max(e);
            (
                t,
                if peak > 0.0 {
                    (e / peak - 1.0) * 100.0
                } else {
                    0.0
                },
            )
        })
        .collect();
    h.push_str("<h2>Drawdown (%)</h2>");
    h.push_str(&line_chart(&[(&dd, RGBColor(200, 40, 40))], &[], &[], true));

    // Metrics.
    h.push_str("<h2>Metrics</h2><table>");
    if let Some(obj) = summary.as_object() {
        for (k, v) in obj {
            match v {
                Value::Object(inner) => {
                    for (k2, v2) in inner {
                        let _ = write!(
                            h,
                            "<tr><td>{} {}</td><td>{}</td></tr>",
                            esc(k),
                            esc(k2),
                            cell(v2)
                        );
                    }
                }
                Value::Array(a) => {
                    let text: Vec<String> = a
                        .iter()
                        .map(|x| match x {
                            Value::String(s) => esc(s),
                            o => esc(&o.to_string()),
                        })
                        .collect();
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td>{}</td></tr>",
                        esc(k),
                        text.join(", ")
                    );
                }
                _ => {
                    let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), cell(v));
                }
            }
        }
    }
    h.push_str("</table>");

    // One chart per symbol with the fills.
    for (i, name) in r.symbols.iter().enumerate() {
        let prices = r.prices.get(i).map_or(&[][..], Vec::as_slice);
        let pick = |side: Side| -> Vec<(i64, f64)> {
            r.fill_rows
                .iter()
                .filter(|f| f.symbol == i && f.side == side)
                .map(|f| (f.ts, f.price.to_f64().unwrap_or(0.0)))
                .collect()
        };
        let _ = write!(
            h,
            "<h2>{}</h2><div class=legend><span style=color:green>▲ buy</span><span style=color:red>✕ sell</span></div>",
            esc(name)
        );
        h.push_str(&line_chart(
            &[(prices, RGBColor(60, 60, 60))],
            &pick(Side::Buy),
            &pick(Side::Sell),
            false,
        ));
    }

    // Trades.
    let _ = write!(
        h,
        "<h2>Closed trades ({} total{})</h2><table><tr><th>symbol</th><th>side</th><th>qty</th>\
         <th>entry</th><th>entry price</th><th>exit</th><th>exit price</th><th>commission</th><th>P&amp;L</th></tr>",
        r.trades.trades,
        if r.trades.trades > MAX_KEPT_TRADES {
            format!(", first {MAX_KEPT_TRADES} listed")
        } else {
            String::new()
        }
    );
    for t in &r.closed {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.symbol), t.side, t.qty, t.entry_ts, t.entry_price, t.exit_ts, t.exit_price,
            t.commission.round_dp(2), t.pnl.round_dp(2)
        );
    }
    h.push_str("</table>");
    if !r.open_positions.is_empty() {
        h.push_str("<p>Open at the end (marked at the last close, not closed): ");
        let open: Vec<String> = r
            .open_positions
            .iter()
            .map(|(s, q)| format!("{} {q}", esc(s)))
            .collect();
        h.push_str(&open.join(", "));
        h.push_str("</p>");
    }
    h.push_str("</body></html>\n");
    h
}
