"""Console tokens as `aitrader token create --scope console` makes them: one account or a set,
kept by a rotation, refused by the MCP gateway's check and by the console when not console."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import httpx
import pytest

from services.mcp_gateway.auth import TokenError, TokenVerifier, create_token, list_tokens
from services.mcp_gateway.cli import token_table
from services.mcp_gateway.tokens import rotate_token
from tests.console.conftest import Seeded


async def _names(client: httpx.AsyncClient, token: str) -> list[str]:
    answer = await client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return sorted(a["external_id"] for a in answer.json()["items"])


async def test_a_console_token_for_a_set_of_accounts_survives_rotation(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    token, row = await create_token(db_pool, "A", "console", label="desk", also=["B"])
    assert list(row["scopes"]) == ["console"] and await _names(client, token) == ["A", "B"]
    listed = token_table([r for r in await list_tokens(db_pool) if r["id"] == row["id"]], row["created_at"])
    assert "A+1" in listed[1] and "console" in listed[1]
    new, _, _ = await rotate_token(db_pool, "desk", timedelta(0))
    assert await _names(client, new) == ["A", "B"]
    old = await client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {token}"})
    assert old.status_code == 401


async def test_several_accounts_are_for_console_tokens_only(seeded: Seeded, db_pool: asyncpg.Pool) -> None:
    with pytest.raises(TokenError, match="only a console token"):
        await create_token(db_pool, "A", "read", also=["B"])
    with pytest.raises(TokenError, match="no account"):
        await create_token(db_pool, "A", "console", also=["nobody"])


async def test_the_gateway_and_the_console_refuse_each_others_tokens(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    console, _ = await create_token(db_pool, "A", "console")
    trade, _ = await create_token(db_pool, "A", "trade")
    access = await TokenVerifier(db_pool, ttl=0).verify_token(console)
    assert access is not None and "read" not in access.scopes  # the gateway's tools require read
    answer = await client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {trade}"})
    assert answer.status_code == 401 and "console" in answer.json()["detail"]
