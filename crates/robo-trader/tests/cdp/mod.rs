//! A tiny Chrome DevTools Protocol client for the browser tests: launches headless Chromium
//! in its own process group (killed on drop), speaks CDP over its browser WebSocket with
//! flattened sessions, matches replies to calls by id and records every event.
//!
//! Every wait has a timeout; nothing here blocks forever on a browser that went quiet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long one CDP call may take before it counts as lost.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A headless Chromium with a throwaway profile; the whole process group dies on drop.
pub struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
    /// `ws://127.0.0.1:PORT/devtools/browser/...`
    pub ws_url: String,
}

impl Chromium {
    /// Starts `bin` headless and waits (up to `timeout`) for its DevTools URL on stderr.
    pub fn launch(bin: &Path, timeout: Duration) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().map_err(|e| format!("profile dir: {e}"))?;
        let log: PathBuf = profile.path().join("chromium.stderr");
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-port=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join("data").display()
            ))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut me = Chromium {
            child,
            _profile: profile,
            ws_url: String::new(),
        };
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text
                .lines()
                .find_map(|l| l.split("DevTools listening on ").nth(1))
            {
                me.ws_url = url.trim().to_string();
                return Ok(me);
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(format!(
                    "chromium exited ({status}) before listening:\n{text}"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("no DevTools URL within {timeout:?}:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The browser forks renderer/GPU/zygote children into its process group: end them all.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain syscall on the process group this struct created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One CDP event as received.
#[derive(Debug, Clone)]
pub struct Event {
    pub method: String,
    pub session: Option<String>,
    pub params: Value,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A connection to the browser endpoint.
pub struct Cdp {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    events: Arc<Mutex<Vec<Event>>>,
    dropped: Arc<Mutex<HashMap<String, usize>>>,
    next_id: AtomicU64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Events too frequent to keep (a busy stream would fill memory), counted instead.
const DROPPED_EVENTS: [&str; 2] = [
    "Network.webSocketFrameReceived",
    "Network.webSocketFrameSent",
];

impl Cdp {
    pub async fn connect(url: &str) -> Result<Arc<Self>, String> {
        let (ws, _) = tokio::time::timeout(CALL_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| format!("connecting to {url}: timed out"))?
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    return;
                }
            }
        });
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let dropped: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (p, ev, dr) = (pending.clone(), events.clone(), dropped.clone());
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(text) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    let reply = match v.get("error") {
                        Some(e) => Err(e.to_string()),
                        None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    if let Some(tx) = p.lock().unwrap().remove(&id) {
                        let _ = tx.send(reply);
                    }
                } else if let Some(method) = v.get("method").and_then(Value::as_str) {
                    if DROPPED_EVENTS.contains(&method) {
                        *dr.lock().unwrap().entry(method.to_string()).or_default() += 1;
                        continue;
                    }
                    ev.lock().unwrap().push(Event {
                        method: method.to_string(),
                        session: v.get("sessionId").and_then(Value::as_str).map(String::from),
                        params: v.get("params").cloned().unwrap_or(Value::Null),
                    });
                }
            }
            // The browser went away: fail every call still waiting.
            for (_, tx) in p.lock().unwrap().drain() {
                let _ = tx.send(Err("the browser connection closed".into()));
            }
        });
        Ok(Arc::new(Cdp {
            out,
            pending,
            events,
            dropped,
            next_id: AtomicU64::new(1),
            tasks: vec![writer, reader],
        }))
    }

    /// Sends `method` (to `session`, or the browser) and waits for its reply.
    pub async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.out
            .send(Message::Text(msg.to_string().into()))
            .map_err(|_| format!("{method}: the browser connection closed"))?;
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply.map_err(|e| format!("{method}: {e}")),
            Ok(Err(_)) => Err(format!("{method}: no reply (connection closed)")),
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                Err(format!("{method}: no reply within {CALL_TIMEOUT:?}"))
            }
        }
    }

    /// A copy of every event received so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Waits for the first event at index `since` or later that `pred` accepts.
    pub async fn wait_event(
        &self,
        since: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<Event, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .events
                .lock()
                .unwrap()
                .iter()
                .skip(since)
                .find(|e| pred(e))
            {
                return Ok(e.clone());
            }
            if Instant::now() > deadline {
                return Err(format!("no {what} event within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many `method` events arrived that were counted rather than kept.
    pub fn dropped(&self, method: &str) -> usize {
        self.dropped
            .lock()
            .unwrap()
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// How many events have been received (an index for [`Cdp::wait_event`]).
    pub fn event_count(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Opens a blank tab and attaches to it with a flattened session.
    pub async fn new_page(self: &Arc<Self>) -> Result<Page, String> {
        let t = self
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target = t["targetId"]
            .as_str()
            .ok_or("Target.createTarget: no targetId")?;
        let a = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await?;
        let session = a["sessionId"]
            .as_str()
            .ok_or("Target.attachToTarget: no sessionId")?
            .to_string();
        Ok(Page {
            cdp: self.clone(),
            session,
        })
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One tab, addressed through its session.
pub struct Page {
    pub cdp: Arc<Cdp>,
    pub session: String,
}

impl Page {
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.cdp.call(Some(&self.session), method, params).await
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    pub async fn eval(&self, expr: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(format!("evaluating `{expr}` threw: {ex}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expr` until it yields something truthy (not null/false/0/""), and returns it.
    pub async fn wait_for(
        &self,
        what: &str,
        expr: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.eval(expr).await {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => v,
                Err(e) => json!(e),
            };
            if Instant::now() > deadline {
                return Err(format!("{what}: not within {timeout:?} (last: {last})"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets the viewport (CSS pixels, scale 1; `mobile` turns on the mobile viewport rules).
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) -> Result<(), String> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await
        .map(|_| ())
    }

    /// Captures the viewport as PNG into `path` (parent directories created).
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = r["data"]
            .as_str()
            .ok_or("Page.captureScreenshot: no data")?;
        let png = base64_decode(data)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Standard base64 (with padding), as CDP sends binary data.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let body = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="))
        .unwrap_or(&bytes);
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, &c) in body.iter().enumerate() {
        let v = val(c).ok_or_else(|| format!("base64: bad character at {i}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
