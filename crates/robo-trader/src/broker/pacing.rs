//! IB's historical-data pacing rules enforced on our side (historical_limitations.html): no
//! identical request within 15 s, at most 60 requests per 10 minutes, at most 5 per contract
//! within 2 s (IB counts six or more as a violation), at most 50 open at once. Callers wait for
//! a slot instead of earning error 162. The 45 msg/s limit for everything sent is ibapi's
//! `RateLimiter`, installed by the adapter.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The pacing limits; `Default` is IB's.
#[derive(Debug, Clone, PartialEq)]
pub struct PacingConfig {
    pub identical_window: Duration,
    pub burst_window: Duration,
    pub burst_limit: usize,
    pub per_contract_window: Duration,
    pub per_contract_limit: usize,
    pub max_open: usize,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self {
            // IB's 15 s plus a margin: the gateway measures arrivals, we measure sends.
            identical_window: Duration::from_millis(15_500),
            burst_window: Duration::from_secs(600),
            burst_limit: 60,
            per_contract_window: Duration::from_secs(2),
            per_contract_limit: 5,
            max_open: 50,
        }
    }
}

/// What identifies a historical request for the pacing rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistKey {
    /// Contract, exchange and what-to-show: the per-contract rule's key.
    pub contract: String,
    /// Everything else (end, duration, bar size, RTH): with `contract`, the identity.
    pub params: String,
}

/// The pure rule book: given the past sends, when may this one go?
#[derive(Debug, Default)]
pub struct PacingBook {
    sent: VecDeque<(Instant, HistKey)>,
}

impl PacingBook {
    /// `None` = may send now; `Some(d)` = wait `d`, then ask again.
    pub fn wait_needed(
        &mut self,
        cfg: &PacingConfig,
        key: &HistKey,
        now: Instant,
    ) -> Option<Duration> {
        while self
            .sent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= cfg.burst_window)
        {
            self.sent.pop_front();
        }
        let mut wait = Duration::ZERO;
        if let Some((t, _)) = self.sent.iter().rev().find(|(_, k)| k == key) {
            wait = wait.max((*t + cfg.identical_window).saturating_duration_since(now));
        }
        if self.sent.len() >= cfg.burst_limit {
            if let Some((t, _)) = self.sent.get(self.sent.len() - cfg.burst_limit) {
                wait = wait.max((*t + cfg.burst_window).saturating_duration_since(now));
            }
        }
        let same_contract: Vec<Instant> = self
            .sent
            .iter()
            .filter(|(t, k)| {
                k.contract == key.contract && now.duration_since(*t) < cfg.per_contract_window
            })
            .map(|(t, _)| *t)
            .collect();
        if same_contract.len() >= cfg.per_contract_limit {
            let oldest = same_contract[same_contract.len() - cfg.per_contract_limit];
            wait = wait.max((oldest + cfg.per_contract_window).saturating_duration_since(now));
        }
        (!wait.is_zero()).then_some(wait)
    }

    pub fn record(&mut self, key: HistKey, now: Instant) {
        self.sent.push_back((now, key));
    }

    /// When the identical request was last sent, if within the burst window.
    pub fn last_sent(&self, key: &HistKey) -> Option<Instant> {
        self.sent
            .iter()
            .rev()
            .find(|(_, k)| k == key)
            .map(|(t, _)| *t)
    }
}

/// The async gate every historical request passes.
#[derive(Debug, Clone)]
pub struct HistPacer {
    cfg: PacingConfig,
    book: Arc<Mutex<PacingBook>>,
    open: Arc<Semaphore>,
}

impl HistPacer {
    pub fn new(cfg: PacingConfig) -> Self {
        let open = Arc::new(Semaphore::new(cfg.max_open.max(1)));
        Self {
            cfg,
            book: Arc::new(Mutex::new(PacingBook::default())),
            open,
        }
    }

    pub fn config(&self) -> &PacingConfig {
        &self.cfg
    }

    /// Waits until `key` may be sent, records it, and returns the open-request permit (drop
    /// it when the answer, error or cancel is in).
    pub async fn acquire(&self, key: &HistKey) -> OwnedSemaphorePermit {
        let permit = loop {
            if let Ok(p) = self.open.clone().acquire_owned().await {
                break p;
            }
            // The semaphore is never closed; this branch only keeps the loop total.
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        loop {
            let wait = {
                let mut book = self.book.lock().await;
                let now = Instant::now();
                match book.wait_needed(&self.cfg, key, now) {
                    None => {
                        book.record(key.clone(), now);
                        return permit;
                    }
                    Some(w) => w,
                }
            };
            tracing::debug!(?key, ?wait, "historical pacing: waiting");
            tokio::time::sleep(wait).await;
        }
    }

    pub async fn last_sent(&self, key: &HistKey) -> Option<Instant> {
        self.book.lock().await.last_sent(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str, p: &str) -> HistKey {
        HistKey {
            contract: c.into(),
            params: p.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn identical_request_waits_out_fifteen_seconds() {
        let cfg = PacingConfig::default();
        let mut book = PacingBook::default();
        let t0 = Instant::now();
        assert_eq!(book.wait_needed(&cfg, &key("AAPL", "1"), t0), None);
        book.record(key("AAPL", "1"), t0);
        let t4 = t0 + Duration::from_secs(4);
        assert_eq!(
            book.wait_needed(&cfg, &key("AAPL", "1"), t4),
            Some(Duration::from_millis(11_500))
        );
        assert_eq!(book.wait_needed(&cfg, &key("AAPL", "2"), t4), None);
    }

    #[tokio::test(start_paused = true)]
    async fn six_per_contract_in_two_seconds_is_refused() {
        let cfg = PacingConfig::default();
        let mut book = PacingBook::default();
        let t0 = Instant::now();
        for i in 0..5 {
            let t = t0 + Duration::from_millis(100 * i);
            assert_eq!(
                book.wait_needed(&cfg, &key("AAPL", &i.to_string()), t),
                None
            );
            book.record(key("AAPL", &i.to_string()), t);
        }
        let t = t0 + Duration::from_millis(500);
        // The first of the five leaves the 2 s window at t0 + 2 s.
        assert_eq!(
            book.wait_needed(&cfg, &key("AAPL", "x"), t),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(book.wait_needed(&cfg, &key("MSFT", "x"), t), None);
    }

    #[tokio::test(start_paused = true)]
    async fn sixty_in_ten_minutes_then_wait_for_the_oldest() {
        let cfg = PacingConfig::default();
        let mut book = PacingBook::default();
        let t0 = Instant::now();
        for i in 0..60u64 {
            let t = t0 + Duration::from_secs(3 * i);
            let k = key(&format!("S{i}"), "p");
            assert_eq!(book.wait_needed(&cfg, &k, t), None);
            book.record(k, t);
        }
        let t = t0 + Duration::from_secs(200);
        assert_eq!(
            book.wait_needed(&cfg, &key("NEW", "p"), t),
            Some(Duration::from_secs(400))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_until_allowed() {
        let pacer = HistPacer::new(PacingConfig::default());
        let k = key("AAPL", "1");
        let t0 = Instant::now();
        drop(pacer.acquire(&k).await);
        drop(pacer.acquire(&k).await);
        assert!(Instant::now() - t0 >= Duration::from_secs(15));
    }
}
