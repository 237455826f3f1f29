//! Logging: `tracing` to stderr always, and to a size-rotated file when `log.file` (LOG_FILE)
//! is set. Rotation keeps `max_files` old files of `max_file_mb` MB each, so the disk used is
//! capped at `(max_files + 1) × max_file_mb` MB.
//!
//! Secrets never go through here: [`print_once_to_terminal`] writes to stderr directly, so a
//! token shown to the operator at start-up cannot end up in the log file (nor on the
//! dashboard).
//!
//! Every event that passes the filter is also kept in a small in-memory ring and offered on a
//! process-wide broadcast ([`recent_logs`], [`subscribe_logs`]) for the dashboard's Logs tab
//! and the WebSocket stream. Publishing never blocks: a slow subscriber lags, it does not
//! slow the thread that logged.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::LogConfig;

const BYTES_PER_MB: usize = 1024 * 1024;

/// Keeps the log file open; flushes it when dropped. Hold it for the life of the process.
#[must_use = "keep the guard until exit; dropping it flushes the log file"]
pub struct LogGuard {
    file: Option<SharedFile>,
}

impl LogGuard {
    /// The log file, when one is written.
    pub fn file_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = f.lock().flush();
        }
    }
}

/// The rotating file behind a mutex, shared by the fmt layer and the guard.
#[derive(Clone)]
struct SharedFile {
    inner: Arc<Mutex<FileRotate<AppendCount>>>,
    path: PathBuf,
}

impl SharedFile {
    /// A panic while another thread held the lock must not silence logging for good.
    fn lock(&self) -> MutexGuard<'_, FileRotate<AppendCount>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One event's hold on the file.
struct FileWriter<'a>(MutexGuard<'a, FileRotate<AppendCount>>);

impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = FileWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        FileWriter(self.lock())
    }
}

/// The filter directives in force: `RUST_LOG` when it is set and not empty, else `log.level`.
pub fn filter_directives(level: &str, rust_log: Option<&str>) -> (String, &'static str) {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(env) => (env.to_string(), "RUST_LOG"),
        None => (level.trim().to_string(), "log.level"),
    }
}

/// Builds the subscriber without installing it (tests install it with
/// `tracing::subscriber::with_default`). `rust_log` is the value of `RUST_LOG`, if any.
pub fn build(
    cfg: &LogConfig,
    rust_log: Option<&str>,
) -> anyhow::Result<(impl Subscriber + Send + Sync, LogGuard)> {
    let (directives, from) = filter_directives(&cfg.level, rust_log);
    let filter = EnvFilter::try_new(&directives)
        .with_context(|| format!("{from}: {directives:?} is not a log level or filter"))?;
    let file = match &cfg.file {
        Some(path) => Some(open_rotating(path, cfg.max_file_mb, cfg.max_files)?),
        None => None,
    };
    // Colour only for a person at a terminal; a redirected stderr gets plain text.
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr);
    let file_layer = file.clone().map(|f| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(f)
    });
    let subscriber = Registry::default()
        .with(filter)
        .with(stderr_layer)
        .with(file_layer)
        .with(WebLogLayer);
    Ok((subscriber, LogGuard { file }))
}

/// Installs the process-wide subscriber. Call once, early in `main`; keep the guard.
pub fn init(cfg: &LogConfig) -> anyhow::Result<LogGuard> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (subscriber, guard) = build(cfg, rust_log.as_deref())?;
    tracing::subscriber::set_global_default(subscriber)
        .context("a logger is already installed in this process")?;
    Ok(guard)
}

/// Writes one line to the terminal (stderr) only, never to the log file: for the API token and
/// anything else the operator must see once but the log must not keep. Write errors are
/// ignored (a closed stderr must not take the process down).
pub fn print_once_to_terminal(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{msg}");
    let _ = err.flush();
}

/// One log event as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// Wall-clock time, RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    pub target: String,
    /// The message followed by the event's fields as `key=value`.
    pub message: String,
}

/// How many recent lines [`recent_logs`] keeps.
pub const LOG_RING: usize = 1000;

struct LogHub {
    ring: Mutex<std::collections::VecDeque<Arc<LogLine>>>,
    tx: tokio::sync::broadcast::Sender<Arc<LogLine>>,
}

fn hub() -> &'static LogHub {
    static HUB: std::sync::OnceLock<LogHub> = std::sync::OnceLock::new();
    HUB.get_or_init(|| LogHub {
        ring: Mutex::new(std::collections::VecDeque::with_capacity(LOG_RING)),
        tx: tokio::sync::broadcast::channel(1024).0,
    })
}

/// Adds a line to the ring and the broadcast (the layer calls this; tests may too).
pub fn publish_log_line(line: LogLine) {
    let line = Arc::new(line);
    let hub = hub();
    {
        let mut ring = hub.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() >= LOG_RING {
            ring.pop_front();
        }
        ring.push_back(line.clone());
    }
    // No subscriber is not an error.
    let _ = hub.tx.send(line);
}

/// The most recent log lines, oldest first.
pub fn recent_logs() -> Vec<Arc<LogLine>> {
    let ring = hub().ring.lock().unwrap_or_else(|p| p.into_inner());
    ring.iter().cloned().collect()
}

/// Log lines from now on.
pub fn subscribe_logs() -> tokio::sync::broadcast::Receiver<Arc<LogLine>> {
    hub().tx.subscribe()
}

/// Forwards every event that passed the filter to [`publish_log_line`].
pub struct WebLogLayer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for WebLogLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        publish_log_line(LogLine {
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            message: visitor.text,
        });
    }
}

#[derive(Default)]
struct LineVisitor {
    text: String,
}

impl tracing::field::Visit for LineVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(field.name(), value);
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.push(field.name(), &format!("{value:?}"));
    }
}

impl LineVisitor {
    fn push(&mut self, name: &str, value: &str) {
        if name == "message" {
            if self.text.is_empty() {
                self.text = value.to_string();
            } else {
                self.text = format!("{value} {}", self.text);
            }
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            self.text.push_str(name);
            self.text.push('=');
            self.text.push_str(value);
        }
    }
}

fn open_rotating(path: &Path, max_file_mb: u32, max_files: u32) -> anyhow::Result<SharedFile> {
    if path.as_os_str().is_empty() {
        anyhow::bail!("log.file: expected a file path, got \"\"");
    }
    if path.is_dir() {
        anyhow::bail!(
            "log.file: {} is a directory, expected a file path",
            path.display()
        );
    }
    // file-rotate panics on a path without a parent or a directory it cannot create, so both
    // are settled here first, with errors that say which file.
    let path = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => path.to_path_buf(),
        _ => Path::new(".").join(path),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("log.file: cannot create directory {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("log.file: cannot open {} for writing", path.display()))?;
    let limit = (max_file_mb.max(1) as usize).saturating_mul(BYTES_PER_MB);
    let rotate = FileRotate::new(
        &path,
        AppendCount::new(max_files.max(1) as usize),
        ContentLimit::Bytes(limit),
        Compression::None,
        None,
    );
    Ok(SharedFile {
        inner: Arc::new(Mutex::new(rotate)),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_when_set() {
        assert_eq!(
            filter_directives("info", None),
            ("info".to_string(), "log.level")
        );
        assert_eq!(
            filter_directives("info", Some("  ")),
            ("info".to_string(), "log.level")
        );
        assert_eq!(
            filter_directives("info", Some("robo_trader=debug")),
            ("robo_trader=debug".to_string(), "RUST_LOG")
        );
    }

    #[test]
    fn file_gets_events_at_level_and_terminal_print_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("robo.log");
        let cfg = LogConfig {
            file: Some(path.clone()),
            level: "info".into(),
            max_file_mb: 1,
            max_files: 2,
        };
        let (sub, guard) = build(&cfg, None).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::info!("hello file");
            tracing::debug!("too verbose");
            print_once_to_terminal("token: s3cret");
        });
        drop(guard);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("hello file"), "{text}");
        assert!(!text.contains("too verbose"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let web: Vec<String> = recent_logs().iter().map(|l| l.message.clone()).collect();
        assert!(web.iter().any(|m| m == "hello file"), "{web:?}");
        assert!(!web.iter().any(|m| m.contains("s3cret")), "{web:?}");
        assert!(!web.iter().any(|m| m.contains("too verbose")), "{web:?}");
        assert!(
            !text.contains('\u{1b}'),
            "no colour codes in the file: {text}"
        );
    }

    #[test]
    fn rotation_caps_the_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("robo.log");
        let shared = open_rotating(&path, 1, 2).unwrap();
        let line = vec![b'x'; 1023];
        // 4.5 MB through a 1 MB limit: the current file plus at most 2 rotated ones remain.
        for _ in 0..(4 * 1024 + 512) {
            let mut w = shared.make_writer();
            w.write_all(&line).unwrap();
            w.write_all(b"\n").unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["robo.log", "robo.log.1", "robo.log.2"]);
        for n in &names {
            let len = std::fs::metadata(dir.path().join(n)).unwrap().len();
            assert!(len <= BYTES_PER_MB as u64, "{n} is {len} bytes");
        }
    }

    #[test]
    fn bad_level_and_directory_path_are_errors() {
        let cfg = LogConfig {
            level: "info,=[".into(),
            ..LogConfig::default()
        };
        let err = build(&cfg, None).err().unwrap().to_string();
        assert!(err.starts_with("log.level"), "{err}");
        let err = build(&LogConfig::default(), Some("=["))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("RUST_LOG"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            file: Some(dir.path().to_path_buf()),
            ..LogConfig::default()
        };
        let err = build(&cfg, None).err().unwrap().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
}
