"""The gateway while its database is away: a tool call gets a clear, retryable tool error (not a
bare "Error executing tool"), its audit row is written once the database is back, and the same
call succeeds again without a restart."""

from __future__ import annotations

import asyncio

from aitrader.embedded import EmbeddedPostgres
from aitrader.migrate import migrate
from services.mcp_gateway.config import GatewaySettings
from services.mcp_gateway.gateway import open_gateway
from shared.db import create_pool
from shared.settings import Settings
from tests.factories import create_account, create_instruments, wait_for
from tests.mcp_gateway.conftest import call, client_for, error_text, memory_client


async def test_a_tool_call_during_a_database_outage_is_a_retryable_error_audited_after(
    own_postgres: EmbeddedPostgres, settings: Settings,
) -> None:
    await migrate(own_postgres.dsn)
    pool = await create_pool(own_postgres.dsn)
    try:
        await create_instruments(pool)
        await create_account(pool, "outage")
    finally:
        await pool.close()
    config = GatewaySettings(**{**settings.model_dump(), "database_url": own_postgres.dsn})
    async with open_gateway(config) as gw:
        principal = await client_for(gw, "outage")
        async with memory_client(gw, principal) as client:
            assert not (await call(client, "get_account_state")).is_error

            await asyncio.to_thread(own_postgres.stop)
            text = error_text(await call(client, "get_account_state"))
            assert "Temporarily unavailable: the gateway cannot reach its database" in text
            assert "Retry in 5 s" in text

            await asyncio.to_thread(own_postgres.start)

            async def answers() -> bool:
                return not (await call(client, "get_account_state")).is_error

            await wait_for(answers, timeout=30, message="the tool answering again")
        await asyncio.wait_for(gw.audit.flush(), 30)
        rows = await gw.pool.fetch(
            "SELECT status, error FROM aitrader.mcp_tool_calls WHERE tool_name = 'get_account_state' "
            "ORDER BY created_at")
    statuses = [r["status"] for r in rows]
    assert statuses[0] == "success" and statuses[-1] == "success"
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all("Temporarily unavailable" in r["error"] for r in failed)
