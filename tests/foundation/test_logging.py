"""Secrets never reach the logs: secret keys are masked and registered values are replaced."""

from __future__ import annotations

import json

import pytest

from shared.logging import configure_logging, get_logger, redact, register_secrets
from shared.settings import Settings, load_settings


def test_redact_masks_secret_keys_and_registered_values() -> None:
    register_secrets(["s3cr3t-passphrase"])
    payload = {
        "api_key": "abc",
        "OK-ACCESS-SIGN": "xyz",
        "nested": [{"note": "pw is s3cr3t-passphrase"}],
        "signal_strength": 3,
        "symbol": "BTC-USDT-SWAP",
    }
    assert redact(payload) == {
        "api_key": "***",
        "OK-ACCESS-SIGN": "***",
        "nested": [{"note": "pw is ***"}],
        "signal_strength": 3,
        "symbol": "BTC-USDT-SWAP",
    }


def test_settings_register_their_secrets_and_logs_are_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITRADER_OKX_API_KEY", "key-4f9a2c")
    monkeypatch.setenv("AITRADER_OKX_SECRET_KEY", "secret-77e1d0")
    monkeypatch.setenv("AITRADER_OKX_PASSPHRASE", "phrase-0a0a0a")
    settings = load_settings(Settings)
    configure_logging(fmt="json")
    get_logger("t").info(
        "connecting",
        url="wss://x",
        detail=f"login with {settings.okx_secret_key.get_secret_value()}",  # type: ignore[union-attr]
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "connecting" and line["detail"] == "login with ***"
    assert "secret-77e1d0" not in json.dumps(line)
    assert "secret-77e1d0" not in repr(settings)
