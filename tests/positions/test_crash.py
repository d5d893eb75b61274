"""kill -9 in the middle of 20,000 fills, restart: nothing lost, nothing doubled, positions equal
the fold, and `aitrader replay` agrees."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
from collections import defaultdict
from uuid import UUID

import asyncpg
import pytest
from nats.js import JetStreamContext

from services.positions.domain import Entry, fold
from services.positions.rows import closed_from_row, position_from_row
from shared.bus import headers_for
from shared.messages import Fill
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments, wait_for
from tests.positions.conftest import consumed, fill
from tests.positions.test_properties import INSTRUMENTS, entry
from tests.positions.test_replay import run_replay

FILLS = 20_000


def ledger(accounts: list[UUID], seed: int = 7) -> list[Fill]:
    """Net-mode trading with frequent flips, over every account and both instruments."""
    rng = random.Random(seed)
    fills = []
    for i in range(FILLS):
        fills.append(fill(
            rng.choice(accounts), f"{i:06d}", rng.choice(["buy", "sell"]),
            rng.choice(["0.5", "1", "2", "3"]), f"{rng.randint(9_900, 10_100) / 100}", i / 60,
            fee=rng.choice(["-0.0123", "0", "0.001"]), inst=rng.choice(sorted(INSTRUMENTS)),
        ))
    return fills


async def start(settings: Settings, log_path: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "AITRADER_DATABASE_URL": settings.require_database_url(),
        "AITRADER_NATS_URL": settings.require_nats_url(),
        "AITRADER_NATS_SUBJECT_ROOT": settings.nats_subject_root,
        "AITRADER_NATS_STREAM_PREFIX": settings.nats_stream_prefix,
        # The killed process's batch comes back soon; a batch must still commit well within the
        # ack wait on a loaded machine, or it is redelivered while it is being written.
        "AITRADER_POSITIONS_ACK_WAIT_SECONDS": "10",
        "AITRADER_POSITIONS_BATCH_SIZE": "1000",
        "AITRADER_LOG_LEVEL": "warning",
    }
    with open(log_path, "ab") as log:  # noqa: ASYNC230 - a local file, opened once per start
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.positions", env=env, stdout=log, stderr=log)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_kill_9_mid_stream_loses_and_doubles_nothing(
    settings: Settings, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool, db_dsn: str,
) -> None:
    await create_instruments(db_pool)
    accounts = [await create_account(db_pool, f"crash-{n}") for n in range(5)]
    fills = ledger(accounts)
    log_path = tempfile.mkstemp(prefix="positions-crash-", suffix=".log")[1]
    proc = await start(settings, log_path)
    try:
        futures = [await js.publish_async(subjects.for_event(f), f.to_bytes(), headers=headers_for(f))
                   for f in fills]
        futures += [await js.publish_async(subjects.for_event(f), f.to_bytes())  # duplicates
                    for f in fills[::50]]
        await asyncio.gather(*futures)

        async def some_stored() -> int:
            return int(await db_pool.fetchval("SELECT count(*) FROM aitrader.fills") >= 3_000)

        await wait_for(some_stored, timeout=60, interval=0.005, message="the first 3,000 fills")
        proc.kill()
        await proc.wait()
        stored_at_kill = await db_pool.fetchval("SELECT count(*) FROM aitrader.fills")
        assert stored_at_kill < FILLS, "the kill came too late to prove anything"

        proc = await start(settings, log_path)
        await consumed(js, subjects, timeout=100)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()

    ids = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
    assert [r[0] for r in ids] == [f.trade_id for f in fills]  # every fill once
    await assert_positions_equal_the_fold(db_pool, fills)
    code, out = await run_replay(db_dsn)
    assert (code, out.split(":")[0]) == (0, "identical"), out
    os.unlink(log_path)  # kept only when the test fails


async def assert_positions_equal_the_fold(pool: asyncpg.Pool, fills: list[Fill]) -> None:
    by_slot: dict[tuple[UUID, str], list[Entry]] = defaultdict(list)
    for f in fills:
        by_slot[(f.account_id, f.inst_id)].append(entry(f))
    expected_open, expected_closed = {}, set()
    for (account, symbol), entries in by_slot.items():
        result = fold(entries, INSTRUMENTS[symbol])
        if result.position is not None:
            expected_open[(account, symbol)] = result.position
        expected_closed |= {(account, symbol, c) for c in result.closed}
    open_rows = await pool.fetch("SELECT * FROM aitrader.positions_open")
    assert {(r["account_id"], r["symbol"]): position_from_row(r) for r in open_rows} == expected_open
    closed_rows = await pool.fetch("SELECT * FROM aitrader.positions_closed")
    assert len(closed_rows) == len(expected_closed)
    assert {(r["account_id"], r["symbol"], closed_from_row(r)) for r in closed_rows} == expected_closed
