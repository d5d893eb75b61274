-- Max drawdown per account and window, stored by the metrics service with its performance row
-- (docs/metrics.md): the largest fall from a running peak of equity, in percent of that peak,
-- over the window's equity points; 4 decimals. The console's leaderboard reads it instead of
-- computing it over every equity point per request (docs/console.md). NUMERIC(32, 4) holds any
-- fall of NUMERIC(24, 8) equity from a peak of at least 1e-8 (equity may go below zero: > 100).
ALTER TABLE aitrader.performance_snapshots ADD COLUMN max_drawdown_pct NUMERIC(32, 4)
    CHECK (max_drawdown_pct >= 0);
