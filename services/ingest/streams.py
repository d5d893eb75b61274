"""What the websockets feed: normalize each push, publish its events, backfill on connect."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from services.ingest.backfill import Backfiller
from services.ingest.normalize import AccountRef, Normalized, Push, normalize_push
from services.ingest.okx_ws import FrameStats
from services.ingest.publisher import Publisher
from shared.logging import get_logger
from shared.messages import Candle, Fill

log = get_logger("ingest.streams")


class _Sink:
    def __init__(self, name: str, publisher: Publisher, backfiller: Backfiller,
                 stats: FrameStats, account: AccountRef | None) -> None:
        self.name, self.publisher, self.backfiller = name, publisher, backfiller
        self.stats, self.account = stats, account
        self._tasks: set[asyncio.Task[Any]] = set()

    async def on_connected(self) -> None:
        """Nothing to catch up by default."""

    async def on_push(self, push: Push, received: datetime) -> None:
        """Normalize and publish; bad elements are counted, the good ones go out."""
        result = normalize_push(push, received, self.account)
        for err in result.errors:
            self.stats.record(err, f"{push.channel}: {str(push.data)[:120]}", self.name)
        for event in result.events:
            await self.publisher.publish(event)
            if isinstance(event, Candle):
                self.backfiller.seen_candle(event)
            elif isinstance(event, Fill):
                self.backfiller.seen_fill(event)
        self.after(push, result)

    def after(self, push: Push, result: Normalized) -> None:
        """Follow-ups of a push (account streams schedule REST catch-ups)."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class PublicSink(_Sink):
    """/ws/v5/public: tickers, mark price, funding rate, open interest."""

    def __init__(self, publisher: Publisher, backfiller: Backfiller, stats: FrameStats) -> None:
        super().__init__("public", publisher, backfiller, stats, None)


class CandleSink(_Sink):
    """/ws/v5/business: candles, and with an account its algo (TP/SL) orders; closed bars
    missed while away and the algo orders' states are fetched first."""

    def __init__(self, publisher: Publisher, backfiller: Backfiller, stats: FrameStats,
                 symbols: list[str], bars: list[str], account: AccountRef | None = None,
                 algo_backfill: Callable[[], Awaitable[int]] | None = None) -> None:
        super().__init__("business", publisher, backfiller, stats, account)
        self.symbols, self.bars, self.algo_backfill = symbols, bars, algo_backfill

    async def on_connected(self) -> None:
        if self.symbols and self.bars:
            await self.backfiller.candles(self.symbols, self.bars)
        if self.algo_backfill is not None:
            await self.algo_backfill()


class AccountSink(_Sink):
    """/ws/v5/private: orders (and their fills), positions, balances, funding."""

    def __init__(self, publisher: Publisher, backfiller: Backfiller, stats: FrameStats,
                 account: AccountRef, refresh_config: Callable[[], Awaitable[None]],
                 sweep_every: timedelta = timedelta(minutes=1),
                 sweep_lookback: timedelta = timedelta(days=1),
                 caught_up: Callable[[], None] = lambda: None) -> None:
        super().__init__("private", publisher, backfiller, stats, account)
        self.refresh_config, self.caught_up = refresh_config, caught_up
        self.sweep_every, self.sweep_lookback = sweep_every, sweep_lookback
        self._catch_up = asyncio.Lock()
        self._sweeping: asyncio.Task[None] | None = None

    async def on_connected(self) -> None:
        await self.refresh_config()
        async with self._catch_up:
            await self.backfiller.fills()
            await self.backfiller.sweep_fills(self.sweep_lookback)
            await self.backfiller.funding()
        self.caught_up()  # reconciliation runs after every (re)connect's catch-up
        if self._sweeping is None:  # one loop for the process, over every connection
            self._sweeping = asyncio.create_task(self._sweep_loop())
            self._tasks.add(self._sweeping)

    async def _sweep_loop(self) -> None:
        """Every period, with the socket up or down: fills OKX did not push are found."""
        while True:
            await asyncio.sleep(self.sweep_every.total_seconds())
            await self._locked(lambda: self.backfiller.sweep_fills(self.sweep_lookback))

    def after(self, push: Push, result: Normalized) -> None:
        # REST is the authority: an unreadable orders push may hide a fill, and a
        # funding settlement is announced without its bill.
        if push.channel == "orders" and result.errors:
            self.spawn(self._locked(self.backfiller.fills))
        if result.funding_settled:
            self.spawn(self._locked(self.backfiller.funding))

    async def _locked(self, job: Callable[[], Awaitable[int]]) -> None:
        async with self._catch_up:
            try:
                await job()
            except Exception:  # a failed catch-up is retried by the next trigger/reconnect
                log.exception("catch_up_failed", sink=self.name)
