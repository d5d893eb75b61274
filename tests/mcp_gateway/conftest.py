"""Gateway fixtures: accounts A and B, a running gateway, a fake ingest, SDK clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import httpx2
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent
from nats.aio.client import Client as Nats
from pydantic import BaseModel

from services.mcp_gateway import views
from services.mcp_gateway.auth import Principal, local_principal
from services.mcp_gateway.config import GatewaySettings
from services.mcp_gateway.gateway import Gateway, open_gateway
from services.mcp_gateway.tools import build_server
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments
from tests.mcp_gateway.fakes import FakeIngest


@pytest_asyncio.fixture(loop_scope="session")
async def accounts(db_pool: asyncpg.Pool) -> dict[str, UUID]:
    await create_instruments(db_pool)
    return {"a": await create_account(db_pool, "acct-a"), "b": await create_account(db_pool, "acct-b")}


@pytest.fixture
def gw_settings(settings: Settings) -> GatewaySettings:
    return GatewaySettings(
        **settings.model_dump(),
        mcp_order_timeout_ms=500,
        mcp_fill_wait_ms=2000,
        mcp_refresh_timeout_ms=1000,
        mcp_token_cache_s=0,  # a revocation is seen by the next request
    )


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(gw_settings: GatewaySettings, accounts: dict[str, UUID]) -> AsyncIterator[Gateway]:
    async with open_gateway(gw_settings) as gw:
        yield gw


@pytest_asyncio.fixture(loop_scope="session")
async def ingest(
    gateway: Gateway, nc: Nats, subjects: Subjects, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> AsyncIterator[FakeIngest]:
    fake = FakeIngest(nc, subjects, db_pool)
    for account_id in accounts.values():
        await fake.start(account_id)
    await nc.flush()
    try:
        yield fake
    finally:
        await fake.stop()


@asynccontextmanager
async def memory_client(gw: Gateway, principal: Principal) -> AsyncIterator[Client]:
    async with Client(build_server(gw, transport="memory", principal=principal)) as client:
        yield client


async def client_for(gw: Gateway, external_id: str, scopes: set[str] | None = None) -> Principal:
    """The principal of a local client; `scopes` narrows it (e.g. {"read"})."""
    principal = await local_principal(gw.pool, external_id)
    if scopes is not None:
        principal = Principal(principal.account_id, principal.external_id, principal.mode, frozenset(scopes))
    return principal


@asynccontextmanager
async def http_client(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=10) as hc:
        async with Client(streamable_http_client(url, http_client=hc)) as client:
            yield client


# What each tool returns. The hot read tools build their result as a plain document
# (`views.Doc`) rather than through the model: every successful call in these tests checks that
# the document is exactly what the model would have written.
TOOL_VIEWS: dict[str, type[BaseModel]] = {
    "get_account_state": views.AccountState,
    "get_market_data": views.MarketData,
    "execute_trade": views.TradeResult,
    "update_exit_plan": views.ExitPlanUpdate,
    "get_performance_metrics": views.PerformanceMetrics,
}


async def call(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    result = await client.call_tool(tool, arguments)
    if not result.is_error:
        assert_is_view(result, TOOL_VIEWS[tool])
    return result


def assert_is_view(result: CallToolResult, view: type[BaseModel]) -> None:
    """The structured content is the model's own JSON form, and the text content is that JSON,
    byte for byte as the model writes it (same keys, same order, same decimal text)."""
    content = result.structured_content
    assert content is not None
    model = view.model_validate(content)
    assert model.model_dump(mode="json") == content
    [text] = result.content
    assert isinstance(text, TextContent) and json.loads(text.text) == content
    assert text.text == model.model_dump_json()


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a successful call (fails the test with the error text)."""
    assert not result.is_error, result.content
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)
