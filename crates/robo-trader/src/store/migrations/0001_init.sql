-- robo-trader schema, version 1. See docs/SCHEMA.md for every column.
-- Money and prices are exact decimal TEXT in dollars (CAST(x AS REAL) reads them);
-- timestamps are RFC 3339 UTC TEXT with milliseconds ("2024-01-02T14:30:00.000Z"), so they sort
-- as text.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE runs (
    id                 INTEGER PRIMARY KEY,
    started            TEXT NOT NULL,
    ended              TEXT,
    pid                INTEGER NOT NULL,
    exit_reason        TEXT,
    config_fingerprint TEXT NOT NULL,
    version            TEXT NOT NULL
);

CREATE TABLE orders (
    id             TEXT PRIMARY KEY,               -- client order id, "C<seq>"
    seq            INTEGER NOT NULL UNIQUE CHECK (seq > 0),
    broker_id      TEXT,
    symbol         TEXT NOT NULL,
    side           TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    order_type     TEXT NOT NULL CHECK (order_type IN ('MKT', 'LMT', 'STP', 'STP LMT')),
    limit_price    TEXT,
    stop_price     TEXT,
    tif            TEXT NOT NULL CHECK (tif IN ('DAY', 'GTC')),
    purpose        TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('new', 'submitted', 'partially_filled',
                                                  'filled', 'cancelled', 'rejected')),
    filled_qty     INTEGER NOT NULL DEFAULT 0 CHECK (filled_qty >= 0),
    reason         TEXT,
    created_ts     TEXT NOT NULL,
    updated_ts     TEXT NOT NULL
);
CREATE INDEX orders_state ON orders (state);

CREATE TABLE fills (
    id          INTEGER PRIMARY KEY,               -- arrival order; FIFO replays in this order
    exec_id     TEXT NOT NULL UNIQUE,
    order_id    TEXT NOT NULL,                     -- client order id, "C<seq>"
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    price       TEXT NOT NULL CHECK (CAST(price AS REAL) > 0),
    commission  TEXT NOT NULL CHECK (CAST(commission AS REAL) >= 0),
    ts          TEXT NOT NULL
);
CREATE INDEX fills_symbol ON fills (symbol, id);
CREATE INDEX fills_order ON fills (order_id);

-- FIFO lots, derived from fills (Store::rebuild_positions recreates them).
CREATE TABLE lots (
    id             INTEGER PRIMARY KEY,
    symbol         TEXT NOT NULL,
    open_exec_id   TEXT NOT NULL,
    side           TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),   -- BUY = long lot
    quantity       INTEGER NOT NULL CHECK (quantity > 0),           -- shares opened
    remaining      INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= quantity),
    price          TEXT NOT NULL,
    opened_ts      TEXT NOT NULL,
    closed_ts      TEXT
);
CREATE INDEX lots_open ON lots (symbol, remaining, id);

-- One row per symbol ever traded, derived from fills.
CREATE TABLE positions (
    symbol        TEXT PRIMARY KEY,
    quantity      INTEGER NOT NULL,                -- signed: negative = short
    avg_cost      TEXT NOT NULL,                   -- per share, rounded to 6 places
    cost_basis    TEXT NOT NULL,                   -- exact signed sum of open lots' qty * price
    realized_pnl  TEXT NOT NULL,                   -- closed lots, net of all commissions
    commissions   TEXT NOT NULL,
    updated_ts    TEXT NOT NULL
);

CREATE TABLE marks (
    symbol  TEXT PRIMARY KEY,
    price   TEXT NOT NULL,
    ts      TEXT NOT NULL
);

CREATE TABLE equity (
    id          INTEGER PRIMARY KEY,
    ts          TEXT NOT NULL,
    cash        TEXT NOT NULL,
    equity      TEXT NOT NULL,
    realized    TEXT NOT NULL,
    unrealized  TEXT NOT NULL
);
CREATE INDEX equity_ts ON equity (ts);

CREATE TABLE decisions (
    id             INTEGER PRIMARY KEY,
    ts             TEXT NOT NULL,
    symbol         TEXT NOT NULL,
    close          TEXT NOT NULL,
    signal         TEXT NOT NULL CHECK (signal IN ('buy', 'sell', 'hold')),
    strength       REAL,                           -- NULL if the strategy produced NaN
    reason         TEXT NOT NULL,
    action         TEXT NOT NULL,
    verdict        TEXT CHECK (verdict IN ('approved', 'refused')),
    refused_check  TEXT,
    refused_reason TEXT,
    inputs         TEXT NOT NULL,                  -- JSON object {name: value}
    checks         TEXT NOT NULL                   -- JSON array [{check, result, reason?}]
);
CREATE INDEX decisions_symbol_ts ON decisions (symbol, ts);

CREATE TABLE risk_events (
    id       INTEGER PRIMARY KEY,
    ts       TEXT NOT NULL,
    symbol   TEXT NOT NULL,
    check_name TEXT NOT NULL,
    reason   TEXT NOT NULL,
    detail   TEXT NOT NULL                         -- JSON of the refusal's numbers
);
CREATE INDEX risk_events_check ON risk_events (check_name, ts);

-- The one current trading state (row id 1) and its history.
CREATE TABLE trading_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    state    TEXT NOT NULL CHECK (state IN ('active', 'reduce_only', 'halted')),
    cause    TEXT NOT NULL,
    source   TEXT NOT NULL,
    ts       TEXT NOT NULL,
    version  INTEGER NOT NULL
);
INSERT INTO trading_state (id, state, cause, source, ts, version)
VALUES (1, 'active', 'initial', 'schema', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0);

CREATE TABLE trading_state_history (
    id      INTEGER PRIMARY KEY,
    ts      TEXT NOT NULL,
    state   TEXT NOT NULL CHECK (state IN ('active', 'reduce_only', 'halted')),
    cause   TEXT NOT NULL,
    source  TEXT NOT NULL
);

CREATE TABLE connection_events (
    id      INTEGER PRIMARY KEY,
    ts      TEXT NOT NULL,
    state   TEXT NOT NULL,
    reason  TEXT NOT NULL
);
