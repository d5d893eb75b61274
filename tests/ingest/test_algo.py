"""Algo (TP/SL) orders end to end on real servers: okx_sim -> ingest (orders-algo on the logged-in
business socket, REST backfill after a reconnect, place/amend/cancel commands over NATS) ->
JetStream -> the positions service -> aitrader.algo_orders and the orders placed when they fire."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import BaseModel

from services.ingest.okx_rest import OkxRest
from services.okx_sim import SimHandle
from shared.messages import (
    AlgoReply,
    AmendAlgo,
    AttachedAlgo,
    CancelAlgo,
    PlaceAlgo,
    PlaceOrder,
    PlaceOrderReply,
)
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.ingest.conftest import KEY, ingest_settings, place, running, stream_messages

BTC = "BTC-USDT-SWAP"


def off_price(sim: SimHandle, factor: str) -> Decimal:
    """The last price times `factor`, on the tick grid."""
    tick = sim.exchange.specs[BTC].tick_sz
    return (sim.exchange.last[BTC] * Decimal(factor) / tick).quantize(Decimal(1)) * tick


async def ask(nc: Client, subject: str, command: BaseModel) -> AlgoReply:
    msg = await nc.request(subject, command.model_dump_json().encode(), timeout=8)
    return AlgoReply.model_validate_json(msg.data)


async def algo_row(pool: asyncpg.Pool, account_id: UUID, algo_id: str,
                   **want: Any) -> asyncpg.Record:
    """The algo_orders row once it has these values."""
    async def found() -> asyncpg.Record | None:
        row = await pool.fetchrow("SELECT * FROM aitrader.algo_orders WHERE account_id = $1"
                                  " AND algo_id = $2", account_id, algo_id)
        return row if row is not None and all(row[k] == v for k, v in want.items()) else None

    row = await wait_for(found, timeout=10, message=f"algo_orders {algo_id} {want}")
    assert row is not None
    return row


async def algo_states(js: JetStreamContext, subjects: Subjects, account_id: UUID,
                      algo_id: str) -> list[str]:
    msgs = await stream_messages(js, subjects, "account", subjects.algo_order(account_id, BTC))
    return [body["state"] for _, body, _ in msgs if body["algo_id"] == algo_id]


async def test_an_attached_stop_rests_fires_and_its_close_carries_the_algo_id(
        settings: Settings, sim: SimHandle, nc: Client, js: JetStreamContext,
        subjects: Subjects, db_pool: asyncpg.Pool, positions: None) -> None:
    async with running(ingest_settings(settings, sim, ingest_market_data=False)) as app:
        assert app.account is not None
        account_id = app.account.account_id
        tp, sl = off_price(sim, "1.05"), off_price(sim, "0.95")
        order = PlaceOrder(order_id=uuid4(), account_id=account_id, inst_id=BTC, side="buy",
                           sz=Decimal(2), lever=Decimal(5), attach_algo=AttachedAlgo(
                               tp_trigger_px=tp, sl_trigger_px=sl, sl_trigger_px_type="mark"))
        msg = await nc.request(subjects.place_order(account_id), order.model_dump_json().encode(),
                               timeout=8)
        reply = PlaceOrderReply.model_validate_json(msg.data)
        assert reply.ok, reply
        (algo_id,) = sim.exchange.accounts[KEY].algos
        row = await algo_row(db_pool, account_id, algo_id, state="live")
        assert (row["ord_type"], row["side"], row["sz"], row["reduce_only"]) == ("oco", "sell", 2, True)
        assert (row["tp_trigger_px"], row["sl_trigger_px"], row["sl_trigger_px_type"]) == (tp, sl, "mark")
        assert row["tp_ord_px"] is None and row["sl_ord_px"] is None  # market
        sim.set_price(BTC, off_price(sim, "0.94"))  # below the stop: it fires at market
        row = await algo_row(db_pool, account_id, algo_id, state="effective")
        assert row["actual_side"] == "sl" and row["triggered_ord_id"]

        async def closed() -> asyncpg.Record | None:
            return await db_pool.fetchrow(
                """SELECT o.algo_id, count(f.*) AS fills,
                          (SELECT count(*) FROM aitrader.positions_open p
                           WHERE p.account_id = $1) AS open
                   FROM aitrader.orders o JOIN aitrader.fills f ON f.order_id = o.id
                   WHERE o.account_id = $1 AND o.exchange_order_id = $2 GROUP BY o.algo_id""",
                account_id, row["triggered_ord_id"])

        done = await wait_for(closed, timeout=10, message="the stop's fill and the position closed")
        assert done is not None
        assert (done["algo_id"], done["open"]) == (algo_id, 0) and done["fills"] >= 1
        assert await algo_states(js, subjects, account_id, algo_id) == ["live", "effective"]


async def test_place_amend_and_cancel_through_nats_and_okx_refusals_come_back(
        settings: Settings, sim: SimHandle, nc: Client, trader: OkxRest, subjects: Subjects,
        db_pool: asyncpg.Pool, positions: None) -> None:
    async with running(ingest_settings(settings, sim, ingest_market_data=False)) as app:
        assert app.account is not None
        account_id = app.account.account_id
        await place(trader, BTC, "buy", "2")
        base: dict[str, Any] = {"account_id": account_id, "inst_id": BTC}
        stop = PlaceAlgo(request_id=uuid4(), **base, side="sell", close_fraction=1,
                         sl_trigger_px=off_price(sim, "0.9"))
        placed = await ask(nc, subjects.place_algo(account_id), stop)
        assert placed.ok and placed.algo_id and placed.request_id == stop.request_id, placed
        algo = sim.exchange.accounts[KEY].algos[placed.algo_id]
        assert (algo.state, algo.algo_cl_ord_id, algo.close_fraction) == (
            "live", stop.request_id.hex, "1")
        await algo_row(db_pool, account_id, placed.algo_id, state="live", close_fraction=1)

        moved = off_price(sim, "0.92")
        amended = await ask(nc, subjects.amend_algo(account_id), AmendAlgo(
            request_id=uuid4(), **base, algo_id=placed.algo_id, new_sl_trigger_px=moved))
        assert amended.ok and algo.sl_trigger_px == moved, amended
        await algo_row(db_pool, account_id, placed.algo_id, state="live", sl_trigger_px=moved)

        above = await ask(nc, subjects.amend_algo(account_id), AmendAlgo(
            request_id=uuid4(), **base, algo_id=placed.algo_id,
            new_sl_trigger_px=off_price(sim, "1.1")))
        assert (above.ok, above.s_code) == (False, "51280") and "SL" in above.s_msg, above
        off_grid = await ask(nc, subjects.amend_algo(account_id), AmendAlgo(
            request_id=uuid4(), **base, algo_id=placed.algo_id,
            new_sl_trigger_px=moved + Decimal("0.05")))
        assert (off_grid.s_code, "tickSz" in off_grid.s_msg) == ("invalid", True)

        canceled = await ask(nc, subjects.cancel_algo(account_id), CancelAlgo(
            request_id=uuid4(), **base, algo_id=placed.algo_id))
        assert canceled.ok and algo.state == "canceled", canceled
        await algo_row(db_pool, account_id, placed.algo_id, state="canceled", sl_trigger_px=moved)
        again = await ask(nc, subjects.cancel_algo(account_id), CancelAlgo(
            request_id=uuid4(), **base, algo_id=placed.algo_id))
        assert (again.ok, again.s_code) == (False, "51400")
        garbage = await ask(nc, subjects.place_algo(account_id), CancelAlgo(
            request_id=uuid4(), **base, algo_id="1"))  # the wrong model for the subject
        assert garbage.s_code == "invalid"


async def test_a_stop_that_fires_while_the_business_socket_is_away_is_backfilled(
        settings: Settings, sim: SimHandle, trader: OkxRest, js: JetStreamContext,
        subjects: Subjects, db_pool: asyncpg.Pool, positions: None) -> None:
    async with running(ingest_settings(settings, sim, ingest_market_data=False)) as app:
        assert app.account is not None and app.algo_backfill is not None
        account_id = app.account.account_id
        await place(trader, BTC, "buy", "2")
        item = await trader.post_item("/api/v5/trade/order-algo", {
            "instId": BTC, "tdMode": "cross", "side": "sell", "ordType": "conditional",
            "closeFraction": "1", "reduceOnly": True, "slTriggerPx": str(off_price(sim, "0.95")),
            "slOrdPx": "-1"})
        algo_id = str(item["algoId"])
        await algo_row(db_pool, account_id, algo_id, state="live")
        sim.pause_pushes(KEY)  # the trigger's pushes are never sent
        sim.set_price(BTC, off_price(sim, "0.9"))
        assert sim.exchange.accounts[KEY].algos[algo_id].state == "effective"
        sim.resume_pushes(KEY)
        runs = app.algo_backfill.runs
        assert sim.drop_business(KEY) == 1
        row = await algo_row(db_pool, account_id, algo_id, state="effective")
        assert row["actual_side"] == "sl" and app.algo_backfill.runs > runs
        assert await algo_states(js, subjects, account_id, algo_id) == ["live", "effective"]
