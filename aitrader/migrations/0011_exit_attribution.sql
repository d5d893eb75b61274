-- Exit attribution of the performance windows (docs/metrics.md): closed positions and their net
-- PnL per exit reason, and the share of closed positions that had a stop-loss resting on the
-- exchange when they closed. Written by the metrics service with its performance rows.
ALTER TABLE aitrader.performance_snapshots ADD COLUMN stop_loss_resting_ratio NUMERIC(6, 4);

-- One row per account, window and exit reason (every reason, 0 when none closed so).
CREATE TABLE aitrader.exit_attribution (
    account_id          UUID NOT NULL REFERENCES aitrader.accounts (id),
    "window"            TEXT NOT NULL CHECK ("window" IN ('daily', 'weekly', 'all_time')),
    exit_reason         TEXT NOT NULL CHECK (exit_reason IN ('agent', 'liquidation', 'adl',
                            'external', 'reconcile', 'take_profit', 'stop_loss')),
    closed_positions    INTEGER NOT NULL,
    realized_pnl_usdt   NUMERIC(24, 8),                 -- null when none closed so
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, "window", exit_reason)
);

-- The algo orders of one position slot, newest update first: what was resting when a position
-- closed (metrics) and the newest outcome of each exit-plan leg (the gateway's account state).
CREATE INDEX algo_orders_slot ON aitrader.algo_orders
    (account_id, symbol, pos_side, exchange_updated_at DESC);

-- The side of the order that closes a position of this side: sell for a long, buy for a short
-- (NULL for any other side), in either position mode. One definition for the gateway's
-- account state and the metrics' stop-loss share. Inlined like aitrader.direction.
CREATE FUNCTION aitrader.closing_side(side text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE aitrader.direction(side) WHEN 1 THEN 'sell' WHEN -1 THEN 'buy' END $$;
