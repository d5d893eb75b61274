"""End to end on real servers: okx_sim trades -> ingest -> JetStream -> positions service ->
fills / positions_open / positions_closed agree with what okx_sim reports over REST."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from services.ingest.okx_rest import OkxRest
from services.okx_sim import SimHandle
from shared.settings import Settings
from tests.factories import wait_for
from tests.ingest.conftest import KEY, ingest_settings, place, running


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
    # closed: at least the BTC long that the sell of 4 flipped
    await _positions_agree(db_pool, account_id, trader, okx_fills, closed=1)


async def _positions_agree(pool: asyncpg.Pool, account_id: Any, trader: OkxRest,
                           okx_fills: list[dict[str, Any]], closed: int = 0) -> None:
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
    assert totals["closed"] >= closed


async def _missed_then_newer_fill(sim: SimHandle, trader: OkxRest) -> None:
    """A fill OKX never pushes (the socket stays up), then a newer one of another instrument
    that it does push: the newest-fill cursor is past the missed one by more than its overlap."""
    sim.pause_pushes(KEY)
    await place(trader, "ETH-USDT-SWAP", "buy", "3")
    sim.resume_pushes(KEY)
    sim.advance(11)  # more than any overlap, and past the sweep's grace for the missed one
    await place(trader, "BTC-USDT-SWAP", "buy", "1")


async def _ledger_holds(pool: asyncpg.Pool, account_id: Any, okx_fills: list[dict[str, Any]],
                        timeout: float) -> None:
    want = {(f["instId"], f["tradeId"]) for f in okx_fills}

    async def complete() -> bool:
        rows = await pool.fetch("SELECT symbol, exchange_trade_id FROM aitrader.fills"
                                " WHERE account_id = $1", account_id)
        return {(r["symbol"], r["exchange_trade_id"]) for r in rows} == want

    await wait_for(complete, timeout=timeout, message=f"the ledger holds all {len(want)} fills")
    assert await pool.fetchval("SELECT count(*) FROM aitrader.fills WHERE account_id = $1",
                               account_id) == len(want)


def _private(app: Any) -> Any:
    return next(s for s in app.sockets if s.name == "private")


async def test_a_fill_never_pushed_on_a_healthy_socket_is_found_by_the_sweep(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        positions: None) -> None:
    cfg = ingest_settings(settings, sim, ingest_market_data=False, ingest_fill_sweep_s=1)
    async with running(cfg) as app:
        assert app.account is not None
        await _missed_then_newer_fill(sim, trader)
        okx_fills = await _okx_fills(trader)
        await _ledger_holds(db_pool, app.account.account_id, okx_fills, timeout=10)
        assert _private(app).sessions == 1  # found while the socket stayed up
    await _positions_agree(db_pool, app.account.account_id, trader, okx_fills)


async def test_a_fill_never_pushed_is_found_when_the_socket_then_drops(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        positions: None) -> None:
    # No periodic sweep within the test: only the catch-up after the reconnect can find it.
    cfg = ingest_settings(settings, sim, ingest_market_data=False, ingest_fill_sweep_s=3600)
    async with running(cfg) as app:
        assert app.account is not None
        account_id = app.account.account_id
        await _missed_then_newer_fill(sim, trader)
        okx_fills = await _okx_fills(trader)

        async def newer_one_stored() -> bool:
            return bool(await db_pool.fetchval(
                "SELECT count(*) FROM aitrader.fills WHERE account_id = $1 AND symbol = $2"
                " AND exchange_trade_id = $3", account_id, okx_fills[0]["instId"],
                okx_fills[0]["tradeId"]))

        await wait_for(newer_one_stored, timeout=10, message="the pushed fill stored")
        assert sim.drop_private(KEY) == 1
        await _ledger_holds(db_pool, account_id, okx_fills, timeout=10)

        async def reconnected() -> bool:  # counted once its catch-up is done
            return _private(app).sessions >= 2

        await wait_for(reconnected, timeout=10, message="a second private session")
    await _positions_agree(db_pool, account_id, trader, okx_fills)
