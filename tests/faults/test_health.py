"""Health tells the truth: `aitrader healthcheck` of a service that is not running fails; a
running positions service is ready, not ready while its database is down, and ready again once
it is back (without a restart); a consumer that makes no progress is reported, then given up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from nats.js import JetStreamContext

from aitrader.embedded import EmbeddedPostgres, free_port
from aitrader.migrate import migrate
from services.okx_sim import SimHandle, run_sim
from shared.db import create_pool
from shared.health import Health, Stalled
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments, wait_for
from tests.ingest.conftest import ingest_settings, sim_config
from tests.ingest.conftest import running as running_ingest
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
        assert 'aitrader_consumer_pending{consumer="positions-0",service="positions"} 0.0' in metrics

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



async def test_ingest_is_not_ready_while_okx_is_away_and_ready_again_after(
        settings: Settings) -> None:
    """Ingest's readiness includes each OKX socket: red while the exchange cannot be reached
    (the socket reconnecting), green again once it is back, without a restart."""
    sim_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/readyz"
    exchange: AbstractAsyncContextManager[SimHandle] | None = run_sim(sim_config(port=sim_port))
    assert exchange is not None
    sim = await exchange.__aenter__()
    cfg = ingest_settings(settings, sim, ingest_market_data=False, health_port=port,
                          ingest_reconcile_s=3600)
    try:
        async with running_ingest(cfg):
            status, body = await _ready(url)
            assert (status, body.get("okx_ws_private")) == (200, "ok"), body
            await exchange.__aexit__(None, None, None)
            exchange = None

            async def red() -> bool:
                status, body = await _ready(url)
                return status == 503 and body.get("okx_ws_private") == "unavailable"

            await wait_for(red, timeout=15, message="ingest not ready while OKX is away")
            exchange = run_sim(sim_config(port=sim_port))
            await exchange.__aenter__()

            async def green() -> bool:
                return (await _ready(url))[0] == 200

            await wait_for(green, timeout=15, message="ingest ready again")
    finally:
        if exchange is not None:
            await exchange.__aexit__(None, None, None)
