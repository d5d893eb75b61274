"""Protocol fidelity: the official python-okx SDK (nobody here wrote it) against okx_sim."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import okx.Account as Account
import okx.MarketData as MarketData
import okx.PublicData as PublicData
import okx.Trade as Trade
import pytest
from okx.websocket.WsPrivateAsync import WsPrivateAsync
from okx.websocket.WsPublicAsync import WsPublicAsync

from services.okx_sim import AccountSpec, SimHandle, run_sim

from .conftest import KEY, PASSPHRASE, SECRET, Inbox, Tls, base_config

BTC = "BTC-USDT-SWAP"
# python-okx posts with httpx `data=`, which httpx 0.28 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def clients(sim: SimHandle) -> tuple[Trade.TradeAPI, Account.AccountAPI]:
    kw: dict[str, Any] = dict(api_key=KEY, api_secret_key=SECRET, passphrase=PASSPHRASE,
                              flag="1", domain=sim.rest_url, debug=False)
    return Trade.TradeAPI(**kw), Account.AccountAPI(**kw)


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """python-okx REST is synchronous: run it off the loop that serves the simulator."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_sdk_rest_trades_and_reads_back(sim: SimHandle) -> None:
    trade, account = clients(sim)
    public = PublicData.PublicAPI(flag="1", domain=sim.rest_url, debug=False)
    market = MarketData.MarketAPI(flag="1", domain=sim.rest_url, debug=False)

    inst = await call(public.get_instruments, instType="SWAP", instId=BTC)
    assert inst["code"] == "0"
    row = inst["data"][0]
    assert (row["ctVal"], row["lotSz"], row["minSz"], row["tickSz"], row["lever"],
            row["state"]) == ("0.01", "0.01", "0.01", "0.1", "100", "live")

    config = await call(account.get_account_config)
    assert config["data"][0]["posMode"] == "net_mode"
    lev = await call(account.set_leverage, lever="5", mgnMode="cross", instId=BTC)
    assert lev["code"] == "0" and lev["data"][0]["lever"] == "5"

    sim.set_price(BTC, "50000")
    placed = await call(trade.place_order, instId=BTC, tdMode="cross", side="buy",
                        ordType="market", sz="2", clOrdId="sdk1")
    assert placed["code"] == "0", placed
    assert placed["data"][0]["clOrdId"] == "sdk1" and placed["data"][0]["sCode"] == "0"
    ord_id = placed["data"][0]["ordId"]
    assert ord_id.isdigit()

    fills = await call(trade.get_fills, instType="SWAP")
    (fill,) = fills["data"]
    # 2 contracts x 0.01 BTC x 50000 = 1000 USDT notional; taker 0.05% = 0.5 USDT charged
    assert (fill["ordId"], fill["fillPx"], fill["fillSz"], fill["fee"], fill["feeCcy"],
            fill["execType"], fill["side"], fill["posSide"], fill["clOrdId"]) == (
        ord_id, "50000", "2", "-0.5", "USDT", "T", "buy", "net", "sdk1")

    positions = await call(account.get_positions, instType="SWAP")
    (pos,) = positions["data"]
    assert (pos["instId"], pos["pos"], pos["avgPx"], pos["lever"], pos["posSide"],
            pos["imr"]) == (BTC, "2", "50000", "5", "net", "200")
    sim.set_price(BTC, "50500")
    positions = await call(account.get_positions, instType="SWAP", instId=BTC)
    assert positions["data"][0]["upl"] == "10"  # (50500-50000) x 2 x 0.01

    balance = await call(account.get_account_balance, ccy="USDT")
    detail = balance["data"][0]["details"][0]
    assert (detail["ccy"], detail["cashBal"], detail["upl"], detail["eq"]) == (
        "USDT", "9999.5", "10", "10009.5")

    closed = await call(trade.place_order, instId=BTC, tdMode="cross", side="sell",
                        ordType="limit", px="50400", sz="2")
    assert closed["code"] == "0", closed
    history = await call(trade.get_fills_history, instType="SWAP", instId=BTC)
    newest, oldest = history["data"]
    assert int(newest["billId"]) > int(oldest["billId"])
    assert int(newest["tradeId"]) > int(oldest["tradeId"])
    assert (newest["fillPx"], newest["fillPnl"], newest["subType"]) == ("50500", "10", "5")
    page = await call(trade.get_fills_history, instType="SWAP", after=newest["billId"])
    assert [f["billId"] for f in page["data"]] == [oldest["billId"]]

    candles = await call(market.get_history_candlesticks, instId=BTC, bar="1H", limit="3")
    stamps = [int(c[0]) for c in candles["data"]]
    assert stamps == sorted(stamps, reverse=True) and len(stamps) == 3
    assert stamps[0] - stamps[1] == 3_600_000
    ticker = await call(market.get_ticker, instId=BTC)
    assert ticker["data"][0]["last"] == "50500"


async def test_sdk_errors(sim: SimHandle) -> None:
    trade, _ = clients(sim)
    wrong = Trade.TradeAPI(api_key=KEY, api_secret_key="nope", passphrase=PASSPHRASE,
                           flag="1", domain=sim.rest_url, debug=False)
    assert (await call(wrong.get_fills))["code"] == "50113"
    stranger = Trade.TradeAPI(api_key="who", api_secret_key=SECRET, passphrase=PASSPHRASE,
                              flag="1", domain=sim.rest_url, debug=False)
    assert (await call(stranger.get_fills))["code"] == "50111"
    odd = await call(trade.place_order, instId=BTC, tdMode="cross", side="buy",
                     ordType="market", sz="0.015")
    assert (odd["code"], odd["data"][0]["sCode"]) == ("1", "51121")
    unknown = await call(trade.place_order, instId="NOPE-USDT-SWAP", tdMode="cross",
                         side="buy", ordType="market", sz="1")
    assert unknown["data"][0]["sCode"] == "51001"
    huge = await call(trade.place_order, instId=BTC, tdMode="cross", side="buy",
                      ordType="market", sz="1000")
    assert huge["data"][0]["sCode"] == "51008"


async def test_sdk_rest_key_works_only_in_its_own_environment(tls: Tls) -> None:
    """python-okx's flag is the x-simulated-trading header: a demo key sent as live (and a
    live key sent as demo) gets OKX's 50101, as on OKX."""
    accounts = (AccountSpec(KEY, SECRET, PASSPHRASE), AccountSpec("live-key", SECRET, PASSPHRASE,
                                                                  live=True))
    async with run_sim(base_config(tls, accounts=accounts)) as sim:
        def balance(key: str, flag: str) -> Any:
            api = Account.AccountAPI(api_key=key, api_secret_key=SECRET, passphrase=PASSPHRASE,
                                     flag=flag, domain=sim.rest_url, debug=False)
            return api.get_account_balance()

        for key, flag, code in [(KEY, "0", "50101"), ("live-key", "1", "50101"),
                                (KEY, "1", "0"), ("live-key", "0", "0")]:
            answer = await call(balance, key, flag)
            assert answer["code"] == code, (key, flag, answer)
        assert answer["code"] == "0"
        mismatch = await call(balance, KEY, "0")
        assert mismatch == {"msg": "APIKey does not match current environment.", "code": "50101"}


async def test_sdk_websockets_login_subscribe_and_receive_fills(sim: SimHandle) -> None:
    trade, _ = clients(sim)
    private, public, business = Inbox(), Inbox(), Inbox()
    ws_private = WsPrivateAsync(apiKey=KEY, passphrase=PASSPHRASE, secretKey=SECRET,
                                url=sim.ws_private_url)
    ws_public = WsPublicAsync(url=sim.ws_public_url)
    ws_business = WsPublicAsync(url=sim.ws_business_url)
    tasks = [await ws.start() for ws in (ws_private, ws_public, ws_business)]
    try:
        await ws_public.subscribe([{"channel": "tickers", "instId": BTC},
                                   {"channel": "funding-rate", "instId": BTC}], public)
        await ws_business.subscribe([{"channel": "candle1m", "instId": BTC}], business)
        # the SDK logs in, waits 5 s, then subscribes
        await ws_private.subscribe([{"channel": "orders", "instType": "SWAP"},
                                    {"channel": "positions", "instType": "SWAP"}], private)
        await private.wait(lambda i: [m for m in i.json() if m.get("event") == "login"
                                      and m.get("code") == "0"])
        await private.wait(lambda i: len([m for m in i.json()
                                          if m.get("event") == "subscribe"]) == 2)
        await public.wait(lambda i: i.pushes("tickers") and i.pushes("funding-rate"))

        sim.set_price(BTC, "40000")
        placed = await call(trade.place_order, instId=BTC, tdMode="cross", side="sell",
                            ordType="market", sz="1", clOrdId="wsfill1")
        assert placed["code"] == "0", placed

        def filled(inbox: Inbox) -> list[dict[str, Any]]:
            return [d for m in inbox.pushes("orders") for d in m["data"] if d["tradeId"]]

        (push,) = await private.wait(filled)
        rest = (await call(trade.get_fills, instId=BTC))["data"][0]
        assert (push["tradeId"], push["fillPx"], push["fillSz"], push["fillFee"],
                push["fillFeeCcy"], push["fillPnl"], push["fillTime"], push["execType"],
                push["state"], push["clOrdId"], push["posSide"], push["accFillSz"],
                push["avgPx"], push["category"]) == (
            rest["tradeId"], "40000", "1", "-0.2", "USDT", "0", rest["fillTime"], "T",
            "filled", "wsfill1", "net", "1", "40000", "normal")
        pos_push = await private.wait(lambda i: [d for m in i.pushes("positions")
                                                 for d in m["data"] if d["pos"] == "-1"])
        assert pos_push[0]["avgPx"] == "40000"

        sim.advance(60)
        confirmed = await business.wait(lambda i: [d for m in i.pushes("candle1m")
                                                   for d in m["data"] if d[8] == "1"])
        ts = int(confirmed[0][0])
        assert ts % 60_000 == 0
        market = MarketData.MarketAPI(flag="1", domain=sim.rest_url, debug=False)
        rest_bar = await call(market.get_history_candlesticks, instId=BTC, bar="1m",
                              after=str(ts + 60_000), limit="1")
        assert rest_bar["data"] == [confirmed[0]]  # the live bar is the bar REST serves
    finally:
        for ws in (ws_private, ws_public, ws_business):
            await ws.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
