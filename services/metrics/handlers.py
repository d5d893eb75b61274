"""Use cases of the MARKET stream: candles -> market_snapshots (with indicator state), tickers
and mark prices -> market_prices, funding rates and open interest -> their history tables."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import asyncpg
import polars as pl

from services.metrics import repository as repo
from services.metrics.calculations import (
    Indicators,
    InvalidCandle,
    check_candle,
    close_time,
    indicator_series,
    indicators,
    to_numeric,
)
from services.metrics.series import CloseSeries
from shared.definitions import INDICATOR_WINDOW
from shared.errors import PermanentError
from shared.messages import Candle, FundingRate, MarkPrice, OpenInterest, Ticker

SeriesKey = tuple[str, str]  # (symbol, bar)
NO_INDICATORS = Indicators(None, None, None, None, None)


def stored_indicators(values: Indicators) -> repo.StoredIndicators:
    """(ema20, ema50, macd, rsi7, rsi14) rounded to their columns."""
    return (
        to_numeric(values.ema20, 8),
        to_numeric(values.ema50, 8),
        to_numeric(values.macd, 8),
        to_numeric(values.rsi7, 4),
        to_numeric(values.rsi14, 4),
    )


def snapshot_row(candle: Candle, as_of: datetime, close: Decimal, values: Indicators) -> repo.SnapshotRow:
    """The stored row of a checked candle."""
    ema20, ema50, macd, rsi7, rsi14 = stored_indicators(values)
    return repo.SnapshotRow(
        symbol=candle.inst_id, timeframe=candle.bar, as_of=as_of, open=candle.open,
        high=candle.high, low=candle.low, close=close, volume=candle.volume,
        ema20=ema20, ema50=ema50, macd=macd, rsi7=rsi7, rsi14=rsi14,
    )


class MarketHandlers:
    """Market events -> rows. One instance per process; events are handled one at a time."""

    def __init__(self, pool: asyncpg.Pool, symbols: Iterable[str], timeframes: Iterable[str]) -> None:
        self._pool = pool
        self._configured = set(symbols)
        self._instruments: set[str] = set()
        self._timeframes = set(timeframes)
        self._series: dict[SeriesKey, CloseSeries] = {}
        # Newest event time written per (symbol, kind): a redelivered older price is dropped.
        self._latest: dict[tuple[str, str], datetime] = {}

    async def start(self) -> None:
        """Load the instruments and every configured series' tail from the database."""
        self._instruments = await repo.known_symbols(self._pool)
        for symbol in self._configured:
            for bar in self._timeframes:
                await self._load_series((symbol, bar))

    async def _load_series(self, key: SeriesKey) -> CloseSeries:
        rows = await repo.load_tail(self._pool, *key, INDICATOR_WINDOW)
        self._series[key] = CloseSeries.from_rows(rows)
        return self._series[key]

    async def check_symbol(self, symbol: str) -> None:
        """PermanentError unless the symbol is configured or a known instrument."""
        if symbol in self._configured or symbol in self._instruments:
            return
        self._instruments = await repo.known_symbols(self._pool)
        if symbol not in self._instruments:
            raise PermanentError(
                f"unknown symbol {symbol!r}: not in AITRADER_SYMBOLS nor in aitrader.instruments"
            )

    async def on_candle(self, candle: Candle) -> str:
        """Upsert the row of a confirmed candle; return what was done (for the log)."""
        if not candle.confirmed:
            return "ignored: not confirmed"
        await self.check_symbol(candle.inst_id)
        if candle.bar not in self._timeframes:
            return f"ignored: bar {candle.bar} not in AITRADER_TIMEFRAMES"
        try:
            close = check_candle(candle)
            as_of = close_time(candle.open_time, candle.bar)
        except InvalidCandle as exc:
            raise PermanentError(f"invalid candle: {exc}") from None
        key = (candle.inst_id, candle.bar)
        series = self._series.get(key) or await self._load_series(key)
        if not series.accepts(as_of):
            return await self._late_candle(candle, as_of, close)
        extended = series.extended(as_of, close)
        row = snapshot_row(candle, as_of, close, indicators(extended.values()))
        async with self._pool.acquire() as conn:
            await repo.upsert_snapshots(conn, [row])
        self._series[key] = extended  # only once the row is stored
        return "stored"

    async def _late_candle(self, candle: Candle, as_of: datetime, close: Decimal) -> str:
        """A candle older than the newest stored one: store it, recompute the rows whose
        trailing window it enters, and reload the tail."""
        key = (candle.inst_id, candle.bar)
        async with self._pool.acquire() as conn, conn.transaction():
            await repo.upsert_snapshots(conn, [snapshot_row(candle, as_of, close, NO_INDICATORS)])
            rows = await repo.load_around(conn, *key, as_of, INDICATOR_WINDOW)
            times = [t for t, _ in rows]
            closes = pl.Series([float(c) for _, c in rows], dtype=pl.Float64)
            start = times.index(as_of)
            frame = indicator_series(closes, start)
            updates = [
                (times[start + i], stored_indicators(Indicators(**values)))
                for i, values in enumerate(frame.iter_rows(named=True))
            ]
            await repo.set_indicators(conn, *key, updates)
        await self._load_series(key)
        return f"late: recomputed {len(updates)} rows"

    def _is_stale(self, symbol: str, kind: str, ts: datetime) -> bool:
        latest = self._latest.get((symbol, kind))
        return latest is not None and ts < latest

    async def on_ticker(self, event: Ticker) -> str:
        await self.check_symbol(event.inst_id)
        if self._is_stale(event.inst_id, "last", event.ts_event):
            return "ignored: older than the stored ticker"
        await repo.save_last_price(
            self._pool, event.inst_id, event.ts_event, event.last, event.bid_px, event.ask_px
        )
        self._latest[(event.inst_id, "last")] = event.ts_event
        return "stored"

    async def on_mark_price(self, event: MarkPrice) -> str:
        await self.check_symbol(event.inst_id)
        if self._is_stale(event.inst_id, "mark", event.ts_event):
            return "ignored: older than the stored mark price"
        await repo.save_mark_price(self._pool, event.inst_id, event.ts_event, event.mark_px)
        self._latest[(event.inst_id, "mark")] = event.ts_event
        return "stored"

    async def on_funding_rate(self, event: FundingRate) -> str:
        await self.check_symbol(event.inst_id)
        if not event.funding_rate.is_finite() or abs(event.funding_rate) >= 100:
            raise PermanentError(f"funding rate out of range: {event.funding_rate}")
        await repo.save_funding_rate(self._pool, event)
        return "stored"

    async def on_open_interest(self, event: OpenInterest) -> str:
        await self.check_symbol(event.inst_id)
        if not event.oi.is_finite() or event.oi >= Decimal(10) ** 20:
            raise PermanentError(f"open interest out of range: {event.oi}")
        await repo.save_open_interest(self._pool, event)
        return "stored"
