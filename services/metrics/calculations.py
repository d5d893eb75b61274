"""Pure core of the indicators: candle checks and EMA / MACD / RSI of one close series (polars).

Every indicator value is a function of the trailing `INDICATOR_WINDOW` closes ending at its
candle, never of arrival order or process history, so a restart, a late candle or a repeated
candle all give the same row. Inside the window the seeding is TA-Lib's: EMA(n) starts from
the SMA of the first n closes, RSI(n) from the mean gain / loss of the first n changes. The
seeded recursion is evaluated as one dot product with precomputed weights (same value, and
cheap enough to recompute per candle).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

import polars as pl

from shared import bars
from shared.definitions import (
    EMA_PERIODS,
    INDICATOR_WINDOW,
    RSI_FLAT,
    RSI_PERIODS,
)
from shared.messages import Candle
from shared.money import Q8, quantize

# NUMERIC(20, 8) holds 12 integer digits.
MAX_PRICE = Decimal(10) ** 12


class InvalidCandle(ValueError):
    """A candle that must not reach the indicator state (the message says why)."""


@dataclass(frozen=True)
class Indicators:
    """Indicator values of one candle; None during warm-up."""

    ema20: float | None
    ema50: float | None
    macd: float | None
    rsi7: float | None
    rsi14: float | None


def check_candle(candle: Candle) -> Decimal:
    """Reject an impossible candle; return its close rounded to the stored 8 decimals."""
    prices = {"open": candle.open, "high": candle.high, "low": candle.low, "close": candle.close}
    for name, value in prices.items():
        if not value.is_finite() or value <= 0:
            raise InvalidCandle(f"{name} must be a positive number, got {value}")
        if value >= MAX_PRICE:
            raise InvalidCandle(f"{name} {value} exceeds NUMERIC(20, 8)")
    if not candle.volume.is_finite() or candle.volume < 0:
        raise InvalidCandle(f"volume must be a non-negative number, got {candle.volume}")
    if candle.low > min(candle.open, candle.close) or candle.high < max(candle.open, candle.close):
        raise InvalidCandle(
            f"inconsistent candle: low {candle.low} / high {candle.high} do not bracket "
            f"open {candle.open} and close {candle.close}"
        )
    close = quantize(candle.close, Q8)
    if close <= 0:
        raise InvalidCandle(f"close {candle.close} rounds to zero at 8 decimals")
    return close


@lru_cache(maxsize=16)
def _decay(alpha: float, size: int) -> pl.Series:
    """alpha * (1 - alpha)^k for k = size - 1 down to 0: the weight of a value k steps
    before the last one."""
    k = pl.int_range(size - 1, -1, step=-1, dtype=pl.Int64)
    return pl.select((alpha * pl.lit(1.0 - alpha).pow(k)).alias("w")).to_series()


@lru_cache(maxsize=64)
def seeded_weights(alpha: float, period: int, length: int) -> pl.Series:
    """Weights w with w . x == the last value of the recursion y = a x + (1 - a) y_prev seeded
    with the mean of x[:period]; len(x) == length >= period."""
    seed = (1.0 - alpha) ** (length - period) / period
    decay = _decay(alpha, max(length, INDICATOR_WINDOW)).tail(length - period)
    return pl.concat([pl.repeat(seed, period, dtype=pl.Float64, eager=True), decay])


def _dot(values: pl.Series, weights: pl.Series) -> float:
    product = values.dot(weights)
    if product is None:
        raise ValueError("dot product of an empty series")
    return float(product)


def ema(window: pl.Series, period: int) -> float | None:
    """EMA(period), alpha = 2 / (period + 1), of the window's last close; None if too short."""
    if len(window) < period:
        return None
    return _dot(window, seeded_weights(2.0 / (period + 1), period, len(window)))


def rsi(window: pl.Series, period: int) -> float | None:
    """Wilder RSI(period) at the window's last close; None with fewer than period changes."""
    return _wilder_rsi(*_moves(window), period)


def _moves(window: pl.Series) -> tuple[pl.Series, pl.Series]:
    changes = window.diff().slice(1)
    return changes.clip(lower_bound=0.0), (-changes).clip(lower_bound=0.0)


def _wilder_rsi(gains: pl.Series, losses: pl.Series, period: int) -> float | None:
    if len(gains) < period:
        return None
    weights = seeded_weights(1.0 / period, period, len(gains))
    gain, loss = _dot(gains, weights), _dot(losses, weights)
    if gain + loss == 0.0:
        return RSI_FLAT
    return 100.0 * gain / (gain + loss)


def _values(tail: pl.Series, gains: pl.Series, losses: pl.Series) -> Indicators:
    emas = {period: ema(tail, period) for period in EMA_PERIODS}
    rsis = {period: _wilder_rsi(gains, losses, period) for period in RSI_PERIODS}
    fast, slow = emas[12], emas[26]
    return Indicators(
        ema20=emas[20],
        ema50=emas[50],
        macd=None if fast is None or slow is None else fast - slow,
        rsi7=rsis[7],
        rsi14=rsis[14],
    )


def indicators(closes: pl.Series, window: int = INDICATOR_WINDOW) -> Indicators:
    """Indicators of the last close of `closes` (oldest first), from its trailing window."""
    tail = closes.cast(pl.Float64).tail(window)
    return _values(tail, *_moves(tail))


def indicator_series(closes: pl.Series, start: int = 0, window: int = INDICATOR_WINDOW) -> pl.DataFrame:
    """Indicators of every close from index `start` on, each from its own trailing window
    (the same numbers `indicators` gives for that window: the moves are only sliced)."""
    closes = closes.cast(pl.Float64)
    gains, losses = _moves(closes)  # gains[i]: the move from close i to close i + 1
    rows = []
    for end in range(start, len(closes)):
        first = max(0, end + 1 - window)
        tail = closes.slice(first, end + 1 - first)
        moves = (gains.slice(first, end - first), losses.slice(first, end - first))
        rows.append(_values(tail, *moves).__dict__)
    schema = {name: pl.Float64 for name in ("ema20", "ema50", "macd", "rsi7", "rsi14")}
    return pl.DataFrame(rows, schema=schema)


def to_numeric(value: float | None, places: int) -> Decimal | None:
    """A float statistic as the Decimal stored in a NUMERIC(_, places) column."""
    if value is None:
        return None
    return quantize(Decimal(repr(value)), Decimal(1).scaleb(-places))


def close_time(open_time: datetime, bar: str) -> datetime:
    """A candle's close time (`as_of`, by `shared.bars`); a bar name that is no OKX bar makes
    the candle invalid."""
    try:
        return bars.close_time(open_time, bar)
    except bars.UnknownBar as exc:
        raise InvalidCandle(str(exc)) from exc
