"""Fixtures for the positions service: the service running in-process on the real servers,
message builders, and readers of the ledger tables."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest_asyncio
from nats.js import JetStreamContext

from services.positions.config import PositionsSettings
from services.positions.main import serve
from services.positions.partitions import backlog, consumer_name
from shared.bus import headers_for
from shared.messages import Event, Fill, FundingPayment
from shared.settings import Settings
from shared.subjects import DEFAULT_PARTITIONS, STREAM_ACCOUNT, Subjects, partition_of
from tests.factories import create_account, create_instruments, wait_for

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CONSUMER = "positions"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def positions_config(settings: Settings, **overrides: Any) -> PositionsSettings:
    values = {**settings.model_dump(), "positions_instrument_grace_seconds": 0.0, **overrides}
    return PositionsSettings(**values)


def ledger_consumer(account_id: UUID, partitions: int = DEFAULT_PARTITIONS) -> str:
    """The durable consumer of the account's ACCOUNT partition."""
    return consumer_name(CONSUMER, partition_of(str(account_id), partitions))


async def consumer_ready(
    js: JetStreamContext, subjects: Subjects, partitions: int = DEFAULT_PARTITIONS
) -> None:
    async def exists() -> bool:
        return (await backlog(js, subjects, CONSUMER, partitions)).consumers == partitions

    await wait_for(exists, timeout=15, message="the service's durable consumers")


@contextlib.asynccontextmanager
async def running(config: PositionsSettings, js: JetStreamContext) -> AsyncIterator[None]:
    """The service as a task of this event loop, cancelled (and cleaned up) on exit."""
    task = asyncio.create_task(serve(config))
    try:
        await consumer_ready(js, Subjects(config.nats_subject_root, config.nats_stream_prefix),
                             config.nats_account_partitions)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest_asyncio.fixture(loop_scope="session")
async def account(db_pool: asyncpg.Pool) -> UUID:
    await create_instruments(db_pool)
    return await create_account(db_pool, "positions-test")


@pytest_asyncio.fixture(loop_scope="session")
async def service(
    settings: Settings, account: UUID, js: JetStreamContext
) -> AsyncIterator[PositionsSettings]:
    config = positions_config(settings)
    async with running(config, js):
        yield config


def fill(account_id: UUID, trade_id: str, side: str, size: str, px: str, minute: float, *,
         inst: str = "BTC-USDT-SWAP", fee: str = "0", pos_side: str = "net",
         ord_id: str | None = None, cl_ord_id: str | None = None, category: str = "normal",
         lever: str | None = None) -> Fill:
    return Fill(
        account_id=account_id, mode="simulated", inst_id=inst, trade_id=trade_id,
        ord_id=ord_id or f"o{trade_id}", cl_ord_id=cl_ord_id, side=side, pos_side=pos_side,  # type: ignore[arg-type]
        fill_px=Decimal(px), fill_sz=Decimal(size), fill_fee=Decimal(fee), category=category,
        lever=Decimal(lever) if lever else None, ts_event=at(minute),
    )


def funding(account_id: UUID, bill_id: str, amount: str, minute: float, *,
            inst: str = "BTC-USDT-SWAP", pos_side: str = "net") -> FundingPayment:
    return FundingPayment(account_id=account_id, mode="simulated", inst_id=inst, bill_id=bill_id,
                          amount=Decimal(amount), pos_side=pos_side, ts_event=at(minute))  # type: ignore[arg-type]


async def publish(js: JetStreamContext, subjects: Subjects, events: Iterable[Event]) -> None:
    """Publish in the given order and wait for every PubAck."""
    futures = [
        await js.publish_async(subjects.for_event(e), e.to_bytes(), headers=headers_for(e))
        for e in events
    ]
    await asyncio.gather(*futures)


async def publish_raw(js: JetStreamContext, subject: str, body: bytes) -> None:
    await js.publish(subject, body)


async def consumed(js: JetStreamContext, subjects: Subjects, *, timeout: float = 30.0,
                   partitions: int = DEFAULT_PARTITIONS) -> None:
    """Wait until the service has acked everything in the stream (every partition).

    A consumer's pending count is updated by nats-server after the publish is acknowledged
    (its stream signals the consumers asynchronously), so "nothing pending" alone can be read
    before a message just published is counted: the last message stored must also have been
    delivered (signals are handled in order, so then every earlier one was counted)."""

    async def done() -> bool:
        state = await backlog(js, subjects, CONSUMER, partitions)
        last = (await js.stream_info(subjects.stream(STREAM_ACCOUNT))).state.last_seq
        return state.settled and state.delivered_stream_seq >= max(last, 1)

    try:
        await wait_for(done, timeout=timeout, interval=0.02, message="the service to ack every message")
    except AssertionError as exc:  # say where the consumers stand, for whoever reads the failure
        state = await backlog(js, subjects, CONSUMER, partitions)
        raise AssertionError(f"{exc}; consumers: {state}") from None


async def open_rows(pool: asyncpg.Pool, account_id: UUID) -> dict[tuple[str, str], asyncpg.Record]:
    rows = await pool.fetch(
        "SELECT * FROM aitrader.positions_open WHERE account_id = $1", account_id
    )
    return {(r["symbol"], r["pos_side"]): r for r in rows}


async def closed_rows(pool: asyncpg.Pool, account_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT * FROM aitrader.positions_closed WHERE account_id = $1
           ORDER BY exit_time, closing_trade_id""",
        account_id,
    )
    return rows


def assert_row(row: Any, **expected: Any) -> None:
    """The row has these values (numbers as strings, compared as Decimals)."""
    wanted = {
        k: Decimal(v) if isinstance(row[k], Decimal) and isinstance(v, str) else v
        for k, v in expected.items()
    }
    assert {k: row[k] for k in expected} == wanted
