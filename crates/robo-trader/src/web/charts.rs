//! Server-rendered SVG charts of the equity table: the equity curve and its drawdown.
//! Drawn with plotters' SVG backend; no fonts or scripts needed by the page.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use plotters::prelude::*;
use rust_decimal::prelude::ToPrimitive;

use super::api::{equity_points, params};
use super::perf::drawdowns;
use super::{ApiError, AppState};

const SIZE: (u32, u32) = (900, 300);

/// One series as an SVG document. An empty series gives a chart saying so.
pub fn line_svg(title: &str, points: &[(f64, f64)], colour: RGBColor) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        if points.len() < 2 {
            root.draw(&Text::new(
                format!("{title}: not enough data yet"),
                (20, 20),
                ("sans-serif", 16).into_font(),
            ))
            .map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
            drop(root);
            return Ok(svg);
        }
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in points {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
            y0 = y0.min(*y);
            y1 = y1.max(*y);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|x| {
                chrono::DateTime::from_timestamp(*x as i64, 0)
                    .map(|d| d.format("%m-%d %H:%M").to_string())
                    .unwrap_or_default()
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &colour))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn svg_response(svg: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        svg,
    )
        .into_response()
}

async fn curve(
    shared: &AppState,
) -> Result<Vec<(robo_core::types::Ts, rust_decimal::Decimal)>, ApiError> {
    let db = shared.ctx.db.clone();
    tokio::task::spawn_blocking(move || equity_points(&db))
        .await
        .map_err(|e| ApiError::internal(format!("chart task failed: {e}")))?
}

pub async fn equity_svg(
    State(shared): State<AppState>,
    q: super::api::RawQuery,
) -> Result<Response, ApiError> {
    params(q, &[])?;
    let curve = curve(&shared).await?;
    let pts: Vec<(f64, f64)> = curve
        .iter()
        .filter_map(|(t, e)| Some((t.secs() as f64, e.to_f64()?)))
        .collect();
    let svg = line_svg("Equity ($)", &pts, BLUE).map_err(ApiError::internal)?;
    Ok(svg_response(svg))
}

pub async fn drawdown_svg(
    State(shared): State<AppState>,
    q: super::api::RawQuery,
) -> Result<Response, ApiError> {
    params(q, &[])?;
    let curve = curve(&shared).await?;
    let (series, _) = drawdowns(&curve);
    let pts: Vec<(f64, f64)> = series
        .iter()
        .map(|(t, f)| (t.secs() as f64, -100.0 * f))
        .collect();
    let svg = line_svg("Drawdown (%)", &pts, RED).map_err(ApiError::internal)?;
    Ok(svg_response(svg))
}
