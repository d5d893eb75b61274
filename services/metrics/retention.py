"""The daily retention run (shared.retention; docs/retention.md), scheduled by the metrics service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from services.metrics.refresh import RETRYABLE
from shared import retention
from shared.archive import ArchiveError
from shared.clock import Clock

RUN_TIMEOUT_S = 3600.0  # one run's bound: a run cut short leaves its rows (export, then delete)


async def run_retention_timer(
    pool: asyncpg.Pool, clock: Clock, log: Any, interval_s: float, directory: Path | None
) -> None:
    """Run retention at start, then every `interval_s`; a failed run is logged and retried at
    the next one. Without an archive directory it only creates the months ahead."""
    if directory is None:
        log.warning(
            "retention_archive_unset",
            effect="partitions are created ahead; no row is archived",
            setting="AITRADER_ARCHIVE_DIR",
        )
    while True:
        try:
            async with asyncio.timeout(RUN_TIMEOUT_S), pool.acquire() as conn:
                done = await retention.run(conn, clock.now(), directory)
            files = [str(path) for _, path in done if path is not None]
            log.info("retention_done", steps=len(done), files=files)
        except (*RETRYABLE, ArchiveError, TimeoutError) as exc:
            log.error("retention_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        await asyncio.sleep(interval_s)
