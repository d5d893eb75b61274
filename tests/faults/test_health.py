"""Health tells the truth: `aitrader healthcheck` of a service that is not running fails; a
running positions service is ready, not ready while its database is down, and ready again once
it is back (without a restart); a consumer that makes no progress is reported, then given up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest
from nats.js import JetStreamContext

from aitrader.embedded import EmbeddedPostgres, free_port
from aitrader.migrate import migrate
from shared.db import create_pool
from shared.health import Health, Stalled
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments, wait_for
from tests.positions.conftest import consumed, fill, positions_config, publish, running


def healthcheck(service: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aitrader.cli", "healthcheck", service, "--timeout", "2"],
        env={**os.environ, "AITRADER_HEALTH_PORT": str(port)}, capture_output=True, text=True,
        timeout=30, check=False)


def test_healthcheck_of_a_service_that_is_not_running_fails() -> None:
    result = healthcheck("positions", free_port())
    assert result.returncode == 1
    assert "positions: not answering at http://127.0.0.1:" in result.stderr


async def _ready(url: str) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(url)
        return answer.status_code, answer.json()


async def test_positions_is_not_ready_while_its_database_is_down_and_ready_again_after(
    own_postgres: EmbeddedPostgres, settings: Settings, js: JetStreamContext, subjects: Subjects,
) -> None:
    await migrate(own_postgres.dsn)
    pool = await create_pool(own_postgres.dsn)
    try:
        await create_instruments(pool)
        account = await create_account(pool, "health")
    finally:
        await pool.close()
    port = free_port()
    config = positions_config(Settings(**{**settings.model_dump(), "database_url": own_postgres.dsn,
                                          "health_port": port}))
    url = f"http://127.0.0.1:{port}/readyz"
    async with running(config, js):
        await publish(js, subjects, [fill(account, "1", "buy", "1", "100", 0)])
        await consumed(js, subjects)
        assert await _ready(url) == (200, {"service": "positions", "status": "ready", "database": "ok",
                                           "nats": "ok", "ledger": "ok"})
        assert (await asyncio.to_thread(healthcheck, "positions", port)).returncode == 0
        async with httpx.AsyncClient(timeout=5) as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'aitrader_messages_settled_total{fate="ack",kind="",service="positions"}' in metrics
        assert "aitrader_positions_batch_seconds_count" in metrics
        assert 'aitrader_consumer_pending{consumer="positions",service="positions"} 0.0' in metrics

        await asyncio.to_thread(own_postgres.stop)
        status, body = await _ready(url)
        assert status == 503 and body["status"] == "not ready" and body["database"] != "ok", body
        result = await asyncio.to_thread(healthcheck, "positions", port)
        assert result.returncode == 1 and "not ready (503)" in result.stderr

        started = time.monotonic()
        await asyncio.to_thread(own_postgres.start)

        async def ready_again() -> bool:
            return (await _ready(url))[0] == 200

        await wait_for(ready_again, timeout=30, message="ready again once the database is back")
        assert time.monotonic() - started < 30


async def test_a_consumer_without_progress_is_not_ready_then_given_up() -> None:
    health = Health("probe")
    ledger = health.progress("ledger", stall_after=0.2, exit_after=0.5)
    ledger.beat()
    assert await health.report() == (True, {"ledger": "ok"})
    await asyncio.sleep(0.3)
    ready, results = await health.report()
    assert not ready and results["ledger"].startswith("no progress for")
    with pytest.raises(Stalled, match="ledger: no progress for"):
        await asyncio.wait_for(health.watch(every=0.05), 5)
