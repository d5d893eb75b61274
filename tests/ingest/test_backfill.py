"""Gap backfill over REST: after a dropped private socket the fills on the stream are exactly
the exchange's (no gap, no duplicate, same values as live); candles since the last stored
one; funding payments from the bills."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from services.ingest.okx_rest import OkxRest
from services.okx_sim import SimHandle
from shared.clock import from_ms, to_ms
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.ingest.conftest import (
    KEY,
    fills_on_stream,
    ingest_settings,
    place,
    running,
    socket,
    stream_messages,
)


def _sim_fills(sim: SimHandle) -> dict[str, dict[str, Any]]:
    acct = sim.exchange.accounts[KEY]
    return {f.trade_id: {
        "inst_id": f.inst_id, "ord_id": f.ord_id, "side": f.side, "pos_side": f.pos_side,
        "fill_px": f.fill_px, "fill_sz": f.fill_sz, "fill_fee": f.fee, "fill_pnl": f.pnl,
        "exec_type": f.exec_type, "category": f.category, "ts_event": to_ms(from_ms(f.ts)),
        "lever": Decimal(acct.orders[f.ord_id].lever), "ord_type": acct.orders[f.ord_id].ord_type,
    } for f in acct.fills}


def _stream_fill(body: dict[str, Any]) -> dict[str, Any]:
    from shared.messages import Fill

    fill = Fill.model_validate(body)
    return {"inst_id": fill.inst_id, "ord_id": fill.ord_id, "side": fill.side,
            "pos_side": fill.pos_side, "fill_px": fill.fill_px, "fill_sz": fill.fill_sz,
            "fill_fee": fill.fill_fee, "fill_pnl": fill.fill_pnl, "exec_type": fill.exec_type,
            "category": fill.category, "ts_event": to_ms(fill.ts_event), "lever": fill.lever,
            "ord_type": fill.ord_type}


async def test_dropped_private_socket_leaves_no_gap_and_no_duplicate(
        settings: Settings, sim: SimHandle, js: JetStreamContext, subjects: Subjects,
        trader: OkxRest) -> None:
    async with running(ingest_settings(settings, sim, ingest_market_data=False)) as app:
        assert app.account is not None
        account_id = app.account.account_id
        await place(trader, "BTC-USDT-SWAP", "buy", "0.5")  # live, before the outage
        sim.pause_pushes(KEY)  # from here on only REST knows what happens
        for side, sz in (("buy", "600"), ("sell", "300"), ("sell", "300.5")):
            await place(trader, "BTC-USDT-SWAP", side, sz)  # 600 > depth: partial fills
        assert sim.drop_private(KEY) == 1
        sim.resume_pushes(KEY)
        await place(trader, "ETH-USDT-SWAP", "buy", "1")  # during or after the reconnect
        expected = _sim_fills(sim)

        async def complete() -> bool:
            on_stream = await fills_on_stream(js, subjects, account_id)
            return {f["trade_id"] for f in on_stream} == set(expected)

        async def reconnected() -> bool:
            return socket(app, "private").sessions >= 2

        await wait_for(reconnected, timeout=10, message="a second private session")
        await wait_for(complete, timeout=10, message="every exchange fill on the stream")
        fills = await fills_on_stream(js, subjects, account_id)
    assert len(fills) == len(expected)  # one message per trade: no duplicate
    assert {f["trade_id"]: _stream_fill(f) for f in fills} == expected


async def test_candles_since_the_last_stored_one(settings: Settings, sim: SimHandle,
                                                 js: JetStreamContext, subjects: Subjects,
                                                 db_pool: asyncpg.Pool) -> None:
    current = sim.now() // 60_000 * 60_000
    stored_close = from_ms(current) - timedelta(minutes=5)
    await db_pool.execute("INSERT INTO aitrader.market_snapshots (symbol, timeframe, as_of,"
                          " price) VALUES ('ETH-USDT-SWAP', '1m', $1, 1)", stored_close)
    async with running(ingest_settings(settings, sim)):
        eth = await _confirmed(js, subjects, "ETH-USDT-SWAP")
        btc = await _confirmed(js, subjects, "BTC-USDT-SWAP")
    assert eth == [to_ms(stored_close) + i * 60_000 for i in range(5)]
    assert btc == [current - (60 - i) * 60_000 for i in range(60)]  # empty: the last 60


async def _confirmed(js: JetStreamContext, subjects: Subjects, inst: str) -> list[int]:
    msgs = await stream_messages(js, subjects, "market", subjects.candle("1m", inst))
    return [to_ms(from_ms(int(h["Nats-Msg-Id"].split(":")[3]))) for _, b, h in msgs
            if b["confirmed"]]


async def test_funding_payment_from_the_bills(settings: Settings, sim: SimHandle,
                                              js: JetStreamContext, subjects: Subjects,
                                              trader: OkxRest) -> None:
    async with running(ingest_settings(settings, sim, ingest_market_data=False)) as app:
        assert app.account is not None
        await place(trader, "ETH-USDT-SWAP", "sell", "3")
        period_ms = 8 * 3600 * 1000
        sim.advance((period_ms - sim.now() % period_ms) / 1000 + 1)
        bills = [b for b in sim.exchange.accounts[KEY].bills if b.type == "8"]
        subject = subjects.funding_payment(app.account.account_id, "*")

        async def paid() -> list[tuple[str, Decimal]]:
            msgs = await stream_messages(js, subjects, "account", subject)
            return [(b["bill_id"], Decimal(b["amount"])) for _, b, _ in msgs]

        await wait_for(paid, timeout=5, message="funding payments")
        assert await paid() == [(b.bill_id, b.pnl) for b in bills]


async def test_the_sweep_publishes_a_missed_fill_once_and_nothing_else(
        settings: Settings, sim: SimHandle, js: JetStreamContext, subjects: Subjects,
        trader: OkxRest) -> None:
    cfg = ingest_settings(settings, sim, ingest_market_data=False, ingest_fill_sweep_s=1)
    async with running(cfg) as app:
        assert app.account is not None and app.backfiller is not None
        account_id, backfiller = app.account.account_id, app.backfiller
        await place(trader, "BTC-USDT-SWAP", "buy", "0.5")  # pushed
        sim.pause_pushes(KEY)
        await place(trader, "ETH-USDT-SWAP", "buy", "1")  # never pushed; the socket stays up
        sim.resume_pushes(KEY)
        # Younger than the grace, a fill may still come as a push: not published yet.
        assert await backfiller.missing_fills(timedelta(days=1)) == []
        sim.advance(11)  # past the sweep's grace: a push could no longer be on its way
        expected = _sim_fills(sim)

        async def complete() -> bool:
            on_stream = await fills_on_stream(js, subjects, account_id)
            return {f["trade_id"] for f in on_stream} == set(expected)

        await wait_for(complete, timeout=10, message="the missed fill on the stream")
        swept = backfiller.sweeps

        async def two_more_sweeps() -> bool:
            return backfiller.sweeps >= swept + 2

        await wait_for(two_more_sweeps, timeout=10, message="two more sweeps")
        fills = await fills_on_stream(js, subjects, account_id)
        assert socket(app, "private").sessions == 1
    # Nothing is in the ledger (no positions service here), yet nothing is published twice:
    # the sweep skips what this process published.
    assert len(fills) == len(expected)
    assert {f["trade_id"]: _stream_fill(f) for f in fills} == expected  # as live fills are
