"""Migration 0018: an unpartitioned database (0015) becomes the partitioned one with every row
kept as it was, the ledger's keys still enforced, and row-level security still holding."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from aitrader.migrate import migrate, migrations_dir
from services.console.config import ConsoleSettings
from services.console.repository import SET_TOKEN
from shared.tokens import hash_token
from tests.console.seed import console_token

TABLES = {  # table -> its order for comparing contents
    "fills": "id",
    "mcp_tool_calls": "id",
    "market_snapshots": "id",
    "balance_snapshots": "id",
    "equity_snapshots": "id",
}
MONTHS = [
    datetime(2025, 1, 15, tzinfo=UTC),
    datetime(2026, 9, 30, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 10, 1, tzinfo=UTC),
]


async def seed(conn: asyncpg.Connection) -> tuple[UUID, UUID]:
    """Two accounts, each with a tool call, an order and rows of every table in three months."""
    accounts = []
    for name in ("a", "b"):
        account = await conn.fetchval(
            "INSERT INTO aitrader.accounts (external_id, mode) VALUES ($1, 'simulated') RETURNING id", name
        )
        accounts.append(account)
        for n, when in enumerate(MONTHS):
            call = uuid4()
            await conn.execute(
                """INSERT INTO aitrader.mcp_tool_calls
                       (id, account_id, tool_name, request_payload, created_at)
                   VALUES ($1, $2, 'execute_trade', '{"size": "1.5"}', $3)""",
                call,
                account,
                when,
            )
            order = await conn.fetchval(
                """INSERT INTO aitrader.orders
                       (account_id, symbol, side, order_type, size, status, tool_call_id)
                   VALUES ($1, 'BTC-USDT-SWAP', 'buy', 'market', 1, 'filled', $2) RETURNING id""",
                account,
                call,
            )
            await conn.execute(
                """INSERT INTO aitrader.fills (account_id, order_id, symbol, side, price, size, fee_usdt,
                       "timestamp", exchange_trade_id, raw_payload)
                   VALUES ($1, $2, 'BTC-USDT-SWAP', 'buy', 97123.12345678, 0.00000001, -0.00000001, $3, $4,
                           '{"fillPx": "97123.12345678"}')""",
                account,
                order,
                when,
                f"t{n}",
            )
            await conn.execute(
                """INSERT INTO aitrader.balance_snapshots (account_id, available_usdt, equity_usdt, as_of)
                   VALUES ($1, 1234567890123456.12345678, -0.00000001, $2)""",
                account,
                when,
            )
            await conn.execute(
                """INSERT INTO aitrader.equity_snapshots (account_id, equity, cash, net_position_value,
                       unrealized_pnl, as_of) VALUES ($1, 10000.5, 10000, 0, 0.5, $2)""",
                account,
                when,
            )
    for when in MONTHS:
        await conn.execute(
            """INSERT INTO aitrader.market_snapshots (symbol, timeframe, as_of, price, rsi14)
               VALUES ('BTC-USDT-SWAP', '1m', $1, 97000.00000001, 55.1234)""",
            when,
        )
    return accounts[0], accounts[1]


async def contents(conn: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
    return {t: await conn.fetch(f"SELECT * FROM aitrader.{t} ORDER BY {o}") for t, o in TABLES.items()}


@pytest.fixture
def up_to_0015(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    for path in migrations_dir().glob("*.sql"):
        if int(path.name[:4]) <= 15:
            shutil.copy(path, directory)
    return directory


async def test_an_unpartitioned_database_keeps_every_row_and_its_guards(
    empty_dsn: str, up_to_0015: Path
) -> None:
    await migrate(empty_dsn, up_to_0015)
    conn = await asyncpg.connect(empty_dsn)
    try:
        a, b = await seed(conn)
        before = await contents(conn)
        await migrate(empty_dsn)
        assert await contents(conn) == before
        kinds = await conn.fetch(
            "SELECT relname, relkind::text FROM pg_class WHERE relname = ANY($1::text[])", list(TABLES)
        )
        assert {r["relkind"] for r in kinds} == {"p"}
        parts = await conn.fetch(
            """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'aitrader.fills'::regclass"""
        )
        names = {r["relname"] for r in parts}
        assert {"fills_p202501", "fills_p202609", "fills_p202610", "fills_default"} <= names
        assert await conn.fetchval("SELECT count(*) FROM aitrader.fills_default") == 0
        assert await conn.fetchval("SELECT count(*) FROM aitrader.fills_p202609") == 2  # 23:59:59.999999
        await _keys_still_hold(conn, a)
        await _console_sees_only_its_account(conn, empty_dsn, a, b)
    finally:
        await conn.close()


async def _keys_still_hold(conn: asyncpg.Connection, account: UUID) -> None:
    order = await conn.fetchval("SELECT id FROM aitrader.orders WHERE account_id = $1 LIMIT 1", account)
    # The same trade id in another month (so another partition) is still the same trade.
    with pytest.raises(asyncpg.UniqueViolationError) as refused:
        await conn.execute(
            """INSERT INTO aitrader.fills (account_id, order_id, symbol, side, price, size, "timestamp",
                   exchange_trade_id) VALUES ($1, $2, 'BTC-USDT-SWAP', 'buy', 1, 1, now(), 't0')""",
            account,
            order,
        )
    assert refused.value.constraint_name == "fills_account_id_symbol_exchange_trade_id_key"
    call, created = await conn.fetchrow(
        "SELECT id, created_at FROM aitrader.mcp_tool_calls WHERE account_id = $1 LIMIT 1", account
    )
    with pytest.raises(asyncpg.UniqueViolationError):  # the same id at another time
        await conn.execute(
            """INSERT INTO aitrader.mcp_tool_calls (id, tool_name, request_payload)
                              VALUES ($1, 'x', '{}')""",
            call,
        )
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            """INSERT INTO aitrader.market_snapshots (symbol, timeframe, as_of)
                              VALUES ('BTC-USDT-SWAP', '1m', $1)""",
            MONTHS[0],
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError):  # an order's tool call must exist
        await conn.execute("UPDATE aitrader.orders SET tool_call_id = $1 WHERE id = $2", uuid4(), order)
    assert created is not None


async def _console_sees_only_its_account(conn: asyncpg.Connection, dsn: str, a: UUID, b: UUID) -> None:
    unguarded = await conn.fetch(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute t ON t.attrelid = c.oid AND t.attname = 'account_id'
           WHERE n.nspname = 'aitrader' AND c.relkind IN ('r', 'p')
             AND (NOT c.relrowsecurity OR NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid))"""
    )
    assert unguarded == []
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        token = await console_token(pool, [a])
    finally:
        await pool.close()
    console = await asyncpg.connect(ConsoleSettings(database_url=dsn).console_dsn())
    try:
        for table in (
            "fills",
            "mcp_tool_calls",
            "balance_snapshots",
            "equity_snapshots",
            "account_equity_now",
        ):
            async with console.transaction():
                await console.execute(SET_TOKEN, hash_token(token))
                seen = await console.fetch(f"SELECT DISTINCT account_id FROM aitrader.{table}")
            assert [r["account_id"] for r in seen] == [a], table
        async with console.transaction():  # a partition read directly: no grant
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await console.fetch("SELECT * FROM aitrader.fills_p202609")
        assert (await console.fetchval("SELECT count(*) FROM aitrader.market_snapshots")) == len(MONTHS)
    finally:
        await console.close()
    assert b != a


async def test_a_repeated_fill_is_skipped_by_the_ledger_writer(db_pool: asyncpg.Pool) -> None:
    """The positions writer's insert returns a repeated trade as not new, as ON CONFLICT DO
    NOTHING did, even when the repeat carries another fill time."""
    from services.positions.rows import FillRow
    from services.positions.store import _INSERT_FILL_ARRAYS, _arrays

    async with db_pool.acquire() as conn:
        account = await conn.fetchval(
            "INSERT INTO aitrader.accounts (external_id, mode) VALUES ('w', 'simulated') RETURNING id"
        )
        order = await conn.fetchval(
            """INSERT INTO aitrader.orders (account_id, symbol, side, order_type, size, status)
               VALUES ($1, 'BTC-USDT-SWAP', 'buy', 'market', 1, 'filled') RETURNING id""",
            account,
        )

        def row(trade: str, when: datetime) -> FillRow:
            return FillRow(
                uuid4(),
                account,
                order,
                "BTC-USDT-SWAP",
                "buy",
                Decimal("1"),
                Decimal("1"),
                Decimal("0"),
                None,
                None,
                when,
                trade,
                "o1",
                "net",
                None,
                "normal",
                None,
                None,
                "{}",
            )

        first = await conn.fetch(_INSERT_FILL_ARRAYS, *_arrays([row("t1", MONTHS[1])]))
        again = await conn.fetch(_INSERT_FILL_ARRAYS, *_arrays([row("t1", MONTHS[2]), row("t2", MONTHS[2])]))
        assert [r["exchange_trade_id"] for r in first] == ["t1"]
        assert [r["exchange_trade_id"] for r in again] == ["t2"]
        assert await conn.fetchval("SELECT count(*) FROM aitrader.fills") == 2
