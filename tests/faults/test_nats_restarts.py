"""nats-server killed (-9) and restarted on the same JetStream store again and again while fills
flow and the positions process (`python -m services.positions`) consumes: after each restart
the service catches up by itself; at the end nothing is lost, doubled or left pending, and
`aitrader replay` agrees. Prints the time from each restart to caught up."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client

from aitrader.embedded import EmbeddedNats
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
from tests.faults.test_positions_kill import caught_up, stored, writing
from tests.positions.test_crash import assert_positions_equal_the_fold, ledger
from tests.positions.test_replay import run_replay

RESTARTS = size(2, 6)
PER_SECOND = 300  # fills/s; at most 20,000 fills (the ledger's length) over the whole run
FOLDED_BETWEEN = 200  # fills folded since the last recovery before the next kill: they flow
FROZEN_S = 0.5  # SIGSTOP before SIGKILL: what the service sends meanwhile is lost with the server
DOWN_S = 1.0  # between the kill and the restart




async def kill_and_restart(server: EmbeddedNats) -> float:
    """Freeze, kill -9, restart on the same port and store; return when it accepts clients."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    await asyncio.sleep(FROZEN_S)  # the fault's length, not a wait on a condition
    server.process.kill()
    await asyncio.to_thread(server.process.wait, 5)
    await asyncio.sleep(DOWN_S)  # the outage
    await asyncio.to_thread(server.start)
    return time.monotonic()


async def one_outage(server: EmbeddedNats, publisher: Publisher, pool: asyncpg.Pool, n: int) -> None:
    """While fills are folded (a batch being written), kill -9 the server and restart it;
    wait until caught up: the first fill the restarted server acknowledged is folded, and every
    fill before it (a fill lost with the server would keep this false)."""
    since = await stored(pool)

    async def flowing() -> bool:  # and a batch being written: its acks and events are next
        return await stored(pool) >= since + FOLDED_BETWEEN and await writing(pool)

    await wait_for(flowing, timeout=60, interval=0.005,
                   message=f"{FOLDED_BETWEEN} more fills folded and a batch being written")
    in_stream = publisher.acked  # acknowledged by JetStream before the kill
    restarted = await kill_and_restart(server)

    async def landed() -> bool:
        return publisher.acked > in_stream

    await wait_for(landed, timeout=30, message="a fill acknowledged after the restart")
    await caught_up(pool, in_stream + 1)
    report(f"nats-server kill -9 #{n}/{RESTARTS}: {in_stream:,} fills in the stream at the kill; "
           f"caught up {time.monotonic() - restarted:.1f} s after the restart (ack wait {ACK_WAIT_S:g} s)")


@pytest.mark.timeout(size(120, 600))
async def test_positions_catches_up_after_every_one_of_repeated_nats_kills(
    own_nats: EmbeddedNats, own_client: Client, settings: Settings, subjects: Subjects,
    db_pool: asyncpg.Pool, db_dsn: str, tmp_path: Path,
) -> None:
    await create_instruments(db_pool)
    accounts = [await create_account(db_pool, f"nats-{n}") for n in range(5)]
    fills = ledger(accounts, seed=11)
    js = own_client.jetstream()
    service = PositionsProcess(Settings(**{**settings.model_dump(), "nats_url": own_nats.url}),
                               tmp_path / "positions.log")
    publisher = Publisher(js, subjects, fills, PER_SECOND)
    async with feeding(service, publisher) as publishing:
        for n in range(1, RESTARTS + 1):
            await one_outage(own_nats, publisher, db_pool, n)
        publisher.stop.set()
        await asyncio.wait_for(publishing, 30)
        total = publisher.acked
        assert total < len(fills), "the publisher ran out of fills before the last restart"
        await caught_up(db_pool, total)

        async def settled() -> bool:
            return await consumer_settled(js, subjects) == (0, 0)

        await wait_for(settled, timeout=60, message="nothing pending or unacknowledged")

    ids = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
    assert [r[0] for r in ids] == [f.trade_id for f in fills[:total]]  # every fill once, none lost
    await assert_positions_equal_the_fold(db_pool, fills[:total])
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.dead_letters") == 0
    code, out = await run_replay(db_dsn)
    assert (code, out.split(":")[0]) == (0, "identical"), out
    report(f"nats-server kill -9 x{RESTARTS}: {len(ids):,} fills stored / {total:,} published; "
           "duplicates 0, dead letters 0, pending 0")
