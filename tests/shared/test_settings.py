"""The market settings every service shares (symbols, timeframes) are refused by the settings
classes themselves, in one line naming the variable: `up`, `aitrader run` and a service's own
class all see the same rule (pure: no server)."""

from __future__ import annotations

import pytest

from services.ingest.config import IngestSettings
from services.metrics.config import MetricsSettings
from shared.errors import ConfigError
from shared.settings import Settings, load_settings

SYMBOL_RULE = "allowed: BASE-USDT-SWAP instrument ids, e.g. BTC-USDT-SWAP,ETH-USDT-SWAP"
BAR_RULE = "allowed: a count 1-99 and a unit s, m, H, D, W or M, optionally with 'utc', e.g. 1m,3m,5m,"


@pytest.mark.parametrize("cls", [Settings, IngestSettings, MetricsSettings])
def test_okx_names_are_accepted(cls: type[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITRADER_SYMBOLS", "BTC-USDT-SWAP, 1000PEPE-USDT-SWAP")
    monkeypatch.setenv("AITRADER_TIMEFRAMES", "1m,4H,1Dutc,15s")
    settings = load_settings(cls)
    assert settings.symbols == ["BTC-USDT-SWAP", "1000PEPE-USDT-SWAP"]
    assert settings.timeframes == ["1m", "4H", "1Dutc", "15s"]


@pytest.mark.parametrize("symbol", ["BTCUSDT", "BTC-USDT", "btc-usdt-swap", "BTC-USD-SWAP", "BTC-USDT-SWAP1"])
@pytest.mark.parametrize("cls", [Settings, IngestSettings, MetricsSettings])
def test_a_symbol_okx_does_not_trade_as_a_usdt_swap_is_one_line(
    cls: type[Settings], symbol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITRADER_SYMBOLS", f"ETH-USDT-SWAP,{symbol}")
    with pytest.raises(ConfigError) as caught:
        load_settings(cls)
    assert str(caught.value) == (
        f"AITRADER_SYMBOLS: {symbol!r} is not an OKX USDT-margined swap; {SYMBOL_RULE}")


@pytest.mark.parametrize("bar", ["5min", "4h", "100m", "1Y", "m"])
@pytest.mark.parametrize("cls", [Settings, IngestSettings, MetricsSettings])
def test_a_timeframe_okx_does_not_know_is_one_line(
    cls: type[Settings], bar: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITRADER_TIMEFRAMES", f"3m,{bar}")
    with pytest.raises(ConfigError) as caught:
        load_settings(cls)
    line = str(caught.value)
    assert line.startswith(f"AITRADER_TIMEFRAMES: unknown bar {bar!r}; {BAR_RULE}") and "\n" not in line
