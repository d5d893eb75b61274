"""Candle bar names (`1m`, `4H`, `1D`, `1Dutc` …) and their boundaries."""

from __future__ import annotations

from dataclasses import dataclass

MIN_MS = 60_000
HOUR_MS = 60 * MIN_MS
DAY_MS = 24 * HOUR_MS
UTC8_MS = 8 * HOUR_MS
# 1970-01-01 was a Thursday; OKX weeks open on Monday.
MONDAY_SHIFT_MS = 3 * DAY_MS

_UNITS = {"m": MIN_MS, "H": HOUR_MS, "D": DAY_MS, "W": 7 * DAY_MS}
SUPPORTED = (
    "1m 3m 5m 15m 30m 1H 2H 4H 6H 12H 1D 2D 3D 5D 1W "
    "6Hutc 12Hutc 1Dutc 2Dutc 3Dutc 5Dutc 1Wutc"
).split()


@dataclass(frozen=True)
class Bar:
    """A bar size: its OKX name, length and the offset its boundaries are aligned to."""

    name: str
    ms: int
    shift_ms: int  # boundaries sit at k * ms - shift_ms

    def start(self, t_ms: int) -> int:
        """Open time of the bar containing t_ms."""
        return (t_ms + self.shift_ms) // self.ms * self.ms - self.shift_ms


def parse_bar(name: str) -> Bar:
    """The Bar for an OKX bar name; ValueError for names the simulator does not serve."""
    if name not in SUPPORTED:
        raise ValueError(name)
    utc = name.endswith("utc")
    core = name.removesuffix("utc")
    unit = core[-1]
    ms = int(core[:-1]) * _UNITS[unit]
    shift = 0
    if ms >= 6 * HOUR_MS and not utc:
        shift = UTC8_MS  # OKX: 6H and longer bars open on UTC+8 boundaries
    if unit == "W":
        shift += MONDAY_SHIFT_MS
    return Bar(name, ms, shift)


def channel_bar(channel: str) -> Bar | None:
    """The Bar of a `candle<bar>` channel name, or None."""
    if not channel.startswith("candle"):
        return None
    try:
        return parse_bar(channel.removeprefix("candle"))
    except ValueError:
        return None
