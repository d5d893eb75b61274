-- The console's reads (docs/console.md, issue #17): dead letters per account, resting stops, and
-- a cheaper form of the token rule.
--
-- Dead letters of an account: the writer (shared/consumer.py) now fills dead_letters.account_id
-- from the message's subject or body; 0013 already put row-level security and the console's
-- policy on the table (it has an account_id column), so the console role sees the dead letters
-- of its token's accounts only, and none without an account. SELECT on the columns it shows
-- (not the raw bytes).
GRANT SELECT (id, account_id, service, subject, reason, error_type, payload, headers, stream,
    stream_seq, created_at) ON aitrader.dead_letters TO aitrader_console;
CREATE INDEX dead_letters_account_page ON aitrader.dead_letters (account_id, created_at, id)
    WHERE account_id IS NOT NULL;

-- The rows written before: the account a subject `<root>.account.<id>.…` or
-- `<root>.positions.<id>.…` names, when it is one.
UPDATE aitrader.dead_letters d SET account_id = a.id
FROM aitrader.accounts a
WHERE d.account_id IS NULL
  AND a.id::text = substring(d.subject FROM
      '\.(?:account|positions)\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\.|$)');

-- Whether a stop-loss rests on the exchange now for an open position: a live algo order of its
-- slot (account, symbol, pos_side) on its closing side with a stop-loss trigger, last updated
-- at or after the position opened (an older one belonged to an earlier position of the slot).
-- One definition for the gateway's account state (services/mcp_gateway/exit_view.py) and the
-- console's open positions. Inlined by the planner (one SQL expression).
CREATE FUNCTION aitrader.stop_loss_resting(account_id uuid, symbol text, pos_side text, side text,
        opened_at timestamptz) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT EXISTS (
        SELECT 1 FROM aitrader.algo_orders a
        WHERE a.account_id = $1 AND a.symbol = $2 AND a.pos_side = $3
          AND a.side = aitrader.closing_side($4) AND a.sl_trigger_px IS NOT NULL
          AND a.state = 'live' AND ($5 IS NULL OR a.exchange_updated_at >= $5))
    $$;
-- The console calls it as itself (row-level security holds): the columns it reads, not OKX's payload.
GRANT SELECT (account_id, symbol, pos_side, side, state, sl_trigger_px, exchange_updated_at)
    ON aitrader.algo_orders TO aitrader_console;

-- The same rule as 0013, written so that a token of many accounts costs one index probe per
-- account: 0013's `ON a.id = t.account_id OR a.id IN (…)` re-read the token's set for every
-- account row (a token of 100 accounts: 10,000 comparisons, ~1.1 ms, paid by every console
-- query through the policies' console_account_ids()).
CREATE OR REPLACE FUNCTION aitrader.token_grants(digest TEXT)
    RETURNS TABLE (token_id UUID, scopes TEXT[], account_id UUID, home BOOLEAN)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id, t.scopes, a.id, a.id = t.account_id
    FROM aitrader.api_tokens t
    CROSS JOIN LATERAL (
        SELECT t.account_id AS id
        UNION
        SELECT ta.account_id FROM aitrader.token_accounts ta WHERE ta.token_id = t.id
    ) granted
    JOIN aitrader.accounts a ON a.id = granted.id
    WHERE t.token_hash = digest AND t.revoked_at IS NULL
      AND (t.expires_at IS NULL OR t.expires_at > now()) AND a.status = 'active'
$$;

-- The policies of 0013 as a hashed set instead of an array: `account_id = ANY (array)` became
-- an index condition of every scan, and the index re-sorts a 100-account array at each rescan
-- (a leaderboard of 100 accounts rescans its laterals 600 times: 17 ms as the console against
-- 3 ms as the owner; 5 ms with the set). Same rows: an account in the token's set, never NULL.
DO $$
DECLARE
    tbl TEXT;
BEGIN
    FOR tbl IN
        SELECT c.relname FROM pg_policy p
        JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'aitrader' AND p.polname = 'console_accounts'
    LOOP
        EXECUTE format('ALTER POLICY console_accounts ON aitrader.%I '
                       'USING (%I IN (SELECT unnest(aitrader.console_account_ids())))',
                       tbl, CASE WHEN tbl = 'accounts' THEN 'id' ELSE 'account_id' END);
    END LOOP;
END
$$;
