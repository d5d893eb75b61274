"""`aitrader up` logs "ready" only once each service answers /readyz: a service that is not
ready by AITRADER_UP_READY_TIMEOUT_S is one line naming it and its failing checks; the stack
is stopped (run in-process on the session's servers: fast)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from aitrader.embedded import free_port
from aitrader.readiness import wait_ready
from aitrader.up import run_until_stopped
from shared.errors import ConfigError
from shared.settings import Settings


async def test_a_service_not_ready_by_the_deadline_is_one_line_and_the_stack_stops(
    settings: Settings, tmp_path: Path
) -> None:
    quick = Settings(**{**settings.model_dump(), "up_ready_timeout_s": 0.01})
    port = free_port()
    with pytest.raises(ConfigError) as caught:
        await asyncio.wait_for(
            run_until_stopped(quick, tmp_path, "okx", ["positions"], {"positions": port}), 60)
    assert str(caught.value) == (f"AITRADER_UP_READY_TIMEOUT_S: not ready within 0.01 s: positions: not "
                                 f"answering at http://127.0.0.1:{port}/readyz (ConnectError)")
    assert not (tmp_path / "ports.json").exists()  # stopped and cleaned up


@asynccontextmanager
async def readyz(status: int, body: dict[str, str]) -> AsyncIterator[str]:
    """A server whose every answer is `status` with `body` (JSON): a service's /readyz."""
    payload = json.dumps(body).encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (status, len(payload), payload))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/readyz"
    finally:
        server.close()


async def supervising() -> None:
    """A supervisor that never ends (no child exits)."""
    await asyncio.Event().wait()


async def test_the_deadline_line_names_the_failing_checks() -> None:
    monitor = asyncio.create_task(supervising())
    body = {"service": "ingest", "status": "not ready", "database": "ok", "okx_public": "disconnected"}
    try:
        async with readyz(503, body) as red, readyz(200, {"status": "ready"}) as green:
            with pytest.raises(ConfigError) as caught:
                await wait_ready({"ingest": red, "metrics": green}, monitor, 0.3)
    finally:
        monitor.cancel()
    assert str(caught.value) == ('AITRADER_UP_READY_TIMEOUT_S: not ready within 0.3 s: '
                                 'ingest: 503 {"okx_public": "disconnected"}')


async def test_a_configuration_error_of_the_supervisor_ends_the_wait_at_once() -> None:
    async def misconfigured() -> None:
        raise ConfigError("metrics", "AITRADER_TIMEFRAMES: unknown bar")

    monitor = asyncio.create_task(misconfigured())
    async with readyz(503, {"status": "not ready", "nats": "unavailable"}) as red:
        with pytest.raises(ConfigError) as caught:
            await asyncio.wait_for(wait_ready({"metrics": red}, monitor, 30), 5)
    assert str(caught.value) == "metrics: AITRADER_TIMEFRAMES: unknown bar"
