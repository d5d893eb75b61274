"""Two positions processes sharing the ACCOUNT partitions, killed (kill -9) in turn while fills
flow, each restarted at once: after every kill the survivor takes over, every fill is folded
once, positions equal the pure fold, `aitrader replay` agrees. Prints, per kill, the time
until every partition had stored a fill again (the failover as an account sees it). A long run
only (`AITRADER_FAULTS=full`): the default run has the in-process variant,
`tests/positions/test_partitions.py`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import asyncpg
import pytest
from nats.js import JetStreamContext

from shared.settings import Settings
from shared.subjects import DEFAULT_PARTITIONS, Subjects, partition_of
from tests.factories import create_account, create_instruments, wait_for
from tests.faults.processes import FULL, PositionsProcess, Publisher, consumer_settled, report
from tests.positions.conftest import consumed
from tests.positions.test_crash import assert_positions_equal_the_fold, ledger
from tests.positions.test_replay import run_replay

KILLS = 6
PER_SECOND = 400
TTL = 1.0
pytestmark = pytest.mark.skipif(not FULL, reason="a long run: AITRADER_FAULTS=full")


async def last_stored(pool: asyncpg.Pool) -> dict[int, float]:
    """Per partition, the newest fill's stored time (epoch seconds)."""
    rows = await pool.fetch("SELECT account_id, max(created_at) AS t FROM aitrader.fills GROUP BY 1")
    out: dict[int, float] = {}
    for r in rows:
        p = partition_of(str(r["account_id"]), DEFAULT_PARTITIONS)
        out[p] = max(out.get(p, 0.0), r["t"].timestamp())
    return out


@pytest.mark.timeout(600)
async def test_killing_either_of_two_instances_in_turn_loses_and_doubles_nothing(
    settings: Settings, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool, db_dsn: str,
    tmp_path: Path,
) -> None:
    await create_instruments(db_pool)
    accounts = [await create_account(db_pool, f"pk-{n}") for n in range(8)]
    while {partition_of(str(a), DEFAULT_PARTITIONS) for a in accounts} != set(range(DEFAULT_PARTITIONS)):
        accounts.append(await create_account(db_pool, f"pk-{len(accounts)}"))
    fills = ledger(accounts)  # 20,000
    env = {"AITRADER_POSITIONS_PINNED_TTL_SECONDS": str(TTL), "AITRADER_POSITIONS_REBALANCE_SECONDS": "0.5"}
    services = [PositionsProcess(settings, tmp_path / f"positions-{i}.log", env) for i in range(2)]
    publisher = Publisher(js, subjects, fills, PER_SECOND, plain_copy_every=50)
    for service in services:
        await service.start()
        await service.ready()
    publishing = asyncio.create_task(publisher.run())
    gaps = []
    try:
        for kill in range(KILLS):
            await asyncio.sleep(2.5)  # the two share the partitions again (handovers every 0.5 s)
            victim = services[kill % 2]
            killed = time.time()
            await victim.kill()
            await victim.start()  # at once: it comes back as a standby

            async def every_partition_moved(since: float = killed) -> bool:
                now = await last_stored(db_pool)
                return all(now.get(p, 0) > since for p in range(DEFAULT_PARTITIONS))

            await wait_for(every_partition_moved, timeout=30, interval=0.02,
                           message="a fill stored on every partition after the kill")
            gaps.append(time.time() - killed)
        assert not publishing.done(), "the stream ended before the last kill"
        await asyncio.wait_for(publishing, 120)
        await consumed(js, subjects, timeout=60)
    finally:
        publisher.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
        for service in services:
            await service.stop()
    report(f"partitions kill: {KILLS} kills of one of 2 instances, pinned TTL {TTL:g} s, {len(fills):,} "
           f"fills at {PER_SECOND}/s; every partition stored a new fill "
           f"{', '.join(f'{g:.2f}' for g in gaps)} s after each kill")
    assert await consumer_settled(js, subjects) == (0, 0)
    ids = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
    assert [r[0] for r in ids] == [f.trade_id for f in fills]  # every fill once
    await assert_positions_equal_the_fold(db_pool, fills)
    code, out = await run_replay(db_dsn)
    assert (code, out.split(":")[0]) == (0, "identical"), out
