"""shared.db helpers on a real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.db import create_pool, fetch_now, release_behind
from tests.factories import wait_for


async def _idle_soon(pool: asyncpg.Pool, size: int) -> None:
    async def idle() -> bool:
        return pool.get_idle_size() == size

    await wait_for(idle, timeout=1.0, message=f"{size} idle connection(s)")


async def test_fetch_now_returns_rows_and_the_connection_goes_back(db_dsn: str) -> None:
    pool = await create_pool(db_dsn, min_size=1, max_size=1)
    try:
        rows = await fetch_now(pool, "SELECT g FROM generate_series(1, $1) g", 3)
        assert [r["g"] for r in rows] == [1, 2, 3]
        await _idle_soon(pool, 1)
        # One connection in all: a second read (and a plain acquire) gets it back.
        assert [r["g"] for r in await fetch_now(pool, "SELECT 7 AS g")] == [7]
        async with pool.acquire(timeout=5) as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def test_fetch_now_error_propagates_and_the_connection_is_released(db_dsn: str) -> None:
    pool = await create_pool(db_dsn, min_size=1, max_size=1)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await fetch_now(pool, "SELECT 1 / $1::int", 0)
        await _idle_soon(pool, 1)
        assert (await fetch_now(pool, "SELECT 1 / $1::int AS q", 1))[0]["q"] == 1
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def test_release_behind_runs_its_last_statement_before_the_connection_goes_back(db_dsn: str) -> None:
    """The console's reads end this way (`COMMIT` behind the answer): the next caller of a pool
    of one gets the connection only once the statement has run."""
    pool = await create_pool(db_dsn, min_size=1, max_size=1)
    try:
        conn = await pool.acquire()
        await conn.execute("BEGIN READ ONLY; SELECT set_config('aitrader.t', 'kept', false)")
        release_behind(pool, conn, "COMMIT")
        async with pool.acquire(timeout=5) as again:
            # committed, not rolled back by the release: the session setting survived
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT current_setting('aitrader.t', true)") == "kept"
    finally:
        await asyncio.wait_for(pool.close(), 10)
