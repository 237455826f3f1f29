-- robo-trader schema, version 2: what each watchlist symbol's market data is, for the status.
-- Written by `run --broker ibkr`; replaced at the start of every run.
CREATE TABLE symbol_feeds (
    symbol   TEXT PRIMARY KEY,
    state    TEXT NOT NULL CHECK (state IN ('tradeable', 'untradeable', 'dropped')),
    delayed  INTEGER NOT NULL DEFAULT 0 CHECK (delayed IN (0, 1)),
    reason   TEXT NOT NULL DEFAULT '',
    ts       TEXT NOT NULL
);
