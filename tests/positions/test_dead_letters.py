"""Messages that can never be processed are recorded with a specific reason and acked; nothing
of theirs is written and the consumer keeps going. An instrument not loaded yet is waited for."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import asyncpg
from nats.js import JetStreamContext

from services.positions.config import PositionsSettings
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.positions.conftest import (
    consumed,
    fill,
    ledger_consumer,
    open_rows,
    positions_config,
    publish,
    running,
)


async def test_bad_messages_are_dead_lettered_with_their_reason_and_the_consumer_goes_on(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    subject = subjects.fill(account, "BTC-USDT-SWAP")
    stranger = uuid4()
    body = json.loads(fill(account, "9", "buy", "1", "100", 0).to_bytes())
    await js.publish(subject, b"not json")
    await js.publish(subject, json.dumps({**body, "fill_sz": "-1", "trade_id": "1"}).encode())
    await js.publish(subjects.fill(account, "ETH-USDT-SWAP"), json.dumps({**body, "trade_id": "2"}).encode())
    await js.publish(subjects.fill(stranger, "BTC-USDT-SWAP"),
                     json.dumps({**body, "account_id": str(stranger), "trade_id": "3"}).encode())
    await js.publish(subject, json.dumps({**body, "mode": "live", "trade_id": "4"}).encode())
    await js.publish(subject, json.dumps({**body, "fill_px": "1e13", "trade_id": "5"}).encode())
    await js.publish(subjects.fill(account, "SOL-USDT-SWAP"),
                     json.dumps({**body, "inst_id": "SOL-USDT-SWAP", "trade_id": "6"}).encode())
    await js.publish(subjects.order(account, "BTC-USDT-SWAP"), json.dumps({"ord_id": "1"}).encode())
    await publish(js, subjects, [fill(account, "7", "buy", "1", "100", 0)])
    await consumed(js, subjects)

    rows = await db_pool.fetch("SELECT reason FROM aitrader.dead_letters ORDER BY id")
    reasons = [r["reason"] for r in rows]
    assert len(reasons) == 8
    expected = [
        "schema-invalid fill: body: Invalid JSON",
        "schema-invalid fill: fill_sz: Input should be greater than 0",
        "subject instrument ETH-USDT-SWAP != body instrument BTC-USDT-SWAP",
        f"unknown account {stranger}",
        f"event mode live but account {account} is simulated",
        "fill_px 1E+13 does not fit its column",
        "unknown instrument SOL-USDT-SWAP: not in aitrader.instruments after a refresh",
        "schema-invalid order: ",
    ]
    assert all(any(r.startswith(e) for r in reasons) for e in expected), reasons
    assert [r["exchange_trade_id"] for r in await db_pool.fetch("SELECT * FROM aitrader.fills")] == ["7"]
    assert (await open_rows(db_pool, account))[("BTC-USDT-SWAP", "net")]["quantity"] == 1


async def test_an_instrument_not_loaded_yet_is_waited_for(
    settings: Settings, account: UUID, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool,
) -> None:
    config = positions_config(settings, positions_instrument_grace_seconds=60.0)
    async with running(config, js):
        await publish(js, subjects, [fill(account, "1", "buy", "2", "150", 0, inst="SOL-USDT-SWAP")])

        async def delivered_and_held() -> bool:
            info = await js.consumer_info(subjects.stream("ACCOUNT"), ledger_consumer(account))
            return bool(info.delivered.stream_seq == 1 and info.num_ack_pending == 1)

        await wait_for(delivered_and_held, timeout=10, message="the fill to be delivered and held")
        await db_pool.execute(
            """INSERT INTO aitrader.instruments (symbol, base_asset, quote_asset, settle_ccy, ct_val,
                   ct_mult, lot_sz, min_sz, tick_sz, max_leverage)
               VALUES ('SOL-USDT-SWAP', 'SOL', 'USDT', 'USDT', 1, 1, 0.01, 0.01, 0.01, 50)""")
        await consumed(js, subjects, timeout=20)
    row = (await open_rows(db_pool, account))[("SOL-USDT-SWAP", "net")]
    assert (row["quantity"], row["avg_entry_price"]) == (2, 150)
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.dead_letters") == 0


async def test_any_byte_sequence_is_dead_lettered_once_with_its_exact_bytes_and_the_ledger_goes_on(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    # NUL is valid UTF-8 that PostgreSQL text and jsonb refuse; \xff is no UTF-8 at all. Before,
    # recording either as a dead letter failed, so its batch was retried forever: the ledger
    # stopped for every account.
    subject = subjects.fill(account, "BTC-USDT-SWAP")
    body = json.loads(fill(account, "9", "buy", "1", "100", 0).to_bytes())
    hostile = [
        b"\x00",
        b"\xff\xfe{not utf-8",
        json.dumps({**body, "trade_id": "1\u0000"}).encode(),
        json.dumps({**body, "fill_sz": "\u0000"}).encode(),
    ]
    for payload in hostile:
        await js.publish(subject, payload)
    await publish(js, subjects, [fill(account, "7", "buy", "1", "100", 0)])
    await consumed(js, subjects)

    rows = await db_pool.fetch("SELECT payload, payload_bytes, reason FROM aitrader.dead_letters ORDER BY id")
    assert sorted(bytes(r["payload_bytes"]) for r in rows) == sorted(hostile)  # one each
    assert all("\x00" not in r["payload"] and "\x00" not in r["reason"] for r in rows)
    assert [r["exchange_trade_id"] for r in await db_pool.fetch("SELECT * FROM aitrader.fills")] == ["7"]
    assert (await open_rows(db_pool, account))[("BTC-USDT-SWAP", "net")]["quantity"] == 1
