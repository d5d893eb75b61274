-- Reconciliation of algo (TP/SL) orders (docs/reconciliation.md, the algo stage): an orphan
-- algo cancelled on the exchange ('canceled'), or a stored exit plan with nothing resting.
ALTER TABLE aitrader.reconciliation_issues DROP CONSTRAINT reconciliation_issues_kind_check;
ALTER TABLE aitrader.reconciliation_issues ADD CONSTRAINT reconciliation_issues_kind_check
    CHECK (kind IN ('position', 'balance', 'order', 'fill', 'algo'));
ALTER TABLE aitrader.reconciliation_issues DROP CONSTRAINT reconciliation_issues_resolution_check;
ALTER TABLE aitrader.reconciliation_issues ADD CONSTRAINT reconciliation_issues_resolution_check
    CHECK (resolution IN ('backfill', 'exchange_wins', 'exchange_state', 'refreshed',
                          'vanished', 'canceled'));
