"""The metric definitions (DESIGN §6, docs/metrics.md): the pinned values the metrics service
computes with, the words the gateway gives the model, and their one version.

Changing any value or text here is a new `DEFINITIONS_VERSION`. Metrics stores it beside every
performance row (`performance_snapshots.definitions_version`); the gateway returns the stored
row's version with `DEFINITIONS`, so a reader knows which definitions its numbers follow.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Final

from shared.types import Window

DEFINITIONS_VERSION: Final = "2026-12-2"

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

# Returned with every get_performance_metrics answer.
DEFINITIONS: Final[dict[str, str]] = {
    "window": "daily = trailing 24 h, weekly = trailing 7 days, all_time = since the first fill; "
    "window_start / window_end are the bounds used.",
    "sharpe_ratio": "Equity sampled at the end of each 5-minute bucket, simple returns, "
    "mean / sample std x sqrt(365 x 288), risk-free rate 0; null with fewer than 2 returns.",
    "max_drawdown_pct": "The largest fall from a running peak of equity, in percent of that peak, "
    "over the window's equity points in time order (0 if it never fell); null with no point "
    "above 0.",
    "win_rate": "Closed positions with net realized PnL > 0 / closed positions, by exit time.",
    "average_leverage": "Mean leverage over orders filled in the window.",
    "average_confidence": "Mean confidence (0-100) over orders filled in the window.",
    "biggest_win_usdt": "Largest net realized PnL of a closed position.",
    "biggest_loss_usdt": "Smallest (most negative) net realized PnL of a closed position.",
    "hold_ratio_long/short/flat": "Share of window time whose signed open notional (entry prices, "
    "all symbols) is > 0 / < 0 / = 0; the three sum to 1.",
    "realized_pnl_usdt": "Sum of the net realized PnL (price PnL + fees + funding) of closed positions.",
    "exit_attribution": "Closed positions of the window by exit_reason (agent = your own close, "
    "take_profit / stop_loss = your exit plan's algo order fired, liquidation, adl, external, "
    "reconcile): count and sum of net realized PnL.",
    "stop_loss_resting_ratio": "Closed positions that had a stop-loss resting on the exchange when "
    "they closed / closed positions: an algo order of the position with a stop-loss leg, placed "
    "by the exit and live at it (still live, ended at or after the exit, or the one whose firing "
    "closed it); null with no closed position.",
    "calibration": "Closed positions grouped by the confidence of their opening fills: count, "
    "win rate and mean net PnL per bucket. Well calibrated = higher buckets win more often.",
}
