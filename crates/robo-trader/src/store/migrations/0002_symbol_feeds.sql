-- robo-trader schema, version 2: what each watchlist symbol's market data is, for the status.
-- Written by `run --broker ibkr`; replaced at the start of every run.
CREATE TABLE symbol_feeds (
    symbol   TEXT PRIMARY KEY,
    state    TEXT NOT NULL CHECK (state IN ('tradeable', 'untradeable', 'dropped')),
    delayed  INTEGER NOT NULL DEFAULT 0 CHECK (delayed IN (0, 1)),
    reason   TEXT NOT NULL DEFAULT '',
    ts       TEXT NOT NULL
);

-- The broker's account as last read (`--ib-orders paper`), and how it compares with the ledger.
CREATE TABLE broker_account (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    account          TEXT NOT NULL,
    net_liquidation  TEXT NOT NULL,
    total_cash       TEXT,
    buying_power     TEXT,
    ledger_equity    TEXT NOT NULL,
    difference       TEXT NOT NULL,                -- net_liquidation - ledger_equity
    tolerance        TEXT NOT NULL,
    within_tolerance INTEGER NOT NULL CHECK (within_tolerance IN (0, 1)),
    ts               TEXT NOT NULL
);
