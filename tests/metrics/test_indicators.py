"""Indicators: TA-Lib agreement, the trailing-window definition, warm-up and hand cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
import talib

from services.metrics.calculations import (
    InvalidCandle,
    check_candle,
    close_time,
    ema,
    indicator_series,
    indicators,
    rsi,
)
from shared.messages import Candle
from tests.shared.cases import BAR_CASES
from tests.shared.cases import T0 as BAR_T0


def random_walk(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 30_000 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))


def talib_reference(closes: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "ema20": talib.EMA(closes, 20),
        "ema50": talib.EMA(closes, 50),
        "macd": talib.MACD(closes, 12, 26, 9)[0],
        "rsi7": talib.RSI(closes, 7),
        "rsi14": talib.RSI(closes, 14),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_talib_on_a_random_walk_from_candle_300(seed: int) -> None:
    closes = random_walk(1000, seed)
    ours = indicator_series(pl.Series(closes))
    for name, reference in talib_reference(closes).items():
        np.testing.assert_allclose(
            ours[name].to_numpy()[300:], reference[300:], rtol=1e-6, atol=0, err_msg=name
        )
    # MACD as defined: EMA12 - EMA26 (TA-Lib's MACD seeds EMA12 later; both converge).
    difference = talib.EMA(closes, 12) - talib.EMA(closes, 26)
    np.testing.assert_allclose(ours["macd"].to_numpy()[300:], difference[300:], rtol=1e-6)


def test_each_value_is_talib_over_its_trailing_window_of_1000_closes() -> None:
    closes = random_walk(1400, 7)
    ours = indicator_series(pl.Series(closes), start=1000)
    for offset, end in enumerate((1000, 1200, 1399)):
        window = closes[end - 999 : end + 1]
        row = ours.row(end - 1000, named=True)
        for name, reference in talib_reference(window).items():
            assert row[name] == pytest.approx(reference[-1], rel=1e-12), (name, offset)
    full = talib_reference(closes)
    for name, reference in full.items():
        np.testing.assert_allclose(ours[name].to_numpy(), reference[1000:], rtol=1e-6)


def test_warm_up_is_null_until_enough_closes() -> None:
    closes = pl.Series([float(i) for i in range(1, 51)])
    first = indicator_series(closes)
    assert first["ema20"].null_count() == 19 and first["ema20"][19] == pytest.approx(10.5)
    assert first["ema50"].null_count() == 49 and first["ema50"][49] == pytest.approx(25.5)
    assert first["macd"].null_count() == 25
    assert first["rsi7"].null_count() == 7 and first["rsi14"].null_count() == 14


@pytest.mark.parametrize(
    ("closes", "period", "expected"),
    [
        # seed SMA(1, 2, 3) = 2; alpha 0.5: 4 -> 3, 5 -> 4
        pytest.param([1, 2, 3, 4, 5], 3, 4.0, id="ema3-seeded-with-sma"),
        pytest.param([1, 2, 3], 3, 2.0, id="ema-equals-sma-at-warm-up"),
        pytest.param([1, 2], 3, None, id="ema-too-short"),
    ],
)
def test_ema_hand_cases(closes: list[float], period: int, expected: float | None) -> None:
    assert ema(pl.Series(closes, dtype=pl.Float64), period) == (
        None if expected is None else pytest.approx(expected)
    )


@pytest.mark.parametrize(
    ("closes", "period", "expected"),
    [
        # changes +1 -1 +2; seed gain 0.5 loss 0.5; Wilder: gain (0.5 + 2) / 2 = 1.25,
        # loss 0.5 / 2 = 0.25 -> 100 * 1.25 / 1.5
        pytest.param([10, 11, 10, 12], 2, 83.33333333333333, id="rsi2-wilder-step"),
        pytest.param([10, 11, 12, 13], 2, 100.0, id="only-gains"),
        pytest.param([13, 12, 11, 10], 2, 0.0, id="only-losses"),
        pytest.param([10, 10, 10, 10], 2, 50.0, id="flat-is-50-not-talib-0"),
        pytest.param([10, 11], 2, None, id="too-short"),
    ],
)
def test_rsi_hand_cases(closes: list[float], period: int, expected: float | None) -> None:
    assert rsi(pl.Series(closes, dtype=pl.Float64), period) == (
        None if expected is None else pytest.approx(expected)
    )


def test_indicators_use_only_the_last_window_closes() -> None:
    closes = random_walk(300, 11)
    noisy = np.concatenate([[1.0, 1e6, 5.0], closes])
    assert indicators(pl.Series(noisy), window=300) == indicators(pl.Series(closes), window=300)


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def candle(**changes: object) -> Candle:
    fields: dict[str, object] = dict(
        ts_event=T0, inst_id="BTC-USDT-SWAP", bar="3m", open_time=T0, open="100", high="110",
        low="90", close="105", volume="1", confirmed=True,
    )
    return Candle.model_validate({**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"high": "104"}, "inconsistent candle", id="high-below-close"),
        pytest.param({"low": "101"}, "inconsistent candle", id="low-above-open"),
        pytest.param({"close": "1e13", "high": "1e13"}, "exceeds NUMERIC", id="too-large"),
        pytest.param({"close": "0.000000001", "low": "0.000000001"}, "rounds to zero",
                     id="rounds-to-zero"),
    ],
)
def test_check_candle_rejects(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidCandle, match=reason):
        check_candle(candle(**changes))


def test_check_candle_rounds_close_to_8_decimals() -> None:
    assert check_candle(candle(close="105.123456789")) == Decimal("105.12345679")


@pytest.mark.parametrize(
    ("bar", "open_time", "expected"),
    [
        pytest.param("3m", T0, T0 + timedelta(minutes=3), id="3m"),
        pytest.param("4H", T0, T0 + timedelta(hours=4), id="4H"),
        pytest.param("1Dutc", T0, T0 + timedelta(days=1), id="1Dutc"),
        pytest.param("1W", T0, T0 + timedelta(weeks=1), id="1W"),
        pytest.param("1M", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC),
                     id="1M-over-new-year"),
    ],
)
def test_close_time(bar: str, open_time: datetime, expected: datetime) -> None:
    assert close_time(open_time, bar) == expected


@pytest.mark.parametrize("bar", ["", "m", "0m", "3x", "abc"])
def test_close_time_rejects_unknown_bars(bar: str) -> None:
    with pytest.raises(InvalidCandle, match="unknown bar"):
        close_time(T0, bar)


@pytest.mark.parametrize(("bar", "length", "closes"), BAR_CASES)
def test_close_time_of_every_bar_name(bar: str, length: int | None, closes: datetime | None) -> None:
    # shared.bars' rule as metrics applies it: a name that is no bar makes the candle invalid
    if closes is None:
        with pytest.raises(InvalidCandle, match="unknown bar"):
            close_time(BAR_T0, bar)
    else:
        assert close_time(BAR_T0, bar) == closes
