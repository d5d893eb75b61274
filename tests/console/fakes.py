"""Answers in the shapes CONSOLE.md's contract gives for the endpoints other branches build
(/leaderboard, equity, performance, calibration, /market): the browser tests serve them through
route interception so every page's drawing code runs before those endpoints are merged."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

from tests.console.seed import T0


def iso(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def candles(n: int = 80) -> list[dict[str, Any]]:
    """/market/{symbol}'s candles (a deterministic wave), oldest first."""
    out, close = [], Decimal("50000")
    for i in range(n):
        open_, close = close, close + Decimal((i * 37) % 11 - 5) * 12
        out.append(
            {
                "time": iso(3 * i),
                "open": str(open_),
                "high": str(max(open_, close) + 20),
                "low": str(min(open_, close) - 20),
                "close": str(close),
                "volume": "12.5",
                "ema20": str(close - 15),
                "ema50": str(close - 40),
                "macd": "1.5",
                "rsi7": str(30 + (i * 7) % 40),
                "rsi14": str(35 + (i * 3) % 30),
            }
        )
    return out


def _row(external_id: str, mode: str, equity: str, ret: str | None) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "mode": mode,
        "equity_usdt": equity,
        "return_pct": ret,
        "sharpe_ratio": "1.42" if ret else None,
        "win_rate": "0.55" if ret else None,
        "max_drawdown_pct": "-3.2" if ret else None,
        "trades": 12 if ret else 0,
        "fees_usdt": "-4.1",
        "average_leverage": "5",
        "average_confidence": "0.7",
        "realized_pnl_usdt": "52.3" if ret else "0",
    }


PERFORMANCE = {
    "available": True,
    "window": "all_time",
    "sharpe_ratio": "1.42",
    "win_rate": "0.55",
    "hold_ratio_long": "0.5",
    "hold_ratio_short": "0.2",
    "hold_ratio_flat": "0.3",
    "biggest_win_usdt": "30.1",
    "biggest_loss_usdt": "-12.4",
    "closed_positions": 12,
    "realized_pnl_usdt": "52.3",
    "stop_loss_resting_ratio": "0.9",
    "definitions_version": 3,
    "updated_at": iso(300),
    "exit_attribution": [
        {"exit_reason": "take_profit", "closed_positions": 5, "realized_pnl_usdt": "70.2"},
        {"exit_reason": "stop_loss", "closed_positions": 4, "realized_pnl_usdt": "-30.5"},
    ],
}

# path template (as in the API document) -> answer
FAKES: dict[str, Any] = {
    "/api/v1/leaderboard": {
        "window": "all_time",
        "as_of": iso(300),
        "items": [_row("B", "simulated", "1052.3", "5.23"), _row("A", "simulated", "998.1", None)],
    },
    "/api/v1/accounts/{external_id}/equity": {
        "step": "1h",
        "points": [{"time": iso(60 * h), "equity_usdt": str(1000 + h * 7 - (h % 3) * 9)} for h in range(12)],
    },
    "/api/v1/accounts/{external_id}/performance": PERFORMANCE,
    "/api/v1/accounts/{external_id}/calibration": {
        "window": "all_time",
        "buckets": [
            {"bucket": "0.5-0.6", "closed_positions": 4, "win_rate": "0.5", "mean_pnl_usdt": "1.2"},
            {"bucket": "0.8-0.9", "closed_positions": 8, "win_rate": "0.625", "mean_pnl_usdt": "5.9"},
        ],
    },
    "/api/v1/market/{symbol}": {"symbol": "BTC-USDT-SWAP", "timeframe": "3m", "candles": candles()},
}


def matching(path: str) -> Any:
    """The fake answer for a request path, or None."""
    for template, answer in FAKES.items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return answer
    return None
