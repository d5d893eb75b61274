"""`aitrader replay` as a person runs it: a separate process reading AITRADER_DATABASE_URL."""

from __future__ import annotations

import asyncio
import os
import sys
from uuid import UUID

import asyncpg
from nats.js import JetStreamContext

from services.positions.config import PositionsSettings
from shared.subjects import Subjects
from tests.positions.conftest import consumed, fill, funding, publish


async def run_replay(dsn: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "AITRADER_DATABASE_URL": dsn}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from aitrader.cli import main; main()", "replay", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_replay_says_identical_then_finds_a_tampered_row(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool, db_dsn: str,
) -> None:
    eth = {"inst": "ETH-USDT-SWAP"}
    await publish(js, subjects, [
        fill(account, "1", "buy", "3", "2000", 0, fee="-0.3", **eth),
        funding(account, "f1", "-0.2", 5, inst="ETH-USDT-SWAP"),
        fill(account, "2", "sell", "5", "2100", 10, fee="-0.5", **eth),  # flip
        fill(account, "3", "buy", "1", "50000", 0, pos_side="long"),
        fill(account, "4", "sell", "2", "50000", 1, pos_side="long"),  # over-close: kept, skipped
    ])
    await consumed(js, subjects)
    await publish(js, subjects, [fill(account, "0", "buy", "1", "1990", -1, **eth)])  # late
    await consumed(js, subjects)

    code, out = await run_replay(db_dsn, "--account", "positions-test")
    assert (code, out.split(":")[0]) == (0, "identical")
    assert "2 slots, 6 fills and funding payments, 2 open and 1 closed positions" in out

    # In order: 1 @ 1990 + 3 @ 2000 -> avg 1997.5; the flip closes 4: (2100 - 1997.5) x 4 x 0.1 = 41
    await db_pool.execute("UPDATE aitrader.positions_closed SET gross_pnl_usdt = gross_pnl_usdt + 1")
    code, out = await run_replay(db_dsn)
    assert code == 1
    assert "ETH-USDT-SWAP net: closed by trade 2: gross_pnl_usdt stored 42.00000000, replay 41.00000000" \
        in out


async def test_replay_of_an_unknown_account_is_a_usage_error(db_dsn: str) -> None:
    code, _ = await run_replay(db_dsn, "--account", "nobody")
    assert code == 2
