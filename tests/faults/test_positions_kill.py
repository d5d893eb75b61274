"""kill -9 of the positions process (`python -m services.positions`, as a user starts it) early,
in the middle and late in a stream of fills that keeps flowing, each time with a batch's
transaction open, and restarted: it recovers by itself, every fill is folded once, positions
equal the pure fold, `aitrader replay` agrees. Prints the time from each restart to caught up
(every fill in the stream at the restart stored)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
from nats.js import JetStreamContext

from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments, wait_for
from tests.faults.processes import (
    ACK_WAIT_S,
    PositionsProcess,
    Publisher,
    consumer_settled,
    feeding,
    report,
    size,
)
from tests.positions.conftest import consumed
from tests.positions.test_crash import assert_positions_equal_the_fold, ledger
from tests.positions.test_replay import run_replay

FILLS = size(4_000, 20_000)
KILL_AT = size((0.25, 0.7), (0.1, 0.5, 0.85))  # share of the fills stored when each kill comes
PER_SECOND = size(250, 800)  # the stream must still flow at the last kill (~6 s per recovery)


async def stored(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM aitrader.fills"))


async def stored_below(pool: asyncpg.Pool, n: int) -> int:
    """How many of the first `n` fills (trade ids 000000 .. n-1, in publication order) are stored."""
    return int(await pool.fetchval(
        "SELECT count(*) FROM aitrader.fills WHERE exchange_trade_id < $1", f"{n:06d}"))


async def writing(pool: asyncpg.Pool, *, waiting_for_it: bool = False) -> bool:
    """The service has a transaction open that has written (it holds a transaction id); with
    `waiting_for_it`, one in which PostgreSQL waits for the service's next statement."""
    return bool(await pool.fetchval(
        """SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()
           AND application_name = 'positions' AND backend_xid IS NOT NULL
           AND (NOT $1 OR state = 'idle in transaction')""", waiting_for_it))


async def kill_mid_transaction(service: PositionsProcess, pool: asyncpg.Pool, threshold: int) -> None:
    """kill -9 once `threshold` fills are stored, with a batch's transaction surely open: the
    process is frozen (SIGSTOP) when it is writing one, and killed only if PostgreSQL is then
    waiting for it in that transaction (it cannot commit any more); else thawed, and again."""
    async def pinned() -> bool:
        if await stored(pool) < threshold or not await writing(pool):
            return False
        service.freeze()
        if await writing(pool, waiting_for_it=True):
            return True
        service.thaw()
        return False

    await wait_for(pinned, timeout=90, interval=0.005,
                   message=f"{threshold} fills stored and a batch's transaction open")
    await service.kill()


async def caught_up(pool: asyncpg.Pool, in_stream: int) -> None:
    """Wait until the first `in_stream` fills are all stored."""
    async def done() -> bool:
        return await stored_below(pool, in_stream) == in_stream

    try:
        await wait_for(done, timeout=90, interval=0.05, message=f"the first {in_stream} fills stored")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {await stored_below(pool, in_stream)} of them are") from None


async def kill_and_restart(
    service: PositionsProcess, publisher: Publisher, pool: asyncpg.Pool, js: JetStreamContext,
    subjects: Subjects, threshold: int,
) -> tuple[int, int]:
    """kill -9 in the middle of a batch's transaction once `threshold` fills are stored, restart,
    wait until caught up; report the times; return (fills stored, messages delivered and not
    acked) at the kill."""
    await kill_mid_transaction(service, pool, threshold)
    at_kill, in_stream = await stored(pool), publisher.acked
    _, unacked = await consumer_settled(js, subjects)
    started = await service.start()
    await service.ready()
    ready_s = time.monotonic() - started
    await caught_up(pool, in_stream)
    report(f"positions kill -9 #{service.starts - 1}/{len(KILL_AT)}: {at_kill:,} of {FILLS:,} fills "
           f"stored, {in_stream:,} in the stream, {unacked} delivered unacked; restarted: ready in "
           f"{ready_s:.1f} s, caught up in {time.monotonic() - started:.1f} s (ack wait {ACK_WAIT_S:g} s)")
    return at_kill, unacked


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
    async with feeding(service, publisher) as publishing:
        kills = [await kill_and_restart(service, publisher, db_pool, js, subjects, int(FILLS * share))
                 for share in KILL_AT]
        moments = [at_kill for at_kill, _ in kills]
        assert moments == sorted(set(moments)) and moments[-1] < FILLS, f"kills at {moments} stored"
        # Each kill cut a batch in flight (its transaction open), or it proved nothing.
        assert all(unacked > 0 for _, unacked in kills), kills
        await asyncio.wait_for(publishing, 120)
        await consumed(js, subjects, timeout=120)

    ids = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
    assert [r[0] for r in ids] == [f.trade_id for f in fills]  # every fill once
    await assert_positions_equal_the_fold(db_pool, fills)
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.dead_letters") == 0
    code, out = await run_replay(db_dsn)
    assert (code, out.split(":")[0]) == (0, "identical"), out
    report(f"positions kill -9 x{len(KILL_AT)}: {len(ids):,} fills stored / {FILLS:,} published "
           f"(+{len(fills[::50]):,} plain copies, dropped as duplicates); replay: {out.strip()[:80]}")
