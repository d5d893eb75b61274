"""Candle bars: what an OKX bar name is (`1m`, `4H`, `1Dutc`, `1M` …), how long a bar lasts, and
when a candle closes.

A name is a count of 1 to 99 and a unit: s(econd), m(inute), H(our), D(ay), W(eek) or M(onth),
optionally followed by `utc` (OKX: boundaries at UTC instead of UTC+8, same length). Months
are calendar months, so they have no fixed length.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

# The bars the gateway serves to agents (get_market_data's `timeframes`).
Timeframe = Literal["1m", "3m", "5m", "15m", "30m", "1H", "2H", "4H", "6H", "12H", "1D"]

_BAR = re.compile(r"^(\d{1,2})([smHDWM])(utc)?$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "H": 3_600_000, "D": 86_400_000, "W": 604_800_000}
_CANDLE_CHANNEL = "candle"


class UnknownBar(ValueError):
    """A name that is not an OKX bar."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown bar {name!r}")
        self.name = name


def _parse(name: str) -> tuple[int, str]:
    match = _BAR.match(name)
    if match is None or int(match.group(1)) == 0:
        raise UnknownBar(name)
    return int(match.group(1)), match.group(2)


def is_bar(name: str) -> bool:
    """True for an OKX bar name."""
    try:
        _parse(name)
    except UnknownBar:
        return False
    return True


def bar_ms(name: str) -> int | None:
    """Length of a bar in ms; None for calendar-month bars and for names that are no bar."""
    try:
        count, unit = _parse(name)
    except UnknownBar:
        return None
    return None if unit == "M" else count * _UNIT_MS[unit]


def close_time(open_time: datetime, name: str) -> datetime:
    """A candle's close time: its open time plus one bar (calendar months for `M`)."""
    count, unit = _parse(name)
    if unit == "M":
        months = open_time.month - 1 + count
        return open_time.replace(year=open_time.year + months // 12, month=months % 12 + 1)
    return open_time + timedelta(milliseconds=count * _UNIT_MS[unit])


def channel_bar(channel: str) -> str | None:
    """The bar of a candle channel (`candle1H` -> `1H`); None for any other channel."""
    if not channel.startswith(_CANDLE_CHANNEL):
        return None
    name = channel.removeprefix(_CANDLE_CHANNEL)
    return name if is_bar(name) else None
