"""The metrics service's retention timer runs the retention job at start (shared.retention)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.metrics.retention import run_retention_timer
from shared.clock import ManualClock
from shared.logging import get_logger
from tests.factories import wait_for


async def test_the_timer_creates_the_months_ahead_and_archives(db_pool: asyncpg.Pool, tmp_path: Path) -> None:
    await db_pool.execute(  # an old candle in DEFAULT: the run makes its month, then archives it
        "INSERT INTO aitrader.market_snapshots (symbol, timeframe, as_of) VALUES ('X', '1m', '2030-01-05')"
    )
    clock = ManualClock(datetime(2031, 1, 20, tzinfo=UTC))
    task = asyncio.create_task(run_retention_timer(db_pool, clock, get_logger("test"), 3600, tmp_path))
    try:
        await wait_for(
            lambda: db_pool.fetchval("SELECT to_regclass('aitrader.fills_p203103') IS NOT NULL"),
            message="the months ahead",
        )
        await wait_for(
            lambda: db_pool.fetchval("SELECT count(*) = 0 FROM aitrader.market_snapshots"),
            message="the old candle archived",
        )
        assert [p.name[:7] for p in (tmp_path / "market_snapshots").glob("*.parquet")] == ["2030-01"]
        assert await db_pool.fetchval("SELECT to_regclass('aitrader.market_snapshots_p203001')") is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
