//! Domain types shared by every part of the core: symbols, exact prices and money, share
//! quantities, bars, quotes, orders, fills and positions.
//!
//! Prices and money are `rust_decimal::Decimal` (exact, never `f64`). Quantities are whole
//! shares in an `i64`. Time is [`Ts`], nanoseconds since the Unix epoch in UTC, so the core
//! never needs a clock of its own.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An exact price per share, in dollars.
pub type Price = Decimal;
/// An exact amount of money, in dollars.
pub type Money = Decimal;
/// A number of shares. Signed in positions (negative = short); always positive in orders and
/// fills, where the sign comes from [`Side`].
pub type Qty = i64;

/// An instant: nanoseconds since the Unix epoch, UTC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Ts(pub i64);

impl Ts {
    pub const NANOS_PER_SEC: i64 = 1_000_000_000;
    pub const fn from_secs(s: i64) -> Self {
        Ts(s * Self::NANOS_PER_SEC)
    }
    pub const fn from_millis(ms: i64) -> Self {
        Ts(ms * 1_000_000)
    }
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(Self::NANOS_PER_SEC)
    }
    pub const fn millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }
    pub const fn plus_secs(self, s: i64) -> Self {
        Ts(self.0 + s * Self::NANOS_PER_SEC)
    }
    pub fn to_utc(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_nanos(self.0)
    }
    pub fn from_utc(dt: chrono::DateTime<chrono::Utc>) -> Self {
        Ts(dt.timestamp_nanos_opt().unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            self.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// A symbol's index in the [`Universe`]. Events carry this instead of a string so that the hot
/// path does no hashing and no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SymbolId(pub u16);

impl SymbolId {
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The watchlist: symbol names, indexed by [`SymbolId`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Universe {
    names: Vec<String>,
}

/// Why a symbol name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("symbol list is empty")]
    Empty,
    #[error("symbol {0:?} is not 1-12 characters of A-Z, 0-9, '.', '-' or ' '")]
    Invalid(String),
    #[error("symbol {0:?} is listed twice")]
    Duplicate(String),
    #[error("more than 65535 symbols")]
    TooMany,
}

impl Universe {
    /// Builds a universe from names, upper-casing them. Rejects empty, malformed or duplicated
    /// names with an error that names the symbol.
    pub fn new<I, S>(names: I) -> Result<Self, SymbolError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out: Vec<String> = Vec::new();
        for n in names {
            let n = n.as_ref().trim().to_ascii_uppercase();
            let ok = !n.is_empty()
                && n.len() <= 12
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ' ');
            if !ok {
                return Err(SymbolError::Invalid(n));
            }
            if out.contains(&n) {
                return Err(SymbolError::Duplicate(n));
            }
            out.push(n);
        }
        if out.is_empty() {
            return Err(SymbolError::Empty);
        }
        if out.len() > u16::MAX as usize {
            return Err(SymbolError::TooMany);
        }
        Ok(Universe { names: out })
    }
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    pub fn name(&self, id: SymbolId) -> &str {
        &self.names[id.index()]
    }
    pub fn id(&self, name: &str) -> Option<SymbolId> {
        self.names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| SymbolId(i as u16))
    }
    pub fn ids(&self) -> impl Iterator<Item = SymbolId> + '_ {
        (0..self.names.len()).map(|i| SymbolId(i as u16))
    }
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// One OHLCV bar. `ts` is the bar's **open** time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub symbol: SymbolId,
    pub ts: Ts,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    pub volume: u64,
}

/// Top of book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub symbol: SymbolId,
    pub ts: Ts,
    pub bid: Price,
    pub ask: Price,
    pub last: Price,
}

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// +1 for a buy, -1 for a sell.
    pub const fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an order executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderKind {
    Market,
    Limit { limit: Price },
    Stop { stop: Price },
    StopLimit { stop: Price, limit: Price },
}

impl OrderKind {
    pub const fn as_str(&self) -> &'static str {
        match self {
            OrderKind::Market => "MKT",
            OrderKind::Limit { .. } => "LMT",
            OrderKind::Stop { .. } => "STP",
            OrderKind::StopLimit { .. } => "STP LMT",
        }
    }
}

/// Time in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Tif {
    Day,
    Gtc,
}

/// The client order id: assigned by the core, persisted before the order leaves it, unique
/// across restarts (the sequence resumes from the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientOrderId(pub u64);

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{}", self.0)
    }
}

/// Why an order exists. Entries open or add to a position; exits reduce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderPurpose {
    Entry,
    /// A strategy signal closing the position.
    SignalExit,
    StopLoss,
    TrailingStop,
    TakeProfit,
    /// An operator's flatten.
    Flatten,
}

impl OrderPurpose {
    pub const fn is_entry(self) -> bool {
        matches!(self, OrderPurpose::Entry)
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderPurpose::Entry => "entry",
            OrderPurpose::SignalExit => "signal_exit",
            OrderPurpose::StopLoss => "stop_loss",
            OrderPurpose::TrailingStop => "trailing_stop",
            OrderPurpose::TakeProfit => "take_profit",
            OrderPurpose::Flatten => "flatten",
        }
    }
}

/// An order as it leaves the core for a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub id: ClientOrderId,
    pub symbol: SymbolId,
    pub side: Side,
    pub qty: Qty,
    pub kind: OrderKind,
    pub tif: Tif,
    pub purpose: OrderPurpose,
    /// When the core decided it (the bar or event time, never the wall clock).
    pub ts: Ts,
}

/// A broker's execution id. Unique per execution; the key that makes fills idempotent.
///
/// Held inline up to 24 bytes (IB's ids and the paper broker's fit), so creating, cloning
/// and remembering one does not allocate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExecId(pub compact_str::CompactString);

impl ExecId {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for ExecId {
    fn from(s: &str) -> Self {
        ExecId(s.into())
    }
}

impl From<String> for ExecId {
    fn from(s: String) -> Self {
        ExecId(s.into())
    }
}

impl fmt::Display for ExecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// ASCII id text built on the stack (`P-C12-1`, `P12`): ids are made on every order and
/// fill, and writing the digits straight into a buffer is several times cheaper than
/// `format!` or pushing `char`s into a string.
#[derive(Debug, Clone, Copy)]
pub struct IdText {
    buf: [u8; Self::CAP],
    len: usize,
}

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

impl IdText {
    /// Room for the paper broker's two ids side by side (`P-C<u64>-1P<u64>`, at most 46
    /// bytes, checked once); a multiple of 16 also makes the UTF-8 check below word-wise.
    pub const CAP: usize = 48;

    pub const fn new() -> Self {
        IdText {
            buf: [0; Self::CAP],
            len: 0,
        }
    }

    /// Appends ASCII text; anything that is not ASCII, or would not fit, is left out, so the
    /// buffer always holds valid UTF-8 (callers only pass short literals).
    pub fn push_ascii(&mut self, s: &str) {
        let b = s.as_bytes();
        if b.is_ascii() && b.len() <= Self::CAP - self.len {
            self.buf[self.len..self.len + b.len()].copy_from_slice(b);
            self.len += b.len();
        }
    }

    /// Bytes written so far.
    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of the bytes already written at `from..to` (left out if that range is
    /// not written yet or would not fit): repeating digits is cheaper than writing them again.
    pub fn push_copy(&mut self, from: usize, to: usize) {
        let n = to.saturating_sub(from);
        if from <= to && to <= self.len && n <= Self::CAP - self.len {
            self.buf.copy_within(from..to, self.len);
            self.len += n;
        }
    }

    /// Appends the decimal digits of `n` (left out if they would not fit).
    pub fn push_u64(&mut self, mut n: u64) {
        // Order ids are small: count their digits with comparisons, not a logarithm.
        let digits = match n {
            0..=9 => 1,
            10..=99 => 2,
            100..=999 => 3,
            1000..=9999 => 4,
            _ => n.ilog10() as usize + 1,
        };
        let Some(dst) = self.buf.get_mut(self.len..self.len + digits) else {
            return;
        };
        let mut i = dst.len();
        while n >= 100 {
            let d = (n % 100) as usize * 2;
            n /= 100;
            i -= 2;
            dst[i] = DIGIT_PAIRS[d];
            dst[i + 1] = DIGIT_PAIRS[d + 1];
        }
        if n >= 10 {
            let d = n as usize * 2;
            dst[0] = DIGIT_PAIRS[d];
            dst[1] = DIGIT_PAIRS[d + 1];
        } else {
            dst[0] = b'0' + n as u8;
        }
        self.len += digits;
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written (the unused tail is NUL), so this cannot fail; the
        // fallback keeps it panic-free. The check runs over whole 16-byte blocks, which the
        // standard check takes word by word (an odd-length prefix costs twice as much).
        let checked = self.len.next_multiple_of(16).min(Self::CAP);
        std::str::from_utf8(self.buf.get(..checked).unwrap_or_default())
            .ok()
            .and_then(|s| s.get(..self.len))
            .unwrap_or_default()
    }
}

impl Default for IdText {
    fn default() -> Self {
        Self::new()
    }
}

/// A small, fast, non-cryptographic hasher for the engine's own text keys (execution ids),
/// which are not attacker-chosen in a way that matters: a flood could only slow the set.
/// It takes eight bytes per step (FxHash-style) and mixes the high bits down at the end,
/// because ids that share a prefix differ only in their later bytes and the table indexes
/// by the low bits.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextHasher(u64);

const TEXT_K: u64 = 0xf135_7aea_2e62_a9c5;

impl TextHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(TEXT_K);
    }
}

impl std::hash::Hasher for TextHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0 ^ (self.0 >> 32);
        h.wrapping_mul(TEXT_K) ^ (h >> 29)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let n = rest.len();
        // The tail as one word, from (possibly overlapping) reads; its length goes in too, so
        // tails that read the same bytes but differ in length still differ.
        let tail = if n >= 4 {
            let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
            u64::from(lo) | u64::from(hi) << 32
        } else if n > 0 {
            u64::from(rest[0]) | u64::from(rest[n / 2]) << 8 | u64::from(rest[n - 1]) << 16
        } else {
            0
        };
        self.add(tail ^ (n as u64) << 56);
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
}

/// One execution of (part of) an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub exec_id: ExecId,
    pub order_id: ClientOrderId,
    pub symbol: SymbolId,
    pub side: Side,
    /// Shares, always > 0.
    pub qty: Qty,
    pub price: Price,
    pub commission: Money,
    pub ts: Ts,
}

impl Fill {
    /// The cash this fill moves: negative for a buy, positive for a sell, commission included.
    pub fn cash_flow(&self) -> Money {
        use crate::exact;
        let notional = exact::mul_int(self.price, self.qty);
        match self.side {
            Side::Buy => exact::sub(-notional, self.commission),
            Side::Sell => exact::sub(notional, self.commission),
        }
    }
}

/// A position in one symbol, as the ledger holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub symbol: SymbolId,
    /// Signed shares.
    pub qty: Qty,
    /// Average cost of the open lots, per share.
    pub avg_cost: Price,
    /// The last mark, per share.
    pub mark: Price,
}

impl Position {
    pub fn market_value(&self) -> Money {
        self.mark * Decimal::from(self.qty)
    }
    pub fn unrealized(&self) -> Money {
        (self.mark - self.avg_cost) * Decimal::from(self.qty)
    }
}

/// The one trading state for the whole product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TradingState {
    #[default]
    Active,
    /// Exits only.
    ReduceOnly,
    /// Nothing new; open entry orders are cancelled.
    Halted,
}

impl TradingState {
    pub const fn as_str(self) -> &'static str {
        match self {
            TradingState::Active => "active",
            TradingState::ReduceOnly => "reduce_only",
            TradingState::Halted => "halted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "active" => Some(TradingState::Active),
            "reduce_only" | "reduceonly" => Some(TradingState::ReduceOnly),
            "halted" | "halt" => Some(TradingState::Halted),
            _ => None,
        }
    }
}

impl fmt::Display for TradingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The broker session's state as the core sees it. Orders are only placed while `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    #[default]
    Disconnected,
    Connecting,
    Syncing,
    Ready,
    Degraded,
    RestartWindow,
}

impl ConnectionState {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Syncing => "syncing",
            ConnectionState::Ready => "ready",
            ConnectionState::Degraded => "degraded",
            ConnectionState::RestartWindow => "restart_window",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn universe_rejects_bad_names() {
        assert_eq!(Universe::new(Vec::<String>::new()), Err(SymbolError::Empty));
        assert!(matches!(
            Universe::new(["AAPL", "aapl"]),
            Err(SymbolError::Duplicate(_))
        ));
        assert!(matches!(
            Universe::new(["AA;PL"]),
            Err(SymbolError::Invalid(_))
        ));
        let u = Universe::new(["aapl", "MSFT"]).unwrap();
        assert_eq!(u.id("MSFT"), Some(SymbolId(1)));
        assert_eq!(u.name(SymbolId(0)), "AAPL");
    }

    #[test]
    fn id_text_writes_decimal_digits() {
        for n in [
            0u64,
            7,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            1234567890,
            u64::MAX,
        ] {
            let mut t = IdText::new();
            t.push_ascii("P-C");
            t.push_u64(n);
            t.push_ascii("-1");
            assert_eq!(t.as_str(), format!("P-C{n}-1"));
        }
        // Text that would not fit is left out whole, never cut.
        let mut t = IdText::new();
        for _ in 0..3 {
            t.push_u64(u64::MAX);
        }
        let max = u64::MAX.to_string();
        assert_eq!(t.as_str(), format!("{max}{max}"));
        t.push_ascii("é");
        t.push_ascii("01234567");
        t.push_ascii("8");
        assert_eq!(t.as_str(), format!("{max}{max}01234567"));
        assert_eq!(t.len(), IdText::CAP);
    }

    #[test]
    fn id_text_copies_what_it_wrote() {
        let mut t = IdText::new();
        assert!(t.is_empty());
        t.push_ascii("P-C");
        t.push_u64(4711);
        t.push_ascii("-1P");
        t.push_copy(3, 7);
        assert_eq!(t.as_str(), "P-C4711-1P4711");
        // Ranges not written yet, reversed, or too long for the room left are left out.
        t.push_copy(3, 15);
        t.push_copy(7, 3);
        assert_eq!(t.as_str(), "P-C4711-1P4711");
        let mut full = IdText::new();
        full.push_u64(u64::MAX);
        full.push_u64(u64::MAX);
        full.push_copy(0, 20);
        assert_eq!(full.len(), 40);
        full.push_copy(0, 8);
        assert_eq!(full.len(), IdText::CAP);
        assert!(full.as_str().ends_with("18446744"));
    }

    proptest::proptest! {
        #[test]
        fn id_text_matches_format(a: u64, b: u16) {
            let mut t = IdText::new();
            t.push_ascii("P-C");
            t.push_u64(a);
            t.push_ascii("-");
            t.push_u64(u64::from(b));
            proptest::prop_assert_eq!(t.as_str(), format!("P-C{a}-{b}"));
        }
    }

    proptest::proptest! {
        /// Equal ids hash alike (the seen set relies on it) whatever their length, which
        /// picks the tail reads.
        #[test]
        fn text_hasher_is_a_function_of_the_bytes(t in "[ -~]{0,40}") {
            use std::hash::Hasher;
            let h = |b: &[u8]| {
                let mut s = TextHasher::default();
                s.write(b);
                s.finish()
            };
            let copy = t.clone().into_bytes();
            proptest::prop_assert_eq!(h(t.as_bytes()), h(&copy));
        }
    }

    #[test]
    fn fill_cash_flow_signs() {
        let f = Fill {
            exec_id: ExecId::from("e"),
            order_id: ClientOrderId(1),
            symbol: SymbolId(0),
            side: Side::Buy,
            qty: 10,
            price: dec!(100.5),
            commission: dec!(1),
            ts: Ts(0),
        };
        assert_eq!(f.cash_flow(), dec!(-1006));
        let s = Fill {
            side: Side::Sell,
            ..f
        };
        assert_eq!(s.cash_flow(), dec!(1004));
    }
}
