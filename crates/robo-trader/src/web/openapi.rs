//! The hand-written OpenAPI 3 description of every endpoint (`/api/openapi.json`).

use axum::Json;
use serde_json::{json, Value};

/// Every path the dashboard port serves, with its method and a summary. The test suite checks
/// this list against the router.
pub const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("/", "get", "The dashboard page"),
    ("/healthz", "get", "Liveness: 200 while the process serves"),
    ("/readyz", "get", "Readiness to trade: 200, or 503 with the reasons"),
    ("/metrics", "get", "Prometheus text exposition"),
    ("/ws", "get", "WebSocket stream (also at / on the WebSocket port)"),
    ("/api/status", "get", "Connection, market session, clock, mode, trading state, kill switch and the ledger summary"),
    ("/api/positions", "get", "Open positions (as `status --json`)"),
    ("/api/orders", "get", "Orders, oldest first"),
    ("/api/fills", "get", "Fills, in arrival order"),
    ("/api/decisions", "get", "Why each symbol did or did not trade on its last bars"),
    ("/api/performance", "get", "P&L, daily P&L, equity curve, drawdown, Sharpe, win rate, profit factor"),
    ("/api/risk", "get", "Each risk limit with its current use, and refusals by check"),
    ("/api/market", "get", "Last bar (or mark), change, signal and position per symbol"),
    ("/api/logs", "get", "Recent log lines"),
    ("/api/config", "get", "The effective config, secrets redacted, as TOML"),
    ("/api/openapi.json", "get", "This document"),
    ("/api/charts/equity.svg", "get", "Equity curve (SVG)"),
    ("/api/charts/drawdown.svg", "get", "Drawdown curve (SVG)"),
    ("/api/control/kill-switch", "post", "Set the trading state: body {\"state\": \"active|reduce_only|halted\"}"),
    ("/api/control/pause", "post", "Halt new trading (state halted)"),
    ("/api/control/resume", "post", "Resume trading (state active)"),
    ("/api/control/flatten", "post", "Close every position at market"),
    ("/api/control/cancel-all", "post", "Cancel every open order"),
];

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn parameters(path: &str) -> Vec<Value> {
    let symbol = || {
        query_param(
            "symbol",
            "Only this symbol (1-12 of A-Z 0-9 . - space)",
            json!({"type": "string"}),
        )
    };
    let limit = |max: u32| {
        query_param(
            "limit",
            "The last N rows",
            json!({"type": "integer", "minimum": 1, "maximum": max}),
        )
    };
    match path {
        "/api/orders" => vec![
            symbol(),
            limit(100_000),
            query_param(
                "state",
                "open or all (default)",
                json!({"type": "string", "enum": ["open", "all"]}),
            ),
        ],
        "/api/fills" => vec![symbol(), limit(100_000)],
        "/api/decisions" => vec![symbol(), limit(5000)],
        "/api/market" => vec![symbol()],
        "/api/logs" => vec![
            query_param(
                "level",
                "Minimum level",
                json!({"type": "string", "enum": ["error", "warn", "info", "debug", "trace"]}),
            ),
            limit(1000),
        ],
        _ => vec![],
    }
}

pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for (path, method, summary) in ENDPOINTS {
        let control = path.starts_with("/api/control/");
        let mut op = json!({
            "summary": summary,
            "parameters": parameters(path),
            "responses": {
                "200": { "description": "OK" },
                "400": { "description": "A bad query parameter or body, named", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}} },
            },
        });
        if control {
            op["security"] = json!([{ "bearer": [] }]);
            op["responses"]["401"] = json!({ "description": "Missing or wrong bearer token" });
            op["responses"]["403"] = json!({ "description": "Origin is not loopback" });
            op["responses"]["503"] =
                json!({ "description": "Recorded, but the trading thread is not running" });
        }
        if *path == "/api/control/kill-switch" {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["state"], "additionalProperties": false,
                    "properties": {"state": {"type": "string", "enum": ["active", "reduce_only", "halted"]}},
                }}},
            });
        }
        if *path == "/readyz" {
            op["responses"]["503"] = json!({ "description": "Not ready; `reasons` says why" });
        }
        paths.insert((*path).to_string(), json!({ *method: op }));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "robo-trader dashboard API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read endpoints report the ledger (the SQLite database); money is exact decimal text. \
                            Control endpoints need `Authorization: Bearer <token>` (the token file beside the database) \
                            and, when an Origin header is sent, a loopback origin.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } } },
        },
    })
}

pub async fn document() -> Json<Value> {
    Json(openapi())
}
