"""The console as a process runs it (`serve`): over real HTTP as the console's role, its
health endpoints, and no token in its logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from aitrader.embedded import free_port
from services.console.config import ConsoleSettings
from services.console.main import serve
from tests.console.conftest import Seeded
from tests.factories import wait_for


def test_the_console_connects_as_its_role_with_the_database_urls_host() -> None:
    config = ConsoleSettings(
        database_url="postgresql://owner:secret@db.example:6543/aitrader", console_db_password=SecretStr("pw")
    )
    assert config.console_dsn() == "postgresql://aitrader_console:pw@db.example:6543/aitrader"
    assert "pw" in config.secret_values()  # registered with the log redactor


async def test_serve_answers_the_api_and_its_health_and_never_logs_the_token(
    db_dsn: str, seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    config = ConsoleSettings(database_url=db_dsn, console_port=port, log_format="console")
    base = f"http://127.0.0.1:{port}"
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        task = asyncio.create_task(serve(config))
        try:
            async with httpx.AsyncClient(base_url=base, timeout=5.0) as http:

                async def ready() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        return (await http.get("/readyz")).status_code == 200
                    return False

                await wait_for(ready, timeout=15, message="the console's /readyz")
                answer = await http.get("/api/v1/accounts", headers=seeded.auth)
                assert answer.status_code == 200 and answer.json()["items"][0]["external_id"] == "A"
                assert (await http.get("/api/v1/accounts")).status_code == 401
                assert (await http.get("/healthz")).json()["service"] == "console"
                assert "console_queries_total" in (await http.get("/metrics")).text
                assert (await http.get("/openapi.json")).status_code == 200
                assert (await http.get("/docs")).status_code == 404  # its page would load a CDN
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    logged = repr(logs) + caplog.text
    assert "console_listening" in logged
    assert seeded.token_a not in logged
