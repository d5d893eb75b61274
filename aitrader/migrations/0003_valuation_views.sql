-- Valuation in one place: what an open position and an account are worth now. The gateway's
-- account state and the metrics service's equity snapshots both read these views, so the rule
-- (contract size, the latest mark, unrealized PnL, live equity) has one definition. Everything
-- is NUMERIC: products and sums are exact, nothing is rounded here.

-- One contract of an instrument, in its base asset.
CREATE VIEW aitrader.contract_sizes AS
SELECT symbol, base_asset, ct_val * ct_mult AS contract_size
FROM aitrader.instruments;

-- Every open position, valued at the latest mark: market_prices' mark, else its last price,
-- else the exchange's mark stored on the position. direction is +1 long, -1 short (NULL for
-- any other side); coin_quantity is NULL without an instrument. unrealized_pnl_usdt is
-- (mark - entry) x coin quantity for a long, (entry - mark) x coin quantity for a short, else
-- the exchange's own figure, else NULL; notional_usdt = coin quantity x mark;
-- signed_notional_usdt = notional_usdt, negative for a short.
CREATE VIEW aitrader.positions_valued AS
SELECT p.id, p.account_id, p.symbol, p.side, p.pos_side, p.quantity, p.avg_entry_price,
       p.leverage, p.margin_usdt, p.liquidation_price, p.exit_plan, p.confidence_weight_sum,
       p.confidence_quantity, p.opened_at, p.updated_at,
       s.base_asset, k.direction, k.coin_quantity, k.mark_price,
       COALESCE(CASE p.side WHEN 'long' THEN (k.mark_price - p.avg_entry_price) * k.coin_quantity
                            WHEN 'short' THEN (p.avg_entry_price - k.mark_price) * k.coin_quantity END,
                p.unrealized_pnl_usdt) AS unrealized_pnl_usdt,
       k.coin_quantity * k.mark_price AS notional_usdt,
       CASE p.side WHEN 'long' THEN k.coin_quantity * k.mark_price
                   WHEN 'short' THEN -(k.coin_quantity * k.mark_price) END AS signed_notional_usdt
FROM aitrader.positions_open p
LEFT JOIN aitrader.contract_sizes s ON s.symbol = p.symbol
LEFT JOIN aitrader.market_prices m ON m.symbol = p.symbol
CROSS JOIN LATERAL (
    SELECT p.quantity * s.contract_size AS coin_quantity,
           COALESCE(m.mark_price, m.last_price, p.mark_price) AS mark_price,
           CASE p.side WHEN 'long' THEN 1 WHEN 'short' THEN -1 END AS direction
) k;

-- Every account (id, external_id, mode, status) with its latest balance and its live equity: cash (the exchange's cashBal,
-- else available + locked) plus the open positions' unrealized PnL at the latest mark. NULL
-- without a balance or when any open position's PnL is unknown; net_position_value_usdt (the
-- sum of signed notionals) is NULL when any open position has no mark, direction or instrument.
CREATE VIEW aitrader.account_equity_now AS
SELECT a.id AS account_id, a.external_id, a.mode, a.status,
       b.as_of AS balance_as_of, b.available_usdt, b.locked_usdt,
       b.cash_usdt, b.equity_usdt AS exchange_equity_usdt,
       c.cash AS equity_cash_usdt, v.open_positions, v.unrealized_pnl_usdt,
       v.net_position_value_usdt, c.cash + v.unrealized_pnl_usdt AS equity_usdt
FROM aitrader.accounts a
LEFT JOIN LATERAL (
    SELECT available_usdt, locked_usdt, cash_usdt, equity_usdt, as_of
    FROM aitrader.balance_snapshots WHERE account_id = a.id ORDER BY as_of DESC LIMIT 1
) b ON true
CROSS JOIN LATERAL (SELECT COALESCE(b.cash_usdt, b.available_usdt + b.locked_usdt) AS cash) c
CROSS JOIN LATERAL (
    SELECT count(*) AS open_positions,
           CASE WHEN count(*) = count(pv.unrealized_pnl_usdt)
                THEN COALESCE(sum(pv.unrealized_pnl_usdt), 0) END AS unrealized_pnl_usdt,
           CASE WHEN count(*) = count(pv.signed_notional_usdt)
                THEN COALESCE(sum(pv.signed_notional_usdt), 0) END AS net_position_value_usdt
    FROM aitrader.positions_valued pv WHERE pv.account_id = a.id
) v;
