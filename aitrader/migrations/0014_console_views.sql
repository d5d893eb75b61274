-- The console's further views (docs/console.md, issue #17): the equity history, the metrics
-- service's performance rows, calibration and exit attribution, exit-plan history, funding
-- payments, and the market tables (candles with indicators, funding rates).
--
-- The account-keyed tables already have row-level security and the console's policy (0013
-- enabled it on every table with an account_id column); the market tables are not account data
-- and any console token may read them. SELECT only, as before.
GRANT SELECT ON aitrader.equity_snapshots, aitrader.performance_snapshots,
    aitrader.confidence_calibration, aitrader.exit_attribution, aitrader.exit_plan_history,
    aitrader.funding_payments, aitrader.market_snapshots, aitrader.funding_rates
    TO aitrader_console;

-- The console's pages: keyset on (time, id) per account, newest first (an index read backwards).
CREATE INDEX exit_plan_history_account_page ON aitrader.exit_plan_history (account_id, created_at, id);
CREATE INDEX funding_payments_account_page ON aitrader.funding_payments (account_id, "timestamp", id);
