"""Benchmark: the indicator update per confirmed candle (target < 2 ms).

    .venv/bin/python benchmarks/indicators.py

Measured in process, without the database: extending a full 1,000-close tail and computing
EMA20/50, MACD, RSI7/14 from it (what `MarketHandlers.on_candle` does before its one upsert),
and a raw reference on the same closes: TA-Lib over the same 1,000-close window.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import talib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.metrics.calculations import indicators
from services.metrics.series import CloseSeries
from shared.definitions import INDICATOR_WINDOW

CANDLES = 5_000


def main() -> None:
    rng = np.random.default_rng(1)
    walk = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.004, CANDLES + INDICATOR_WINDOW)))
    prices = [Decimal(f"{p:.2f}") for p in walk]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = prices[:INDICATOR_WINDOW]
    series = CloseSeries.from_rows([(t0 + timedelta(minutes=i), p) for i, p in enumerate(first)])
    ours, reference = [], []
    for i in range(INDICATOR_WINDOW, len(prices)):
        started = time.perf_counter()
        series = series.extended(t0 + timedelta(minutes=i), prices[i])
        indicators(series.values())
        ours.append(time.perf_counter() - started)
        closes = np.array(series.closes)
        started = time.perf_counter()
        for period in (20, 50, 12, 26):
            talib.EMA(closes, period)
        talib.RSI(closes, 7)
        talib.RSI(closes, 14)
        reference.append(time.perf_counter() - started)
    ms = [x * 1000 for x in ours]
    ref = [x * 1000 for x in reference]
    p99 = statistics.quantiles(ms, n=100)[98]
    print(f"indicator update per candle ({CANDLES} candles, window {INDICATOR_WINDOW}): "
          f"median {statistics.median(ms):.3f} ms, p99 {p99:.3f} ms (target < 2 ms)")
    print(f"raw reference, TA-Lib over the same window: median {statistics.median(ref):.3f} ms; "
          f"ratio {statistics.median(ms) / statistics.median(ref):.1f}")


if __name__ == "__main__":
    main()
