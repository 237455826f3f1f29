//! Hand-written prost messages for the ~30 TWS API protobuf types the fake gateway speaks. Field
//! names and tags are copied from ibapi 5.5.0 `src/proto/protobuf.rs` (generated from IBKR's
//! `.proto` files); fields we never read or write are left out, which prost skips on decode.

use std::collections::HashMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Contract {
    #[prost(int32, optional, tag = "1")]
    pub con_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub symbol: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub sec_type: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub last_trade_date_or_contract_month: Option<String>,
    #[prost(double, optional, tag = "5")]
    pub strike: Option<f64>,
    #[prost(string, optional, tag = "6")]
    pub right: Option<String>,
    #[prost(double, optional, tag = "7")]
    pub multiplier: Option<f64>,
    #[prost(string, optional, tag = "8")]
    pub exchange: Option<String>,
    #[prost(string, optional, tag = "9")]
    pub primary_exch: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub currency: Option<String>,
    #[prost(string, optional, tag = "11")]
    pub local_symbol: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub trading_class: Option<String>,
    #[prost(bool, optional, tag = "18")]
    pub include_expired: Option<bool>,
}

/// Only the order fields the fake acts on or echoes back.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Order {
    #[prost(int32, optional, tag = "1")]
    pub client_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub order_id: Option<i32>,
    #[prost(int64, optional, tag = "3")]
    pub perm_id: Option<i64>,
    #[prost(int32, optional, tag = "4")]
    pub parent_id: Option<i32>,
    #[prost(string, optional, tag = "5")]
    pub action: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub total_quantity: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub order_type: Option<String>,
    #[prost(double, optional, tag = "9")]
    pub lmt_price: Option<f64>,
    #[prost(double, optional, tag = "10")]
    pub aux_price: Option<f64>,
    #[prost(string, optional, tag = "11")]
    pub tif: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub account: Option<String>,
    #[prost(bool, optional, tag = "19")]
    pub outside_rth: Option<bool>,
    #[prost(string, optional, tag = "28")]
    pub order_ref: Option<String>,
    #[prost(bool, optional, tag = "65")]
    pub what_if: Option<bool>,
    #[prost(bool, optional, tag = "66")]
    pub transmit: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OrderState {
    #[prost(string, optional, tag = "1")]
    pub status: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OrderCancel {
    #[prost(string, optional, tag = "1")]
    pub manual_order_cancel_time: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub ext_operator: Option<String>,
    #[prost(int32, optional, tag = "3")]
    pub manual_order_indicator: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecutionFilter {
    #[prost(int32, optional, tag = "1")]
    pub client_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub acct_code: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub time: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub symbol: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub sec_type: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub exchange: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub side: Option<String>,
    #[prost(int32, optional, tag = "8")]
    pub last_n_days: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Execution {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub exec_id: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub time: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub acct_number: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub exchange: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub side: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub shares: Option<String>,
    #[prost(double, optional, tag = "8")]
    pub price: Option<f64>,
    #[prost(int64, optional, tag = "9")]
    pub perm_id: Option<i64>,
    #[prost(int32, optional, tag = "10")]
    pub client_id: Option<i32>,
    #[prost(bool, optional, tag = "11")]
    pub is_liquidation: Option<bool>,
    #[prost(string, optional, tag = "12")]
    pub cum_qty: Option<String>,
    #[prost(double, optional, tag = "13")]
    pub avg_price: Option<f64>,
    #[prost(string, optional, tag = "14")]
    pub order_ref: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContractDetails {
    #[prost(string, optional, tag = "1")]
    pub market_name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub min_tick: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub order_types: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub valid_exchanges: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub long_name: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub time_zone_id: Option<String>,
    #[prost(string, optional, tag = "13")]
    pub trading_hours: Option<String>,
    #[prost(string, optional, tag = "14")]
    pub liquid_hours: Option<String>,
    #[prost(string, optional, tag = "23")]
    pub stock_type: Option<String>,
    #[prost(string, optional, tag = "24")]
    pub min_size: Option<String>,
    #[prost(string, optional, tag = "25")]
    pub size_increment: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoricalDataBar {
    #[prost(string, optional, tag = "1")]
    pub date: Option<String>,
    #[prost(double, optional, tag = "2")]
    pub open: Option<f64>,
    #[prost(double, optional, tag = "3")]
    pub high: Option<f64>,
    #[prost(double, optional, tag = "4")]
    pub low: Option<f64>,
    #[prost(double, optional, tag = "5")]
    pub close: Option<f64>,
    #[prost(string, optional, tag = "6")]
    pub volume: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub wap: Option<String>,
    #[prost(int32, optional, tag = "8")]
    pub bar_count: Option<i32>,
}

// ---- client -> server ----

#[derive(Clone, PartialEq, prost::Message)]
pub struct StartApiRequest {
    #[prost(int32, optional, tag = "1")]
    pub client_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub optional_capabilities: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IdsRequest {
    #[prost(int32, optional, tag = "1")]
    pub num_ids: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoricalDataRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(string, optional, tag = "3")]
    pub end_date_time: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub bar_size_setting: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub duration: Option<String>,
    #[prost(bool, optional, tag = "6")]
    pub use_rth: Option<bool>,
    #[prost(string, optional, tag = "7")]
    pub what_to_show: Option<String>,
    #[prost(int32, optional, tag = "8")]
    pub format_date: Option<i32>,
    #[prost(bool, optional, tag = "9")]
    pub keep_up_to_date: Option<bool>,
    #[prost(map = "string, string", tag = "10")]
    pub chart_options: HashMap<String, String>,
}

/// `CancelHistoricalData`, `CancelRealTimeBars`, `CancelMarketData`, `CancelAccountSummary`,
/// `ContractDataEnd`, `ExecutionDetailsEnd`, `AccountSummaryEnd`, `TickSnapshotEnd`: all `{1 req_id}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReqId {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RealTimeBarsRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(int32, optional, tag = "3")]
    pub bar_size: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub what_to_show: Option<String>,
    #[prost(bool, optional, tag = "5")]
    pub use_rth: Option<bool>,
    #[prost(map = "string, string", tag = "6")]
    pub real_time_bars_options: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MarketDataRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(string, optional, tag = "3")]
    pub generic_tick_list: Option<String>,
    #[prost(bool, optional, tag = "4")]
    pub snapshot: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub regulatory_snapshot: Option<bool>,
    #[prost(map = "string, string", tag = "6")]
    pub market_data_options: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MarketDataTypeRequest {
    #[prost(int32, optional, tag = "1")]
    pub market_data_type: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PlaceOrderRequest {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub order: Option<Order>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CancelOrderRequest {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub order_cancel: Option<OrderCancel>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GlobalCancelRequest {
    #[prost(message, optional, tag = "1")]
    pub order_cancel: Option<OrderCancel>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AccountSummaryRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub group: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub tags: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecutionRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub execution_filter: Option<ExecutionFilter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContractDataRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
}

// ---- server -> client ----

#[derive(Clone, PartialEq, prost::Message)]
pub struct NextValidId {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ManagedAccounts {
    #[prost(string, optional, tag = "1")]
    pub accounts_list: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorMessage {
    #[prost(int32, optional, tag = "1")]
    pub id: Option<i32>,
    #[prost(int64, optional, tag = "2")]
    pub error_time: Option<i64>,
    #[prost(int32, optional, tag = "3")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub error_msg: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub advanced_order_reject_json: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CurrentTime {
    #[prost(int64, optional, tag = "1")]
    pub current_time: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoricalData {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, repeated, tag = "2")]
    pub historical_data_bars: Vec<HistoricalDataBar>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoricalDataEnd {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub start_date_str: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub end_date_str: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RealTimeBarTick {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int64, optional, tag = "2")]
    pub time: Option<i64>,
    #[prost(double, optional, tag = "3")]
    pub open: Option<f64>,
    #[prost(double, optional, tag = "4")]
    pub high: Option<f64>,
    #[prost(double, optional, tag = "5")]
    pub low: Option<f64>,
    #[prost(double, optional, tag = "6")]
    pub close: Option<f64>,
    #[prost(string, optional, tag = "7")]
    pub volume: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub wap: Option<String>,
    #[prost(int32, optional, tag = "9")]
    pub count: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TickPrice {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub tick_type: Option<i32>,
    #[prost(double, optional, tag = "3")]
    pub price: Option<f64>,
    #[prost(string, optional, tag = "4")]
    pub size: Option<String>,
    #[prost(int32, optional, tag = "5")]
    pub attr_mask: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TickSize {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub tick_type: Option<i32>,
    #[prost(string, optional, tag = "3")]
    pub size: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MarketDataType {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub market_data_type: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpenOrder {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub order: Option<Order>,
    #[prost(message, optional, tag = "4")]
    pub order_state: Option<OrderState>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OrderStatus {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub status: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub filled: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub remaining: Option<String>,
    #[prost(double, optional, tag = "5")]
    pub avg_fill_price: Option<f64>,
    #[prost(int64, optional, tag = "6")]
    pub perm_id: Option<i64>,
    #[prost(int32, optional, tag = "7")]
    pub parent_id: Option<i32>,
    #[prost(double, optional, tag = "8")]
    pub last_fill_price: Option<f64>,
    #[prost(int32, optional, tag = "9")]
    pub client_id: Option<i32>,
    #[prost(string, optional, tag = "10")]
    pub why_held: Option<String>,
    #[prost(double, optional, tag = "11")]
    pub mkt_cap_price: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecutionDetails {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub execution: Option<Execution>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CommissionAndFeesReport {
    #[prost(string, optional, tag = "1")]
    pub exec_id: Option<String>,
    #[prost(double, optional, tag = "2")]
    pub commission_and_fees: Option<f64>,
    #[prost(string, optional, tag = "3")]
    pub currency: Option<String>,
    #[prost(double, optional, tag = "4")]
    pub realized_pnl: Option<f64>,
    #[prost(double, optional, tag = "5")]
    pub bond_yield: Option<f64>,
    #[prost(string, optional, tag = "6")]
    pub yield_redemption_date: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Position {
    #[prost(string, optional, tag = "1")]
    pub account: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(string, optional, tag = "3")]
    pub position: Option<String>,
    #[prost(double, optional, tag = "4")]
    pub avg_cost: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AccountSummary {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub account: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub tag: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub value: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub currency: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContractData {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub contract_details: Option<ContractDetails>,
}
