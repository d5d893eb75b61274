-- Reconciliation (docs/reconciliation.md): every difference found between the exchange and the
-- ledger is a row here, open until it is healed; an account knows when it was last compared.
CREATE TABLE aitrader.reconciliation_issues (
    id              UUID PRIMARY KEY,
    account_id      UUID NOT NULL REFERENCES aitrader.accounts (id),
    kind            TEXT NOT NULL CHECK (kind IN ('position', 'balance', 'order', 'fill')),
    subject         TEXT NOT NULL,          -- symbol:pos_side, an order id, a trade id, a currency
    expected        JSONB NOT NULL,         -- the exchange's view
    found           JSONB NOT NULL,         -- the ledger's view
    first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at     TIMESTAMPTZ,
    resolution      TEXT CHECK (resolution IN
                        ('backfill', 'exchange_wins', 'exchange_state', 'refreshed', 'vanished')),
    healing         JSONB,                  -- the entries made to heal it (synthetic fills, ...)
    CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);
-- One open issue per thing: a difference seen again updates last_seen_at.
CREATE UNIQUE INDEX reconciliation_issues_open
    ON aitrader.reconciliation_issues (account_id, kind, subject) WHERE resolved_at IS NULL;
CREATE INDEX reconciliation_issues_account_time
    ON aitrader.reconciliation_issues (account_id, first_seen_at DESC);

ALTER TABLE aitrader.accounts ADD COLUMN last_reconciled_at TIMESTAMPTZ;

-- A position closed by a reconciliation entry (the exchange no longer held it).
ALTER TABLE aitrader.positions_closed DROP CONSTRAINT positions_closed_exit_reason_check;
ALTER TABLE aitrader.positions_closed ADD CONSTRAINT positions_closed_exit_reason_check
    CHECK (exit_reason IN ('agent', 'liquidation', 'adl', 'external', 'reconcile'));
