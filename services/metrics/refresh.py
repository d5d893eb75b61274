"""Use cases of the account side: equity snapshots (timer + position events) and the
performance refresh (debounced per account on position events, all accounts on a timer)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

import asyncpg

from services.metrics import repository as repo
from services.metrics import store
from services.metrics.performance import metric_frames
from services.metrics.rows import stored_rows
from shared.clock import Clock
from shared.messages import PositionEvent

# Failures that a later attempt may not meet: the refresh is retried, the loop carries on.
RETRYABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


async def refresh_performance(pool: asyncpg.Pool, clock: Clock, accounts: list[UUID] | None) -> int:
    """Recompute and upsert all windows of these accounts (None = every active one)."""
    now = clock.now()
    inputs = await store.load_inputs(pool, accounts, now)
    rows = stored_rows(metric_frames(inputs, now))
    async with pool.acquire() as conn:
        await store.save(conn, rows)
    return len(rows.performance)


class Refresher:
    """Owns every performance refresh, so two never run at once for the same account."""

    def __init__(
        self, pool: asyncpg.Pool, clock: Clock, log: Any, *, debounce_s: float, interval_s: float
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._log = log
        self._debounce_s = debounce_s
        self._interval_s = interval_s
        self._pending: set[UUID] = set()
        self._wake = asyncio.Event()

    def request(self, account_id: UUID) -> None:
        """Ask for a refresh of one account (runs after the debounce delay)."""
        self._pending.add(account_id)
        self._wake.set()

    async def run(self) -> None:
        """Refresh everything now and every interval; requested accounts in between."""
        next_full = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_full - time.monotonic()))
            except TimeoutError:
                pass
            if self._wake.is_set():
                await asyncio.sleep(self._debounce_s)  # let a burst of events collect
                self._wake.clear()
            if time.monotonic() >= next_full:
                self._pending.clear()
                await self._refresh(None)
                next_full = time.monotonic() + self._interval_s
            elif self._pending:
                accounts = sorted(self._pending)
                self._pending.clear()
                await self._refresh(accounts)

    async def _refresh(self, accounts: list[UUID] | None) -> None:
        started = time.perf_counter()
        try:
            rows = await refresh_performance(self._pool, self._clock, accounts)
        except RETRYABLE as exc:
            self._log.warning("performance_refresh_failed", error=f"{type(exc).__name__}: {exc}")
            if accounts:  # retried with the next request or the next full refresh
                self._pending.update(accounts)
            return
        self._log.info(
            "performance_refreshed",
            accounts="all" if accounts is None else len(accounts),
            rows=rows,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )


class AccountHandlers:
    """Position events -> an equity snapshot of the account now, and a performance refresh."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, refresher: Refresher) -> None:
        self._pool = pool
        self._clock = clock
        self._refresher = refresher

    async def on_position(self, event: PositionEvent) -> str:
        written = await repo.write_equity(self._pool, [event.account_id], self._clock.now())
        self._refresher.request(event.account_id)
        if not written:
            return "equity skipped: no balance, an unpriced position, or not an active account"
        return f"{event.kind}: equity written, refresh requested"


async def run_equity_timer(pool: asyncpg.Pool, clock: Clock, log: Any, interval_s: float) -> None:
    """Write every active account's equity on each interval boundary (UTC-aligned)."""
    while True:
        await asyncio.sleep(interval_s - clock.now().timestamp() % interval_s)
        try:
            written = await repo.write_equity(pool, None, clock.now())
        except RETRYABLE as exc:
            log.warning("equity_snapshot_failed", error=f"{type(exc).__name__}: {exc}")
            continue
        log.debug("equity_snapshots_written", accounts=len(written))
