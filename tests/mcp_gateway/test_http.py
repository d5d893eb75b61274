"""The gateway over real streamable HTTP (uvicorn): bearer tokens, isolation, scopes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
import httpx2
import pytest_asyncio

from services.mcp_gateway.auth import create_token, revoke_token
from services.mcp_gateway.gateway import Gateway
from services.mcp_gateway.main import serve_http
from shared.version import VERSION
from tests.mcp_gateway import seed
from tests.mcp_gateway.conftest import call, error_text, http_client, ok
from tests.mcp_gateway.fakes import FakeIngest

BTC = "BTC-USDT-SWAP"


@pytest_asyncio.fixture(loop_scope="session")
async def url(gateway: Gateway) -> AsyncIterator[str]:
    async with serve_http(gateway, "127.0.0.1", 0) as base:
        yield base


async def test_missing_or_unknown_token_is_401_and_health_is_open(url: str, gateway: Gateway) -> None:
    async with httpx2.AsyncClient() as hc:
        missing = await hc.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        wrong = await hc.post(url, json={}, headers={"Authorization": "Bearer atk_nope"})
        health = await hc.get(url.removesuffix("/mcp") + "/healthz")
    assert missing.status_code == wrong.status_code == 401
    assert "Bearer" in missing.headers["www-authenticate"]
    assert health.status_code == 200 and health.json() == {"status": "ok", "nats": True, "database": True}
    await gateway.audit.flush()
    assert await seed.tool_calls(gateway.pool) == []  # refused before any tool ran


async def test_token_sees_and_trades_only_its_own_account(
    url: str, gateway: Gateway, db_pool: asyncpg.Pool, ingest: FakeIngest, accounts: dict[str, UUID]
) -> None:
    await seed.market_price(db_pool, BTC, "60000")
    await seed.position(db_pool, accounts["b"], BTC, qty="3")
    token_a, row_a = await create_token(db_pool, "acct-a", "trade")
    token_b, _ = await create_token(db_pool, "acct-b", "trade")
    # The same arguments (and idempotency key) from both accounts: keys are per account.
    same_trade = dict(
        symbol=BTC, side="sell", size="0.2", leverage=3, confidence=55, idempotency_key="http-1"
    )
    async with http_client(url, token_a) as client:
        tools = await client.list_tools()
        state_a = ok(await call(client, "get_account_state"))
        trade = ok(await call(client, "execute_trade", **same_trade))
    async with http_client(url, token_b) as client:
        state_b = ok(await call(client, "get_account_state"))
        replay_from_b = ok(await call(client, "execute_trade", **same_trade))
    assert len(tools.tools) == 5
    assert (state_a["account"], state_a["positions"]) == ("acct-a", [])
    assert state_b["account"] == "acct-b" and state_b["positions"][0]["contracts"] == "3"
    assert ingest.received[0].account_id == accounts["a"] and trade["order"]["status"] == "filled"
    # The same key under another account is another order: keys are per account.
    assert replay_from_b["replayed"] is False and ingest.received[1].account_id == accounts["b"]
    await gateway.audit.flush()
    calls = await seed.tool_calls(db_pool, tool_name="execute_trade", account_id=accounts["a"])
    assert [(c["transport"], c["token_id"]) for c in calls] == [("http", row_a["id"])]
    raw = await db_pool.fetchval("SELECT string_agg(request_payload::text, '') FROM aitrader.mcp_tool_calls")
    assert token_a not in raw


async def test_a_console_token_is_refused_by_the_gateway(
    url: str, gateway: Gateway, db_pool: asyncpg.Pool
) -> None:
    """A `console` token (docs/console.md) passes the shared check but has no gateway scope."""
    console, _ = await create_token(db_pool, "acct-a", "console")
    async with httpx2.AsyncClient() as hc:
        answer = await hc.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                               headers={"Authorization": f"Bearer {console}",
                                        "Accept": "application/json, text/event-stream"})
    assert answer.status_code == 403 and "insufficient_scope" in answer.headers["www-authenticate"]
    await gateway.audit.flush()
    assert await seed.tool_calls(gateway.pool) == []


READ_TOOLS = {"get_account_state", "get_market_data", "get_performance_metrics"}
TRADE_TOOLS = {"execute_trade", "update_exit_plan"}


async def test_a_read_token_lists_only_the_read_tools_and_the_server_says_its_version(
    url: str, gateway: Gateway, db_pool: asyncpg.Pool, ingest: FakeIngest
) -> None:
    read, _ = await create_token(db_pool, "acct-a", "read")
    trade, _ = await create_token(db_pool, "acct-a", "trade")
    async with http_client(url, read) as client:
        read_info = client.server_info
        read_tools = {t.name for t in (await client.list_tools()).tools}
        trade_args = dict(symbol=BTC, side="buy", size="1", leverage=2, confidence=60)
        refused = await call(client, "execute_trade", **trade_args)
    async with http_client(url, trade) as client:
        trade_tools = {t.name for t in (await client.list_tools()).tools}
    assert read_info is not None and (read_info.name, read_info.version) == ("aitrader", VERSION)
    assert VERSION and VERSION != "0+unknown"
    assert read_tools == READ_TOOLS and trade_tools == READ_TOOLS | TRADE_TOOLS
    assert error_text(refused).endswith(
        "This token has scope read only; execute_trade needs a token with scope trade "
        "(aitrader token create --scope trade)."
    )
    assert ingest.received == [] and await db_pool.fetchval("SELECT count(*) FROM aitrader.orders") == 0


async def test_read_token_cannot_trade_and_revoked_token_is_refused(
    url: str, gateway: Gateway, db_pool: asyncpg.Pool, ingest: FakeIngest, accounts: dict[str, UUID]
) -> None:
    await seed.position(db_pool, accounts["a"], BTC)
    token, row = await create_token(db_pool, "acct-a", "read", label="dashboard")
    async with http_client(url, token) as client:
        ok(await call(client, "get_account_state"))
        refused = await call(
            client, "execute_trade", symbol=BTC, side="buy", size="1", leverage=2, confidence=60
        )
        plan = await call(client, "update_exit_plan", symbol=BTC, stop_loss=50000)
    assert "scope read only" in error_text(refused) and "scope trade" in error_text(plan)
    assert ingest.received == [] and await db_pool.fetchval("SELECT count(*) FROM aitrader.orders") == 0
    await revoke_token(db_pool, row["token_prefix"])
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as hc:
        after = await hc.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert after.status_code == 401
    await gateway.audit.flush()
    statuses = {(c["tool_name"], c["status"]) for c in await seed.tool_calls(db_pool, token_id=row["id"])}
    assert statuses == {
        ("get_account_state", "success"),
        ("execute_trade", "failed"),
        ("update_exit_plan", "failed"),
    }


async def test_readiness_and_metrics_are_open_and_count_tool_calls(
    url: str, gateway: Gateway, db_pool: asyncpg.Pool
) -> None:
    token, _ = await create_token(db_pool, "acct-a", "read")
    async with http_client(url, token) as client:
        ok(await call(client, "get_account_state"))
    base = url.removesuffix("/mcp")
    async with httpx2.AsyncClient() as hc:
        ready = await hc.get(base + "/readyz")
        metrics = await hc.get(base + "/metrics")
    assert ready.status_code == 200
    assert ready.json() == {"service": "mcp_gateway", "status": "ready", "database": "ok", "nats": "ok",
                            "audit_queue": "ok", "audit_spill": "ok"}
    assert 'aitrader_mcp_tool_call_seconds_count{status="success",tool="get_account_state"}' in metrics.text
    assert "aitrader_mcp_audit_queue " in metrics.text
    assert "aitrader_mcp_audit_spilled 0.0" in metrics.text
