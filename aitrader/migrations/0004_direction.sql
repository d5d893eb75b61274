-- A position's direction, the sign every valuation multiplies by: +1 long, -1 short, NULL for
-- any other side. One definition for open positions (positions_valued, redefined here on it)
-- and closed ones (the metrics service's notionals). An inlined SQL function: no call cost.
CREATE FUNCTION aitrader.direction(side text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE side WHEN 'long' THEN 1 WHEN 'short' THEN -1 END $$;

-- As in 0003, with the sign from aitrader.direction: unrealized_pnl_usdt = direction x
-- (mark - entry) x coin quantity, else the exchange's own figure, else NULL; notional_usdt =
-- coin quantity x mark; signed_notional_usdt = direction x notional_usdt. Exact NUMERIC, the
-- same values and types as before.
CREATE OR REPLACE VIEW aitrader.positions_valued AS
SELECT p.id, p.account_id, p.symbol, p.side, p.pos_side, p.quantity, p.avg_entry_price,
       p.leverage, p.margin_usdt, p.liquidation_price, p.exit_plan, p.confidence_weight_sum,
       p.confidence_quantity, p.opened_at, p.updated_at,
       s.base_asset, k.direction, k.coin_quantity, k.mark_price,
       COALESCE(k.direction * (k.mark_price - p.avg_entry_price) * k.coin_quantity,
                p.unrealized_pnl_usdt) AS unrealized_pnl_usdt,
       k.coin_quantity * k.mark_price AS notional_usdt,
       k.direction * (k.coin_quantity * k.mark_price) AS signed_notional_usdt
FROM aitrader.positions_open p
LEFT JOIN aitrader.contract_sizes s ON s.symbol = p.symbol
LEFT JOIN aitrader.market_prices m ON m.symbol = p.symbol
CROSS JOIN LATERAL (
    SELECT p.quantity * s.contract_size AS coin_quantity,
           COALESCE(m.mark_price, m.last_price, p.mark_price) AS mark_price,
           aitrader.direction(p.side) AS direction
) k;
