-- Algo (TP/SL) orders as the exchange reports them (orders-algo pushes, REST backfill): one row
-- per OKX algoId, its latest state. A state never goes back (live < partially_* < effective,
-- canceled, order_failed); within a state the newest exchange update wins (an amendment).
CREATE TABLE aitrader.algo_orders (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id          UUID NOT NULL REFERENCES aitrader.accounts (id),
    symbol              TEXT NOT NULL,
    pos_side            TEXT NOT NULL CHECK (pos_side IN ('net', 'long', 'short')),
    algo_id             TEXT NOT NULL,
    algo_cl_ord_id      TEXT,
    ord_type            TEXT NOT NULL CHECK (ord_type IN ('conditional', 'oco')),
    side                TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    state               TEXT NOT NULL CHECK (state IN ('live', 'effective', 'canceled',
                            'order_failed', 'partially_effective', 'partially_failed')),
    sz                  NUMERIC(20, 8) NOT NULL CHECK (sz >= 0),  -- 0: close-position until it fires
    close_fraction      NUMERIC(20, 8),
    reduce_only         BOOLEAN NOT NULL DEFAULT false,
    -- A leg not set has all three NULL; a set leg with a NULL order price executes at market.
    tp_trigger_px       NUMERIC(20, 8),
    tp_trigger_px_type  TEXT CHECK (tp_trigger_px_type IN ('last', 'mark', 'index')),
    tp_ord_px           NUMERIC(20, 8),
    sl_trigger_px       NUMERIC(20, 8),
    sl_trigger_px_type  TEXT CHECK (sl_trigger_px_type IN ('last', 'mark', 'index')),
    sl_ord_px           NUMERIC(20, 8),
    actual_side         TEXT CHECK (actual_side IN ('tp', 'sl')),   -- the leg that fired
    actual_sz           NUMERIC(20, 8),
    triggered_ord_id    TEXT,                 -- the order it placed when it fired
    fail_code           TEXT,                 -- that order's sCode (state order_failed)
    raw_payload         JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at          TIMESTAMPTZ NOT NULL, -- OKX cTime
    exchange_updated_at TIMESTAMPTZ NOT NULL, -- OKX uTime of the state stored
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, algo_id)
);
CREATE INDEX algo_orders_live ON aitrader.algo_orders (account_id, symbol, pos_side)
    WHERE state = 'live';

-- The order an algo order placed when it fired (OKX algoId on the order and its fills).
ALTER TABLE aitrader.orders ADD COLUMN algo_id TEXT;
