"""Bar names, lengths and candle close times (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import get_args

import pytest

from shared.bars import Timeframe, UnknownBar, bar_ms, channel_bar, close_time, is_bar
from tests.shared.cases import BAR_CASES, T0


@pytest.mark.parametrize(("name", "length", "closes"), BAR_CASES)
def test_bar(name: str, length: int | None, closes: datetime | None) -> None:
    assert bar_ms(name) == length
    assert is_bar(name) == (closes is not None)
    assert channel_bar(f"candle{name}") == (name if closes is not None else None)
    if closes is None:
        with pytest.raises(UnknownBar, match="unknown bar"):
            close_time(T0, name)
    else:
        assert close_time(T0, name) == closes


def test_every_served_timeframe_has_a_fixed_length() -> None:
    assert all(bar_ms(name) for name in get_args(Timeframe))


def test_only_candle_channels_have_a_bar() -> None:
    assert channel_bar("tickers") is None and channel_bar("candle") is None
