"""Bad configuration: one clear line naming the setting, exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aitrader.embedded import free_port
from shared.db import describe_dsn
from tests.conftest import with_database
from tests.foundation.test_up import clean_env


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aitrader.cli", *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {"AITRADER_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x"},
            "AITRADER_DATABASE_URL: cannot connect to 127.0.0.1:",
            id="unreachable-database",
        ),
        pytest.param(
            {"AITRADER_DATABASE_URL": "not a url"},
            "AITRADER_DATABASE_URL: expected postgresql://user@host:port/dbname",
            id="malformed-database-url",
        ),
        pytest.param(
            {"AITRADER_DATABASE_URL": "postgresql://postgres@127.0.0.1:99x/db"},
            "AITRADER_DATABASE_URL: bad port",
            id="non-numeric-port",
        ),
        pytest.param(
            {"AITRADER_DATABASE_URL": "postgresql://127.0.0.1/db", "AITRADER_NATS_URL": "http://x:4222"},
            "AITRADER_NATS_URL: expected nats://host:port",
            id="malformed-nats-url",
        ),
        pytest.param(
            {"AITRADER_DATABASE_URL": "postgresql://127.0.0.1/db", "AITRADER_OKX_API_KEY": "k"},
            "OKX keys must be given together",
            id="partial-okx-keys",
        ),
        pytest.param(
            {"AITRADER_DATABASE_URL": "postgresql://127.0.0.1/db", "AITRADER_MCP_PORT": "70000"},
            "AITRADER_MCP_PORT:",
            id="port-out-of-range",
        ),
    ],
)
def test_bad_configuration_is_one_clear_line(env: dict[str, str], expected: str) -> None:
    result = run_cli("migrate", **env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [
        line for line in result.stderr.splitlines() if line.startswith("aitrader: configuration error:")
    ]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]


def test_unreachable_nats_is_one_clear_line(db_dsn: str) -> None:
    result = run_cli(
        "up",
        "--services",
        "none",
        AITRADER_DATABASE_URL=db_dsn,
        AITRADER_NATS_URL=f"nats://127.0.0.1:{free_port()}",
    )
    assert result.returncode == 2, result.stderr
    assert (
        "aitrader: configuration error: AITRADER_NATS_URL: cannot connect to nats://127.0.0.1:"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_missing_database_is_one_line_for_migrate(pg_admin_dsn: str) -> None:
    dsn = with_database(pg_admin_dsn, "aitrader_no_such_db")
    result = run_cli("migrate", AITRADER_DATABASE_URL=dsn)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"aitrader: configuration error: AITRADER_DATABASE_URL: database does not exist: {describe_dsn(dsn)}"
    )


@pytest.mark.parametrize(
    ("service", "setting", "value", "expected"),
    [
        pytest.param("ingest", "AITRADER_TIMEFRAMES", "3m,5min", "AITRADER_TIMEFRAMES: unknown bar '5min'; "
                     "allowed: a count 1-99 and a unit s, m, H, D, W or M, optionally with 'utc', "
                     "e.g. 1m,3m,5m,",
                     id="ingest-timeframe"),
        pytest.param("ingest", "AITRADER_SYMBOLS", "BTCUSDT", "AITRADER_SYMBOLS: 'BTCUSDT' is not an OKX "
                     "USDT-margined swap; allowed: BASE-USDT-SWAP instrument ids, e.g. BTC-USDT-SWAP",
                     id="ingest-symbol"),
        pytest.param("metrics", "AITRADER_SYMBOLS", "BTCUSDT", "AITRADER_SYMBOLS: 'BTCUSDT' is not an OKX "
                     "USDT-margined swap", id="metrics-symbol"),
    ],
)
def test_run_refuses_a_market_setting_okx_does_not_accept(
    db_dsn: str, nats_url: str, service: str, setting: str, value: str, expected: str
) -> None:
    # What a container runs (`aitrader run`, no `up` preflight): the settings themselves refuse
    # it, at once, before any connection (a service that started would crash-loop instead).
    result = subprocess.run(
        [sys.executable, "-m", "aitrader.cli", "run", service],
        env=clean_env(AITRADER_DATABASE_URL=db_dsn, AITRADER_NATS_URL=nats_url, AITRADER_ACCOUNT="acct",
                      AITRADER_HEALTH_PORT=str(free_port()),
                      AITRADER_OKX_REST_URL=f"http://127.0.0.1:{free_port()}", **{setting: value}),
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"aitrader: configuration error: {expected}")
