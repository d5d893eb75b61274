"""In-memory indicator state: the stored tail of one (symbol, bar) close series (pure, no I/O).

The tail is a cache of what `market_snapshots` holds: it is loaded from there on start, and
replaced only after the database accepted the row computed from it, so a rejected or failed
candle never changes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import polars as pl

from shared.definitions import INDICATOR_WINDOW


@dataclass(frozen=True)
class CloseSeries:
    """The last closes of one series, oldest first, at most `capacity` of them."""

    times: tuple[datetime, ...] = ()
    closes: tuple[float, ...] = ()
    capacity: int = INDICATOR_WINDOW

    @classmethod
    def from_rows(
        cls, rows: list[tuple[datetime, Decimal]], capacity: int = INDICATOR_WINDOW
    ) -> CloseSeries:
        """Build from (close time, close) rows in any order."""
        ordered = sorted(rows)[-capacity:]
        return cls(
            tuple(t for t, _ in ordered), tuple(float(c) for _, c in ordered), capacity
        )

    @property
    def last_time(self) -> datetime | None:
        return self.times[-1] if self.times else None

    def accepts(self, as_of: datetime) -> bool:
        """True when the candle extends the tail (newer) or replaces its newest close."""
        return not self.times or as_of >= self.times[-1]

    def extended(self, as_of: datetime, close: Decimal) -> CloseSeries:
        """The tail with this close appended (or replacing the newest one at the same time)."""
        if not self.accepts(as_of):
            raise ValueError(f"{as_of} is older than the tail's newest close {self.last_time}")
        keep = len(self.times) - 1 if self.times and self.times[-1] == as_of else len(self.times)
        times = (*self.times[:keep], as_of)[-self.capacity :]
        closes = (*self.closes[:keep], float(close))[-self.capacity :]
        return CloseSeries(times, closes, self.capacity)

    def values(self) -> pl.Series:
        return pl.Series("close", self.closes, dtype=pl.Float64)
