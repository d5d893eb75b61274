"""Instruments by symbol, from `aitrader.instruments` (loaded by the ingest service).

A symbol that is not known triggers a reload (at most once per `reload_interval`). Until
`grace_seconds` have passed since both this service started and the message was published,
an unknown instrument is a transient wait (the ingest service may not have loaded it yet);
after that the message is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from services.positions.store import LedgerStore
from shared.clock import Clock
from shared.instruments import InstrumentSpec


class InstrumentCatalog:
    """Contract values, cached; the one place that decides wait-or-give-up for a symbol."""

    def __init__(self, clock: Clock, grace_seconds: float, reload_interval: float = 1.0) -> None:
        self._clock = clock
        self._started = clock.now()
        self._items: dict[str, InstrumentSpec] = {}
        self._loaded_at: float | None = None
        self._reload_interval = reload_interval
        self.grace_seconds = grace_seconds

    async def resolve(self, store: LedgerStore, symbols: Iterable[str]) -> dict[str, InstrumentSpec]:
        """The known instruments among `symbols`, reloading the table when one is missing."""
        wanted = set(symbols)
        now = self._clock.monotonic()
        stale = self._loaded_at is None or now - self._loaded_at >= self._reload_interval
        if not wanted <= self._items.keys() and stale:
            self._items = await store.instruments()
            self._loaded_at = now
        return {s: self._items[s] for s in wanted if s in self._items}

    def retry_delay(self, published_at: datetime) -> float | None:
        """Seconds until the next try, or None once the grace period is over."""
        deadline = max(self._started, published_at) + timedelta(seconds=self.grace_seconds)
        remaining = (deadline - self._clock.now()).total_seconds()
        if remaining <= 0:
            return None
        return min(max(remaining, 0.5), 5.0)
