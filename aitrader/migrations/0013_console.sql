-- The console (docs/console.md, issue #17): tokens with the `console` scope bound to one account
-- or a set of accounts, one rule for "this token is good now" (aitrader.token_grants), and a
-- login role the console connects as, held by row-level security to its token's accounts.
--
-- The services connect as the schema's owner (a superuser here): RLS does not apply to them.

-- Scopes: `console` reads the console API; `read` / `trade` are the MCP gateway's.
ALTER TABLE aitrader.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE aitrader.api_tokens ADD CONSTRAINT api_tokens_scopes_check
    CHECK (scopes <@ ARRAY['read', 'trade', 'console']::TEXT[]);

-- A token's accounts: its own api_tokens.account_id (the one-account binding every token has,
-- the only one the gateway uses) plus the rows here (a console token for a set of accounts).
CREATE TABLE aitrader.token_accounts (
    token_id    UUID NOT NULL REFERENCES aitrader.api_tokens (id) ON DELETE CASCADE,
    account_id  UUID NOT NULL REFERENCES aitrader.accounts (id),
    PRIMARY KEY (token_id, account_id)
);

-- The one rule: a token (by its SHA-256) is good when not revoked and not expired; it grants
-- its accounts that are active. `home` marks its own account_id.
CREATE FUNCTION aitrader.token_grants(digest TEXT)
    RETURNS TABLE (token_id UUID, scopes TEXT[], account_id UUID, home BOOLEAN)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id, t.scopes, a.id, a.id = t.account_id
    FROM aitrader.api_tokens t
    JOIN aitrader.accounts a
      ON a.id = t.account_id
      OR a.id IN (SELECT ta.account_id FROM aitrader.token_accounts ta WHERE ta.token_id = t.id)
    WHERE t.token_hash = digest AND t.revoked_at IS NULL
      AND (t.expires_at IS NULL OR t.expires_at > now()) AND a.status = 'active'
$$;

-- A bearer token's check (gateway and console): its grants with each account's external id and
-- mode; last_used_at is written when it is a minute old or more, not on every call.
CREATE FUNCTION aitrader.verify_token(digest TEXT)
    RETURNS TABLE (token_id UUID, scopes TEXT[], account_id UUID, external_id TEXT, mode TEXT,
                   home BOOLEAN)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH hit AS (
        SELECT g.*, a.external_id, a.mode
        FROM aitrader.token_grants(digest) g JOIN aitrader.accounts a ON a.id = g.account_id
    ), touched AS (
        UPDATE aitrader.api_tokens SET last_used_at = now()
        WHERE id = (SELECT DISTINCT h.token_id FROM hit h)
          AND (last_used_at IS NULL OR last_used_at <= now() - interval '1 minute')
    )
    SELECT h.token_id, h.scopes, h.account_id, h.external_id, h.mode, h.home
    FROM hit h ORDER BY h.home DESC, h.external_id
$$;

-- What the row-level security policies admit: the active accounts of the console token whose
-- SHA-256 the transaction set (`set_config('aitrader.console_token_hash', digest, true)`);
-- nothing when it is unset, empty, unknown, revoked, expired or not a console token. A query
-- that sets another value still needs another valid token's hash, which the role cannot read.
CREATE FUNCTION aitrader.console_account_ids()
    RETURNS UUID[]
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(array_agg(g.account_id), '{}')
    FROM aitrader.token_grants(NULLIF(current_setting('aitrader.console_token_hash', true), '')) g
    WHERE 'console' = ANY (g.scopes)
$$;

REVOKE EXECUTE ON FUNCTION aitrader.token_grants(TEXT), aitrader.verify_token(TEXT),
    aitrader.console_account_ids() FROM PUBLIC;

-- The console's role (AITRADER_CONSOLE_DB_ROLE names the one it connects as; another role is
-- given these rights with `GRANT aitrader_console TO it`). Roles belong to the cluster, not to
-- the database: several databases of one server (the tests') create it once.
-- ALTER only when an attribute is wrong: two concurrent ALTERs of one role can fail.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aitrader_console') THEN
        BEGIN
            CREATE ROLE aitrader_console LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of this server created it meanwhile
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'aitrader_console'
               AND (rolsuper OR rolbypassrls OR rolcreatedb OR rolcreaterole OR NOT rolcanlogin)) THEN
        ALTER ROLE aitrader_console LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA aitrader TO aitrader_console;
GRANT EXECUTE ON FUNCTION aitrader.verify_token(TEXT), aitrader.console_account_ids()
    TO aitrader_console;
-- What the console reads: the account-keyed tables and views of its endpoints, and the market
-- tables the valuation views join (not account data). Nothing else, and no write.
GRANT SELECT ON aitrader.accounts, aitrader.positions_open, aitrader.positions_closed,
    aitrader.orders, aitrader.fills, aitrader.mcp_tool_calls, aitrader.balance_snapshots,
    aitrader.instruments, aitrader.market_prices, aitrader.contract_sizes,
    aitrader.positions_valued, aitrader.account_equity_now
    TO aitrader_console;

-- Row-level security on every table with an account_id column (and on accounts, by its id):
-- a role that is neither the owner nor a superuser sees only the console token's accounts,
-- whatever its query says. One policy per table, for reading; no policy for writing (denied).
DO $$
DECLARE
    tbl TEXT;
BEGIN
    FOR tbl IN
        SELECT c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'account_id' AND NOT a.attisdropped
        WHERE n.nspname = 'aitrader' AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE format('ALTER TABLE aitrader.%I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY console_accounts ON aitrader.%I FOR SELECT '
                       'USING (account_id = ANY ((SELECT aitrader.console_account_ids())::UUID[]))', tbl);
    END LOOP;
END
$$;
ALTER TABLE aitrader.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY console_accounts ON aitrader.accounts FOR SELECT
    USING (id = ANY ((SELECT aitrader.console_account_ids())::UUID[]));

-- A view runs with its owner's rights unless security_invoker is set (PostgreSQL 15+): owned by
-- a superuser it would bypass the policies above. Every view of the schema runs as its caller.
-- CREATE OR REPLACE VIEW resets the option: a later migration redefining a view sets it again
-- (tests/console/test_isolation.py fails otherwise).
DO $$
DECLARE
    v TEXT;
BEGIN
    FOR v IN
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'aitrader' AND c.relkind = 'v'
    LOOP
        EXECUTE format('ALTER VIEW aitrader.%I SET (security_invoker = true)', v);
    END LOOP;
END
$$;

-- The console's pages: keyset on (time, id) per account, newest first (an index read backwards).
CREATE INDEX positions_closed_account_page ON aitrader.positions_closed (account_id, exit_time, id);
CREATE INDEX orders_account_page ON aitrader.orders (account_id, created_at, id);
CREATE INDEX fills_account_page ON aitrader.fills (account_id, "timestamp", id);
CREATE INDEX mcp_tool_calls_account_page ON aitrader.mcp_tool_calls (account_id, created_at, id);
