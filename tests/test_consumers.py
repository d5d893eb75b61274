"""One consumer module, two consumers: through the positions ledger and through metrics, on
real PostgreSQL and NATS JetStream, a message that can never be processed becomes exactly one
`dead_letters` row (its error_type the fate's kind) and one notice on the service's dead-letter
subject; a serialization failure (SQLSTATE 40001, made by a conflicting transaction) is
retried, never dead-lettered — in metrics too, however often it happens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from services.metrics.config import MetricsSettings
from services.metrics.main import serve as serve_metrics
from shared.bus import publish_event
from shared.messages import Candle, MarkPrice
from shared.settings import Settings
from shared.subjects import STREAM_ACCOUNT, STREAM_MARKET, STREAM_POSITIONS, Subjects
from tests.factories import create_account, create_instruments, wait_for
from tests.positions.conftest import (
    consumed,
    fill,
    ledger_consumer,
    open_rows,
    positions_config,
    publish,
    running,
)

BTC = "BTC-USDT-SWAP"
T0 = datetime(2026, 2, 1, tzinfo=UTC)


class Notices:
    """Every message on one dead-letter subject (core NATS), from before the service starts."""

    def __init__(self) -> None:
        self.received: list[Msg] = []
        self._nc: Client | None = None

    async def listen(self, nc: Client, subject: str) -> None:
        async def keep(msg: Msg) -> None:
            self.received.append(msg)

        self._nc = nc
        await nc.subscribe(subject, cb=keep)
        await nc.flush()

    async def settled(self) -> list[Msg]:
        """All that was published before the messages were acked: the service publishes a
        notice before the ack, so the server has routed it to us before our PING's answer."""
        assert self._nc is not None
        await self._nc.flush()
        return self.received


@pytest_asyncio.fixture(loop_scope="session")
async def account(db_pool: asyncpg.Pool) -> UUID:
    await create_instruments(db_pool)
    return await create_account(db_pool, "consumers-test")


@contextlib.asynccontextmanager
async def metrics_running(settings: Settings, js: JetStreamContext, subjects: Subjects,
                          **overrides: Any) -> AsyncIterator[MetricsSettings]:
    config = MetricsSettings(**{**settings.model_dump(), **overrides})
    task = asyncio.create_task(serve_metrics(config))

    async def ready() -> bool:
        streams = [subjects.stream(STREAM_MARKET), subjects.stream(STREAM_POSITIONS)]
        return sum([len(await js.consumers_info(name)) for name in streams]) == 3

    try:
        await wait_for(ready, timeout=10, message="the three durable consumers of metrics")
        yield config
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def metrics_consumed(js: JetStreamContext, subjects: Subjects, durable: str) -> None:
    async def done() -> bool:
        info = await js.consumer_info(subjects.stream(STREAM_MARKET), durable)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq > 0)

    await wait_for(done, timeout=20, message=f"{durable} to ack every message")


async def dead_letters(pool: asyncpg.Pool, service: str) -> list[tuple[bytes, str | None, int]]:
    rows = await pool.fetch(
        """SELECT payload_bytes, error_type, stream_seq FROM aitrader.dead_letters
           WHERE service = $1 ORDER BY stream_seq""", service)
    return [(bytes(r["payload_bytes"]), r["error_type"], r["stream_seq"]) for r in rows]


def notice_of(msg: Msg) -> tuple[bytes, str | None, int]:
    headers = msg.headers or {}
    return msg.data, headers.get("error-type"), int(headers.get("stream-seq", "0"))


async def repeatable_read(db_dsn: str, pool: asyncpg.Pool) -> None:
    """Every new session of the test database runs REPEATABLE READ: a row that a concurrent
    transaction updated and committed cannot be written (40001), where READ COMMITTED would
    wait and go on. The services open their pools after this."""
    database = urlsplit(db_dsn).path.lstrip("/")
    await pool.execute(f'ALTER DATABASE "{database}" SET default_transaction_isolation = \'repeatable read\'')


async def waiting_on_a_lock(pool: asyncpg.Pool, application: str) -> None:
    async def waiting() -> bool:
        return bool(await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND application_name = $1 AND wait_event_type = 'Lock'""", application))

    await wait_for(waiting, timeout=15, message=f"{application} to wait for the conflicting row")


def retries(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event and "SerializationError" in e.get("error", "")]


async def logged(logs: list[MutableMapping[str, Any]], event: str, count: int) -> None:
    async def enough() -> bool:
        return len(retries(logs, event)) >= count

    await wait_for(enough, timeout=15, message=f"{count} x {event}")


# --- positions ------------------------------------------------------------------------------


async def test_positions_poison_messages_are_one_row_and_one_notice_each_of_their_kind(
    settings: Settings, account: UUID, js: JetStreamContext, nc: Client, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    notices = Notices()
    await notices.listen(nc, subjects.dead_letter("positions"))
    over_close = fill(account, "2", "sell", "2", "101", 1, pos_side="long")  # 2 > 1 open
    async with running(positions_config(settings), js):
        await js.publish(subjects.fill(account, BTC), b"not json")
        await publish(js, subjects, [fill(account, "1", "buy", "1", "100", 0, pos_side="long"), over_close])
        await consumed(js, subjects)
    expected = [(b"not json", "permanent", 1), (over_close.to_bytes(), "fold_anomaly", 3)]
    assert await dead_letters(db_pool, "positions") == expected
    assert sorted(notice_of(m) for m in await notices.settled()) == expected


async def test_positions_retries_a_serialization_failure_and_dead_letters_nothing_twice(
    settings: Settings, db_dsn: str, account: UUID, js: JetStreamContext, nc: Client,
    subjects: Subjects, db_pool: asyncpg.Pool,
) -> None:
    await repeatable_read(db_dsn, db_pool)
    notices = Notices()
    await notices.listen(nc, subjects.dead_letter("positions"))
    async with running(positions_config(settings), js):
        await publish(js, subjects, [fill(account, "1", "buy", "1", "100", 0)])
        await consumed(js, subjects)
        async with db_pool.acquire() as conn:
            conflicting = conn.transaction()
            await conflicting.start()
            await conn.execute(  # the position row the next fill changes, locked and then changed
                "UPDATE aitrader.positions_open SET quantity = quantity WHERE account_id = $1", account)
            with capture_logs() as logs:
                # a poison message too: if fetched with the failing fill, its dead letter rolls
                # back with their batch and is recorded (and announced) once, by the retry
                await js.publish(subjects.fill(account, BTC), b"not json")
                await publish(js, subjects, [fill(account, "2", "buy", "1", "102", 1)])
                await waiting_on_a_lock(db_pool, "positions")
                await conflicting.commit()
                await consumed(js, subjects)
    assert retries(logs, "transient_failure"), [e["event"] for e in logs]
    row = (await open_rows(db_pool, account))[(BTC, "net")]
    assert (row["quantity"], row["avg_entry_price"]) == (Decimal(2), Decimal(101))
    assert await dead_letters(db_pool, "positions") == [(b"not json", "permanent", 2)]
    assert [notice_of(m) for m in await notices.settled()] == [(b"not json", "permanent", 2)]
    info = await js.consumer_info(subjects.stream(STREAM_ACCOUNT), ledger_consumer(account))
    assert info.num_redelivered == 0  # retried in place, as a batch: never acked early


# --- metrics --------------------------------------------------------------------------------


def candle(i: int, close: str) -> Candle:
    t = T0 + timedelta(minutes=3 * i)
    return Candle(ts_event=t, inst_id=BTC, bar="3m", open_time=t, open=Decimal(close),
                  high=Decimal(close), low=Decimal(close), close=Decimal(close),
                  volume=Decimal(2), confirmed=True)


async def test_metrics_poison_message_is_one_row_and_one_notice_of_its_kind(
    settings: Settings, js: JetStreamContext, nc: Client, subjects: Subjects, db_pool: asyncpg.Pool,
) -> None:
    await create_instruments(db_pool)
    notices = Notices()
    await notices.listen(nc, subjects.dead_letter("metrics"))
    poison = candle(0, "130").to_bytes().replace(b'"close":"130"', b'"close":"abc"')
    async with metrics_running(settings, js, subjects) as config:
        await js.publish(subjects.candle("3m", BTC), poison)
        await publish_event(js, subjects.candle("3m", BTC), candle(1, "131"))
        await metrics_consumed(js, subjects, config.metrics_candle_consumer)
    assert await dead_letters(db_pool, "metrics") == [(poison, "permanent", 1)]
    assert [notice_of(m) for m in await notices.settled()] == [(poison, "permanent", 1)]
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.market_snapshots") == 1


async def test_metrics_retries_a_serialization_failure_past_max_deliver_and_dead_letters_nothing(
    settings: Settings, db_dsn: str, js: JetStreamContext, nc: Client, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    # Before, a 40001 was an unknown failure in metrics: nacked, then dead-lettered on its
    # max_deliver-th delivery. Two in a row with max_deliver = 2 would have dropped the price.
    await create_instruments(db_pool)
    await repeatable_read(db_dsn, db_pool)
    notices = Notices()
    await notices.listen(nc, subjects.dead_letter("metrics"))
    mark = "SELECT mark_price FROM aitrader.market_prices WHERE symbol = $1"
    async with metrics_running(settings, js, subjects, metrics_max_deliver=2) as config:
        first = MarkPrice(ts_event=T0, inst_id=BTC, mark_px=Decimal(100))
        await publish_event(js, subjects.mark_price(BTC), first)
        await wait_for(lambda: db_pool.fetchval(mark, BTC), message="the first mark price")
        with capture_logs() as logs:
            async with db_pool.acquire() as conn:
                for attempt in (1, 2):
                    conflicting = conn.transaction()
                    await conflicting.start()
                    await conn.execute(
                        "UPDATE aitrader.market_prices SET mark_price = mark_price WHERE symbol = $1", BTC)
                    if attempt == 1:
                        await publish_event(js, subjects.mark_price(BTC), MarkPrice(
                            ts_event=T0 + timedelta(seconds=1), inst_id=BTC, mark_px=Decimal(101)))
                    await waiting_on_a_lock(db_pool, "metrics")
                    await conflicting.commit()
                    await logged(logs, "message_retry", attempt)
            await metrics_consumed(js, subjects, config.metrics_market_consumer)
    assert [e["delivered"] for e in retries(logs, "message_retry")] == [1, 2]
    assert await db_pool.fetchval(mark, BTC) == Decimal(101)
    assert await dead_letters(db_pool, "metrics") == []
    assert await notices.settled() == []
    assert [e for e in logs if e["event"] == "message_failed"] == []


async def test_an_oversized_message_or_field_is_a_dead_letter_in_both_services_never_a_row(
    settings: Settings, account: UUID, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool,
) -> None:
    """The size limits of shared.messages (MAX_EVENT_BYTES, ids <= 64 and codes <= 32
    characters), through the positions ledger and the metrics market consumer alike."""
    huge_raw = fill(account, "1", "buy", "1", "100", 0).model_copy(update={"raw": {"x": "y" * 500_000}})
    long_id = fill(account, "4", "buy", "1", "100", 0).to_bytes().replace(
        b'"trade_id":"4"', b'"trade_id":"' + b"9" * 65 + b'"')
    long_code = fill(account, "2", "buy", "1", "100", 0).model_copy(update={"fill_fee_ccy": "U" * 33})
    async with running(positions_config(settings), js):
        for body in (huge_raw.to_bytes(), long_id, long_code.to_bytes()):
            await js.publish(subjects.fill(account, BTC), body)
        await publish(js, subjects, [fill(account, "3", "buy", "1", "100", 0)])
        await consumed(js, subjects)
    kinds = [kind for _, kind, _ in await dead_letters(db_pool, "positions")]
    assert kinds == ["oversized", "permanent", "permanent"]
    reasons = [r["reason"] for r in await db_pool.fetch(
        "SELECT reason FROM aitrader.dead_letters WHERE service = 'positions' ORDER BY stream_seq")]
    assert reasons[0].startswith("message of 500,") and reasons[0].endswith("exceeds the limit of 65,536")
    assert "trade_id: String should have at most 64 characters" in reasons[1]
    assert "fill_fee_ccy: String should have at most 32 characters" in reasons[2]
    stored = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills")
    assert [r["exchange_trade_id"] for r in stored] == ["3"]

    oversized = candle(0, "130").to_bytes().replace(b'"close":"130"', b'"close":"130' + b"0" * 70_000 + b'"')
    async with metrics_running(settings, js, subjects) as config:
        await js.publish(subjects.candle("3m", BTC), oversized)
        await publish_event(js, subjects.candle("3m", BTC), candle(1, "131"))
        await metrics_consumed(js, subjects, config.metrics_candle_consumer)
    assert [kind for _, kind, _ in await dead_letters(db_pool, "metrics")] == ["oversized"]
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.market_snapshots") == 1
