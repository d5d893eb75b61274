"""The pinned metric definitions (DESIGN §6, docs/metrics.md). Changing any value here is a new
`DEFINITIONS_VERSION`: it is stored beside every performance row so readers know what they got."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Final, Literal

DEFINITIONS_VERSION: Final = "2026-11-1"

Window = Literal["daily", "weekly", "all_time"]
WINDOWS: Final[tuple[Window, ...]] = ("daily", "weekly", "all_time")
# Trailing lengths; all_time starts at the account's first activity (see docs/metrics.md).
WINDOW_LENGTHS: Final[dict[Window, timedelta | None]] = {
    "daily": timedelta(hours=24),
    "weekly": timedelta(days=7),
    "all_time": None,
}

# Sharpe: equity sampled at the end of each UTC-aligned 5-minute bucket.
SHARPE_BUCKET: Final = timedelta(minutes=5)
SHARPE_ANNUALIZATION: Final = math.sqrt(365 * 288)

# Confidence calibration buckets: [low, high) except the last, which includes 100.
CONFIDENCE_BUCKETS: Final[tuple[tuple[str, int, int], ...]] = (
    ("0-50", 0, 50),
    ("50-70", 50, 70),
    ("70-85", 70, 85),
    ("85-100", 85, 101),
)

# Indicators: every row is computed from the trailing INDICATOR_WINDOW closes (fewer at the
# start of a series). Long enough that truncation is far below 1e-6 relative (EMA50 keeps a
# weight of (49/51)^950 ~ 3e-17 on what precedes the window), short enough for 2 ms per candle.
INDICATOR_WINDOW: Final = 1000
EMA_PERIODS: Final = (12, 20, 26, 50)
RSI_PERIODS: Final = (7, 14)
# RSI when the window has neither gains nor losses (TA-Lib says 0, which reads as "oversold").
RSI_FLAT: Final = 50.0
