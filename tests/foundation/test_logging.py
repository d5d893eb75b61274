"""Secrets never reach the logs: secret keys are masked and registered values are replaced."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.logging import configure_logging, get_logger, may_hold_secret_value, redact, register_secrets
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


def test_redact_masks_a_secret_key_at_any_depth_unless_its_value_is_empty() -> None:
    """One walk for logs and the audit's tool results; its verdict per key is cached."""
    payload = {
        "orders": [{"sign": "abc", "token": None, "password": "", "sz": "1"}],
        "apiKey": {"x": 1},
        "signal": "buy",
    }
    expected = {
        "orders": [{"sign": "***", "token": None, "password": "", "sz": "1"}],
        "apiKey": "***",
        "signal": "buy",
    }
    assert redact(payload) == expected
    assert redact(payload) == expected  # again, from the cached verdicts
    assert redact("abc", "Authorization") == "***"
    assert (redact(None, "Authorization"), redact("abc")) == (None, "abc")


SECRET = 'p"ss\\wörd-9'  # JSON escapes the quote and the backslash; ASCII JSON also the ö
TEXTS = st.sampled_from(["BTC-USDT-SWAP", "61000.1", f"pw {SECRET}!", "", "signal", "tokenized"])
# Keys `redact` never masks: the only thing left to mask is a registered value in a string.
PLAIN_JSON = st.recursive(
    st.none() | st.integers() | TEXTS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["symbol", "note", "qty", "signal"]), inner, max_size=3),
    max_leaves=8,
)


def test_may_hold_secret_value_is_false_only_for_text_without_a_secret_value() -> None:
    register_secrets([SECRET])
    plain = {"positions": [{"symbol": "BTC-USDT-SWAP", "quantity": "3", "exit_plan": {"stop_loss": "1"}}]}
    assert not may_hold_secret_value(json.dumps(plain))
    assert may_hold_secret_value(json.dumps({"note": SECRET}))
    assert may_hold_secret_value(json.dumps({"note": SECRET}, ensure_ascii=False))
    assert may_hold_secret_value('{"note":"\\u0070w"}')  # an escape could spell one


@given(PLAIN_JSON, st.booleans())
def test_may_hold_secret_value_never_misses_what_redact_masks(value: object, ascii_only: bool) -> None:
    register_secrets([SECRET])
    text = json.dumps(value, ensure_ascii=ascii_only)
    if redact(value) != value:
        assert may_hold_secret_value(text)


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


def test_a_stdlib_exception_in_json_renders_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    register_secrets(["tb-secret-51c2"])
    configure_logging(fmt="json", service="svc")
    try:
        raise ValueError("boom with tb-secret-51c2")
    except ValueError:
        logging.getLogger("some.library").exception("request failed")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "request failed" and line["level"] == "error"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: boom with ***" in line["exception"]
    assert "<traceback object" not in json.dumps(line) and "exc_info" not in line
    assert (line["service"], line["logger"]) == ("svc", "some.library")


def test_httpx_request_lines_are_not_logged_but_its_warnings_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("debug", fmt="json")
    logging.getLogger("httpx").info('HTTP Request: GET http://x "HTTP/1.1 200 OK"')
    logging.getLogger("httpcore.connection").debug("connect_tcp.started")
    logging.getLogger("httpx").warning("retrying")
    events = [json.loads(x)["event"] for x in capsys.readouterr().err.strip().splitlines()]
    assert events == ["retrying"]


_SERVE = """
import asyncio
from starlette.applications import Starlette
from shared.http_server import listening_socket, serving_app
from shared.logging import configure_logging

async def main():
    configure_logging("info", "json", service="probe")
    sock = listening_socket("127.0.0.1", 0)
    async with serving_app(Starlette(), sock, "probe"):
        reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        writer.write(b"NOT HTTP\\r\\n\\r\\n")
        await asyncio.wait_for(reader.read(1024), 5)
        writer.close()

asyncio.run(main())
"""


def test_the_health_and_mcp_servers_log_in_the_process_format() -> None:
    """uvicorn inside a service (health, /metrics, MCP) logs through shared.logging: the same
    JSON as every other line, not uvicorn's own format."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _SERVE], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    warned = [json.loads(line) for line in lines if "Invalid HTTP request" in line]
    assert warned, lines
    assert (warned[0]["logger"], warned[0]["level"], warned[0]["service"]) == (
        "uvicorn.error", "warning", "probe")
