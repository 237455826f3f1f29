//! The web side of `run`: dashboard, REST API, WebSocket stream and `/metrics`, served by the
//! same process on the tokio runtime `main` provides.
//!
//! Every figure shown comes from the database (read-only connections per request) or from the
//! trading thread's bus; nothing is invented here. Control requests (kill switch, pause,
//! resume, flatten, cancel-all) need the bearer token and a loopback `Origin` (when one is
//! sent); they are persisted, logged, and sent to the trading thread.
//!
//! Layout: [`api`] (REST + control), [`ws`] (the stream), [`live`] (the bus subscriber that
//! keeps the last bars and the Prometheus metrics), [`perf`] (ledger statistics), [`charts`]
//! (server-rendered SVG), [`openapi`].

pub mod api;
pub mod charts;
pub mod live;
pub mod openapi;
pub mod perf;
pub mod ws;

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::config::WebConfig;
use crate::runner::{Bus, Control};

/// What the web server needs from the rest of the process.
#[derive(Clone)]
pub struct WebContext {
    /// The database (read-only access for the API: every figure comes from the ledger).
    pub db: PathBuf,
    /// Live events from the trading thread.
    pub bus: Bus,
    /// Commands to the trading thread (kill switch, pause, flatten, cancel-all).
    pub control: std::sync::mpsc::Sender<Control>,
    /// The bearer token for control endpoints.
    pub token: String,
    /// "sim" or "ibkr".
    pub mode: String,
    /// The effective config as redacted TOML, for `/api/config`.
    pub config_toml: String,
}

/// Where the servers listen (ports resolved when 0 was asked for).
#[derive(Debug, Clone, Copy)]
pub struct WebHandle {
    pub dash: SocketAddr,
    pub ws: SocketAddr,
}

/// State shared by every handler (public only because the handlers are).
pub struct Shared {
    pub ctx: WebContext,
    pub live: live::Live,
    pub metrics: live::Metrics,
    /// When this server started (wall clock): the sim broker is "ready" since then.
    pub started: chrono::DateTime<chrono::Utc>,
    /// Serialises control writes so two clicks cannot interleave their records.
    pub control_lock: tokio::sync::Mutex<()>,
    /// Idle read-only database connections, reused across requests: opening two SQLite
    /// connections per request cost more than answering it.
    pub db_pool: std::sync::Mutex<Vec<api::Db>>,
}

pub type AppState = Arc<Shared>;

/// Binds `host:port` for `what`; a failure names the address and the flags that set the port.
async fn bind(
    host: &str,
    port: u16,
    what: &str,
    flags: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("binding {what} to {host}:{port} ({flags})"))
}

/// Binds the dashboard and WebSocket ports and serves them on the current tokio runtime.
pub async fn start(web: &WebConfig, ctx: WebContext) -> anyhow::Result<WebHandle> {
    let host = web.dash_host.as_str();
    let dash = bind(
        host,
        web.dash_port,
        "the dashboard",
        "--dash-port, DASH_PORT",
    )
    .await?;
    let ws_listener = bind(host, web.ws_port, "the WebSocket", "--ws-port, WS_PORT").await?;
    let handle = WebHandle {
        dash: dash.local_addr()?,
        ws: ws_listener.local_addr()?,
    };
    let shared = Arc::new(Shared {
        live: live::Live::default(),
        metrics: live::Metrics::new(),
        started: chrono::Utc::now(),
        control_lock: tokio::sync::Mutex::new(()),
        db_pool: std::sync::Mutex::new(Vec::new()),
        ctx,
    });
    // Subscribe before serving, so no bar published after `start` returns is missed.
    let rx = shared.ctx.bus.subscribe();
    tokio::spawn(live::track(shared.clone(), rx));

    let ws_only = Router::new()
        .route("/", get(ws::upgrade))
        .route("/ws", get(ws::upgrade))
        .with_state(shared.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(ws_listener, ws_only).await {
            tracing::error!(error = %e, "WebSocket server stopped");
        }
    });
    let app = router(shared);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(dash, app).await {
            tracing::error!(error = %e, "dashboard server stopped");
        }
    });
    tracing::info!(dashboard = %handle.dash, websocket = %handle.ws, "web server listening");
    Ok(handle)
}

fn router(shared: AppState) -> Router {
    Router::new()
        .route("/", get(page_index))
        .route("/app.js", get(page_js))
        .route("/style.css", get(page_css))
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(live::metrics_text))
        .route("/api/status", get(api::status))
        .route("/api/positions", get(api::positions))
        .route("/api/orders", get(api::orders))
        .route("/api/fills", get(api::fills))
        .route("/api/decisions", get(api::decisions))
        .route("/api/performance", get(api::performance))
        .route("/api/risk", get(api::risk))
        .route("/api/market", get(api::market))
        .route("/api/logs", get(api::logs))
        .route("/api/config", get(api::config))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/charts/equity.svg", get(charts::equity_svg))
        .route("/api/charts/drawdown.svg", get(charts::drawdown_svg))
        .route("/api/control/kill-switch", post(api::kill_switch))
        .route("/api/control/pause", post(api::pause))
        .route("/api/control/resume", post(api::resume))
        .route("/api/control/flatten", post(api::flatten))
        .route("/api/control/cancel-all", post(api::cancel_all))
        .fallback(api::not_found)
        .with_state(shared)
}

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");

/// Headers every page asset carries: nothing may be loaded from elsewhere.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                 style-src 'self'; script-src 'self'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page_index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn page_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn page_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// Why a request was refused before reaching its handler's logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessVerdict {
    Allowed,
    /// A foreign `Origin` (403).
    ForeignOrigin(String),
    /// No or wrong bearer token (401).
    BadToken,
}

/// `Origin`, when present, must name a loopback host (any scheme and port).
pub fn origin_allowed(headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let text = origin.to_str().map_err(|_| "<not text>".to_string())?;
    match origin_host(text) {
        Some(host) if is_loopback(host) => Ok(()),
        _ => Err(text.to_string()),
    }
}

/// The host of an origin like `http://127.0.0.1:5555` or `http://[::1]:80`.
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

/// The access check for control endpoints: origin first, then the token.
pub fn check_control_access(headers: &HeaderMap, token: &str) -> AccessVerdict {
    if let Err(origin) = origin_allowed(headers) {
        return AccessVerdict::ForeignOrigin(origin);
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(p) if !token.is_empty() && constant_time_eq(p.as_bytes(), token.as_bytes()) => {
            AccessVerdict::Allowed
        }
        _ => AccessVerdict::BadToken,
    }
}

/// Compares without an early exit on the first differing byte (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON error body `{error: "..."}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        let status = match e {
            crate::store::StoreError::NotFound(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(format!("database error: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// The control token beside the database (`<db>.token`, mode 0600): read it, or create it on
/// first start. Returns the token and whether it was just created.
pub fn load_or_create_token(db: &Path) -> anyhow::Result<(String, bool)> {
    use anyhow::Context;
    use std::io::{Read, Write};
    let mut path = db.as_os_str().to_owned();
    path.push(".token");
    let path = PathBuf::from(path);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_string();
        if token.len() >= 32 && token.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok((token, false));
        }
        anyhow::bail!(
            "{}: not a token written by robo-trader; delete it to get a new one",
            path.display()
        );
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the control token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok((token, true))
}

/// True for 127.0.0.0/8, ::1 and "localhost".
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(o: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, o.parse().unwrap());
        h
    }

    #[test]
    fn origins() {
        assert!(origin_allowed(&HeaderMap::new()).is_ok());
        for ok in [
            "http://127.0.0.1:5555",
            "http://localhost",
            "https://LOCALHOST:1",
            "http://[::1]:8080",
            "http://127.1.2.3",
        ] {
            assert!(origin_allowed(&with_origin(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.com",
            "null",
            "http://127.0.0.1.evil.com",
            "http://[::2]:1",
            "http://localhost.evil:80",
        ] {
            assert!(origin_allowed(&with_origin(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let mut h = HeaderMap::new();
        assert_eq!(check_control_access(&h, "t0k"), AccessVerdict::BadToken);
        h.insert(header::AUTHORIZATION, "Bearer t0k".parse().unwrap());
        assert_eq!(check_control_access(&h, "t0k"), AccessVerdict::Allowed);
        assert_eq!(check_control_access(&h, "t0K"), AccessVerdict::BadToken);
        h.insert(header::ORIGIN, "http://x.org".parse().unwrap());
        assert_eq!(
            check_control_access(&h, "t0k"),
            AccessVerdict::ForeignOrigin("http://x.org".into())
        );
    }
}
