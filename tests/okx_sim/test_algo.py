"""TP/SL algo orders over the wire: python-okx REST, the orders-algo and orders pushes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import okx.Trade as Trade
import pytest
from websockets.asyncio.client import connect

from services.okx_sim import SimHandle, run_sim

from .conftest import Tls, base_config
from .test_sdk import call, clients
from .test_state import Okx, config, doc, serving
from .test_state import path as path  # the state-file fixture
from .test_websockets import Client

BTC = "BTC-USDT-SWAP"
MARKET = "-1"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # python-okx's httpx use


@dataclass
class Desk:
    """A simulator at 50000, python-okx, and logged-in sockets: business (orders-algo) and
    private (orders)."""

    sim: SimHandle
    trade: Trade.TradeAPI
    business: Client
    private: Client

    def algo_pushes(self) -> list[tuple[str, str]]:
        return [(d["algoId"], d["state"]) for m in self.business.inbox.pushes("orders-algo")
                for d in m["data"]]

    async def wait_algo(self, algo_id: str, state: str) -> dict[str, Any]:
        found = await self.business.inbox.wait(lambda i: [
            d for m in i.pushes("orders-algo") for d in m["data"]
            if (d["algoId"], d["state"]) == (algo_id, state)])
        row: dict[str, Any] = found[-1]
        return row

    async def algo(self, **fields: str) -> str:
        """Place an algo order; its algoId."""
        placed = await call(self.trade.place_algo_order, instId=BTC, tdMode="cross", **fields)
        assert placed["code"] == "0", placed
        algo_id: str = placed["data"][0]["algoId"]
        return algo_id

    async def buy(self, sz: str, **fields: Any) -> str:
        placed = await call(self.trade.place_order, instId=BTC, tdMode="cross", side="buy",
                            ordType="market", sz=sz, **fields)
        assert placed["code"] == "0", placed
        ord_id: str = placed["data"][0]["ordId"]
        return ord_id


async def logged_in(url: str, tls: Tls, channel: str) -> Client:
    client = Client(await connect(url, ssl=tls.client_context()))
    await client.login()
    await client.inbox.wait(lambda i: client.events("login"))
    await client.send({"op": "subscribe", "args": [{"channel": channel, "instType": "SWAP"}]})
    await client.inbox.wait(lambda i: client.events("subscribe"))
    return client


@pytest.fixture
async def desk(sim: SimHandle, tls: Tls) -> AsyncIterator[Desk]:
    sim.set_price(BTC, "50000")
    trade, _ = clients(sim)
    business = await logged_in(sim.ws_business_url, tls, "orders-algo")
    private = await logged_in(sim.ws_private_url, tls, "orders")
    yield Desk(sim, trade, business, private)
    await business.ws.close()
    await private.ws.close()


async def test_attached_tp_sl_rest_after_the_fill_and_the_stop_closes_on_a_mark_move(
        desk: Desk) -> None:
    ord_id = await desk.buy("2", attachAlgoOrds=[{
        "attachAlgoClOrdId": "plan1", "tpTriggerPx": "52000", "tpOrdPx": MARKET,
        "slTriggerPx": "49000", "slOrdPx": MARKET, "slTriggerPxType": "mark"}])
    (pending,) = (await call(desk.trade.order_algos_list, ordType="oco"))["data"]
    algo_id = pending["algoId"]
    assert (pending["algoClOrdId"], pending["state"], pending["side"], pending["sz"],
            pending["reduceOnly"], pending["tpTriggerPx"], pending["tpOrdPx"],
            pending["slTriggerPx"], pending["slTriggerPxType"], pending["ordType"]) == (
        "plan1", "live", "sell", "2", "true", "52000", "-1", "49000", "mark", "oco")
    parent = (await call(desk.trade.get_order, instId=BTC, ordId=ord_id))["data"][0]
    assert parent["attachAlgoOrds"][0]["attachAlgoId"] == algo_id
    await desk.wait_algo(algo_id, "live")

    desk.sim.set_price(BTC, "48990")  # mark (= last in the sim) crosses the stop
    effective = await desk.wait_algo(algo_id, "effective")
    fills = await desk.private.inbox.wait(lambda i: [
        d for m in i.pushes("orders") for d in m["data"] if d["algoId"] and d["tradeId"]])
    fill = fills[0]
    assert (fill["algoId"], fill["algoClOrdId"], fill["source"], fill["category"],
            fill["side"], fill["reduceOnly"], fill["ordType"], fill["state"],
            fill["fillSz"]) == (algo_id, "plan1", "7", "normal", "sell", "true", "market",
                                "filled", "2")
    assert (effective["ordId"], effective["actualSide"], effective["actualSz"]) == (
        fill["ordId"], "sl", "2")
    assert desk.algo_pushes() == [(algo_id, "live"), (algo_id, "effective")]
    assert (await call(desk.trade.order_algos_list, ordType="conditional,oco"))["data"] == []
    (done,) = (await call(desk.trade.order_algos_history, ordType="oco",
                          state="effective"))["data"]
    assert (done["algoId"], done["ordIdList"]) == (algo_id, [fill["ordId"]])
    (closing,) = (await call(desk.trade.get_order, instId=BTC, ordId=fill["ordId"]))["data"]
    assert (closing["algoId"], closing["source"]) == (algo_id, "7")


async def test_take_profit_as_a_limit_order(desk: Desk) -> None:
    await desk.buy("1")
    algo_id = await desk.algo(side="sell", ordType="conditional", sz="1", reduceOnly="true",
                              tpTriggerPx="51000", tpOrdPx="51100")
    desk.sim.set_price(BTC, "51000")
    effective = await desk.wait_algo(algo_id, "effective")
    (order,) = (await call(desk.trade.get_order, instId=BTC, ordId=effective["ordId"]))["data"]
    assert (order["ordType"], order["px"], order["state"], order["algoId"]) == (
        "limit", "51100", "live", algo_id)  # rests: the market is below its price
    desk.sim.set_price(BTC, "51100")
    (order,) = (await call(desk.trade.get_order, instId=BTC, ordId=effective["ordId"]))["data"]
    assert (order["state"], order["avgPx"], order["execType"]) == ("filled", "51100", "M")


async def test_amend_moves_the_stop_and_the_push_says_so(desk: Desk) -> None:
    await desk.buy("1")
    algo_id = await desk.algo(side="sell", ordType="conditional", closeFraction="1",
                              reduceOnly="true", slTriggerPx="49000", slOrdPx=MARKET)
    amended = await call(desk.trade.amend_algo_order, instId=BTC, algoId=algo_id,
                         newSlTriggerPx="49500", reqId="move1")
    assert (amended["code"], amended["data"][0]["reqId"]) == ("0", "move1"), amended
    moved = await desk.business.inbox.wait(lambda i: [
        d for m in i.pushes("orders-algo") for d in m["data"] if d["reqId"] == "move1"])
    assert (moved[0]["slTriggerPx"], moved[0]["amendResult"], moved[0]["state"]) == (
        "49500", "0", "live")
    desk.sim.set_price(BTC, "49600")
    desk.sim.set_price(BTC, "49500")
    await desk.wait_algo(algo_id, "effective")
    assert desk.algo_pushes() == [(algo_id, "live")] * 2 + [(algo_id, "effective")]


async def test_cancel_per_item_and_the_history(desk: Desk) -> None:
    await desk.buy("1")
    algo_id = await desk.algo(side="sell", ordType="conditional", sz="1", reduceOnly="true",
                              slTriggerPx="49000", slOrdPx=MARKET)
    both = await call(desk.trade.cancel_algo_order, [{"instId": BTC, "algoId": algo_id},
                                                     {"instId": BTC, "algoId": "1"}])
    assert (both["code"], [d["sCode"] for d in both["data"]]) == ("2", ["0", "51400"])
    again = await call(desk.trade.cancel_algo_order, [{"instId": BTC, "algoId": algo_id}])
    assert (again["code"], again["data"][0]["sCode"]) == ("1", "51400")
    await desk.wait_algo(algo_id, "canceled")
    (row,) = (await call(desk.trade.order_algos_history, ordType="conditional",
                         state="canceled"))["data"]
    assert row["algoId"] == algo_id
    assert (await call(desk.trade.order_algos_history, ordType="conditional",
                       state="effective"))["data"] == []


async def test_pending_filters_and_pages_newest_first(desk: Desk) -> None:
    await desk.buy("3")
    ids = [await desk.algo(side="sell", ordType="conditional", sz="1", reduceOnly="true",
                           slTriggerPx=px, slOrdPx=MARKET) for px in ("49000", "48000")]
    ids.append(await desk.algo(side="sell", ordType="oco", sz="1", reduceOnly="true",
                               slTriggerPx="47000", slOrdPx=MARKET, tpTriggerPx="53000",
                               tpOrdPx=MARKET))
    def listed(answer: dict[str, Any]) -> list[str]:
        assert answer["code"] == "0", answer
        return [d["algoId"] for d in answer["data"]]

    lst = desk.trade.order_algos_list
    assert listed(await call(lst, ordType="conditional,oco")) == ids[::-1]
    assert listed(await call(lst, ordType="conditional")) == ids[1::-1]
    assert listed(await call(lst, ordType="conditional,oco", limit="2")) == [ids[2], ids[1]]
    assert listed(await call(lst, ordType="conditional,oco", after=ids[1])) == [ids[0]]
    assert listed(await call(lst, ordType="conditional,oco", before=ids[0], limit="1")) == [
        ids[1]]
    assert listed(await call(lst, ordType="oco", algoId=ids[2])) == [ids[2]]
    assert listed(await call(lst, ordType="conditional", instId="ETH-USDT-SWAP")) == []
    assert (await call(lst))["code"] == "50014"  # ordType is required
    history = await call(desk.trade.order_algos_history, ordType="conditional")
    assert history["code"] == "50014"  # state or algoId is required


async def test_a_position_closed_by_hand_takes_its_algos_with_it(desk: Desk) -> None:
    await desk.buy("1", attachAlgoOrds=[{"slTriggerPx": "49000", "slOrdPx": MARKET}])
    second = await desk.algo(side="sell", ordType="conditional", closeFraction="1",
                             reduceOnly="true", tpTriggerPx="55000", tpOrdPx=MARKET)
    listed = (await call(desk.trade.order_algos_list, ordType="conditional"))["data"]
    (first,) = [a["algoId"] for a in listed if a["algoId"] != second]
    closed = await call(desk.trade.place_order, instId=BTC, tdMode="cross", side="sell",
                        ordType="market", sz="1")
    assert closed["code"] == "0", closed
    await desk.wait_algo(first, "canceled")
    await desk.wait_algo(second, "canceled")
    assert (await call(desk.trade.order_algos_list, ordType="conditional,oco"))["data"] == []


async def test_refusals_carry_okx_codes(desk: Desk) -> None:
    await desk.buy("1")
    wrong = await call(desk.trade.place_algo_order, instId=BTC, tdMode="cross", side="sell",
                       ordType="conditional", sz="1", reduceOnly="true", tpTriggerPx="49000",
                       tpOrdPx=MARKET)
    assert wrong == {"code": "1", "msg": "All operations failed", "data": [{
        "algoId": "", "clOrdId": "", "algoClOrdId": "", "tag": "", "sCode": "51279",
        "sMsg": "TP trigger price cannot be lower than the last price.", "subCode": ""}]}
    attached = await call(desk.trade.place_order, instId=BTC, tdMode="cross", side="sell",
                          ordType="market", sz="1", reduceOnly="true",
                          attachAlgoOrds=[{"slTriggerPx": "51000", "slOrdPx": MARKET}])
    assert attached["data"][0]["sCode"] == "51333"
    stop_above = await call(desk.trade.place_order, instId=BTC, tdMode="cross", side="buy",
                            ordType="market", sz="1",
                            attachAlgoOrds=[{"slTriggerPx": "51000", "slOrdPx": MARKET}])
    assert stop_above["data"][0]["sCode"] == "51280"  # a long's stop above the last price


async def test_restart_keeps_pending_algos_and_reads_a_version_1_file(path: Path) -> None:
    async with serving(config(path)) as (sim, okx):
        sim.set_price(BTC, "50000")
        assert (await okx.order(side="buy", sz="1"))["code"] == "0"
        placed = await okx.call("POST", "/api/v5/trade/order-algo", {
            "instId": BTC, "tdMode": "cross", "side": "sell", "ordType": "conditional",
            "closeFraction": "1", "reduceOnly": True, "slTriggerPx": "49000",
            "slOrdPx": MARKET})
        assert placed["code"] == "0", placed
        before = await pending(okx)
    assert doc(path)["version"] == 2
    async with serving(config(path)) as (sim, okx):
        assert await pending(okx) == before
        sim.set_price(BTC, "48000")
        assert await pending(okx) == []
        (done,) = await okx.get("/api/v5/trade/orders-algo-history?ordType=conditional"
                                "&state=effective")
        assert done["algoId"] == before[0]["algoId"]
    downgrade(path)
    async with serving(config(path)) as (sim, okx):
        assert await pending(okx) == []
        assert {o.algo_id for o in sim.exchange.accounts[okx.spec.api_key].orders.values()} == {
            ""}
    assert doc(path)["version"] == 2


def downgrade(path: Path) -> None:
    """Rewrite a state file as the version 1 okx-sim wrote it (before algo orders)."""
    old = doc(path)
    old["version"] = 1
    del old["ids"]["algo"]
    for acct in old["accounts"]:
        del acct["algos"]
        for order in acct["orders"]:
            for name in ("algo_id", "algo_cl_ord_id", "source"):
                del order[name]
    path.write_text(json.dumps(old))


async def pending(okx: Okx) -> list[dict[str, Any]]:
    return await okx.get("/api/v5/trade/orders-algo-pending?ordType=conditional,oco")


async def test_orders_algo_needs_a_login_on_the_business_socket(tls: Tls) -> None:
    async with run_sim(base_config(tls)) as sim:
        client = Client(await connect(sim.ws_business_url, ssl=tls.client_context()))
        await client.send({"op": "subscribe", "args": [{"channel": "orders-algo",
                                                        "instType": "SWAP"}]})
        (error,) = await client.inbox.wait(lambda i: client.events("error"))
        assert error["code"] == "60011"
        async with asyncio.timeout(5):
            await client.ws.close()
