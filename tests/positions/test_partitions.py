"""Partitioned positions instances on the real servers: the stream's partition of an account is
`partition_of`'s, instances share the partitions without overlap, and killing one hands its
partitions to the other within the pinned TTL with nothing lost or doubled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.positions.catalog import InstrumentCatalog
from services.positions.config import PositionsSettings
from services.positions.instance import LedgerInstance
from shared.bus import connect_nats, headers_for
from shared.clock import SystemClock
from shared.db import create_pool
from shared.messages import Fill
from shared.settings import Settings
from shared.subjects import DEFAULT_PARTITIONS, STREAM_ACCOUNT, Subjects, partition_of
from tests.factories import create_account, create_instruments, wait_for
from tests.positions.conftest import consumed, fill, positions_config
from tests.positions.test_crash import assert_positions_equal_the_fold
from tests.positions.test_properties import INSTRUMENTS
from tests.positions.test_replay import run_replay

N = DEFAULT_PARTITIONS
ALL = set(range(N))
TTL = 1.0  # the pinned TTL of these tests (5 s by default)


@pytest.mark.parametrize(("key", "count", "expected"), [
    pytest.param("a1", 4, 3, id="a1"), pytest.param("b2", 4, 1, id="b2"),
    pytest.param("c3", 4, 3, id="c3"), pytest.param("", 4, 1, id="empty: the FNV offset basis mod 4"),
    pytest.param("a1", 1, 0, id="one partition"),
])
def test_partition_of_is_fnv1a_modulo_the_count(key: str, count: int, expected: int) -> None:
    assert partition_of(key, count) == expected


@pytest.mark.parametrize("count", [0, 65])
def test_a_partition_count_out_of_bounds_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="partition count"):
        partition_of("a1", count)


async def test_the_stream_stores_each_account_in_the_partition_partition_of_names(
    js: JetStreamContext, subjects: Subjects,
) -> None:
    rng = random.Random(18)
    accounts = [UUID(int=rng.getrandbits(128)) for _ in range(200)]
    for account in accounts:
        await js.publish(subjects.balance(account), b"{}")
    stream, partitions = subjects.stream(STREAM_ACCOUNT), Counter[int]()
    for seq, account in enumerate(accounts, start=1):
        stored = (await js.get_msg(stream, seq)).subject
        assert stored is not None and subjects.published(stored) == subjects.balance(account)
        partition = int(stored.split(".")[2])
        assert partition == partition_of(str(account), N)
        partitions[partition] += 1
    # 200 accounts over 4 partitions: 50 each on average, sd 6.1; each within 3 sd.
    assert sorted(partitions) == sorted(ALL) and all(30 <= c <= 70 for c in partitions.values())
    # A consumer's filter in the published form finds nothing; its stored form finds them.
    assert (await js.get_msg(stream, 1, subject=subjects.stored_filter(subjects.balance(accounts[0])),
                             next=True)).seq == 1


@dataclass
class Running:
    instance: LedgerInstance
    task: asyncio.Task[None]
    nc: Client
    pool: asyncpg.Pool

    def owned(self) -> set[int]:
        return self.instance.owned()


@contextlib.asynccontextmanager
async def instance(config: PositionsSettings, subjects: Subjects) -> AsyncIterator[Running]:
    """A positions instance with a NATS connection and a pool of its own (as a process has)."""
    nc = await connect_nats(config.require_nats_url(), name="positions")
    pool = await create_pool(config.require_database_url(), min_size=1, max_size=6,
                             application_name="positions")
    ledger = LedgerInstance(nc, nc.jetstream(), pool, subjects,
                            InstrumentCatalog(SystemClock(), 0.0), config)
    running = Running(ledger, asyncio.create_task(ledger.run()), nc, pool)
    try:
        yield running
    finally:
        await stop(running)


async def stop(running: Running) -> None:
    while not running.task.done():  # nats-py may swallow one cancellation
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, BaseExceptionGroup):
            await asyncio.wait_for(asyncio.shield(running.task), 1)
    if not running.nc.is_closed:
        await running.nc.close()
    await running.pool.close()


async def kill(running: Running) -> None:
    """Gone without a word: the connection dropped (no ack, no unpin), the task cancelled."""
    await running.nc.close()
    await stop(running)


def trading(accounts: list[UUID], n: int, seed: int = 18) -> list[Fill]:
    rng = random.Random(seed)
    return [fill(rng.choice(accounts), f"{i:06d}", rng.choice(["buy", "sell"]), rng.choice(["1", "2", "3"]),
                 f"{rng.randint(9_900, 10_100) / 100}", i / 60, fee="-0.0123",
                 inst=rng.choice(sorted(INSTRUMENTS)))
            for i in range(n)]


async def feed(js: JetStreamContext, subjects: Subjects, fills: list[Fill], rate: float) -> None:
    started = time.monotonic()
    for i, f in enumerate(fills):
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        await js.publish(subjects.for_event(f), f.to_bytes(), headers=headers_for(f))


@pytest.mark.faults
@pytest.mark.skipif(os.environ.get("AITRADER_FAULTS") != "full", reason=(
    "intermittent (about 1 run in 5: a publish gets no response from the stream, or the wait "
    "times out) — `make faults` runs it; open in #18's note"))
async def test_two_instances_share_the_partitions_and_a_kill_hands_them_over_within_the_ttl(
    settings: Settings, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool, db_dsn: str,
) -> None:
    await create_instruments(db_pool)
    accounts = [await create_account(db_pool, f"part-{n}") for n in range(12)]
    while {partition_of(str(a), N) for a in accounts} != ALL:  # every partition has trading
        accounts.append(await create_account(db_pool, f"part-{len(accounts)}"))
    fills = trading(accounts, 1_500)
    # Both instances alike: same settings, same consumer names, same connection name.
    config = positions_config(settings, positions_pinned_ttl_seconds=TTL,
                              positions_rebalance_seconds=0.3, positions_batch_size=200)
    async with instance(config, subjects) as a:
        feeder = asyncio.create_task(feed(js, subjects, fills, rate=250))
        await wait_for(lambda: _true(a.owned() == ALL), timeout=10, message="A to own every partition")
        async with instance(config, subjects) as b:

            async def shared() -> bool:
                return len(a.owned()) == len(b.owned()) == N // 2 and a.owned() | b.owned() == ALL

            await wait_for(shared, timeout=10, interval=0.01, message="A and B to own half each")
            for _ in range(20):  # and it stays so, the two sets disjoint
                assert await shared(), (a.owned(), b.owned())
                await asyncio.sleep(0.05)
            stored_at_kill = await db_pool.fetchval("SELECT count(*) FROM aitrader.fills")
            killed = time.monotonic()
            await kill(a)
            await wait_for(lambda: _true(b.owned() == ALL), timeout=5 * TTL + 2, interval=0.01,
                           message="B to take A's partitions")
            takeover = time.monotonic() - killed
            await feeder
            await consumed(js, subjects, timeout=30)
    print(f"takeover {takeover:.2f} s after the kill (pinned TTL {TTL:g} s)")
    assert takeover < 3 * TTL + 1
    assert stored_at_kill < len(fills), "the kill came too late to prove anything"
    ids = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
    assert [r[0] for r in ids] == [f.trade_id for f in fills]  # every fill once
    await assert_positions_equal_the_fold(db_pool, fills)
    code, out = await run_replay(db_dsn)
    assert (code, out.split(":")[0]) == (0, "identical"), out


async def _true(value: bool) -> bool:
    return value
