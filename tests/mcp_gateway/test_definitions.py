"""The metric definitions have one home (`shared.definitions`): metrics stores their version
beside every performance row, and the gateway returns that stored version with their text."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.mcp_gateway.gateway import Gateway
from services.metrics.refresh import refresh_performance
from shared.clock import ManualClock, utcnow
from shared.definitions import DEFINITIONS, DEFINITIONS_VERSION
from tests.mcp_gateway.conftest import call, client_for, memory_client, ok


async def test_the_gateway_returns_the_version_metrics_stored(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    account = accounts["a"]
    assert await refresh_performance(db_pool, ManualClock(utcnow()), [account]) == 3
    stored = await db_pool.fetchval(
        """SELECT definitions_version FROM aitrader.performance_snapshots
           WHERE account_id = $1 AND "window" = 'weekly'""",
        account,
    )
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        weekly = ok(await call(client, "get_performance_metrics", window="weekly"))
    assert stored == DEFINITIONS_VERSION
    assert (weekly["available"], weekly["definitions_version"]) == (True, DEFINITIONS_VERSION)
    assert weekly["definitions"] == DEFINITIONS


async def test_a_row_computed_under_older_definitions_says_so(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    account = accounts["a"]
    await refresh_performance(db_pool, ManualClock(utcnow()), [account])
    await db_pool.execute(
        "UPDATE aitrader.performance_snapshots SET definitions_version = 'v-older' WHERE account_id = $1",
        account,
    )
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        daily = ok(await call(client, "get_performance_metrics", window="daily"))
    assert (daily["definitions_version"], daily["definitions"]) == ("v-older", DEFINITIONS)
