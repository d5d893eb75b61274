"""Websocket protocol details and the test controls, with a plain `websockets` client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.okx_sim import AccountSpec, SimHandle, run_sim
from services.okx_sim.auth import sign
from services.okx_sim.exchange import OrderRequest

from .conftest import KEY, PASSPHRASE, SECRET, Inbox, base_config

BTC = "BTC-USDT-SWAP"


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with run_sim(base_config(idle_timeout_s=1.0)) as handle:
        yield handle


class Client:
    """A raw websocket with an Inbox filled by a reader task."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self.inbox = ws, Inbox()
        self.task = asyncio.create_task(self._read())
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.inbox(str(frame))
        except ConnectionClosed:
            pass
        self.closed.set_result(self.ws.close_code)
        self.inbox("")

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def login(self, ts: Any = None, secret: str = SECRET, key: str = KEY) -> None:
        ts = ts if ts is not None else int(time.time())
        await self.send({"op": "login", "args": [{
            "apiKey": key, "passphrase": PASSPHRASE, "timestamp": ts,
            "sign": sign(secret, f"{ts}GET/users/self/verify".encode())}]})

    def events(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.inbox.json() if m.get("event") == event]


async def open_ws(url: str) -> Client:
    return Client(await connect(url))


async def test_ping_pong_subscribe_ack_and_errors(sim: SimHandle) -> None:
    pub = await open_ws(sim.ws_public_url + "?brokerId=9999")  # query strings are ignored
    await pub.send("ping")
    await pub.inbox.wait(lambda i: "pong" in i.frames)
    arg = {"channel": "tickers", "instId": BTC}
    await pub.send({"id": "a1", "op": "subscribe", "args": [arg]})
    (ack,) = await pub.inbox.wait(lambda i: pub.events("subscribe"))
    assert (ack["id"], ack["arg"], len(ack["connId"])) == ("a1", arg, 8)
    push = (await pub.inbox.wait(lambda i: i.pushes("tickers")))[0]
    assert push["arg"] == arg and push["data"][0]["instId"] == BTC
    await pub.send({"op": "subscribe", "args": [{"channel": "candle1m", "instId": BTC}]})
    await pub.send({"op": "subscribe", "args": [{"channel": "nonsense", "instId": BTC}]})
    await pub.send({"op": "subscribe", "args": [{"channel": "tickers", "instId": "X-USDT-SWAP"}]})
    await pub.send('{"op": "subscribe", "args": [')
    await pub.send({"op": "dance", "args": []})
    errors = await pub.inbox.wait(lambda i: len(pub.events("error")) == 5 and pub.events("error"))
    assert [e["code"] for e in errors] == ["60018", "60018", "60018", "60012", "60019"]
    assert "candle1m" in errors[0]["msg"] and errors[3]["msg"].startswith("Invalid request")
    await pub.send({"op": "unsubscribe", "args": [arg]})
    (unsub,) = await pub.inbox.wait(lambda i: pub.events("unsubscribe"))
    assert unsub["arg"] == arg
    await pub.ws.close()


async def test_private_login_rules(sim: SimHandle) -> None:
    priv = await open_ws(sim.ws_private_url)
    await priv.send({"op": "subscribe", "args": [{"channel": "orders", "instType": "SWAP"}]})
    await priv.login(secret="wrong")
    await priv.login(ts=int(time.time()) - 60)
    await priv.inbox.wait(lambda i: len(priv.events("error")) == 3)
    assert [e["code"] for e in priv.events("error")] == ["60011", "60007", "60006"]
    await priv.login(ts=str(int(time.time())))  # the docs' string form works too
    (login,) = await priv.inbox.wait(lambda i: priv.events("login"))
    assert login["code"] == "0"
    await priv.send({"op": "subscribe", "args": [{"channel": "fills"}]})
    await priv.inbox.wait(lambda i: len(priv.events("error")) == 4)
    assert priv.events("error")[-1]["code"] == "64003"
    await priv.ws.close()


async def test_a_key_logs_in_only_on_its_environments_endpoint() -> None:
    """/ws/v5 plays wspap.okx.com (demo trading), /live/ws/v5 ws.okx.com: a key of the other
    environment is refused as OKX refuses it, with 50101."""
    live = AccountSpec("live-key", SECRET, PASSPHRASE, live=True)
    accounts = (AccountSpec(KEY, SECRET, PASSPHRASE), live)
    async with run_sim(base_config(accounts=accounts)) as sim:
        for url, key, code in [(sim.ws_live_url("private"), KEY, "50101"),
                               (sim.ws_private_url, "live-key", "50101"),
                               (sim.ws_live_url("private"), "live-key", "0"),
                               (sim.ws_private_url, KEY, "0")]:
            client = await open_ws(url)
            await client.login(key=key)
            (answer,) = await client.inbox.wait(
                lambda i, c=client: c.events("login") + c.events("error"))
            assert answer["code"] == code, (url, key)
            if code != "0":
                assert answer["msg"] == "APIKey does not match current environment."
            await client.ws.close()


async def test_idle_socket_is_closed_with_4004(sim: SimHandle) -> None:
    pub = await open_ws(sim.ws_public_url)  # idle_timeout_s=1 in this module
    async with asyncio.timeout(5):
        assert await pub.closed == 4004


async def test_bar_close_and_funding_without_waiting(sim: SimHandle) -> None:
    biz = await open_ws(sim.ws_business_url)
    await biz.send({"op": "subscribe", "args": [{"channel": "candle1m", "instId": BTC}]})
    await biz.inbox.wait(lambda i: i.pushes("candle1m"))
    sim.advance(120)
    def confirmed(i: Inbox) -> list[list[str]]:
        return [d for m in i.pushes("candle1m") for d in m["data"] if d[8] == "1"]

    await biz.inbox.wait(lambda i: len(confirmed(i)) >= 2)
    stamps = [int(row[0]) for row in confirmed(biz.inbox)]
    assert stamps == [stamps[0], stamps[0] + 60_000]  # both bars that closed, in order

    priv = await open_ws(sim.ws_private_url)
    await priv.login()
    await priv.inbox.wait(lambda i: priv.events("login"))
    await priv.send({"op": "subscribe", "args": [{"channel": "balance_and_position"}]})
    await priv.inbox.wait(lambda i: i.pushes("balance_and_position"))
    sim.set_price(BTC, "50000")
    async with httpx.AsyncClient(base_url=sim.rest_url) as client:
        assert (await control(client, "noop"))["ok"] is False  # unknown control: 400
    sim.exchange.place_order(KEY, _market_buy())
    sim.advance(8 * 3600)  # past the next funding settlement
    funding = await priv.inbox.wait(lambda i: [d for m in i.pushes("balance_and_position")
                                               for d in m["data"]
                                               if d["eventType"] == "funding_fee"])
    bills = [b for b in sim.exchange.accounts[KEY].bills if b.type == "8"]
    assert bills and bills[0].sub_type in ("173", "174")
    assert funding[0]["balData"][0]["cashBal"] == str(bills[-1].bal.normalize())
    await priv.ws.close()
    await biz.ws.close()


def _market_buy() -> OrderRequest:
    return OrderRequest(BTC, "buy", "market", Decimal(1))


async def control(client: httpx.AsyncClient, name: str, **body: Any) -> Any:
    resp = await client.post(f"/sim/control/{name}", json=body)
    return resp.json()


async def test_controls_drop_repeat_malformed_pause(sim: SimHandle) -> None:
    async def private() -> Client:
        c = await open_ws(sim.ws_private_url)
        await c.login()
        await c.inbox.wait(lambda i: c.events("login"))
        await c.send({"op": "subscribe", "args": [{"channel": "orders", "instType": "ANY"}]})
        await c.inbox.wait(lambda i: c.events("subscribe"))
        return c

    def fills(inbox: Inbox) -> list[str]:
        return [d["tradeId"] for m in inbox.pushes("orders") for d in m["data"]
                if d["tradeId"]]

    priv = await private()
    async with httpx.AsyncClient(base_url=sim.rest_url) as client:
        sim.exchange.place_order(KEY, _market_buy())  # engine call: no push (not published)
        assert (await control(client, "set-price", instId=BTC, px="50000"))["ok"]
        _, events = sim.exchange.place_order(KEY, _market_buy())
        sim.core.publish(events)
        first = await priv.inbox.wait(fills)
        assert (await control(client, "repeat-push", apiKey=KEY))["result"] is True
        await priv.inbox.wait(lambda i: len(fills(i)) == 2)
        assert fills(priv.inbox) == first * 2  # the same tradeId twice: clients must dedupe
        assert (await control(client, "malformed", apiKey=KEY))["result"] == 1
        await priv.inbox.wait(lambda i: any(f.startswith('{"arg"') and f.endswith(":")
                                            for f in i.frames))

        assert (await control(client, "pause", apiKey=KEY))["ok"]
        _, events = sim.exchange.place_order(KEY, _market_buy())
        sim.core.publish(events)
        pong_count = priv.inbox.frames.count("pong")
        await priv.send("ping")  # a round trip: anything pushed before it has arrived
        await priv.inbox.wait(lambda i: i.frames.count("pong") > pong_count)
        assert len(fills(priv.inbox)) == 2  # paused: the fill is only in REST
        assert len(sim.exchange.accounts[KEY].fills) == 3
        assert (await control(client, "resume", apiKey=KEY))["ok"]

        assert (await control(client, "drop-private", apiKey=KEY))["result"] == 1
        async with asyncio.timeout(5):
            assert await priv.closed == 1011
    again = await private()
    _, events = sim.exchange.place_order(KEY, _market_buy())
    sim.core.publish(events)
    await again.inbox.wait(fills)
    await again.ws.close()
