"""kill -9 of the positions process (`python -m services.positions`, as a user starts it) early,
in the middle and late in a stream of fills that keeps flowing, restarted each time: it
recovers by itself, every fill is folded once, positions equal the pure fold, `aitrader replay`
agrees. Prints the time from each restart to caught up (every fill in the stream at the
restart stored)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import asyncpg
import pytest
from nats.js import JetStreamContext

from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments, wait_for
from tests.faults.processes import ACK_WAIT_S, PositionsProcess, Publisher, consumer_settled, report, size
from tests.positions.conftest import consumed
from tests.positions.test_crash import assert_positions_equal_the_fold, ledger
from tests.positions.test_replay import run_replay

FILLS = size(4_000, 20_000)
KILL_AT = size((0.25, 0.7), (0.1, 0.5, 0.85))  # share of the fills stored when each kill comes
PER_SECOND = size(1_000, 1_500)


async def stored(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM aitrader.fills"))


async def stored_below(pool: asyncpg.Pool, n: int) -> int:
    """How many of the first `n` fills (trade ids 000000 .. n-1, in publication order) are stored."""
    return int(await pool.fetchval(
        "SELECT count(*) FROM aitrader.fills WHERE exchange_trade_id < $1", f"{n:06d}"))


async def caught_up(pool: asyncpg.Pool, in_stream: int) -> None:
    """Wait until the first `in_stream` fills are all stored."""
    async def done() -> bool:
        return await stored_below(pool, in_stream) == in_stream

    try:
        await wait_for(done, timeout=90, interval=0.05, message=f"the first {in_stream} fills stored")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {await stored_below(pool, in_stream)} of them are") from None


@pytest.mark.timeout(size(120, 600))
async def test_positions_killed_early_middle_and_late_recovers_and_folds_every_fill_once(
    settings: Settings, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool, db_dsn: str,
    tmp_path: Path,
) -> None:
    await create_instruments(db_pool)
    accounts = [await create_account(db_pool, f"kill-{n}") for n in range(5)]
    fills = ledger(accounts)[:FILLS]
    service = PositionsProcess(settings, tmp_path / "positions.log")
    publisher = Publisher(js, subjects, fills, PER_SECOND, plain_copy_every=50)
    await service.start()
    publishing: asyncio.Task[None] | None = None
    try:
        await service.ready()
        publishing = asyncio.create_task(publisher.run())
        unacked_at_kills = 0
        previous = -1
        for n, share in enumerate(KILL_AT, 1):
            threshold = int(FILLS * share)

            async def reached(threshold: int = threshold) -> bool:
                return await stored(db_pool) >= threshold

            await wait_for(reached, timeout=90, interval=0.005, message=f"{threshold} fills stored")
            await service.kill()
            at_kill, in_stream = await stored(db_pool), publisher.acked
            _, unacked = await consumer_settled(js, subjects)
            unacked_at_kills += unacked
            assert previous < at_kill < FILLS, f"kill {n} at {at_kill} stored: not a later moment"
            previous = at_kill
            started = await service.start()
            await service.ready()
            ready_s = time.monotonic() - started
            await caught_up(db_pool, in_stream)
            caught_s = time.monotonic() - started
            report(f"positions kill -9 #{n}/{len(KILL_AT)}: {at_kill:,} of {FILLS:,} fills stored, "
                   f"{in_stream:,} in the stream, {unacked} delivered unacked; restarted: ready in "
                   f"{ready_s:.1f} s, caught up in {caught_s:.1f} s (ack wait {ACK_WAIT_S:g} s)")
        # The kills must have cut work in flight, or they proved nothing about redelivery.
        assert unacked_at_kills > 0, "every kill came between batches"
        await asyncio.wait_for(publishing, 120)
        await consumed(js, subjects, timeout=120)
        assert service.proc is not None and service.proc.returncode is None, service.log_tail()
    finally:
        if publishing is not None and not publishing.done():
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        await service.stop()

    ids = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
    assert [r[0] for r in ids] == [f.trade_id for f in fills]  # every fill once
    await assert_positions_equal_the_fold(db_pool, fills)
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.dead_letters") == 0
    code, out = await run_replay(db_dsn)
    assert (code, out.split(":")[0]) == (0, "identical"), out
    report(f"positions kill -9 x{len(KILL_AT)}: {len(ids):,} fills stored / {FILLS:,} published "
           f"(+{len(fills[::50]):,} plain copies, dropped as duplicates); replay: {out.strip()[:80]}")
