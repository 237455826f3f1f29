//! Scripted misbehaviour: the per-connection [`ConnBehavior`] queue, the runtime fault switches
//! shared by all connections, and the historical-data pacing rules of IB (error 162).

use crate::messages::RequestKind;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// How one accepted connection behaves. Entries are consumed in order, one per accepted
/// connection (a `RefuseFor` entry is consumed by keeping the listener closed for its duration);
/// the last entry repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnBehavior {
    /// A well-behaved gateway.
    Normal,
    /// Close the listener so the OS refuses connections for this long, then listen again.
    RefuseFor(Duration),
    /// Accept, then close at once (ibapi: "early eof").
    CloseImmediately,
    /// Accept and never write (reads are drained). ibapi's connect hangs forever.
    AcceptAndHang,
    /// Reply to the version handshake, then never send nextValidId / managedAccounts.
    HandshakeThenHang,
    /// Reply with this server version, whatever range the client offered (e.g. 187).
    ServerVersion(i32),
    /// Answer startApi with error 326 and close.
    ClientIdInUse,
    /// Like `ClientIdInUse`, only for these client ids.
    ClientIdInUseFor(Vec<i32>),
    /// placeOrder gets error 321 (the "Read-Only API" setting).
    ReadOnly,
}

/// Runtime switches, set through the `Handle`, read by every connection.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub delays: HashMap<RequestKind, Duration>,
    pub ignored: HashSet<RequestKind>,
    /// One-shot: the next request of this kind closes its connection instead of being answered.
    pub drop_when: Vec<RequestKind>,
    pub read_only: bool,
    pub pacing: bool,
    /// Error 100 above this many messages per second per connection.
    pub rate_limit: Option<u32>,
    /// Symbols without a real-time data permission: a realtime-bars request for one of them on
    /// a connection still asking for live data (market data type 1 or 2) gets this error code
    /// (354, 10089 or 10167). After reqMarketDataType 3 or 4 its (delayed) bars flow.
    pub no_realtime: HashMap<String, i32>,
    /// Symbols whose realtime bars stop: subscriptions are accepted, but nothing is pushed.
    pub silent: HashSet<String>,
}

/// IB's historical pacing rules (historical_limitations.html): no identical request within
/// 15 s, and no more than 60 requests in any 10 minutes.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    history: VecDeque<(Instant, String)>,
}

pub(crate) const IDENTICAL_WINDOW: Duration = Duration::from_secs(15);
pub(crate) const BURST_WINDOW: Duration = Duration::from_secs(600);
pub(crate) const BURST_LIMIT: usize = 60;

/// Why a historical request violates pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacingViolation {
    IdenticalWithin15s,
    MoreThan60In10Min,
}

impl Pacer {
    /// Admits the request (and remembers it) or names the rule it breaks.
    pub fn check(&mut self, key: String, now: Instant) -> Result<(), PacingViolation> {
        while self
            .history
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= BURST_WINDOW)
        {
            self.history.pop_front();
        }
        if self
            .history
            .iter()
            .any(|(t, k)| *k == key && now.duration_since(*t) < IDENTICAL_WINDOW)
        {
            return Err(PacingViolation::IdenticalWithin15s);
        }
        if self.history.len() >= BURST_LIMIT {
            return Err(PacingViolation::MoreThan60In10Min);
        }
        self.history.push_back((now, key));
        Ok(())
    }
}

/// Per-connection message-rate counter (error 100).
#[derive(Debug, Default)]
pub(crate) struct RateCounter {
    recent: VecDeque<Instant>,
}

impl RateCounter {
    /// Counts a message; returns how many arrived in the last second, this one included.
    pub fn hit(&mut self, now: Instant) -> usize {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacing_identical_within_15s_then_allowed() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(p.check("a".into(), t0), Ok(()));
        assert_eq!(
            p.check("a".into(), t0 + Duration::from_secs(14)),
            Err(PacingViolation::IdenticalWithin15s)
        );
        assert_eq!(p.check("b".into(), t0 + Duration::from_secs(14)), Ok(()));
        assert_eq!(p.check("a".into(), t0 + Duration::from_secs(15)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_sixty_per_ten_minutes() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        for i in 0..60 {
            assert_eq!(
                p.check(format!("k{i}"), t0 + Duration::from_secs(i)),
                Ok(())
            );
        }
        assert_eq!(
            p.check("k60".into(), t0 + Duration::from_secs(61)),
            Err(PacingViolation::MoreThan60In10Min)
        );
        // The first request (t0) leaves the window at t0 + 600 s.
        assert_eq!(p.check("k61".into(), t0 + Duration::from_secs(600)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_counter_window_is_one_second() {
        let mut r = RateCounter::default();
        let t0 = Instant::now();
        assert_eq!(r.hit(t0), 1);
        assert_eq!(r.hit(t0 + Duration::from_millis(999)), 2);
        assert_eq!(r.hit(t0 + Duration::from_millis(1000)), 2);
    }
}
