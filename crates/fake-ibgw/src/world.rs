//! The simulated market and account behind the fake gateway: per-symbol deterministic prices,
//! bars of any size, quotes, an order book that fills (MKT at once, LMT/STP when the price
//! crosses), positions, executions with IB fixed-pricing commissions, and an account summary.
//! No I/O and no clock: every method takes the market time it should act at. Prices are integer
//! cents and money integer micro-dollars, so ledger math is exact; f64 appears only on the wire.

use crate::clock;
use crate::messages::ServerMsg;
use crate::proto;
use std::collections::{BTreeMap, HashMap};

/// Micro-dollars per cent.
const MICROS_PER_CENT: i64 = 10_000;
/// Octave levels of the price noise: 5 s · 2^0 … 5 s · 2^19 (≈ 30 days).
const PRICE_LEVELS: u32 = 20;
/// Historical answers above this many bars get error 162 instead (TWS refuses huge queries too).
pub const MAX_BARS: i64 = 100_000;

/// One tradable stock of the fake world.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSpec {
    pub symbol: String,
    pub con_id: i32,
    /// The price the walk wanders around.
    pub base_price_cents: i64,
    /// Size of one 5-second step of the finest noise level; 0 keeps the price flat at the base
    /// (tests use this to know prices exactly).
    pub step_cents: i64,
    pub primary_exchange: String,
}

impl SymbolSpec {
    pub fn new(symbol: &str, con_id: i32, base_price_cents: i64, step_cents: i64) -> Self {
        Self {
            symbol: symbol.to_string(),
            con_id,
            base_price_cents,
            step_cents,
            primary_exchange: "NASDAQ".to_string(),
        }
    }

    /// A symbol whose price never moves unless a test sets it.
    pub fn flat(symbol: &str, con_id: i32, price_cents: i64) -> Self {
        Self::new(symbol, con_id, price_cents, 0)
    }
}

/// Symbols with their real IB con ids; anything else gets a synthetic spec from [`spec_for`].
pub fn default_symbols() -> Vec<SymbolSpec> {
    vec![
        SymbolSpec::new("AAPL", 265_598, 19_000, 2),
        SymbolSpec::new("MSFT", 272_093, 42_000, 4),
        SymbolSpec::new("SPY", 756_733, 58_000, 3),
        SymbolSpec::new("QQQ", 320_227_571, 50_000, 3),
        SymbolSpec::new("NVDA", 4_815_747, 13_000, 2),
    ]
}

/// A spec for `symbol`: the default one if known, else a deterministic synthetic one.
pub fn spec_for(symbol: &str, index: usize) -> SymbolSpec {
    let upper = symbol.to_ascii_uppercase();
    default_symbols()
        .into_iter()
        .find(|s| s.symbol == upper)
        .unwrap_or_else(|| {
            let h = splitmix(hash_str(&upper));
            SymbolSpec::new(
                &upper,
                90_000_000 + index as i32,
                2_000 + (h % 30_000) as i64,
                2,
            )
        })
}

#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub symbols: Vec<SymbolSpec>,
    pub account: String,
    pub starting_cash_cents: i64,
    pub seed: u64,
    /// First nextValidId handed to a client id never seen before.
    pub first_order_id: i32,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            symbols: default_symbols(),
            account: "DU1234567".to_string(),
            starting_cash_cents: 10_000_000, // USD 100 000.00
            seed: 42,
            first_order_id: 1,
        }
    }
}

/// A bar in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub time: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: i64,
    pub wap: i64,
    pub count: i32,
}

/// An error reply: (id, code, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub id: i32,
    pub code: i32,
    pub message: String,
}

impl Reject {
    fn new(id: i32, code: i32, message: impl Into<String>) -> Self {
        Self {
            id,
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    fn exec_side(self) -> &'static str {
        match self {
            Side::Buy => "BOT",
            Side::Sell => "SLD",
        }
    }
    fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    Market,
    Limit { limit_cents: i64 },
    Stop { stop_cents: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    Working,
    Filled,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct BookOrder {
    pub client_id: i32,
    pub order_id: i32,
    pub perm_id: i64,
    pub symbol: String,
    pub side: Side,
    pub quantity: i64,
    pub kind: OrderKind,
    pub state: OrderState,
    pub contract: proto::Contract,
    pub order: proto::Order,
}

/// One fill, as reqExecutions reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRecord {
    pub exec_id: String,
    pub client_id: i32,
    pub order_id: i32,
    pub perm_id: i64,
    pub symbol: String,
    pub side: Side,
    pub quantity: i64,
    pub price_cents: i64,
    pub time_s: i64,
    pub commission_micros: i64,
    /// `None` for an opening fill (IB then sends f64::MAX on the wire).
    pub realized_pnl_micros: Option<i64>,
    pub order_ref: Option<String>,
    pub contract: proto::Contract,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PositionRec {
    pub quantity: i64,
    /// Cost basis of the open quantity including commissions (IB's avgCost × qty).
    pub cost_micros: i64,
}

/// Messages addressed to the client id that owns an order.
pub type Addressed = Vec<(i32, ServerMsg)>;

#[derive(Debug)]
pub struct World {
    config: WorldConfig,
    symbols: Vec<SymbolSpec>,
    price_offsets: HashMap<String, i64>,
    next_order_ids: HashMap<i32, i32>,
    orders: BTreeMap<(i32, i32), BookOrder>,
    executions: Vec<ExecRecord>,
    positions: BTreeMap<String, PositionRec>,
    cash_micros: i64,
    next_perm_id: i64,
    next_exec_seq: u64,
}

impl World {
    pub fn new(config: WorldConfig) -> Self {
        Self {
            symbols: config.symbols.clone(),
            cash_micros: config.starting_cash_cents.saturating_mul(MICROS_PER_CENT),
            config,
            price_offsets: HashMap::new(),
            next_order_ids: HashMap::new(),
            orders: BTreeMap::new(),
            executions: Vec::new(),
            positions: BTreeMap::new(),
            next_perm_id: 1_000_000_001,
            next_exec_seq: 0x6578_a1b2,
        }
    }

    pub fn account(&self) -> &str {
        &self.config.account
    }

    pub fn symbols(&self) -> &[SymbolSpec] {
        &self.symbols
    }

    // ---- prices ----

    fn spec(&self, symbol: &str) -> Option<&SymbolSpec> {
        self.symbols.iter().find(|s| s.symbol == symbol)
    }

    /// The price of `symbol` at `t` (Unix seconds), in cents.
    pub fn price_at(&self, symbol: &str, t: i64) -> Option<i64> {
        let spec = self.spec(symbol)?;
        let offset = self.price_offsets.get(symbol).copied().unwrap_or(0);
        Some((model_price(spec, self.config.seed, t) + offset).max(1))
    }

    /// Shifts `symbol`'s whole price path so that its price at `now` is `cents`.
    pub fn set_price(&mut self, symbol: &str, cents: i64, now: i64) -> bool {
        let Some(spec) = self.spec(symbol) else {
            return false;
        };
        let model = model_price(spec, self.config.seed, now);
        self.price_offsets.insert(symbol.to_string(), cents - model);
        true
    }

    /// One bar of `size` seconds starting at `start`.
    pub fn bar(&self, symbol: &str, start: i64, size: i64) -> Option<Bar> {
        self.bar_until(symbol, start, size, i64::MAX)
    }

    /// A bar that may still be forming: prices after `until` are not used.
    fn bar_until(&self, symbol: &str, start: i64, size: i64, until: i64) -> Option<Bar> {
        let n = (size / 5).clamp(1, 12);
        let mut samples = Vec::with_capacity(n as usize + 1);
        for i in 0..=n {
            samples.push(self.price_at(symbol, (start + size * i / n).min(until))?);
        }
        let open = samples[0];
        let close = samples[samples.len() - 1];
        let high = samples.iter().copied().max().unwrap_or(open);
        let low = samples.iter().copied().min().unwrap_or(open);
        let h = splitmix(hash_str(symbol) ^ (start as u64).wrapping_mul(0x9E37) ^ size as u64);
        let volume = (1 + (h % 50) as i64) * 100 * (size / 60).max(1);
        Some(Bar {
            time: start,
            open,
            high,
            low,
            close,
            volume,
            wap: (open + high + low + close) / 4,
            count: (volume / 100).clamp(1, i64::from(i32::MAX)) as i32,
        })
    }

    /// Bars for a historical request ending at `end` (or `now` when empty). Returns the
    /// `HistoricalData` and `HistoricalDataEnd` pair, or the error TWS would send.
    pub fn historical(
        &self,
        req: &proto::HistoricalDataRequest,
        now: i64,
    ) -> Result<Vec<ServerMsg>, Reject> {
        let req_id = req.req_id.unwrap_or(-1);
        let spec = self.resolve(req_id, req.contract.as_ref())?;
        let bar_text = req.bar_size_setting.as_deref().unwrap_or("");
        let bar = clock::parse_bar_size(bar_text).ok_or_else(|| {
            Reject::new(req_id, 321, format!("Error validating request.-'bP' : cause - Historical data bar size setting is invalid: {bar_text:?}"))
        })?;
        let dur_text = req.duration.as_deref().unwrap_or("");
        let duration = clock::parse_duration(dur_text).ok_or_else(|| {
            Reject::new(req_id, 321, format!("Error validating request.-'bP' : cause - Historical data duration is invalid: {dur_text:?}"))
        })?;
        let end = match req.end_date_time.as_deref().map(str::trim) {
            None | Some("") => now,
            Some(text) => clock::parse_date_time(text).ok_or_else(|| {
                Reject::new(req_id, 321, format!("Error validating request.-'bP' : cause - End date/time is invalid: {text:?}"))
            })?,
        };
        if duration / bar > MAX_BARS {
            return Err(Reject::new(
                req_id,
                162,
                "Historical Market Data Service error message:Time length exceed max.",
            ));
        }
        let start = end - duration;
        let daily = bar >= 86_400;
        let mut t = start.div_euclid(bar) * bar;
        if t < start {
            t += bar;
        }
        let mut bars = Vec::new();
        // Bars start on multiples of the bar size inside [start, end); like TWS, the last one may
        // still be forming, and is then built from prices up to `end` only.
        while t < end {
            let b = self
                .bar_until(&spec.symbol, t, bar, end)
                .ok_or_else(|| Reject::new(req_id, 200, NO_SECDEF))?;
            bars.push(proto::HistoricalDataBar {
                date: Some(if daily {
                    clock::yyyymmdd(t)
                } else {
                    t.to_string()
                }),
                open: Some(cents_f64(b.open)),
                high: Some(cents_f64(b.high)),
                low: Some(cents_f64(b.low)),
                close: Some(cents_f64(b.close)),
                volume: Some(b.volume.to_string()),
                wap: Some(format_cents(b.wap)),
                bar_count: Some(b.count),
            });
            t += bar;
        }
        Ok(vec![
            ServerMsg::HistoricalData(proto::HistoricalData {
                req_id: Some(req_id),
                historical_data_bars: bars,
            }),
            ServerMsg::HistoricalDataEnd(proto::HistoricalDataEnd {
                req_id: Some(req_id),
                start_date_str: Some(clock::dashed_date_time(start)),
                end_date_str: Some(clock::dashed_date_time(end)),
            }),
        ])
    }

    /// The 5-second bar that ended at or before `now`, as a `RealTimeBarTick` for `req_id`.
    pub fn realtime_bar(&self, req_id: i32, symbol: &str, now: i64) -> Option<ServerMsg> {
        let start = now.div_euclid(5) * 5 - 5;
        let b = self.bar(symbol, start, 5)?;
        Some(ServerMsg::RealTimeBar(proto::RealTimeBarTick {
            req_id: Some(req_id),
            time: Some(b.time),
            open: Some(cents_f64(b.open)),
            high: Some(cents_f64(b.high)),
            low: Some(cents_f64(b.low)),
            close: Some(cents_f64(b.close)),
            volume: Some(b.volume.to_string()),
            wap: Some(format_cents(b.wap)),
            count: Some(b.count),
        }))
    }

    /// Bid/ask/last with sizes (tick types 1/0, 2/3, 4/5); the spread is one cent each side.
    pub fn quote(&self, req_id: i32, symbol: &str, now: i64) -> Vec<ServerMsg> {
        let Some(last) = self.price_at(symbol, now) else {
            return Vec::new();
        };
        let price = |tick_type: i32, cents: i64, size: &str| {
            ServerMsg::TickPrice(proto::TickPrice {
                req_id: Some(req_id),
                tick_type: Some(tick_type),
                price: Some(cents_f64(cents)),
                size: Some(size.to_string()),
                attr_mask: Some(0),
            })
        };
        let size = |tick_type: i32, size: &str| {
            ServerMsg::TickSize(proto::TickSize {
                req_id: Some(req_id),
                tick_type: Some(tick_type),
                size: Some(size.to_string()),
            })
        };
        vec![
            price(1, (last - 1).max(1), "300"),
            size(0, "300"),
            price(2, last + 1, "200"),
            size(3, "200"),
            price(4, last, "100"),
            size(5, "100"),
        ]
    }

    // ---- contracts ----

    /// The symbol a request's contract names, or error 200.
    pub fn resolve(
        &self,
        id: i32,
        contract: Option<&proto::Contract>,
    ) -> Result<&SymbolSpec, Reject> {
        let c = contract.ok_or_else(|| Reject::new(id, 200, NO_SECDEF))?;
        let sec_ok = matches!(c.sec_type.as_deref(), None | Some("") | Some("STK"));
        let cur_ok = matches!(c.currency.as_deref(), None | Some("") | Some("USD"));
        let by_id = c
            .con_id
            .filter(|id| *id != 0)
            .and_then(|id| self.symbols.iter().find(|s| s.con_id == id));
        let by_symbol = || {
            let sym = c.symbol.as_deref()?.to_ascii_uppercase();
            self.symbols.iter().find(|s| s.symbol == sym)
        };
        match by_id.or_else(by_symbol) {
            Some(spec) if sec_ok && cur_ok => Ok(spec),
            _ => Err(Reject::new(id, 200, NO_SECDEF)),
        }
    }

    /// The full contract TWS reports for a symbol.
    pub fn contract(&self, spec: &SymbolSpec) -> proto::Contract {
        proto::Contract {
            con_id: Some(spec.con_id),
            symbol: Some(spec.symbol.clone()),
            sec_type: Some("STK".into()),
            exchange: Some("SMART".into()),
            primary_exch: Some(spec.primary_exchange.clone()),
            currency: Some("USD".into()),
            local_symbol: Some(spec.symbol.clone()),
            trading_class: Some(spec.symbol.clone()),
            ..Default::default()
        }
    }

    pub fn contract_details(
        &self,
        req: &proto::ContractDataRequest,
    ) -> Result<Vec<ServerMsg>, Reject> {
        let req_id = req.req_id.unwrap_or(-1);
        let spec = self.resolve(req_id, req.contract.as_ref())?;
        let details = proto::ContractDetails {
            market_name: Some(spec.symbol.clone()),
            min_tick: Some("0.01".into()),
            order_types: Some("LMT,MKT,STP".into()),
            valid_exchanges: Some(format!("SMART,{}", spec.primary_exchange)),
            long_name: Some(format!("{} (fake)", spec.symbol)),
            time_zone_id: Some("UTC".into()),
            trading_hours: Some(String::new()),
            liquid_hours: Some(String::new()),
            stock_type: Some("COMMON".into()),
            min_size: Some("1".into()),
            size_increment: Some("1".into()),
        };
        Ok(vec![
            ServerMsg::ContractData(proto::ContractData {
                req_id: Some(req_id),
                contract: Some(self.contract(spec)),
                contract_details: Some(details),
            }),
            ServerMsg::ContractDataEnd(proto::ReqId {
                req_id: Some(req_id),
            }),
        ])
    }

    // ---- order ids ----

    /// The next order id of `client_id` (the per-client sequence persists across sessions).
    pub fn next_order_id(&mut self, client_id: i32) -> i32 {
        *self
            .next_order_ids
            .entry(client_id)
            .or_insert(self.config.first_order_id)
    }

    // ---- orders ----

    /// Accepts, modifies or rejects an order; fills it at once if marketable.
    pub fn place_order(
        &mut self,
        client_id: i32,
        req: &proto::PlaceOrderRequest,
        now: i64,
    ) -> Result<Addressed, Reject> {
        let order_id = req.order_id.ok_or_else(|| {
            Reject::new(
                -1,
                321,
                "Error validating request.-'bO' : cause - order id missing",
            )
        })?;
        let order = req.order.clone().unwrap_or_default();
        let spec = self.resolve(order_id, req.contract.as_ref())?.clone();
        let side = match order.action.as_deref() {
            Some("BUY") => Side::Buy,
            Some("SELL") | Some("SSHORT") => Side::Sell,
            other => {
                return Err(Reject::new(
                    order_id,
                    321,
                    format!("Error validating request.-'bO' : cause - invalid action {other:?}"),
                ))
            }
        };
        let quantity = parse_quantity(order.total_quantity.as_deref()).ok_or_else(|| {
            Reject::new(order_id, 321, format!("Error validating request.-'bO' : cause - invalid total quantity {:?} (the fake trades whole shares)", order.total_quantity))
        })?;
        let price_field = |p: Option<f64>, name: &str| {
            p.filter(|p| p.is_finite() && *p > 0.0 && *p < 1e9)
                .map(|p| (p * 100.0).round() as i64)
                .ok_or_else(|| {
                    Reject::new(
                        order_id,
                        321,
                        format!(
                            "Error validating request.-'bO' : cause - {name} missing or invalid"
                        ),
                    )
                })
        };
        let kind = match order.order_type.as_deref() {
            Some("MKT") => OrderKind::Market,
            Some("LMT") => OrderKind::Limit {
                limit_cents: price_field(order.lmt_price, "lmtPrice")?,
            },
            Some("STP") => OrderKind::Stop {
                stop_cents: price_field(order.aux_price, "auxPrice")?,
            },
            _ => {
                return Err(Reject::new(
                    order_id,
                    387,
                    "Unsupported order type for this exchange and security type.",
                ))
            }
        };
        if let Some(existing) = self.orders.get(&(client_id, order_id)) {
            if existing.state != OrderState::Working {
                return Err(Reject::new(order_id, 103, "Duplicate order id"));
            }
        }
        let next = self
            .next_order_ids
            .entry(client_id)
            .or_insert(self.config.first_order_id);
        *next = (*next).max(order_id.saturating_add(1));
        let perm_id = match self.orders.get(&(client_id, order_id)) {
            Some(existing) => existing.perm_id,
            None => {
                self.next_perm_id += 1;
                self.next_perm_id
            }
        };
        let book = BookOrder {
            client_id,
            order_id,
            perm_id,
            symbol: spec.symbol.clone(),
            side,
            quantity,
            kind,
            state: OrderState::Working,
            contract: self.contract(&spec),
            order: proto::Order {
                client_id: Some(client_id),
                order_id: Some(order_id),
                perm_id: Some(perm_id),
                ..order
            },
        };
        let mut out = vec![
            (client_id, open_order_msg(&book, "PreSubmitted")),
            (client_id, status_msg(&book, "PreSubmitted", 0, 0, 0)),
            (client_id, status_msg(&book, "Submitted", 0, 0, 0)),
        ];
        self.orders.insert((client_id, order_id), book);
        out.extend(self.try_fill(client_id, order_id, now));
        Ok(out)
    }

    /// Cancels a working order: OrderStatus Cancelled then error 202.
    pub fn cancel_order(&mut self, client_id: i32, order_id: i32, now_ms: i64) -> Vec<ServerMsg> {
        match self.orders.get_mut(&(client_id, order_id)) {
            None => vec![ServerMsg::error(
                order_id,
                135,
                format!("Can't find order with id ={order_id}"),
                now_ms,
            )],
            Some(o) if o.state != OrderState::Working => {
                let state = if o.state == OrderState::Filled {
                    "Filled"
                } else {
                    "Cancelled"
                };
                vec![ServerMsg::error(
                    order_id,
                    10148,
                    format!("OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}."),
                    now_ms,
                )]
            }
            Some(o) => {
                o.state = OrderState::Cancelled;
                let o = o.clone();
                vec![
                    status_msg(&o, "Cancelled", 0, o.quantity, 0),
                    ServerMsg::error(order_id, 202, "Order Canceled - reason:", now_ms),
                ]
            }
        }
    }

    /// Cancels every working order (reqGlobalCancel), addressed to each order's owner.
    pub fn global_cancel(&mut self, now_ms: i64) -> Addressed {
        let working: Vec<(i32, i32)> = self
            .orders
            .iter()
            .filter(|(_, o)| o.state == OrderState::Working)
            .map(|(k, _)| *k)
            .collect();
        working
            .into_iter()
            .flat_map(|(c, id)| {
                self.cancel_order(c, id, now_ms)
                    .into_iter()
                    .map(move |m| (c, m))
            })
            .collect()
    }

    /// Fills every working order the price at `now` has crossed.
    pub fn tick(&mut self, now: i64) -> Addressed {
        let working: Vec<(i32, i32)> = self
            .orders
            .iter()
            .filter(|(_, o)| o.state == OrderState::Working)
            .map(|(k, _)| *k)
            .collect();
        working
            .into_iter()
            .flat_map(|(c, id)| self.try_fill(c, id, now))
            .collect()
    }

    fn try_fill(&mut self, client_id: i32, order_id: i32, now: i64) -> Addressed {
        let Some(o) = self.orders.get(&(client_id, order_id)) else {
            return Vec::new();
        };
        let Some(price) = self.price_at(&o.symbol, now) else {
            return Vec::new();
        };
        let marketable = match (o.kind, o.side) {
            (OrderKind::Market, _) => true,
            (OrderKind::Limit { limit_cents }, Side::Buy) => price <= limit_cents,
            (OrderKind::Limit { limit_cents }, Side::Sell) => price >= limit_cents,
            (OrderKind::Stop { stop_cents }, Side::Buy) => price >= stop_cents,
            (OrderKind::Stop { stop_cents }, Side::Sell) => price <= stop_cents,
        };
        if o.state != OrderState::Working || !marketable {
            return Vec::new();
        }
        let mut o = o.clone();
        o.state = OrderState::Filled;
        self.orders.insert((client_id, order_id), o.clone());
        let exec = self.book_fill(&o, price, now);
        vec![
            (client_id, status_msg(&o, "Filled", o.quantity, 0, price)),
            (client_id, exec_msg(&exec, -1, self.account())),
            (client_id, commission_msg(&exec)),
        ]
    }

    /// Records the execution and updates cash and the position.
    fn book_fill(&mut self, o: &BookOrder, price_cents: i64, now: i64) -> ExecRecord {
        let qty = o.quantity;
        let value = qty
            .saturating_mul(price_cents)
            .saturating_mul(MICROS_PER_CENT);
        let commission = ib_fixed_commission_micros(qty, price_cents);
        let signed = o.side.sign() * qty;
        self.cash_micros -= o.side.sign() * value + commission;

        let pos = self.positions.entry(o.symbol.clone()).or_default();
        let mut realized = None;
        if pos.quantity != 0 && pos.quantity.signum() != signed.signum() {
            let closed = qty.min(pos.quantity.abs());
            let basis = pos.cost_micros / pos.quantity * closed; // per-share cost × closed, sign of position
            let proceeds = closed * price_cents * MICROS_PER_CENT * pos.quantity.signum();
            let closing_commission = commission * closed / qty;
            realized = Some(proceeds - basis - closing_commission);
            pos.cost_micros -= basis * pos.quantity.signum();
            pos.quantity += closed * signed.signum();
            let opened = qty - closed;
            if opened > 0 {
                pos.quantity += opened * signed.signum();
                pos.cost_micros = signed.signum() * (opened * price_cents * MICROS_PER_CENT)
                    + (commission - closing_commission);
            }
        } else {
            pos.quantity += signed;
            pos.cost_micros += signed.signum() * qty * price_cents * MICROS_PER_CENT + commission;
        }
        if pos.quantity == 0 {
            pos.cost_micros = 0;
        }

        self.next_exec_seq += 1;
        let exec = ExecRecord {
            exec_id: format!("0000e1a7.{:08x}.01.01", self.next_exec_seq),
            client_id: o.client_id,
            order_id: o.order_id,
            perm_id: o.perm_id,
            symbol: o.symbol.clone(),
            side: o.side,
            quantity: qty,
            price_cents,
            time_s: now,
            commission_micros: commission,
            realized_pnl_micros: realized,
            order_ref: o.order.order_ref.clone(),
            contract: o.contract.clone(),
        };
        self.executions.push(exec.clone());
        exec
    }

    // ---- queries ----

    pub fn orders(&self) -> impl Iterator<Item = &BookOrder> {
        self.orders.values()
    }

    pub fn executions(&self) -> &[ExecRecord] {
        &self.executions
    }

    pub fn positions(&self) -> &BTreeMap<String, PositionRec> {
        &self.positions
    }

    pub fn cash_micros(&self) -> i64 {
        self.cash_micros
    }

    /// reqOpenOrders (one client) / reqAllOpenOrders (`None`): working orders then OpenOrderEnd.
    pub fn open_orders(&self, client_id: Option<i32>) -> Vec<ServerMsg> {
        let mut out = Vec::new();
        for o in self.orders.values().filter(|o| {
            o.state == OrderState::Working && client_id.is_none_or(|c| c == o.client_id)
        }) {
            out.push(open_order_msg(o, "Submitted"));
            out.push(status_msg(o, "Submitted", 0, o.quantity, 0));
        }
        out.push(ServerMsg::OpenOrderEnd(proto::Empty {}));
        out
    }

    /// reqPositions: every non-zero position then PositionEnd.
    pub fn position_msgs(&self) -> Vec<ServerMsg> {
        let mut out = Vec::new();
        for (symbol, p) in self.positions.iter().filter(|(_, p)| p.quantity != 0) {
            let contract = self.spec(symbol).map(|s| self.contract(s));
            out.push(ServerMsg::Position(proto::Position {
                account: Some(self.config.account.clone()),
                contract,
                position: Some(p.quantity.to_string()),
                avg_cost: Some(p.cost_micros as f64 / p.quantity as f64 / 1e6),
            }));
        }
        out.push(ServerMsg::PositionEnd(proto::Empty {}));
        out
    }

    /// reqExecutions: matching executions, each followed by its commission report, then End.
    pub fn execution_msgs(&self, req: &proto::ExecutionRequest) -> Vec<ServerMsg> {
        let req_id = req.req_id.unwrap_or(-1);
        let f = req.execution_filter.clone().unwrap_or_default();
        let since = f
            .time
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .and_then(clock::parse_date_time);
        let mut out = Vec::new();
        for e in &self.executions {
            let client_ok = f.client_id.is_none_or(|c| c == 0 || c == e.client_id);
            let acct_ok = f
                .acct_code
                .as_deref()
                .is_none_or(|a| a.is_empty() || a == self.config.account);
            let sym_ok = f
                .symbol
                .as_deref()
                .is_none_or(|s| s.is_empty() || s.eq_ignore_ascii_case(&e.symbol));
            let side_ok = f.side.as_deref().is_none_or(|s| match s {
                "BUY" | "BOT" => e.side == Side::Buy,
                "SELL" | "SLD" => e.side == Side::Sell,
                _ => true,
            });
            let time_ok = since.is_none_or(|t| e.time_s >= t);
            if client_ok && acct_ok && sym_ok && side_ok && time_ok {
                out.push(exec_msg(e, req_id, &self.config.account));
                out.push(commission_msg(e));
            }
        }
        out.push(ServerMsg::ExecutionDetailsEnd(proto::ReqId {
            req_id: Some(req_id),
        }));
        out
    }

    fn gross_position_micros(&self, now: i64) -> i64 {
        self.positions
            .iter()
            .map(|(s, p)| p.quantity.abs() * self.price_at(s, now).unwrap_or(0) * MICROS_PER_CENT)
            .sum()
    }

    fn net_liquidation_micros(&self, now: i64) -> i64 {
        let market: i64 = self
            .positions
            .iter()
            .map(|(s, p)| p.quantity * self.price_at(s, now).unwrap_or(0) * MICROS_PER_CENT)
            .sum();
        self.cash_micros + market
    }

    /// The account summary rows for the requested tags ("All" or a comma list), then End.
    pub fn account_summary(&self, req: &proto::AccountSummaryRequest, now: i64) -> Vec<ServerMsg> {
        let req_id = req.req_id.unwrap_or(-1);
        let net = self.net_liquidation_micros(now);
        let gross = self.gross_position_micros(now);
        let available = net - gross / 2;
        let rows: Vec<(&str, String, &str)> = vec![
            ("AccountType", "INDIVIDUAL".to_string(), ""),
            ("NetLiquidation", format_micros(net), "USD"),
            ("TotalCashValue", format_micros(self.cash_micros), "USD"),
            ("SettledCash", format_micros(self.cash_micros), "USD"),
            ("EquityWithLoanValue", format_micros(net), "USD"),
            ("GrossPositionValue", format_micros(gross), "USD"),
            ("AvailableFunds", format_micros(available), "USD"),
            ("ExcessLiquidity", format_micros(net - gross / 4), "USD"),
            (
                "BuyingPower",
                format_micros(available.saturating_mul(4)),
                "USD",
            ),
        ];
        let tags = req.tags.as_deref().unwrap_or("All");
        let wanted: Vec<&str> = tags.split(',').map(str::trim).collect();
        let all = wanted.iter().any(|t| t.eq_ignore_ascii_case("All"));
        let mut out: Vec<ServerMsg> = rows
            .into_iter()
            .filter(|(tag, _, _)| all || wanted.contains(tag))
            .map(|(tag, value, currency)| {
                ServerMsg::AccountSummary(proto::AccountSummary {
                    req_id: Some(req_id),
                    account: Some(self.config.account.clone()),
                    tag: Some(tag.to_string()),
                    value: Some(value),
                    currency: Some(currency.to_string()),
                })
            })
            .collect();
        out.push(ServerMsg::AccountSummaryEnd(proto::ReqId {
            req_id: Some(req_id),
        }));
        out
    }
}

const NO_SECDEF: &str = "No security definition has been found for the request";

/// IB Pro fixed pricing for US stocks: USD 0.005 per share, at least USD 1.00, at most 1 % of
/// the trade value.
pub fn ib_fixed_commission_micros(quantity: i64, price_cents: i64) -> i64 {
    let per_share = quantity.saturating_mul(5_000).max(1_000_000);
    let cap = quantity
        .saturating_mul(price_cents)
        .saturating_mul(MICROS_PER_CENT)
        / 100;
    per_share.min(cap)
}

/// Whole shares from a decimal string: "100", "100.0" and "1e2"-free forms only.
fn parse_quantity(text: Option<&str>) -> Option<i64> {
    let text = text?.trim();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if !frac.bytes().all(|b| b == b'0') {
        return None;
    }
    int.parse::<i64>()
        .ok()
        .filter(|q| *q > 0 && *q < 100_000_000)
}

fn open_order_msg(o: &BookOrder, status: &str) -> ServerMsg {
    ServerMsg::OpenOrder(proto::OpenOrder {
        order_id: Some(o.order_id),
        contract: Some(o.contract.clone()),
        order: Some(o.order.clone()),
        order_state: Some(proto::OrderState {
            status: Some(status.to_string()),
        }),
    })
}

fn status_msg(
    o: &BookOrder,
    status: &str,
    filled: i64,
    remaining: i64,
    fill_cents: i64,
) -> ServerMsg {
    let remaining = if status == "Filled" || status == "Cancelled" {
        remaining
    } else {
        o.quantity - filled
    };
    ServerMsg::OrderStatus(proto::OrderStatus {
        order_id: Some(o.order_id),
        status: Some(status.to_string()),
        filled: Some(filled.to_string()),
        remaining: Some(remaining.to_string()),
        avg_fill_price: Some(cents_f64(fill_cents)),
        perm_id: Some(o.perm_id),
        parent_id: Some(0),
        last_fill_price: Some(cents_f64(fill_cents)),
        client_id: Some(o.client_id),
        why_held: Some(String::new()),
        mkt_cap_price: Some(0.0),
    })
}

fn exec_msg(e: &ExecRecord, req_id: i32, account: &str) -> ServerMsg {
    ServerMsg::ExecutionDetails(proto::ExecutionDetails {
        req_id: Some(req_id),
        contract: Some(e.contract.clone()),
        execution: Some(proto::Execution {
            order_id: Some(e.order_id),
            exec_id: Some(e.exec_id.clone()),
            time: Some(clock::dashed_date_time(e.time_s)),
            acct_number: Some(account.to_string()),
            exchange: Some("ISLAND".into()),
            side: Some(e.side.exec_side().into()),
            shares: Some(e.quantity.to_string()),
            price: Some(cents_f64(e.price_cents)),
            perm_id: Some(e.perm_id),
            client_id: Some(e.client_id),
            is_liquidation: Some(false),
            cum_qty: Some(e.quantity.to_string()),
            avg_price: Some(cents_f64(e.price_cents)),
            order_ref: e.order_ref.clone(),
        }),
    })
}

fn commission_msg(e: &ExecRecord) -> ServerMsg {
    ServerMsg::CommissionReport(proto::CommissionAndFeesReport {
        exec_id: Some(e.exec_id.clone()),
        commission_and_fees: Some(e.commission_micros as f64 / 1e6),
        currency: Some("USD".into()),
        // IB marks "no realized P&L" (an opening fill) with f64::MAX.
        realized_pnl: Some(e.realized_pnl_micros.map_or(f64::MAX, |m| m as f64 / 1e6)),
        bond_yield: None,
        yield_redemption_date: None,
    })
}

pub fn cents_f64(cents: i64) -> f64 {
    cents as f64 / 100.0
}

fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// Micro-dollars as a 2-decimal string, rounded half away from zero.
pub fn format_micros(micros: i64) -> String {
    let cents = (micros.abs() + MICROS_PER_CENT / 2) / MICROS_PER_CENT;
    format_cents(if micros < 0 { -cents } else { cents })
}

fn hash_str(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms, unlike std's RandomState.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Uniform in [−1, 1], a pure function of its inputs.
fn noise(seed: u64, symbol: u64, level: u32, k: i64) -> f64 {
    let h = splitmix(seed ^ splitmix(symbol ^ splitmix(u64::from(level) ^ splitmix(k as u64))));
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// A random-access random walk: octaves of linearly interpolated noise whose amplitude grows
/// with the square root of their period, like Brownian motion, so any time can be priced
/// without replaying the path. Rounded to cents; never below a fifth of the base.
fn model_price(spec: &SymbolSpec, seed: u64, t: i64) -> i64 {
    if spec.step_cents == 0 {
        return spec.base_price_cents;
    }
    let sym = hash_str(&spec.symbol);
    let mut acc = 0.0;
    for level in 0..PRICE_LEVELS {
        let period = 5i64 << level;
        let k = t.div_euclid(period);
        let frac = t.rem_euclid(period) as f64 / period as f64;
        let (a, b) = (noise(seed, sym, level, k), noise(seed, sym, level, k + 1));
        acc += (a + (b - a) * frac) * f64::from(1u32 << level).sqrt();
    }
    (spec.base_price_cents + (acc * spec.step_cents as f64).round() as i64)
        .max(spec.base_price_cents / 5)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat_world() -> World {
        World::new(WorldConfig {
            symbols: vec![SymbolSpec::flat("AAPL", 265_598, 10_000)],
            ..Default::default()
        })
    }

    fn stk(symbol: &str) -> proto::Contract {
        proto::Contract {
            symbol: Some(symbol.into()),
            sec_type: Some("STK".into()),
            exchange: Some("SMART".into()),
            currency: Some("USD".into()),
            ..Default::default()
        }
    }

    fn order(
        id: i32,
        action: &str,
        qty: &str,
        kind: &str,
        lmt: Option<f64>,
    ) -> proto::PlaceOrderRequest {
        proto::PlaceOrderRequest {
            order_id: Some(id),
            contract: Some(stk("AAPL")),
            order: Some(proto::Order {
                action: Some(action.into()),
                total_quantity: Some(qty.into()),
                order_type: Some(kind.into()),
                lmt_price: lmt,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn commission_follows_ib_fixed_schedule() {
        // 100 sh × 0.005 = 0.50 → minimum 1.00.
        assert_eq!(ib_fixed_commission_micros(100, 10_000), 1_000_000);
        // 1000 sh × 0.005 = 5.00 (1 % of 100 000 = 1000 is no cap).
        assert_eq!(ib_fixed_commission_micros(1_000, 10_000), 5_000_000);
        // 10 sh at 0.50 = 5.00 trade value → capped at 1 % = 0.05.
        assert_eq!(ib_fixed_commission_micros(10, 50), 50_000);
    }

    #[test]
    fn price_walk_is_deterministic_and_moves() {
        let spec = SymbolSpec::new("AAPL", 1, 19_000, 2);
        let a: Vec<i64> = (0..50)
            .map(|i| model_price(&spec, 42, 1_767_225_600 + i * 60))
            .collect();
        let b: Vec<i64> = (0..50)
            .map(|i| model_price(&spec, 42, 1_767_225_600 + i * 60))
            .collect();
        assert_eq!(a, b);
        assert!(a.windows(2).any(|w| w[0] != w[1]), "flat path: {a:?}");
        assert_ne!(
            model_price(&spec, 43, 1_767_225_600),
            model_price(&spec, 42, 1_767_225_600) + 1_000_000
        );
    }

    #[test]
    fn round_trip_trade_books_cash_position_and_realized_pnl() {
        let mut w = flat_world();
        let t = 1_767_225_600;
        let out = w
            .place_order(7, &order(1, "BUY", "100", "MKT", None), t)
            .unwrap();
        let kinds: Vec<_> = out.iter().map(|(_, m)| m.kind()).collect();
        use crate::messages::ServerMsgKind as K;
        assert_eq!(
            kinds,
            [
                K::OpenOrder,
                K::OrderStatus,
                K::OrderStatus,
                K::OrderStatus,
                K::ExecutionDetails,
                K::CommissionReport
            ]
        );
        // 100 000.00 − 100 × 100.00 − 1.00 commission.
        assert_eq!(format_micros(w.cash_micros()), "89999.00");
        assert_eq!(
            w.positions()["AAPL"],
            PositionRec {
                quantity: 100,
                cost_micros: 10_001_000_000
            }
        );
        w.set_price("AAPL", 10_500, t);
        w.place_order(7, &order(2, "SELL", "100", "MKT", None), t)
            .unwrap();
        // Realized = 100 × 105.00 − 10 001.00 basis − 1.00 commission = 498.00.
        assert_eq!(w.executions()[1].realized_pnl_micros, Some(498_000_000));
        assert_eq!(w.positions()["AAPL"].quantity, 0);
        assert_eq!(format_micros(w.cash_micros()), "100498.00");
        assert_eq!(w.next_order_id(7), 3);
    }

    #[test]
    fn limit_fills_only_when_price_crosses() {
        let mut w = flat_world();
        let t = 1_767_225_600;
        let out = w
            .place_order(1, &order(5, "BUY", "10", "LMT", Some(99.5)), t)
            .unwrap();
        assert_eq!(out.len(), 3, "working, not filled");
        assert!(w.tick(t + 5).is_empty());
        w.set_price("AAPL", 9_949, t + 10);
        let fills = w.tick(t + 10);
        assert_eq!(fills.len(), 3);
        assert_eq!(w.executions()[0].price_cents, 9_949);
        assert!(w.tick(t + 15).is_empty(), "filled once");
    }

    #[test]
    fn cancel_reports_cancelled_then_202_and_rejects_second_cancel() {
        let mut w = flat_world();
        w.place_order(1, &order(5, "BUY", "10", "LMT", Some(50.0)), 0)
            .unwrap();
        let out = w.cancel_order(1, 5, 0);
        assert!(
            matches!(&out[0], ServerMsg::OrderStatus(s) if s.status.as_deref() == Some("Cancelled"))
        );
        assert_eq!(out[1].error_code(), Some(202));
        assert_eq!(w.cancel_order(1, 5, 0)[0].error_code(), Some(10148));
        assert_eq!(w.cancel_order(1, 99, 0)[0].error_code(), Some(135));
    }

    #[test]
    fn rejects_bad_orders_with_tws_codes() {
        let mut w = flat_world();
        assert_eq!(
            w.place_order(1, &order(1, "BUY", "1.5", "MKT", None), 0)
                .unwrap_err()
                .code,
            321
        );
        assert_eq!(
            w.place_order(1, &order(1, "HOLD", "1", "MKT", None), 0)
                .unwrap_err()
                .code,
            321
        );
        assert_eq!(
            w.place_order(1, &order(1, "BUY", "1", "TRAIL", None), 0)
                .unwrap_err()
                .code,
            387
        );
        let mut unknown = order(1, "BUY", "1", "MKT", None);
        unknown.contract = Some(stk("ZZZZ"));
        assert_eq!(w.place_order(1, &unknown, 0).unwrap_err().code, 200);
    }

    #[test]
    fn historical_daily_and_intraday_bar_counts() {
        let w = flat_world();
        let end = 1_767_225_600 + 3600; // 2026-01-01 01:00:00
        let req = proto::HistoricalDataRequest {
            req_id: Some(9),
            contract: Some(stk("AAPL")),
            end_date_time: Some("20260101 01:00:00 UTC".into()),
            bar_size_setting: Some("5 mins".into()),
            duration: Some("3600 S".into()),
            ..Default::default()
        };
        let msgs = w.historical(&req, 0).unwrap();
        let ServerMsg::HistoricalData(d) = &msgs[0] else {
            panic!("{msgs:?}")
        };
        assert_eq!(d.historical_data_bars.len(), 12);
        assert_eq!(
            d.historical_data_bars[0].date.as_deref(),
            Some("1767225600")
        );
        assert_eq!(d.historical_data_bars[0].close, Some(100.0));
        let ServerMsg::HistoricalDataEnd(e) = &msgs[1] else {
            panic!()
        };
        assert_eq!(e.end_date_str.as_deref(), Some("20260101-01:00:00"));
        let daily = proto::HistoricalDataRequest {
            bar_size_setting: Some("1 day".into()),
            duration: Some("1 W".into()),
            ..req
        };
        let msgs = w.historical(&daily, end).unwrap();
        let ServerMsg::HistoricalData(d) = &msgs[0] else {
            panic!()
        };
        // 2025-12-25 01:00 .. 2026-01-01 01:00: days starting 12-26 .. 01-01 (the last one forming).
        assert_eq!(d.historical_data_bars.len(), 7);
        assert_eq!(d.historical_data_bars[6].date.as_deref(), Some("20260101"));
        assert_eq!(d.historical_data_bars[0].date.as_deref(), Some("20251226"));
    }
}
