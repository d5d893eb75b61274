"""Account isolation enforced by PostgreSQL itself, tested on the database directly: the
console's role, with account A's token set, runs hand-written SELECTs on every account-keyed
table and view and gets none of B's rows; the catalog shows no such table left without a policy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from services.console.config import ConsoleSettings
from services.console.repository import SET_TOKEN
from shared.tokens import hash_token
from tests.console.conftest import Seeded
from tests.console.seed import console_token

ROLE = "aitrader_console"
# Every relation of the schema with an account column: its name and that column.
KEYED = """
SELECT c.table_name, c.column_name FROM information_schema.columns c
JOIN information_schema.tables t USING (table_schema, table_name)
WHERE c.table_schema = 'aitrader' AND (c.column_name = 'account_id'
      OR (c.table_name = 'accounts' AND c.column_name = 'id'))
ORDER BY 1
"""


@pytest_asyncio.fixture(loop_scope="session")
async def console_conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(ConsoleSettings(database_url=db_dsn).console_dsn())
    try:
        yield conn
    finally:
        await conn.close()


async def _keyed(db_pool: asyncpg.Pool) -> list[tuple[str, str]]:
    return [(r["table_name"], r["column_name"]) for r in await db_pool.fetch(KEYED)]


async def test_every_account_keyed_table_has_row_level_security_and_a_policy(db_pool: asyncpg.Pool) -> None:
    tables = await db_pool.fetch(
        """SELECT c.relname, c.relrowsecurity,
                  (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'aitrader' AND c.relkind IN ('r', 'p')
             AND c.relname IN (SELECT table_name FROM information_schema.columns
                               WHERE table_schema = 'aitrader' AND column_name = 'account_id')"""
    )
    assert len(tables) >= 15  # accounts' children: fills, orders, positions_*, tokens, audit, ...
    unguarded = [t["relname"] for t in tables if not t["relrowsecurity"] or t["policies"] == 0]
    assert unguarded == [], f"account-keyed tables without row-level security: {unguarded}"
    assert await db_pool.fetchval(
        "SELECT relrowsecurity FROM pg_class WHERE oid = 'aitrader.accounts'::regclass"
    )


async def test_every_view_runs_as_its_caller(db_pool: asyncpg.Pool) -> None:
    """A view running as its (superuser) owner would bypass the policies."""
    views = await db_pool.fetch(
        """SELECT c.relname, coalesce('security_invoker=true' = ANY (c.reloptions), false) AS invoker
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'aitrader' AND c.relkind IN ('v', 'm')"""
    )
    assert views and [v["relname"] for v in views if not v["invoker"]] == []


async def test_the_console_role_cannot_bypass_nor_write(db_pool: asyncpg.Pool) -> None:
    role = await db_pool.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", ROLE)
    assert role is not None and role["rolcanlogin"]
    assert not (role["rolsuper"] or role["rolbypassrls"] or role["rolcreaterole"] or role["rolcreatedb"])
    writes = await db_pool.fetch(
        """SELECT table_name, privilege_type FROM information_schema.role_table_grants
           WHERE grantee = $1 AND privilege_type <> 'SELECT'""",
        ROLE,
    )
    assert list(writes) == []


async def _visible(conn: asyncpg.Connection, table: str, column: str, account: object) -> int | None:
    """Rows of `account` the console role sees in `table` (None: it may not read the table)."""
    try:
        async with conn.transaction():
            # a hand-written query asking for the account outright, no WHERE added by the console
            return int(
                await conn.fetchval(f'SELECT count(*) FROM aitrader."{table}" WHERE "{column}" = $1', account)
            )
    except asyncpg.InsufficientPrivilegeError:
        return None


async def test_with_a_tokens_setting_the_role_sees_none_of_another_accounts_rows(
    seeded: Seeded, db_pool: asyncpg.Pool, console_conn: asyncpg.Connection
) -> None:
    keyed = await _keyed(db_pool)
    assert {"fills", "orders", "positions_closed", "positions_valued", "account_equity_now"} <= {
        t for t, _ in keyed
    }
    readable = 0
    for table, column in keyed:
        as_owner = await db_pool.fetchval(
            f'SELECT count(*) FROM aitrader."{table}" WHERE "{column}" = $1', seeded.b
        )
        async with console_conn.transaction():
            await console_conn.execute(SET_TOKEN, hash_token(seeded.token_a))
            own = await _visible(console_conn, table, column, seeded.a)
            other = await _visible(console_conn, table, column, seeded.b)
            everything = await _everything(console_conn, table, column)
        assert other in (None, 0), f"{table}: the console sees {other} rows of account B"
        assert everything is None or everything <= {seeded.a}, f"{table}: {everything}"
        if own is not None:
            readable += 1
            assert own > 0 and as_owner > 0, f"{table}: seed a row of A and of B, or this proves nothing"
    assert readable >= 8  # accounts, positions (open, closed, valued), orders, fills, calls, equity


async def _everything(conn: asyncpg.Connection, table: str, column: str) -> set[object] | None:
    try:
        async with conn.transaction():
            rows = await conn.fetch(f'SELECT DISTINCT "{column}" AS owner FROM aitrader."{table}"')
            return {r["owner"] for r in rows}
    except asyncpg.InsufficientPrivilegeError:
        return None


@pytest.mark.parametrize("setting", ["unset", "after-commit", "garbage", "read-scope", "revoked"])
async def test_without_a_valid_console_token_the_role_sees_nothing(
    seeded: Seeded, db_pool: asyncpg.Pool, console_conn: asyncpg.Connection, setting: str
) -> None:
    digest = {
        "unset": None,
        "garbage": "x" * 64,
        "after-commit": hash_token(seeded.token_a),
        "read-scope": hash_token(await console_token(db_pool, [seeded.a], scopes=("read", "trade"))),
        "revoked": hash_token(await console_token(db_pool, [seeded.a], revoked=True)),
    }[setting]
    if setting == "after-commit":  # set in an earlier transaction of the same session: gone now
        async with console_conn.transaction():
            await console_conn.execute(SET_TOKEN, digest)
        digest = None
    for table, column in await _keyed(db_pool):
        async with console_conn.transaction():
            if digest is not None:
                await console_conn.execute(SET_TOKEN, digest)
            assert await _everything(console_conn, table, column) in (None, set()), table


async def test_the_role_cannot_read_the_token_table_nor_become_another_role(
    seeded: Seeded, console_conn: asyncpg.Connection
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await console_conn.fetch("SELECT token_hash FROM aitrader.api_tokens")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await console_conn.fetch("SELECT * FROM aitrader.token_grants('x')")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await console_conn.execute("SET ROLE postgres")
