"""A bearer token checked while the gateway's database is away, over real HTTP: HTTP 503 with
Retry-After and a JSON(-RPC) body saying so (before: a bare 500); a token verified moments
before the outage still reaches the tools (their retryable error), for `outage_grace` seconds
and no longer — a token revoked just before the outage too; no token in any log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from structlog.testing import capture_logs

from aitrader.embedded import EmbeddedPostgres
from aitrader.migrate import migrate
from services.mcp_gateway.auth import create_token, revoke_token
from services.mcp_gateway.config import GatewaySettings
from services.mcp_gateway.gateway import open_gateway
from services.mcp_gateway.main import serve_http
from shared.db import create_pool
from shared.settings import Settings
from tests.factories import create_account, create_instruments, wait_for
from tests.mcp_gateway.conftest import call, error_text, http_client

GRACE_S = 2.0
MESSAGE = "database unavailable, retry in 5 s (the gateway cannot check the bearer token now)"


@asynccontextmanager
async def gateway_on(server: EmbeddedPostgres, settings: Settings) -> AsyncIterator[tuple[str, list[str]]]:
    """The gateway over HTTP on the test's own PostgreSQL; yields (its /mcp URL, two tokens)."""
    await migrate(server.dsn)
    pool = await create_pool(server.dsn)
    try:
        await create_instruments(pool)
        await create_account(pool, "outage")
        tokens = [(await create_token(pool, "outage", "read"))[0] for _ in range(2)]
    finally:
        await pool.close()
    config = GatewaySettings(**{**settings.model_dump(), "database_url": server.dsn},
                             mcp_token_cache_s=0, mcp_token_outage_grace_s=GRACE_S)
    async with open_gateway(config) as gw, serve_http(gw, "127.0.0.1", 0) as url:
        yield url, tokens
        await gw.audit.close(timeout=1)  # the outage's rows are spilled, not waited for


async def _post(url: str, token: str, body: object) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as hc:
        return await hc.post(url, json=body, headers=headers)


async def test_a_token_checked_during_an_outage_is_a_503_with_retry_after(
    own_postgres: EmbeddedPostgres, settings: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        async with gateway_on(own_postgres, settings) as (url, [recent, unchecked]):
            async with http_client(url, recent) as client:  # verified: in the cache
                assert not (await call(client, "get_account_state")).is_error
            await asyncio.to_thread(own_postgres.stop)

            rpc = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
            refused = await _post(url, unchecked, rpc)
            plain = await _post(url, unchecked, {"not": "json-rpc"})
            assert refused.status_code == plain.status_code == 503  # before: 500
            assert refused.headers["retry-after"] == plain.headers["retry-after"] == "5"
            assert refused.json() == {"jsonrpc": "2.0", "id": 7,
                                      "error": {"code": -32000, "message": MESSAGE}}
            assert plain.json() == {"error": MESSAGE}

            async with http_client(url, recent) as client:  # within the grace: the tool answers
                text = error_text(await call(client, "get_account_state"))
            assert "Temporarily unavailable" in text

            async def refused_after_grace() -> bool:
                return (await _post(url, recent, rpc)).status_code == 503

            await wait_for(refused_after_grace, timeout=GRACE_S + 10, message="the grace to end")
            await asyncio.to_thread(own_postgres.start)
    logged = repr(logs) + caplog.text
    assert "token_check_unavailable" in logged
    assert recent not in logged and unchecked not in logged


async def test_a_token_revoked_before_an_outage_stops_working_within_the_grace(
    own_postgres: EmbeddedPostgres, settings: Settings,
) -> None:
    async with gateway_on(own_postgres, settings) as (url, [token, _]):
        async with http_client(url, token) as client:
            assert not (await call(client, "get_account_state")).is_error
        pool = await create_pool(own_postgres.dsn, min_size=1, max_size=1)
        try:
            await revoke_token(pool, token[:12])  # by its prefix: never the secret
        finally:
            await pool.close()
        await asyncio.to_thread(own_postgres.stop)  # nothing can see the revocation now
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}

        async def refused() -> bool:
            return (await _post(url, token, rpc)).status_code == 503

        await wait_for(refused, timeout=GRACE_S + 10, message="the revoked token refused")
        await asyncio.to_thread(own_postgres.start)
        assert (await _post(url, token, rpc)).status_code == 401  # the database says: revoked
