//! The typed messages in both directions: [`Request`] (client -> server) and [`ServerMsg`]
//! (server -> client), each with its canonical TWS message id (ibapi `src/messages.rs`).
//! Decoding never panics: unknown ids and undecodable payloads become `Unknown` / `Malformed`.

use crate::codec::{self, CodecError, PROTOBUF_OFFSET};
use crate::proto;
use prost::Message;

macro_rules! message_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:ident {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $id:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )*
            /// A message id we do not model (text-framed ids below 200 land here too).
            Unknown { wire_id: u32, payload: Vec<u8> },
            /// A known protobuf id whose payload did not decode.
            Malformed { wire_id: u32, error: String },
        }

        /// The message type without its payload, for matching faults and assertions.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $kind {
            $( $variant, )*
            Unknown,
            Malformed,
        }

        impl $name {
            pub fn kind(&self) -> $kind {
                match self {
                    $( Self::$variant(_) => $kind::$variant, )*
                    Self::Unknown { .. } => $kind::Unknown,
                    Self::Malformed { .. } => $kind::Malformed,
                }
            }

            /// Decodes one frame body (`[u32 BE wire id][payload]`).
            pub fn decode(body: &[u8]) -> Result<Self, CodecError> {
                let (wire_id, payload) = codec::split_body(body)?;
                Ok(Self::decode_parts(wire_id, payload))
            }

            pub fn decode_parts(wire_id: u32, payload: &[u8]) -> Self {
                if wire_id <= PROTOBUF_OFFSET {
                    return Self::Unknown { wire_id, payload: payload.to_vec() };
                }
                match wire_id - PROTOBUF_OFFSET {
                    $( $id => match <$ty>::decode(payload) {
                        Ok(m) => Self::$variant(m),
                        Err(e) => Self::Malformed { wire_id, error: e.to_string() },
                    }, )*
                    _ => Self::Unknown { wire_id, payload: payload.to_vec() },
                }
            }

            /// The frame body: `[canonical id + 200][protobuf]`; `Unknown` is re-emitted raw.
            pub fn encode_body(&self) -> Vec<u8> {
                match self {
                    $( Self::$variant(m) => codec::proto_body($id, m), )*
                    Self::Unknown { wire_id, payload } => {
                        let mut b = wire_id.to_be_bytes().to_vec();
                        b.extend_from_slice(payload);
                        b
                    }
                    Self::Malformed { wire_id, .. } => wire_id.to_be_bytes().to_vec(),
                }
            }

            /// The whole frame (length prefix included).
            pub fn encode_frame(&self) -> Result<Vec<u8>, CodecError> {
                codec::frame(&self.encode_body())
            }
        }
    };
}

message_enum! {
    /// A client request, decoded from its protobuf frame.
    Request, RequestKind {
        MarketData(proto::MarketDataRequest) = 1,
        CancelMarketData(proto::ReqId) = 2,
        PlaceOrder(proto::PlaceOrderRequest) = 3,
        CancelOrder(proto::CancelOrderRequest) = 4,
        OpenOrders(proto::Empty) = 5,
        Executions(proto::ExecutionRequest) = 7,
        Ids(proto::IdsRequest) = 8,
        ContractDetails(proto::ContractDataRequest) = 9,
        AllOpenOrders(proto::Empty) = 16,
        ManagedAccounts(proto::Empty) = 17,
        HistoricalData(proto::HistoricalDataRequest) = 20,
        CancelHistoricalData(proto::ReqId) = 25,
        CurrentTime(proto::Empty) = 49,
        RealTimeBars(proto::RealTimeBarsRequest) = 50,
        CancelRealTimeBars(proto::ReqId) = 51,
        GlobalCancel(proto::GlobalCancelRequest) = 58,
        MarketDataType(proto::MarketDataTypeRequest) = 59,
        Positions(proto::Empty) = 61,
        AccountSummary(proto::AccountSummaryRequest) = 62,
        CancelAccountSummary(proto::ReqId) = 63,
        CancelPositions(proto::Empty) = 64,
        StartApi(proto::StartApiRequest) = 71,
    }
}

message_enum! {
    /// A message the gateway sends.
    ServerMsg, ServerMsgKind {
        TickPrice(proto::TickPrice) = 1,
        TickSize(proto::TickSize) = 2,
        OrderStatus(proto::OrderStatus) = 3,
        Error(proto::ErrorMessage) = 4,
        OpenOrder(proto::OpenOrder) = 5,
        NextValidId(proto::NextValidId) = 9,
        ContractData(proto::ContractData) = 10,
        ExecutionDetails(proto::ExecutionDetails) = 11,
        ManagedAccounts(proto::ManagedAccounts) = 15,
        HistoricalData(proto::HistoricalData) = 17,
        CurrentTime(proto::CurrentTime) = 49,
        RealTimeBar(proto::RealTimeBarTick) = 50,
        ContractDataEnd(proto::ReqId) = 52,
        OpenOrderEnd(proto::Empty) = 53,
        ExecutionDetailsEnd(proto::ReqId) = 55,
        TickSnapshotEnd(proto::ReqId) = 57,
        MarketDataType(proto::MarketDataType) = 58,
        CommissionReport(proto::CommissionAndFeesReport) = 59,
        Position(proto::Position) = 61,
        PositionEnd(proto::Empty) = 62,
        AccountSummary(proto::AccountSummary) = 63,
        AccountSummaryEnd(proto::ReqId) = 64,
        HistoricalDataEnd(proto::HistoricalDataEnd) = 108,
    }
}

impl ServerMsg {
    /// An `ErrorMessage` frame; `id` is the request/order id, −1 for none.
    pub fn error(id: i32, code: i32, msg: impl Into<String>, time_ms: i64) -> Self {
        Self::Error(proto::ErrorMessage {
            id: Some(id),
            error_time: Some(time_ms),
            error_code: Some(code),
            error_msg: Some(msg.into()),
            advanced_order_reject_json: None,
        })
    }

    /// The error code, when this is an `ErrorMessage`.
    pub fn error_code(&self) -> Option<i32> {
        match self {
            Self::Error(e) => e.error_code,
            _ => None,
        }
    }
}

impl Request {
    /// The request id this request is answered under, when it has one.
    pub fn req_id(&self) -> Option<i32> {
        match self {
            Self::MarketData(r) => r.req_id,
            Self::HistoricalData(r) => r.req_id,
            Self::RealTimeBars(r) => r.req_id,
            Self::AccountSummary(r) => r.req_id,
            Self::Executions(r) => r.req_id,
            Self::ContractDetails(r) => r.req_id,
            Self::CancelMarketData(r)
            | Self::CancelHistoricalData(r)
            | Self::CancelRealTimeBars(r)
            | Self::CancelAccountSummary(r) => r.req_id,
            Self::PlaceOrder(r) => r.order_id,
            Self::CancelOrder(r) => r.order_id,
            _ => None,
        }
    }
}

/// Re-encode helper for tests: the bytes of any prost message.
pub fn encode_message(msg: &impl Message) -> Vec<u8> {
    msg.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_api_uses_wire_id_271_and_tag_1() {
        let body = Request::StartApi(proto::StartApiRequest {
            client_id: Some(7),
            optional_capabilities: None,
        })
        .encode_body();
        // 271 = 0x010F; field 1 varint 7 = 0x08 0x07 (the probe captured {1: 7}).
        assert_eq!(body, vec![0, 0, 1, 15, 0x08, 0x07]);
        assert_eq!(
            Request::decode(&body).unwrap().kind(),
            RequestKind::StartApi
        );
    }

    #[test]
    fn current_time_request_is_an_empty_249_frame() {
        assert_eq!(
            Request::decode(&[0, 0, 0, 249]).unwrap(),
            Request::CurrentTime(proto::Empty {})
        );
    }

    #[test]
    fn unknown_text_and_garbage_never_panic() {
        assert!(matches!(
            Request::decode(&[0, 0, 0, 71, b'2', 0]).unwrap(),
            Request::Unknown { wire_id: 71, .. }
        ));
        assert!(matches!(
            Request::decode(&[0, 0, 3, 0xE7]).unwrap(),
            Request::Unknown { wire_id: 999, .. }
        ));
        // Historical request (220) whose payload is a truncated length-delimited field.
        assert!(matches!(
            Request::decode(&[0, 0, 0, 220, 0x12, 0x05, 1]).unwrap(),
            Request::Malformed { wire_id: 220, .. }
        ));
        assert!(Request::decode(&[0, 1]).is_err());
    }

    #[test]
    fn error_message_encodes_negative_id_as_ten_byte_varint() {
        let body = ServerMsg::error(-1, 2104, "ok", 5).encode_body();
        assert_eq!(&body[..4], &[0, 0, 0, 204]);
        // Field 1 (tag byte 0x08) of int32 −1 is sign-extended to 10 bytes: FF×9 01.
        assert_eq!(
            &body[4..15],
            &[0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
        );
        assert_eq!(ServerMsg::decode(&body).unwrap().error_code(), Some(2104));
    }
}
