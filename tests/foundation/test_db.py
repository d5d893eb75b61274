"""shared.db helpers on a real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.db import create_pool, fetch_now


async def _idle_soon(pool: asyncpg.Pool, size: int) -> None:
    for _ in range(100):
        if pool.get_idle_size() == size:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"idle connections: {pool.get_idle_size()}, expected {size}")


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
