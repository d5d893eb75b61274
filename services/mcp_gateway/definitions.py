"""Metric definitions (DESIGN §6), returned with every get_performance_metrics answer."""

from __future__ import annotations

DEFINITIONS: dict[str, str] = {
    "window": "daily = trailing 24 h, weekly = trailing 7 days, all_time = since the first fill; "
    "window_start / window_end are the bounds used.",
    "sharpe_ratio": "Equity sampled at the end of each 5-minute bucket, simple returns, "
    "mean / sample std x sqrt(365 x 288), risk-free rate 0; null with fewer than 2 returns.",
    "win_rate": "Closed positions with net realized PnL > 0 / closed positions, by exit time.",
    "average_leverage": "Mean leverage over orders filled in the window.",
    "average_confidence": "Mean confidence (0-100) over orders filled in the window.",
    "biggest_win_usdt": "Largest net realized PnL of a closed position.",
    "biggest_loss_usdt": "Smallest (most negative) net realized PnL of a closed position.",
    "hold_ratio_long/short/flat": "Share of window time whose signed open notional (entry prices, "
    "all symbols) is > 0 / < 0 / = 0; the three sum to 1.",
    "realized_pnl_usdt": "Sum of the net realized PnL (price PnL + fees + funding) of closed positions.",
    "calibration": "Closed positions grouped by the confidence of their opening fills: count, "
    "win rate and mean net PnL per bucket. Well calibrated = higher buckets win more often.",
}
