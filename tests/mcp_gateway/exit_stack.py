"""The whole product in-process for exit-plan tests: okx_sim, ingest, positions, metrics and the
MCP gateway on the real PostgreSQL and NATS, with python-okx pointed at the sim to read what
the exchange really holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import okx.Trade as Trade
import pytest_asyncio

from services.ingest.main import Ingest
from services.mcp_gateway.config import GatewaySettings
from services.mcp_gateway.gateway import open_gateway
from services.metrics.main import serve as serve_metrics
from services.okx_sim import SimHandle, run_sim
from services.positions.main import serve as serve_positions
from shared.settings import Settings
from tests.factories import wait_for
from tests.ingest.conftest import ACCOUNT, KEY, PASSPHRASE, SECRET, ingest_settings, running, sim_config
from tests.mcp_gateway.conftest import call, client_for, memory_client, ok

BTC = "BTC-USDT-SWAP"


@dataclass
class Stack:
    client: Any
    sim: SimHandle
    pool: asyncpg.Pool
    ingest: Ingest
    okx: Trade.TradeAPI

    def price(self, factor: str) -> Decimal:
        """The sim's mark times `factor`, on the tick grid."""
        tick = self.sim.exchange.specs[BTC].tick_sz
        return (self.sim.exchange.mark[BTC] * Decimal(factor) / tick).quantize(Decimal(1)) * tick

    async def trade(self, side: str, size: str, **extra: Any) -> dict[str, Any]:
        return ok(
            await call(
                self.client,
                "execute_trade",
                symbol=BTC,
                side=side,
                size=size,
                leverage=5,
                confidence=70,
                **extra,
            )
        )

    async def pending(self) -> list[dict[str, Any]]:
        """The exchange's pending algo orders, through python-okx."""
        answer = await asyncio.to_thread(self.okx.order_algos_list, ordType="conditional,oco")
        assert answer["code"] == "0", answer
        return list(answer["data"])

    async def history(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for state in ("effective", "canceled", "order_failed"):
            answer = await asyncio.to_thread(self.okx.order_algos_history, "conditional,oco", state=state)
            assert answer["code"] == "0", answer
            out += answer["data"]
        return out

    async def resting(self, count: int) -> list[dict[str, Any]]:
        """Once the exchange holds `count` pending algo orders."""

        async def listed() -> tuple[list[dict[str, Any]]] | None:
            got = await self.pending()
            return (got,) if len(got) == count else None  # a tuple: an empty list is an answer too

        found = await wait_for(listed, timeout=10, message=f"{count} pending algo orders on OKX")
        assert found is not None
        return found[0]

    async def closed(self, n: int = 1) -> list[asyncpg.Record]:
        async def rows() -> list[asyncpg.Record] | None:
            got = await self.pool.fetch("SELECT * FROM aitrader.positions_closed ORDER BY exit_time, id")
            return got if len(got) >= n and all(r["exit_reason"] != "external" for r in got) else None

        got = await wait_for(rows, timeout=15, message=f"{n} closed positions with their reason")
        assert got is not None
        return got

    async def positions(self) -> list[dict[str, Any]]:
        return list(ok(await call(self.client, "get_account_state"))["positions"])


async def _run(
    settings: Settings, pool: asyncpg.Pool, ready: asyncio.Future[Stack], done: asyncio.Event
) -> None:
    """The whole stack, entered and left in this one task (the MCP client's cancel scopes must
    be), from `ready` until `done`."""
    tasks = [asyncio.create_task(serve_positions(settings)), asyncio.create_task(serve_metrics(settings))]
    gw_settings = GatewaySettings(**settings.model_dump(), mcp_fill_wait_ms=5000)
    try:
        async with (
            run_sim(sim_config()) as sim,
            running(ingest_settings(settings, sim, timeframes=["1m"])) as app,
            open_gateway(gw_settings) as gw,
        ):
            await wait_for(
                lambda: pool.fetchval("SELECT mark_price FROM aitrader.market_prices WHERE symbol = $1", BTC),
                timeout=15,
                message="a mark price from ingest via metrics",
            )
            okx = Trade.TradeAPI(
                api_key=KEY,
                api_secret_key=SECRET,
                passphrase=PASSPHRASE,
                flag="1",
                domain=sim.rest_url,
                debug=False,
            )
            async with memory_client(gw, await client_for(gw, ACCOUNT)) as client:
                ready.set_result(Stack(client, sim, pool, app, okx))
                await done.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest_asyncio.fixture(loop_scope="session")
async def stack(settings: Settings, db_pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    ready: asyncio.Future[Stack] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()
    runner = asyncio.create_task(_run(settings, db_pool, ready, done))
    try:
        await asyncio.wait({ready, runner}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            if runner.done():
                runner.result()  # raises why the stack stopped
            raise AssertionError("the exit-plan stack did not start within 60 s")
        yield ready.result()
    finally:
        done.set()
        if not ready.done():
            runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def legs(position: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {leg["leg"]: leg for leg in position["exit_orders"]["legs"]}
