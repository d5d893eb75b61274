"""End to end on real servers: okx_sim trades -> ingest -> JetStream -> positions service ->
fills / positions_open / positions_closed agree with what okx_sim reports over REST."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest_asyncio

from services.ingest.okx_rest import OkxRest
from services.okx_sim import SimHandle
from services.positions.main import serve as serve_positions
from shared.settings import Settings
from tests.factories import wait_for
from tests.ingest.conftest import KEY, ingest_settings, place, running


@pytest_asyncio.fixture(loop_scope="session")
async def positions(settings: Settings) -> AsyncIterator[None]:
    task = asyncio.create_task(serve_positions(settings))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _okx_fills(trader: OkxRest) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = None
    while True:
        page = await trader.get("/api/v5/trade/fills-history",
                                {"instType": "SWAP", "after": after, "limit": 100}, signed=True)
        rows += page
        if len(page) < 100:
            return rows
        after = page[-1]["billId"]


async def test_ledger_agrees_with_the_exchange(settings: Settings, sim: SimHandle,
                                               trader: OkxRest, db_pool: asyncpg.Pool,
                                               positions: None) -> None:
    cfg = ingest_settings(settings, sim, ingest_market_data=False)
    async with running(cfg) as app:
        assert app.account is not None
        account_id = app.account.account_id
        for inst, side, sz in (("BTC-USDT-SWAP", "buy", "2"), ("BTC-USDT-SWAP", "buy", "1.5"),
                               ("BTC-USDT-SWAP", "sell", "1"), ("BTC-USDT-SWAP", "sell", "4"),
                               ("ETH-USDT-SWAP", "sell", "5"), ("ETH-USDT-SWAP", "buy", "2")):
            await place(trader, inst, side, sz)
        sim.drop_private(KEY)  # one outage in the middle: backfill must keep the ledger whole
        await place(trader, "BTC-USDT-SWAP", "buy", "0.5")
        okx_fills = await _okx_fills(trader)

        async def ledger() -> list[asyncpg.Record]:
            rows = await db_pool.fetch(
                "SELECT exchange_trade_id, symbol, side, price, size, fee_usdt, pnl_usdt,"
                " pos_side FROM aitrader.fills WHERE account_id = $1", account_id)
            return rows if len(rows) >= len(okx_fills) else []

        rows = await wait_for(ledger, timeout=20, message="every fill in the ledger")
    assert sorted((r["exchange_trade_id"], r["symbol"], r["side"], r["price"], r["size"],
                   r["fee_usdt"], r["pnl_usdt"], r["pos_side"]) for r in rows) == sorted(
        (f["tradeId"], f["instId"], f["side"], Decimal(f["fillPx"]), Decimal(f["fillSz"]),
         Decimal(f["fee"]), Decimal(f["fillPnl"]), f["posSide"]) for f in okx_fills)
    await _positions_agree(db_pool, account_id, trader, okx_fills)


async def _positions_agree(pool: asyncpg.Pool, account_id: Any, trader: OkxRest,
                           okx_fills: list[dict[str, Any]]) -> None:
    okx_open = await trader.get("/api/v5/account/positions", {"instType": "SWAP"}, signed=True)
    expected = sorted((p["instId"], p["posSide"], abs(Decimal(p["pos"])),
                       "long" if Decimal(p["pos"]) > 0 else "short", Decimal(p["avgPx"]))
                      for p in okx_open)

    async def open_rows() -> list[tuple[Any, ...]]:
        rows = await pool.fetch("SELECT symbol, pos_side, quantity, side, avg_entry_price"
                                " FROM aitrader.positions_open WHERE account_id = $1",
                                account_id)
        found = sorted(tuple(r) for r in rows)
        return found if found == expected else []

    await wait_for(open_rows, timeout=10, message=f"positions_open == {expected}")
    totals = await pool.fetchrow(
        """SELECT (SELECT coalesce(sum(gross_pnl_usdt), 0) FROM aitrader.positions_closed
                   WHERE account_id = $1)
                + (SELECT coalesce(sum(realized_gross_usdt), 0) FROM aitrader.positions_open
                   WHERE account_id = $1) AS gross,
                  (SELECT count(*) FROM aitrader.positions_closed WHERE account_id = $1)
                   AS closed""", account_id)
    assert totals is not None
    assert totals["gross"] == sum(Decimal(f["fillPnl"]) for f in okx_fills)
    assert totals["closed"] >= 1  # at least the BTC long that the sell of 4 flipped
