//! The web side of `run`: dashboard, REST API, WebSocket stream and `/metrics`, served by the
//! same process. (Being built; `start` and `load_or_create_token` are the contract with
//! `main`.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

/// Binds the dashboard and WebSocket ports and serves them on the current tokio runtime.
pub async fn start(web: &WebConfig, _ctx: WebContext) -> anyhow::Result<WebHandle> {
    let dash = tokio::net::TcpListener::bind((web.dash_host.as_str(), web.dash_port)).await?;
    let ws = tokio::net::TcpListener::bind((web.dash_host.as_str(), web.ws_port)).await?;
    let handle = WebHandle {
        dash: dash.local_addr()?,
        ws: ws.local_addr()?,
    };
    Ok(handle)
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
