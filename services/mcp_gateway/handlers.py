"""Read use cases: account state, market data, performance. Each takes the gateway and the
caller's principal and returns a view."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import asyncpg

from services.mcp_gateway import repository, views
from services.mcp_gateway.auth import Principal
from services.mcp_gateway.commands import refresh_market_data
from services.mcp_gateway.errors import InvalidArgument
from services.mcp_gateway.gateway import Gateway
from services.mcp_gateway.rules import is_stale
from shared.definitions import DEFINITIONS


async def account_state(gw: Gateway, who: Principal) -> views.Doc:
    """Balances, live equity, open positions and headline performance of the caller's account
    (a `views.AccountState` document)."""
    rows = await repository.fetch_account_state(gw.pool, who.account_id)
    if not rows:
        raise InvalidArgument("The account of this token no longer exists.")
    return repository.account_doc(rows, gw.clock.now())


def _series(
    rows: list[asyncpg.Record], timeframes: list[str], gw: Gateway
) -> tuple[list[views.Doc], str | None, str | None]:
    by_tf: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        by_tf[r["timeframe"]].append(r)
    now = gw.clock.now()
    series, funding, oi, newest_at = [], None, None, None
    for tf in timeframes:
        newest_first = by_tf.get(tf, [])
        latest = newest_first[0]["as_of"] if newest_first else None
        series.append(
            views.document(
                views.Series,
                timeframe=tf,
                candles=[repository.candle_doc(r) for r in reversed(newest_first)],
                as_of=latest,
                stale=is_stale(latest, tf, now),
            )
        )
        for r in newest_first:  # the newest candle of any timeframe carrying the value wins
            if newest_at is None or r["as_of"] > newest_at:
                newest_at = r["as_of"]
                funding = r["funding_rate"] if r["funding_rate"] is not None else funding
                oi = r["open_interest"] if r["open_interest"] is not None else oi
    return series, funding, oi


async def market_data(gw: Gateway, symbol: str, timeframes: list[str], limit: int) -> views.Doc:
    """Closed candles with indicators (a `views.MarketData` document); refreshed through ingest
    only when stale."""
    await gw.instruments.get(symbol)
    timeframes = list(dict.fromkeys(timeframes))
    if not timeframes:
        raise InvalidArgument('timeframes must name at least one bar, e.g. ["3m", "4H"].')
    rows = await repository.fetch_snapshots(gw.pool, symbol, timeframes, limit)
    series, funding, oi = _series(rows, timeframes, gw)
    stale = [s["timeframe"] for s in series if s["stale"]]
    if stale:
        series, funding, oi = await _refreshed(gw, symbol, timeframes, stale, limit, series, funding, oi)
    return views.document(
        views.MarketData,
        symbol=symbol,
        series=series,
        funding_rate=funding,
        open_interest=oi,
        as_of=repository.newest([s["as_of"] for s in series]),
        stale=any(s["stale"] for s in series),
    )


async def _refreshed(
    gw: Gateway,
    symbol: str,
    timeframes: list[str],
    stale: list[str],
    limit: int,
    series: list[views.Doc],
    funding: str | None,
    oi: str | None,
) -> tuple[list[views.Doc], str | None, str | None]:
    """Ask ingest for fresh candles, then re-read until metrics has folded them or time is up."""
    budget = gw.config.mcp_refresh_timeout_ms / 1000
    deadline = time.monotonic() + budget
    reply = await refresh_market_data(gw.nc, gw.subjects, symbol, stale, max(limit, 100), budget)
    if not reply.ok:
        return series, funding, oi
    while True:
        rows = await repository.fetch_snapshots(gw.pool, symbol, timeframes, limit)
        series, funding, oi = _series(rows, timeframes, gw)
        if not any(s["stale"] for s in series) or time.monotonic() >= deadline:
            return series, funding, oi
        await asyncio.sleep(0.05)


async def performance(gw: Gateway, who: Principal, window: str) -> views.PerformanceMetrics:
    """The metrics service's snapshot for the window, with definitions and calibration."""
    async with gw.pool.acquire() as conn:
        row = await repository.fetch_performance(conn, who.account_id, window)
        calibration = await repository.fetch_calibration(conn, who.account_id, window)
        exits = await repository.fetch_exit_attribution(conn, who.account_id, window)
    values = dict(row) if row is not None else {}
    return views.PerformanceMetrics.model_validate(
        {
            **values,
            "window": window,
            "available": row is not None,
            "definitions": DEFINITIONS,
            "calibration": calibration,
            "exit_attribution": exits,
        }
    )
