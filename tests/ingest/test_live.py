"""Live pushes from okx_sim over real sockets -> ingest -> JetStream, and the start-up rows."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
from nats.js import JetStreamContext

from services.ingest.okx_rest import OkxRest
from services.okx_sim import SimHandle
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.ingest.conftest import (
    ACCOUNT,
    fills_on_stream,
    ingest_settings,
    place,
    running,
    stream_messages,
)


async def test_start_writes_account_and_instruments(settings: Settings, sim: SimHandle,
                                                    db_pool: asyncpg.Pool) -> None:
    async with running(ingest_settings(settings, sim)) as app:
        row = await db_pool.fetchrow("SELECT id, mode, status, pos_mode FROM aitrader.accounts"
                                     " WHERE external_id = $1", ACCOUNT)
        assert app.account is not None and row is not None
        assert (row["id"], row["mode"], row["status"], row["pos_mode"]) == (
            app.account.account_id, "simulated", "active", "net_mode")
        rows = await db_pool.fetch("SELECT symbol, ct_val, lot_sz, min_sz, tick_sz, max_leverage"
                                   " FROM aitrader.instruments ORDER BY symbol")
    assert [tuple(r) for r in rows] == [
        ("BTC-USDT-SWAP", Decimal("0.01"), Decimal("0.01"), Decimal("0.01"), Decimal("0.1"),
         Decimal("100")),
        ("ETH-USDT-SWAP", Decimal("0.1"), Decimal("0.01"), Decimal("0.01"), Decimal("0.01"),
         Decimal("100")),
    ]


async def test_closed_candle_reaches_the_stream(settings: Settings, sim: SimHandle,
                                                js: JetStreamContext, subjects: Subjects) -> None:
    subject = subjects.candle("1m", "BTC-USDT-SWAP")
    async with running(ingest_settings(settings, sim, symbols=["BTC-USDT-SWAP"])):
        closing_bar = sim.now() // 60_000 * 60_000
        sim.advance(60)

        async def closed() -> list[dict[str, object]]:
            msgs = await stream_messages(js, subjects, "market", subject)
            return [b for _, b, h in msgs if b["confirmed"] and h["Nats-Msg-Id"].endswith(
                f":{closing_bar}:1")]

        (candle,) = await wait_for(closed, timeout=5, message="the closed bar")
    assert candle["bar"] == "1m" and Decimal(str(candle["close"])) > 0


async def test_fill_once_despite_repeated_push_and_garbage(
        settings: Settings, sim: SimHandle, js: JetStreamContext, subjects: Subjects,
        trader: OkxRest) -> None:
    cfg = ingest_settings(settings, sim, ingest_market_data=False)
    async with running(cfg) as app:
        assert app.account is not None
        account_id = app.account.account_id
        before = len(await fills_on_stream(js, subjects, account_id))
        ord_id = await place(trader, "ETH-USDT-SWAP", "buy", "2")
        await wait_for(lambda: _fills_of(js, subjects, account_id, ord_id), timeout=5)
        assert sim.repeat_last_push(app.cfg.okx_api_key.get_secret_value())  # type: ignore[union-attr]
        sim.send_malformed()

        async def counted() -> int:
            return app.stats.bad["not_json"]

        await wait_for(counted, timeout=5, message="the malformed frame counted")
        second = await place(trader, "ETH-USDT-SWAP", "sell", "2")
        await wait_for(lambda: _fills_of(js, subjects, account_id, second), timeout=5)
        fills = await fills_on_stream(js, subjects, account_id)
    assert len(fills) == before + 2
    assert len({f["trade_id"] for f in fills}) == len(fills)
    assert app.stats.bad["not_json"] == 1


async def _fills_of(js: JetStreamContext, subjects: Subjects, account_id: object,
                    ord_id: str) -> list[dict[str, object]]:
    return [f for f in await fills_on_stream(js, subjects, account_id) if f["ord_id"] == ord_id]
