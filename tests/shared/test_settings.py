"""The market settings every service shares (symbols, timeframes) are refused by the settings
classes themselves, in one line naming the variable: `up`, `aitrader run` and a service's own
class all see the same rule (pure: no server)."""

from __future__ import annotations

import pytest

from services.ingest.config import IngestSettings
from services.metrics.config import MetricsSettings
from shared.errors import ConfigError
from shared.settings import Settings, load_settings, nats_servers, redact_url

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


@pytest.mark.parametrize(("value", "servers"), [
    pytest.param("nats://127.0.0.1:4222", ["nats://127.0.0.1:4222"], id="one"),
    pytest.param("nats://n1:4222, nats://n2:4222,nats://n3:4222",
                 ["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"], id="a-cluster"),
    pytest.param("tls://u:p@n1:4222,wss://n2:443", ["tls://u:p@n1:4222", "wss://n2:443"], id="schemes"),
])
def test_the_nats_url_is_one_server_or_a_list(value: str, servers: list[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITRADER_NATS_URL", value)
    assert nats_servers(load_settings(Settings).require_nats_url()) == servers


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("nats://n1:4222,,nats://n3:4222", "server 2 of 3 is empty", id="empty-entry"),
    pytest.param("nats://n1:4222,http://u:hunter22@n2:4222",
                 "server 2 of 2 is 'http://***@n2:4222'", id="wrong-scheme-credentials-hidden"),
    pytest.param("nats://n1:4222,nats://n2:42x", "bad port", id="bad-port"),
    pytest.param("nats://n1:4222,nats://n1:4222", "a server is listed twice", id="twice"),
])
def test_a_bad_server_list_is_one_line_naming_the_entry(value: str, expected: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITRADER_NATS_URL", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(Settings)
    assert str(caught.value).startswith("AITRADER_NATS_URL: ") and expected in str(caught.value)
    assert "hunter22" not in str(caught.value)


def test_every_servers_password_or_token_is_a_secret_and_urls_are_shown_without_them() -> None:
    settings = Settings(nats_url="nats://app:pa55word@n1:4222,nats://s3cr3tt0ken@n2:4222,nats://n3:4222")
    assert set(settings.secret_values()) == {"pa55word", "s3cr3tt0ken"}
    assert redact_url("nats://app:pa55word@n1:4222") == "nats://***@n1:4222"
    assert redact_url("nats://n3:4222") == "nats://n3:4222"


@pytest.mark.parametrize("replicas", ["0", "6", "three"])
def test_the_stream_replicas_are_one_to_five(replicas: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITRADER_NATS_STREAM_REPLICAS", replicas)
    with pytest.raises(ConfigError) as caught:
        load_settings(Settings)
    assert str(caught.value).startswith("AITRADER_NATS_STREAM_REPLICAS: ")
