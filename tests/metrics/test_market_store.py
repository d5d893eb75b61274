"""Candles -> market_snapshots on a real PostgreSQL: TA-Lib values, late / repeated candles,
restart, rejected candles, funding rate and open interest."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np
import pytest
import talib

from services.metrics.handlers import MarketHandlers
from shared.errors import PermanentError
from shared.messages import Candle, FundingRate, OpenInterest
from tests.factories import create_instruments

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
T0 = datetime(2026, 2, 1, tzinfo=UTC)
BAR = timedelta(minutes=3)
COLUMNS = "as_of, price, ema20, ema50, macd, rsi7, rsi14"


def walk(n: int, seed: int = 5) -> list[Decimal]:
    rng = np.random.default_rng(seed)
    prices = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    return [Decimal(f"{p:.2f}") for p in prices]


def candle(i: int, close: Decimal, symbol: str = BTC, **changes: Any) -> Candle:
    fields: dict[str, Any] = dict(
        ts_event=T0 + i * BAR, inst_id=symbol, bar="3m", open_time=T0 + i * BAR, open=close,
        high=close, low=close, close=close, volume=Decimal(1), confirmed=True,
    )
    return Candle.model_validate({**fields, **changes})


async def rows(pool: asyncpg.Pool, symbol: str) -> list[tuple[Any, ...]]:
    records = await pool.fetch(
        f"SELECT {COLUMNS} FROM aitrader.market_snapshots WHERE symbol = $1 ORDER BY as_of",
        symbol,
    )
    return [tuple(r) for r in records]


async def handlers(pool: asyncpg.Pool) -> MarketHandlers:
    market = MarketHandlers(pool, [BTC, ETH], ["3m"])
    await market.start()
    return market


async def test_stored_indicators_match_talib(db_pool: asyncpg.Pool) -> None:
    closes = walk(400)
    market = await handlers(db_pool)
    for i, close in enumerate(closes):
        assert await market.on_candle(candle(i, close)) == "stored"
    stored = await rows(db_pool, BTC)
    assert [r[0] for r in stored] == [T0 + (i + 1) * BAR for i in range(400)]  # close times
    assert [r[1] for r in stored] == closes
    c = np.array([float(x) for x in closes])
    reference = {2: talib.EMA(c, 20), 3: talib.EMA(c, 50), 4: talib.EMA(c, 12) - talib.EMA(c, 26),
                 5: talib.RSI(c, 7), 6: talib.RSI(c, 14)}
    for column, expected in reference.items():
        values = np.array([float(r[column]) for r in stored[300:]])
        # stored rounded: 8 decimals (EMA, MACD), 4 (RSI)
        np.testing.assert_allclose(values, expected[300:], rtol=1e-6, atol=1e-4)
    assert stored[18][2] is None and stored[19][2] is not None  # EMA20 warm-up


async def test_late_repeated_and_restarted_candles_give_the_same_rows(
    db_pool: asyncpg.Pool,
) -> None:
    await create_instruments(db_pool)
    closes = walk(160, seed=9)
    reference = await handlers(db_pool)
    for i, close in enumerate(closes):
        await reference.on_candle(candle(i, close, ETH))

    order = list(range(60)) + list(range(70, 80)) + list(range(60, 70)) + list(range(80, 110))
    order += random.Random(3).sample(range(110), 15)  # redeliveries of old candles
    market = await handlers(db_pool)
    outcomes = [await market.on_candle(candle(i, closes[i])) for i in order]
    assert sum(o.startswith("late") for o in outcomes) == 25
    restarted = await handlers(db_pool)  # a new process: state rebuilt from stored closes
    for i in [*range(110, 160), 159, 158]:
        await restarted.on_candle(candle(i, closes[i]))
    assert await rows(db_pool, BTC) == await rows(db_pool, ETH)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"high": Decimal(1)}, "inconsistent candle", id="high-below-close"),
        pytest.param({"open": Decimal("1e13"), "high": Decimal("1e13")}, "exceeds NUMERIC",
                     id="too-large"),
        pytest.param({"inst_id": "DOGE-USDT-SWAP"}, "unknown symbol", id="unknown-symbol"),
    ],
)
async def test_rejected_candle_never_poisons_the_state(
    db_pool: asyncpg.Pool, changes: dict[str, Any], reason: str
) -> None:
    closes = walk(60, seed=2)
    clean = await handlers(db_pool)
    poisoned = await handlers(db_pool)
    for i, close in enumerate(closes):
        await clean.on_candle(candle(i, close, ETH))
        if i == 30:
            with pytest.raises(PermanentError, match=reason):
                await poisoned.on_candle(candle(i + 1, close, **changes))
        await poisoned.on_candle(candle(i, close))
    assert await rows(db_pool, BTC) == await rows(db_pool, ETH)


async def test_unconfirmed_candles_and_other_bars_are_ignored(db_pool: asyncpg.Pool) -> None:
    market = await handlers(db_pool)
    assert await market.on_candle(candle(0, Decimal(1), confirmed=False)) == "ignored: not confirmed"
    assert (await market.on_candle(candle(0, Decimal(1), bar="1H"))).startswith("ignored: bar 1H")
    assert await rows(db_pool, BTC) == []


async def test_snapshot_has_funding_and_open_interest_known_at_close(db_pool: asyncpg.Pool) -> None:
    market = await handlers(db_pool)
    close_at = T0 + BAR
    for ts, rate in [(close_at - timedelta(hours=8), "0.0001"), (close_at, "0.00025"),
                     (close_at + timedelta(seconds=1), "0.9")]:
        await market.on_funding_rate(FundingRate(ts_event=ts, inst_id=BTC, funding_rate=Decimal(rate)))
    for ts, oi in [(close_at - timedelta(hours=25), "1000"), (close_at - timedelta(hours=20), "200"),
                   (close_at - timedelta(minutes=1), "400"), (close_at + timedelta(minutes=1), "9")]:
        await market.on_open_interest(OpenInterest(ts_event=ts, inst_id=BTC, oi=Decimal(oi)))
    await market.on_candle(candle(0, Decimal(100)))
    row = await db_pool.fetchrow(
        "SELECT funding_rate, open_interest, open_interest_avg FROM aitrader.market_snapshots"
    )
    # latest at or before the close; the average of the samples in the 24 h before it
    assert tuple(row) == (Decimal("0.00025000"), Decimal("400.0000"), Decimal("300.0000"))
