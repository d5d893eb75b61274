"""The gateway's audit writer across a PostgreSQL restart: the row of a call made while the
database is away is written once it is back, and the writer goes on writing afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from structlog.testing import capture_logs

from aitrader.embedded import EmbeddedPostgres
from aitrader.migrate import migrate
from services.mcp_gateway.audit import AuditWriter, ToolCall
from shared.db import create_pool
from tests.factories import wait_for


async def _rows(server: EmbeddedPostgres) -> list[str]:
    conn = await asyncpg.connect(server.dsn, timeout=5)
    try:
        return [r["tool_name"] for r in await conn.fetch(
            "SELECT tool_name FROM aitrader.mcp_tool_calls ORDER BY created_at")]
    finally:
        await conn.close()


async def test_a_call_made_while_postgresql_restarts_is_audited_once_it_is_back(
    own_postgres: EmbeddedPostgres, tmp_path: Path,
) -> None:
    server = own_postgres
    await migrate(server.dsn)
    pool = await create_pool(server.dsn, min_size=1, max_size=2)
    writer = AuditWriter(pool, linger=0, spill_dir=tmp_path, spill_after=60)
    writer.start()
    try:
        await writer.finish(ToolCall("before", {}, None, "http"), "success", {"n": 1}, None)
        await asyncio.wait_for(writer.flush(), 10)

        await asyncio.to_thread(server.stop)
        with capture_logs() as logs:
            await writer.finish(ToolCall("during", {}, None, "http"), "success", {"n": 2}, None)

            async def retried() -> bool:  # the writer met the database away, and goes on trying
                return sum(e["event"] == "audit_write_retry" for e in logs) >= 2

            await wait_for(retried, timeout=15, message="the writer retrying while PostgreSQL is down")
        await asyncio.to_thread(server.start)  # same data directory, same port

        await asyncio.wait_for(writer.flush(), 30)
        await writer.finish(ToolCall("after", {}, None, "http"), "success", {"n": 3}, None)
        await asyncio.wait_for(writer.flush(), 10)
        assert await _rows(server) == ["before", "during", "after"]
    finally:
        await asyncio.wait_for(writer.close(), 10)
        await asyncio.wait_for(pool.close(), 10)


async def test_a_row_postgresql_refuses_does_not_block_the_calls_behind_it(
    own_postgres: EmbeddedPostgres, tmp_path: Path,
) -> None:
    """A constraint violation (here a status outside the CHECK) is not retried forever: the row
    is dropped with an error logged, and the calls queued after it are written."""
    await migrate(own_postgres.dsn)
    pool = await create_pool(own_postgres.dsn, min_size=1, max_size=2)
    writer = AuditWriter(pool, linger=0, spill_dir=tmp_path)
    writer.start()
    try:
        await writer.finish(ToolCall("refused", {}, None, "http"), "no-such-status", {"n": 1}, None)
        await writer.finish(ToolCall("next", {}, None, "http"), "success", {"n": 2}, None)
        await asyncio.wait_for(writer.flush(), 10)
        assert await _rows(own_postgres) == ["next"]
    finally:
        await asyncio.wait_for(writer.close(), 10)
        await asyncio.wait_for(pool.close(), 10)


async def test_stopping_while_the_database_is_away_is_bounded_and_spills_what_is_queued(
    own_postgres: EmbeddedPostgres, tmp_path: Path,
) -> None:
    await migrate(own_postgres.dsn)
    pool = await create_pool(own_postgres.dsn, min_size=1, max_size=2)
    writer = AuditWriter(pool, linger=0, spill_dir=tmp_path, spill_after=60)
    writer.start()
    await asyncio.to_thread(own_postgres.stop)
    await writer.finish(ToolCall("kept", {}, None, "http"), "success", {"n": 1}, None)
    await asyncio.wait_for(writer.close(timeout=1.0), 5)  # before: waited for the database
    assert writer.spill.rows == 1  # before: logged as lost
    pool.terminate()
