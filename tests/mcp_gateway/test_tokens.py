"""Token lifetimes over real HTTP: expiry, rotation, last use (throttled), and `token list`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import httpx2
import pytest
import pytest_asyncio
from click.testing import CliRunner

from aitrader.cli import cli
from services.mcp_gateway.auth import TokenError, create_token
from services.mcp_gateway.gateway import Gateway
from services.mcp_gateway.main import serve_http
from services.mcp_gateway.tokens import rotate_token
from tests.mcp_gateway.conftest import call, http_client, ok

LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


@pytest_asyncio.fixture(loop_scope="session")
async def url(gateway: Gateway) -> AsyncIterator[str]:
    async with serve_http(gateway, "127.0.0.1", 0) as base:
        yield base


async def post(url: str, token: str) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(headers=headers, timeout=10) as hc:
        return await hc.post(url, json=LIST_TOOLS)


async def test_expired_token_is_refused_saying_so_and_an_unknown_one_is_not_told(
    url: str, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired, _ = await create_token(db_pool, "acct-a", "read", expires_at=past)
    live, _ = await create_token(db_pool, "acct-a", "read", expires_at=past + timedelta(days=1))
    refused, unknown = await post(url, expired), await post(url, "atk_" + "x" * 43)
    assert refused.status_code == unknown.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    assert refused.json()["error_description"].startswith("this token expired at ")
    assert 'error_description="this token expired at' in refused.headers["www-authenticate"]
    assert unknown.json()["error_description"] == "Authentication required"
    async with http_client(url, live) as client:
        assert ok(await call(client, "get_account_state"))["account"] == "acct-a"


async def test_rotation_ends_the_old_token_and_the_new_one_acts_for_the_same_account(
    url: str, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    old, row = await create_token(db_pool, "acct-b", "trade", label="bot")
    new, new_row, retired = await rotate_token(db_pool, "bot", grace=timedelta(0))
    assert new != old and new_row["label"] == "bot" and list(new_row["scopes"]) == ["read", "trade"]
    assert retired["id"] == row["id"] and new_row["expires_at"] is None
    refused = await post(url, old)
    assert refused.status_code == 401
    assert "rotated" in refused.json()["error_description"]
    async with http_client(url, new) as client:
        assert ok(await call(client, "get_account_state"))["account"] == "acct-b"
    with pytest.raises(TokenError, match="no active token"):
        await rotate_token(db_pool, row["token_prefix"], grace=timedelta(0))  # already rotated


async def test_rotation_with_a_grace_period_keeps_both_working_until_it_ends(
    url: str, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    old, row = await create_token(
        db_pool, "acct-a", "read", expires_at=datetime.now(UTC) + timedelta(days=30)
    )
    new, new_row, retired = await rotate_token(db_pool, str(row["id"]), grace=timedelta(hours=1))
    assert (await post(url, old)).status_code == (await post(url, new)).status_code == 200
    assert timedelta(minutes=59) < retired["expires_at"] - datetime.now(UTC) <= timedelta(hours=1)
    # The new token gets the old one's lifetime (30 days), counted from the rotation.
    assert timedelta(days=30) - (new_row["expires_at"] - new_row["created_at"]) < timedelta(seconds=1)


async def test_token_list_shows_last_use_written_at_most_once_a_minute(
    url: str, db_pool: asyncpg.Pool, db_dsn: str, accounts: dict[str, UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    token, row = await create_token(db_pool, "acct-a", "read", label="dash")
    last_used = "SELECT last_used_at FROM aitrader.api_tokens WHERE id = $1"
    assert await db_pool.fetchval(last_used, row["id"]) is None
    assert (await post(url, token)).status_code == 200
    first = await db_pool.fetchval(last_used, row["id"])
    assert first is not None
    assert (await post(url, token)).status_code == 200  # the cache is off: verified again
    assert await db_pool.fetchval(last_used, row["id"]) == first
    monkeypatch.setenv("AITRADER_DATABASE_URL", db_dsn)
    listed = await asyncio.to_thread(CliRunner().invoke, cli, ["token", "list"])
    assert listed.exit_code == 0, listed.output
    [line] = [line for line in listed.output.splitlines() if row["token_prefix"] in line]
    assert f"{first:%Y-%m-%d %H:%M}Z" in line and " read " in line and " active " in line
    assert token not in listed.output
