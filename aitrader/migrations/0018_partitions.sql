-- Monthly range partitions (seed 001 §7, issue #18; docs/retention.md) for the five tables that
-- grow with time: fills ("timestamp", the exchange's fill time), market_snapshots, balance_snapshots
-- and equity_snapshots (as_of), mcp_tool_calls (created_at). Each gets one partition per UTC month
-- (`<table>_pYYYYMM`) and a DEFAULT partition, so no row is ever refused; the retention job
-- (`aitrader retention`, shared/retention) creates the months ahead and archives old ones.
--
-- A unique key of a partitioned table must contain the partition key. Where the key the ledger
-- needs does not, a small unpartitioned key table keeps it enforced for any writer, through a
-- BEFORE INSERT trigger that claims the key:
--   fills: (account_id, symbol, exchange_trade_id) in aitrader.fill_keys (a repeated trade id
--          raises unique_violation as the old constraint did, whatever its fill time);
--   mcp_tool_calls: id in aitrader.mcp_tool_call_keys (kept when a call is archived: orders
--          and exit-plan history keep their foreign key to it).
-- The other three tables' keys already hold the time: (id, as_of) and their natural keys.
--
-- An existing database is converted in place: each table is renamed, recreated partitioned with
-- the same columns, defaults, checks, grants and row-level security, its rows copied, and the old
-- one dropped. The view on balance_snapshots is re-pointed at the new table.

-- Row-level security and policies of one relation onto another (a new table, a new partition):
-- a partition read directly (by a role granted it) is held by the same policy as its parent.
CREATE FUNCTION aitrader.copy_row_security(source REGCLASS, target REGCLASS) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    p RECORD;
BEGIN
    IF (SELECT relrowsecurity FROM pg_class WHERE oid = source) THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    END IF;
    IF (SELECT relforcerowsecurity FROM pg_class WHERE oid = source) THEN
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    END IF;
    FOR p IN
        SELECT s.polname, s.polpermissive, s.polcmd, pg_get_expr(s.polqual, s.polrelid) AS qual,
               pg_get_expr(s.polwithcheck, s.polrelid) AS checked,
               (SELECT string_agg(CASE WHEN r.oid = 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END, ', ')
                  FROM unnest(s.polroles) AS r(oid) LEFT JOIN pg_roles g ON g.oid = r.oid) AS roles
        FROM pg_policy s
        WHERE s.polrelid = source
          AND s.polname NOT IN (SELECT t.polname FROM pg_policy t WHERE t.polrelid = target)
    LOOP
        EXECUTE format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, target,
            CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
            CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                          WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
            p.roles, ' USING (' || p.qual || ')', ' WITH CHECK (' || p.checked || ')');
    END LOOP;
END
$$;

-- The partition of one UTC month, created when missing: `<parent>_pYYYYMM` for [month, month + 1).
-- Rows of that month already in the DEFAULT partition are moved into it first (attaching a range
-- the default holds rows of would fail), with the parent locked against readers meanwhile.
-- Created standalone, then attached: with nothing to move, attaching locks the parent less than
-- CREATE TABLE ... PARTITION OF. True when it created the partition.
CREATE FUNCTION aitrader.ensure_month_partition(parent REGCLASS, in_month DATE) RETURNS boolean
    LANGUAGE plpgsql AS $$
DECLARE
    lo TIMESTAMPTZ := date_trunc('month', in_month)::timestamp AT TIME ZONE 'UTC';
    hi TIMESTAMPTZ := (date_trunc('month', in_month) + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    part TEXT := (SELECT relname FROM pg_class WHERE oid = parent) || '_p'
                 || to_char(date_trunc('month', in_month), 'YYYYMM');
    key TEXT;
    dflt REGCLASS;
    waiting BOOLEAN := false;
BEGIN
    IF to_regclass(format('aitrader.%I', part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    SELECT a.attname INTO key FROM pg_partitioned_table p
        JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
        WHERE p.partrelid = parent;
    SELECT i.inhrelid::regclass INTO dflt FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
    BEGIN
        EXECUTE format('CREATE TABLE aitrader.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                       'INCLUDING STORAGE)', part, parent);
    EXCEPTION WHEN duplicate_table OR unique_violation THEN  -- the latter: a catalog race
        RETURN false;  -- another session (a restore, a second run) created it meanwhile
    END;
    IF dflt IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE %I >= $1 AND %I < $2)', dflt, key, key)
            INTO waiting USING lo, hi;
    END IF;
    IF waiting THEN
        -- A query of the parent planned before the attach would not see the new partition, and
        -- would no longer see the rows in DEFAULT: no reader while they move.
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', parent);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= $1 AND %I < $2 RETURNING *) '
                       'INSERT INTO aitrader.%I SELECT * FROM moved', dflt, key, key, part)
            USING lo, hi;
    END IF;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION aitrader.%I FOR VALUES FROM (%L) TO (%L)',
                   parent, part, lo, hi);
    PERFORM aitrader.copy_row_security(parent, format('aitrader.%I', part)::regclass);
    RETURN true;
END
$$;

-- The conversion, for this migration only (pg_temp: gone when its session ends).
-- Step 1: the table renamed <t>_unpartitioned, stripped of its indexes (their names are taken
-- by the new table's); the new partitioned <t> with its columns, defaults, checks, grants, row
-- security, sequence, DEFAULT partition and the months of its rows plus the next two; rows copied.
CREATE FUNCTION pg_temp.repartition(tbl TEXT, key TEXT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old TEXT := tbl || '_unpartitioned';
    r RECORD;
    seq TEXT;
BEGIN
    EXECUTE format('ALTER TABLE aitrader.%I RENAME TO %I', tbl, old);
    FOR r IN SELECT conname FROM pg_constraint
             WHERE conrelid = format('aitrader.%I', old)::regclass AND contype IN ('p', 'u') LOOP
        EXECUTE format('ALTER TABLE aitrader.%I DROP CONSTRAINT %I', old, r.conname);
    END LOOP;
    FOR r IN SELECT indexrelid::regclass AS idx FROM pg_index
             WHERE indrelid = format('aitrader.%I', old)::regclass LOOP
        EXECUTE format('DROP INDEX %s', r.idx);
    END LOOP;
    EXECUTE format('CREATE TABLE aitrader.%I (LIKE aitrader.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (%I)', tbl, old, key);
    seq := pg_get_serial_sequence(format('aitrader.%I', old), 'id');
    IF seq IS NOT NULL THEN
        EXECUTE format('ALTER SEQUENCE %s OWNED BY aitrader.%I.id', seq, tbl);
    END IF;
    FOR r IN SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                           ELSE quote_ident(g.rolname) END AS grantee
             FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee
             WHERE c.oid = format('aitrader.%I', old)::regclass AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT %s ON aitrader.%I TO %s', r.privilege_type, tbl, r.grantee);
    END LOOP;
    PERFORM aitrader.copy_row_security(format('aitrader.%I', old)::regclass,
                                       format('aitrader.%I', tbl)::regclass);
    EXECUTE format('CREATE TABLE aitrader.%I PARTITION OF aitrader.%I DEFAULT', tbl || '_default', tbl);
    PERFORM aitrader.copy_row_security(format('aitrader.%I', tbl)::regclass,
                                       format('aitrader.%I', tbl || '_default')::regclass);
    FOR r IN EXECUTE format(
        'SELECT DISTINCT date_trunc(''month'', %I AT TIME ZONE ''UTC'')::date AS m FROM aitrader.%I '
        'UNION SELECT (date_trunc(''month'', now() AT TIME ZONE ''UTC'') + n * interval ''1 month'')::date '
        'FROM generate_series(0, 2) AS n', key, old) LOOP
        PERFORM aitrader.ensure_month_partition(format('aitrader.%I', tbl)::regclass, r.m);
    END LOOP;
    EXECUTE format('INSERT INTO aitrader.%I SELECT * FROM aitrader.%I', tbl, old);
END
$$;

-- The views on these tables, as they are defined now (re-pointed at the new tables below).
CREATE TEMP TABLE repartition_views ON COMMIT DROP AS
SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS definition
FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class v ON v.oid = w.ev_class
WHERE v.relkind = 'v' AND d.refobjid IN ('aitrader.fills'::regclass, 'aitrader.market_snapshots'::regclass,
    'aitrader.balance_snapshots'::regclass, 'aitrader.equity_snapshots'::regclass,
    'aitrader.mcp_tool_calls'::regclass);

ALTER TABLE aitrader.orders DROP CONSTRAINT orders_tool_call_id_fkey;
ALTER TABLE aitrader.exit_plan_history DROP CONSTRAINT exit_plan_history_tool_call_id_fkey;

SELECT pg_temp.repartition('fills', 'timestamp');
SELECT pg_temp.repartition('mcp_tool_calls', 'created_at');
SELECT pg_temp.repartition('market_snapshots', 'as_of');
SELECT pg_temp.repartition('balance_snapshots', 'as_of');
SELECT pg_temp.repartition('equity_snapshots', 'as_of');

-- Keys and indexes, named as before (each index is created on every partition).
ALTER TABLE aitrader.fills ADD CONSTRAINT fills_pkey PRIMARY KEY (id, "timestamp"),
    ADD CONSTRAINT fills_account_id_fkey FOREIGN KEY (account_id) REFERENCES aitrader.accounts (id),
    ADD CONSTRAINT fills_order_id_fkey FOREIGN KEY (order_id) REFERENCES aitrader.orders (id);
CREATE INDEX fills_fold_order ON aitrader.fills (account_id, symbol, "timestamp", exchange_trade_id);
CREATE INDEX fills_order ON aitrader.fills (order_id);
CREATE INDEX fills_account_time ON aitrader.fills (account_id, "timestamp" DESC);
CREATE INDEX fills_account_page ON aitrader.fills (account_id, "timestamp", id);

ALTER TABLE aitrader.mcp_tool_calls ADD CONSTRAINT mcp_tool_calls_pkey PRIMARY KEY (id, created_at),
    ADD CONSTRAINT mcp_tool_calls_account_id_fkey FOREIGN KEY (account_id) REFERENCES aitrader.accounts (id);
CREATE INDEX mcp_tool_calls_account_time ON aitrader.mcp_tool_calls (account_id, created_at DESC);
CREATE INDEX mcp_tool_calls_tool_time ON aitrader.mcp_tool_calls (tool_name, created_at DESC);
CREATE INDEX mcp_tool_calls_account_page ON aitrader.mcp_tool_calls (account_id, created_at, id);

ALTER TABLE aitrader.market_snapshots ADD CONSTRAINT market_snapshots_pkey PRIMARY KEY (id, as_of),
    ADD CONSTRAINT market_snapshots_symbol_timeframe_as_of_key UNIQUE (symbol, timeframe, as_of);

ALTER TABLE aitrader.balance_snapshots ADD CONSTRAINT balance_snapshots_pkey PRIMARY KEY (id, as_of),
    ADD CONSTRAINT balance_snapshots_account_id_as_of_key UNIQUE (account_id, as_of),
    ADD CONSTRAINT balance_snapshots_account_id_fkey FOREIGN KEY (account_id) REFERENCES aitrader.accounts (id);

ALTER TABLE aitrader.equity_snapshots ADD CONSTRAINT equity_snapshots_pkey PRIMARY KEY (id, as_of),
    ADD CONSTRAINT equity_snapshots_account_id_fkey FOREIGN KEY (account_id) REFERENCES aitrader.accounts (id);
CREATE INDEX equity_snapshots_account_time ON aitrader.equity_snapshots (account_id, as_of);

-- The fill ledger's idempotency key, whatever the fill time: one row per OKX trade, for ever
-- (fills are never archived). The trigger raises what the old unique constraint raised.
CREATE TABLE aitrader.fill_keys (
    account_id          UUID NOT NULL,
    symbol              TEXT NOT NULL,
    exchange_trade_id   TEXT NOT NULL,
    "timestamp"         TIMESTAMPTZ NOT NULL,   -- where the fill is: its partition
    PRIMARY KEY (account_id, symbol, exchange_trade_id)
);
INSERT INTO aitrader.fill_keys SELECT account_id, symbol, exchange_trade_id, "timestamp" FROM aitrader.fills;
SELECT aitrader.copy_row_security('aitrader.fills', 'aitrader.fill_keys');
CREATE FUNCTION aitrader.claim_fill_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO aitrader.fill_keys VALUES (NEW.account_id, NEW.symbol, NEW.exchange_trade_id, NEW."timestamp")
        ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE unique_violation USING
            MESSAGE = 'duplicate key value violates unique constraint "fills_account_id_symbol_exchange_trade_id_key"',
            DETAIL = format('Key (account_id, symbol, exchange_trade_id)=(%s, %s, %s) already exists.',
                            NEW.account_id, NEW.symbol, NEW.exchange_trade_id),
            CONSTRAINT = 'fills_account_id_symbol_exchange_trade_id_key', SCHEMA = 'aitrader', TABLE = 'fills';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER fills_claim_key BEFORE INSERT ON aitrader.fills
    FOR EACH ROW EXECUTE FUNCTION aitrader.claim_fill_key();

-- A tool call's id, kept when the call itself is archived: what orders and exit-plan history
-- reference. The same id again is the same call only with the same created_at (the audit
-- writer's pending row, then its final row; a restore).
CREATE TABLE aitrader.mcp_tool_call_keys (
    id          UUID PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL
);
INSERT INTO aitrader.mcp_tool_call_keys SELECT id, created_at FROM aitrader.mcp_tool_calls;
CREATE FUNCTION aitrader.claim_tool_call_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO aitrader.mcp_tool_call_keys VALUES (NEW.id, NEW.created_at) ON CONFLICT DO NOTHING;
    IF NOT FOUND AND NOT EXISTS (SELECT FROM aitrader.mcp_tool_call_keys k
                                 WHERE k.id = NEW.id AND k.created_at = NEW.created_at) THEN
        RAISE unique_violation USING
            MESSAGE = 'duplicate key value violates unique constraint "mcp_tool_calls_pkey"',
            DETAIL = format('Key (id)=(%s) already exists.', NEW.id),
            CONSTRAINT = 'mcp_tool_calls_pkey', SCHEMA = 'aitrader', TABLE = 'mcp_tool_calls';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER mcp_tool_calls_claim_key BEFORE INSERT ON aitrader.mcp_tool_calls
    FOR EACH ROW EXECUTE FUNCTION aitrader.claim_tool_call_key();
ALTER TABLE aitrader.orders ADD CONSTRAINT orders_tool_call_id_fkey
    FOREIGN KEY (tool_call_id) REFERENCES aitrader.mcp_tool_call_keys (id);
ALTER TABLE aitrader.exit_plan_history ADD CONSTRAINT exit_plan_history_tool_call_id_fkey
    FOREIGN KEY (tool_call_id) REFERENCES aitrader.mcp_tool_call_keys (id);

-- The views, re-pointed (their definitions name the tables), running as their caller again
-- (CREATE OR REPLACE VIEW resets the option: see 0013).
DO $$
DECLARE
    v RECORD;
BEGIN
    FOR v IN SELECT name, definition FROM repartition_views LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', v.name, v.definition);
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', v.name);
    END LOOP;
END
$$;

DROP TABLE aitrader.fills_unpartitioned, aitrader.mcp_tool_calls_unpartitioned,
    aitrader.market_snapshots_unpartitioned, aitrader.balance_snapshots_unpartitioned,
    aitrader.equity_snapshots_unpartitioned;

-- Statistics for the planner now: autovacuum analyzes partitions, never a partitioned parent
-- (the retention run analyzes the parents daily).
ANALYZE aitrader.fills, aitrader.mcp_tool_calls, aitrader.market_snapshots, aitrader.balance_snapshots,
    aitrader.equity_snapshots, aitrader.fill_keys, aitrader.mcp_tool_call_keys;
