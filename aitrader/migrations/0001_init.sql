-- AiTrader schema, version 1.
-- Table and column names of seed 000 are the contract; additions come from seed 001 and
-- DESIGN.md (instruments, exchange ids, fold state, equity history, tokens, dead letters).
-- Money and quantities are NUMERIC end to end. No extension is required:
-- gen_random_uuid() is core PostgreSQL since 13.

CREATE SCHEMA IF NOT EXISTS aitrader;

-- Accounts: one row per OKX (sub)account or simulated account. ------------------------------
CREATE TABLE aitrader.accounts (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id     TEXT NOT NULL UNIQUE,
    mode            TEXT NOT NULL CHECK (mode IN ('live', 'simulated')),
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    pos_mode        TEXT CHECK (pos_mode IN ('net_mode', 'long_short_mode')),
    metadata        JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Instruments (seed 001): contract values and steps come from here, never from constants. --
CREATE TABLE aitrader.instruments (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    symbol          TEXT NOT NULL UNIQUE,               -- OKX instId, e.g. BTC-USDT-SWAP
    instrument_type TEXT NOT NULL DEFAULT 'SWAP',
    base_asset      TEXT NOT NULL,
    quote_asset     TEXT NOT NULL,
    settle_ccy      TEXT NOT NULL,
    ct_val          NUMERIC(20, 8) NOT NULL CHECK (ct_val > 0),
    ct_mult         NUMERIC(20, 8) NOT NULL CHECK (ct_mult > 0),
    ct_val_ccy      TEXT,
    lot_sz          NUMERIC(20, 8) NOT NULL CHECK (lot_sz > 0),
    min_sz          NUMERIC(20, 8) NOT NULL CHECK (min_sz > 0),
    tick_sz         NUMERIC(20, 8) NOT NULL CHECK (tick_sz > 0),
    max_leverage    NUMERIC(10, 2) NOT NULL CHECK (max_leverage > 0),
    status          TEXT NOT NULL DEFAULT 'live',       -- OKX state: live / suspend / preopen
    raw_payload     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Balances as the exchange reports them. -----------------------------------------------------
CREATE TABLE aitrader.balance_snapshots (
    id              BIGSERIAL PRIMARY KEY,
    account_id      UUID NOT NULL REFERENCES aitrader.accounts (id),
    available_usdt  NUMERIC(24, 8) NOT NULL,
    locked_usdt     NUMERIC(24, 8) NOT NULL DEFAULT 0,
    cash_usdt       NUMERIC(24, 8),                     -- OKX cashBal
    equity_usdt     NUMERIC(24, 8),                     -- OKX eq
    source          TEXT NOT NULL DEFAULT 'exchange',
    raw_payload     JSONB NOT NULL DEFAULT '{}'::jsonb,
    as_of           TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, as_of)
);

-- Seed 000 keeps DeepSeek credentials in the database. The gateway never reads or logs them;
-- see docs/schema.md for the risk note.
CREATE TABLE aitrader.deepseek_credentials (
    id          BIGSERIAL PRIMARY KEY,
    api_key     TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    model       TEXT NOT NULL DEFAULT 'deepseek-chat',
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every MCP tool call, success or failure, redacted. -----------------------------------------
CREATE TABLE aitrader.mcp_tool_calls (
    id                  UUID PRIMARY KEY,
    account_id          UUID REFERENCES aitrader.accounts (id),
    tool_name           TEXT NOT NULL,
    request_payload     JSONB NOT NULL,
    response_payload    JSONB,
    status              TEXT NOT NULL DEFAULT 'success'
                        CHECK (status IN ('pending', 'success', 'failed')),
    latency_ms          INTEGER,
    error               TEXT,
    transport           TEXT,                            -- http / stdio / memory
    token_id            UUID,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX mcp_tool_calls_account_time ON aitrader.mcp_tool_calls (account_id, created_at DESC);
CREATE INDEX mcp_tool_calls_tool_time ON aitrader.mcp_tool_calls (tool_name, created_at DESC);

-- Orders: ours (tool_call_id set) and those placed outside the product (no tool call). -------
-- OKX clOrdId = id without dashes (32 hex chars).
CREATE TABLE aitrader.orders (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id          UUID NOT NULL REFERENCES aitrader.accounts (id),
    symbol              TEXT NOT NULL,
    side                TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type          TEXT NOT NULL,
    price               NUMERIC(20, 8),
    size                NUMERIC(20, 8) NOT NULL CHECK (size >= 0),
    filled_size         NUMERIC(20, 8) NOT NULL DEFAULT 0,
    status              TEXT NOT NULL,
    leverage            NUMERIC(10, 2),
    confidence          NUMERIC(5, 2) CHECK (confidence BETWEEN 0 AND 100),
    tool_call_id        UUID REFERENCES aitrader.mcp_tool_calls (id),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- additions (seed 001 / DESIGN §3)
    exchange_order_id   TEXT,
    client_order_id     TEXT,
    pos_side            TEXT CHECK (pos_side IN ('net', 'long', 'short')),
    reduce_only         BOOLEAN NOT NULL DEFAULT false,
    avg_fill_price      NUMERIC(20, 8),
    category            TEXT,                            -- OKX category: normal, full_liquidation, adl, ...
    source              TEXT NOT NULL DEFAULT 'agent' CHECK (source IN ('agent', 'external')),
    idempotency_key     TEXT,
    exit_plan           JSONB,
    reject_code         TEXT,
    reject_reason       TEXT,
    raw_payload         JSONB NOT NULL DEFAULT '{}'::jsonb,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, exchange_order_id),
    UNIQUE (account_id, client_order_id),
    UNIQUE (account_id, idempotency_key)
);
CREATE INDEX orders_account_symbol_time ON aitrader.orders (account_id, symbol, created_at DESC);
CREATE INDEX orders_tool_call ON aitrader.orders (tool_call_id);

-- Fills: the ledger. One row per OKX trade; (account, symbol, trade id) makes it idempotent. --
CREATE TABLE aitrader.fills (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id          UUID NOT NULL REFERENCES aitrader.accounts (id),
    order_id            UUID NOT NULL REFERENCES aitrader.orders (id),
    symbol              TEXT NOT NULL,
    side                TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    price               NUMERIC(20, 8) NOT NULL CHECK (price > 0),
    size                NUMERIC(20, 8) NOT NULL CHECK (size > 0),
    fee_usdt            NUMERIC(20, 8) NOT NULL DEFAULT 0,   -- OKX sign: negative = charged
    pnl_usdt            NUMERIC(24, 8),                      -- OKX fillPnl
    confidence          NUMERIC(5, 2),
    "timestamp"         TIMESTAMPTZ NOT NULL,                -- OKX fillTime
    -- additions
    exchange_trade_id   TEXT NOT NULL,
    exchange_order_id   TEXT,
    pos_side            TEXT NOT NULL DEFAULT 'net' CHECK (pos_side IN ('net', 'long', 'short')),
    exec_type           TEXT,                                -- T taker / M maker
    category            TEXT NOT NULL DEFAULT 'normal',
    fee_ccy             TEXT,
    leverage            NUMERIC(10, 2),
    raw_payload         JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, symbol, exchange_trade_id)
);
-- The fold order: (fill time, trade id) per account and symbol.
CREATE INDEX fills_fold_order ON aitrader.fills (account_id, symbol, "timestamp", exchange_trade_id);
CREATE INDEX fills_order ON aitrader.fills (order_id);
CREATE INDEX fills_account_time ON aitrader.fills (account_id, "timestamp" DESC);

-- Funding payments (OKX bills type 8): part of the fold, accumulated on the open position. --
CREATE TABLE aitrader.funding_payments (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id          UUID NOT NULL REFERENCES aitrader.accounts (id),
    symbol              TEXT NOT NULL,
    pos_side            TEXT NOT NULL DEFAULT 'net' CHECK (pos_side IN ('net', 'long', 'short')),
    amount_usdt         NUMERIC(24, 8) NOT NULL,           -- positive = received
    exchange_bill_id    TEXT NOT NULL,
    "timestamp"         TIMESTAMPTZ NOT NULL,
    raw_payload         JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, exchange_bill_id)
);
CREATE INDEX funding_payments_fold_order
    ON aitrader.funding_payments (account_id, symbol, "timestamp");

-- Open positions: one row per (account, symbol, OKX position slot). ------------------------
-- side is the direction (long / short); pos_side is the OKX slot (net, or long / short in
-- long/short mode). The fold_* columns are the accumulated state that makes the closed row.
CREATE TABLE aitrader.positions_open (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id              UUID NOT NULL REFERENCES aitrader.accounts (id),
    symbol                  TEXT NOT NULL,
    side                    TEXT NOT NULL CHECK (side IN ('long', 'short', 'net')),
    quantity                NUMERIC(20, 8) NOT NULL CHECK (quantity > 0),   -- contracts
    avg_entry_price         NUMERIC(20, 8),
    leverage                NUMERIC(10, 2),
    margin_usdt             NUMERIC(24, 8),
    liquidation_price       NUMERIC(20, 8),
    unrealized_pnl_usdt     NUMERIC(24, 8),
    exit_plan               JSONB DEFAULT '{}'::jsonb,
    opened_at               TIMESTAMPTZ,
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- additions: slot, exchange view, fold state
    pos_side                TEXT NOT NULL DEFAULT 'net' CHECK (pos_side IN ('net', 'long', 'short')),
    mark_price              NUMERIC(20, 8),
    opened_quantity         NUMERIC(20, 8) NOT NULL DEFAULT 0,   -- contracts opened in total
    opened_value            NUMERIC(32, 12) NOT NULL DEFAULT 0,  -- sum(px x sz) of opening fills
    closed_quantity         NUMERIC(20, 8) NOT NULL DEFAULT 0,
    closed_value            NUMERIC(32, 12) NOT NULL DEFAULT 0,  -- sum(px x sz) of closing fills
    realized_gross_usdt     NUMERIC(24, 8) NOT NULL DEFAULT 0,   -- price PnL of partial closes
    fees_usdt               NUMERIC(24, 8) NOT NULL DEFAULT 0,   -- OKX sign
    funding_usdt            NUMERIC(24, 8) NOT NULL DEFAULT 0,
    confidence_weight_sum   NUMERIC(32, 12) NOT NULL DEFAULT 0,  -- sum(confidence x sz), opening fills
    confidence_quantity     NUMERIC(20, 8) NOT NULL DEFAULT 0,   -- sum(sz) of opening fills with one
    fill_count              INTEGER NOT NULL DEFAULT 0,
    last_fill_time          TIMESTAMPTZ,
    last_trade_id           TEXT,
    UNIQUE (account_id, symbol, pos_side)
);
CREATE INDEX positions_open_account ON aitrader.positions_open (account_id);

-- Closed positions: written when a position reaches zero. ---------------------------------
CREATE TABLE aitrader.positions_closed (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id              UUID NOT NULL REFERENCES aitrader.accounts (id),
    symbol                  TEXT NOT NULL,
    side                    TEXT NOT NULL CHECK (side IN ('long', 'short')),
    quantity                NUMERIC(20, 8) NOT NULL,            -- contracts closed in total
    entry_price             NUMERIC(20, 8),                     -- contract-weighted
    exit_price              NUMERIC(20, 8),                     -- contract-weighted
    realized_pnl_usdt       NUMERIC(24, 8),                     -- net: gross + fees + funding
    holding_minutes         NUMERIC(14, 4),
    average_confidence      NUMERIC(5, 2),
    entry_time              TIMESTAMPTZ,
    exit_time               TIMESTAMPTZ NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- additions
    pos_side                TEXT NOT NULL DEFAULT 'net' CHECK (pos_side IN ('net', 'long', 'short')),
    gross_pnl_usdt          NUMERIC(24, 8) NOT NULL DEFAULT 0,
    fee_usdt                NUMERIC(24, 8) NOT NULL DEFAULT 0,
    funding_usdt            NUMERIC(24, 8) NOT NULL DEFAULT 0,
    exit_reason             TEXT NOT NULL DEFAULT 'agent'
                            CHECK (exit_reason IN ('agent', 'liquidation', 'adl', 'external')),
    leverage                NUMERIC(10, 2),
    fill_count              INTEGER NOT NULL DEFAULT 0,
    closing_trade_id        TEXT NOT NULL,
    exit_plan               JSONB,
    UNIQUE (account_id, symbol, pos_side, closing_trade_id)
);
CREATE INDEX positions_closed_account_exit ON aitrader.positions_closed (account_id, exit_time DESC);

-- Exit-plan history: every update_exit_plan, newest last. ----------------------------------
CREATE TABLE aitrader.exit_plan_history (
    id                  BIGSERIAL PRIMARY KEY,
    account_id          UUID NOT NULL REFERENCES aitrader.accounts (id),
    symbol              TEXT NOT NULL,
    pos_side            TEXT NOT NULL,
    position_id         UUID,
    exit_plan           JSONB NOT NULL,
    tool_call_id        UUID REFERENCES aitrader.mcp_tool_calls (id),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX exit_plan_history_position
    ON aitrader.exit_plan_history (account_id, symbol, created_at DESC);

-- Market data ---------------------------------------------------------------------------------
-- One row per closed candle and timeframe: the candle itself plus its indicators.
CREATE TABLE aitrader.market_snapshots (
    id                  BIGSERIAL PRIMARY KEY,
    symbol              TEXT NOT NULL,
    timeframe           TEXT NOT NULL,                  -- OKX bar: 1m, 3m, 1H, 4H, ...
    as_of               TIMESTAMPTZ NOT NULL,           -- candle close time
    price               NUMERIC(20, 8),                 -- close
    ema20               NUMERIC(20, 8),
    ema50               NUMERIC(20, 8),
    macd                NUMERIC(20, 8),
    rsi7                NUMERIC(8, 4),
    rsi14               NUMERIC(8, 4),
    funding_rate        NUMERIC(10, 8),
    open_interest       NUMERIC(24, 4),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- additions (seed 001 and the candle itself)
    open_interest_avg   NUMERIC(24, 4),                 -- mean over the trailing 24 h
    open                NUMERIC(20, 8),
    high                NUMERIC(20, 8),
    low                 NUMERIC(20, 8),
    volume              NUMERIC(28, 8),                 -- contracts
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (symbol, timeframe, as_of)
);

-- Latest price per instrument (tickers / mark price): for unrealized PnL and equity.
CREATE TABLE aitrader.market_prices (
    symbol              TEXT PRIMARY KEY,
    last_price          NUMERIC(20, 8),
    mark_price          NUMERIC(20, 8),
    bid_price           NUMERIC(20, 8),
    ask_price           NUMERIC(20, 8),
    as_of               TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE aitrader.funding_rates (
    symbol              TEXT NOT NULL,
    as_of               TIMESTAMPTZ NOT NULL,
    funding_rate        NUMERIC(10, 8) NOT NULL,
    funding_time        TIMESTAMPTZ,
    next_funding_time   TIMESTAMPTZ,
    PRIMARY KEY (symbol, as_of)
);

CREATE TABLE aitrader.open_interest (
    symbol              TEXT NOT NULL,
    as_of               TIMESTAMPTZ NOT NULL,
    open_interest       NUMERIC(24, 4) NOT NULL,        -- contracts
    open_interest_ccy   NUMERIC(28, 8),
    PRIMARY KEY (symbol, as_of)
);

-- Equity history (seed 001): sampled by the metrics service. -------------------------------
CREATE TABLE aitrader.equity_snapshots (
    id                  BIGSERIAL PRIMARY KEY,
    account_id          UUID NOT NULL REFERENCES aitrader.accounts (id),
    equity              NUMERIC(24, 8) NOT NULL,
    cash                NUMERIC(24, 8) NOT NULL,
    net_position_value  NUMERIC(24, 8) NOT NULL,
    unrealized_pnl      NUMERIC(24, 8) NOT NULL,
    as_of               TIMESTAMPTZ NOT NULL,
    source              TEXT NOT NULL DEFAULT 'calculated' CHECK (source IN ('exchange', 'calculated'))
);
CREATE INDEX equity_snapshots_account_time ON aitrader.equity_snapshots (account_id, as_of);

-- Performance per account and window. "window" is reserved in PostgreSQL: always quoted. -----
CREATE TABLE aitrader.performance_snapshots (
    id                      BIGSERIAL PRIMARY KEY,
    account_id              UUID NOT NULL REFERENCES aitrader.accounts (id),
    "window"                TEXT NOT NULL CHECK ("window" IN ('daily', 'weekly', 'all_time')),
    sharpe_ratio            NUMERIC(10, 6),
    win_rate                NUMERIC(6, 4),
    average_leverage        NUMERIC(10, 4),
    average_confidence      NUMERIC(5, 2),
    biggest_win_usdt        NUMERIC(24, 8),
    biggest_loss_usdt       NUMERIC(24, 8),
    hold_ratio_long         NUMERIC(6, 4),
    hold_ratio_short        NUMERIC(6, 4),
    hold_ratio_flat         NUMERIC(6, 4),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- additions
    window_start            TIMESTAMPTZ,                -- null for all_time with no history
    window_end              TIMESTAMPTZ,
    definitions_version     TEXT NOT NULL DEFAULT '1',
    closed_positions        INTEGER NOT NULL DEFAULT 0,
    realized_pnl_usdt       NUMERIC(24, 8),
    UNIQUE (account_id, "window")
);

-- Confidence calibration: closed positions by confidence bucket, per account and window.
CREATE TABLE aitrader.confidence_calibration (
    account_id          UUID NOT NULL REFERENCES aitrader.accounts (id),
    "window"            TEXT NOT NULL CHECK ("window" IN ('daily', 'weekly', 'all_time')),
    bucket              TEXT NOT NULL CHECK (bucket IN ('0-50', '50-70', '70-85', '85-100')),
    closed_positions    INTEGER NOT NULL,
    win_rate            NUMERIC(6, 4),
    mean_pnl_usdt       NUMERIC(24, 8),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, "window", bucket)
);

-- MCP API tokens: only a SHA-256 of the token is stored. ------------------------------------
CREATE TABLE aitrader.api_tokens (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id          UUID NOT NULL REFERENCES aitrader.accounts (id),
    token_hash          TEXT NOT NULL UNIQUE,
    token_prefix        TEXT NOT NULL,                  -- first characters, to recognise a token
    scopes              TEXT[] NOT NULL CHECK (scopes <@ ARRAY['read', 'trade']::TEXT[]),
    label               TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at        TIMESTAMPTZ,
    revoked_at          TIMESTAMPTZ
);
CREATE INDEX api_tokens_account ON aitrader.api_tokens (account_id);

-- Messages that can never be processed: kept with their reason for a person to look at. ----
CREATE TABLE aitrader.dead_letters (
    id                  BIGSERIAL PRIMARY KEY,
    service             TEXT NOT NULL,
    subject             TEXT NOT NULL,
    reason              TEXT NOT NULL,
    error_type          TEXT,
    payload             TEXT NOT NULL,
    headers             JSONB NOT NULL DEFAULT '{}'::jsonb,
    account_id          UUID,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_time ON aitrader.dead_letters (created_at DESC);
