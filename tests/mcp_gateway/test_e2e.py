"""End to end with the real services: okx_sim <- ingest -> JetStream -> positions / metrics,
and the gateway in front: execute_trade -> order on okx_sim -> fill -> positions ->
get_account_state shows it with its confidence and exit plan; closing it reaches
positions_closed and get_performance_metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest_asyncio

from services.mcp_gateway.config import GatewaySettings
from services.mcp_gateway.gateway import open_gateway
from services.metrics.main import serve as serve_metrics
from services.okx_sim import SimHandle, run_sim
from services.positions.main import serve as serve_positions
from shared.money import plain_decimal
from shared.settings import Settings
from tests.factories import wait_for
from tests.ingest.conftest import ACCOUNT, KEY, ingest_settings, running, sim_config
from tests.mcp_gateway.conftest import call, client_for, memory_client, ok

BTC = "BTC-USDT-SWAP"
PLAN = {"take_profit": "99000", "stop_loss": "30000", "invalidation_condition": "daily close < 40k"}


@pytest_asyncio.fixture(loop_scope="session")
async def services(settings: Settings) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(serve_positions(settings)), asyncio.create_task(serve_metrics(settings))]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[SimHandle]:
    async with run_sim(sim_config()) as handle:
        yield handle


async def test_trade_round_trip_through_okx_sim(
    settings: Settings, sim: SimHandle, services: None, db_pool: asyncpg.Pool
) -> None:
    gw_settings = GatewaySettings(**settings.model_dump(), mcp_fill_wait_ms=3000)
    async with running(ingest_settings(settings, sim)), open_gateway(gw_settings) as gw:
        await wait_for(
            lambda: db_pool.fetchval("SELECT mark_price FROM aitrader.market_prices WHERE symbol = $1", BTC),
            timeout=15,
            message="a mark price from ingest via metrics",
        )
        async with memory_client(gw, await client_for(gw, ACCOUNT)) as client:
            opened = ok(
                await call(
                    client,
                    "execute_trade",
                    symbol=BTC,
                    side="buy",
                    size="2",
                    leverage=5,
                    confidence=80,
                    exit_plan=PLAN,
                    idempotency_key="e2e-open",
                )
            )
            state = ok(await call(client, "get_account_state"))
            moved = ok(await call(client, "update_exit_plan", symbol=BTC, stop_loss="35000"))
            closed = ok(
                await call(
                    client,
                    "execute_trade",
                    symbol=BTC,
                    side="sell",
                    size="2",
                    leverage=5,
                    confidence=60,
                    reduce_only=True,
                )
            )
            perf = await wait_for(lambda: _performance(client), timeout=15, message="performance")
    assert opened["order"]["status"] == "filled" and sum(Decimal(f["size"]) for f in opened["fills"]) == 2
    okx_orders = sim.exchange.accounts[KEY].orders
    assert any(o.cl_ord_id == opened["order"]["client_order_id"] for o in okx_orders.values())
    (position,) = state["positions"]
    assert (state["mode"], position["symbol"], position["side"], position["contracts"]) == (
        "simulated",
        BTC,
        "long",
        "2",
    )
    assert position["confidence"] == "80" and position["exit_plan"] == PLAN | {"version": 1}
    assert moved["position"]["exit_plan"]["stop_loss"] == "35000"
    assert closed["order"]["status"] == "filled"
    row = await wait_for(
        lambda: db_pool.fetchrow("SELECT * FROM aitrader.positions_closed WHERE symbol = $1", BTC),
        message="closed row",
    )
    assert (row["side"], row["quantity"], row["average_confidence"]) == ("long", Decimal(2), Decimal(80))
    assert perf is not None and perf["closed_positions"] == 1
    assert perf["realized_pnl_usdt"] == plain_decimal(row["realized_pnl_usdt"])


async def _performance(client: Any) -> dict[str, Any] | None:
    perf = ok(await call(client, "get_performance_metrics"))
    return perf if perf["available"] and perf["closed_positions"] >= 1 else None
