"""PostgreSQL stopped with `pg_ctl -m immediate` and started again (same data directory, same
port) while fills flow into the positions service and agents call the gateway, both running as
processes (`python -m services.positions`, `python -m services.mcp_gateway`): every fill
JetStream acknowledged is folded exactly once, the positions equal the pure fold, `aitrader
replay` agrees, every answered tool call has one audit row. Short: one restart, 3 s down;
`AITRADER_FAULTS=full`: three restarts, 8 s down each."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest
from nats.js import JetStreamContext

from aitrader.embedded import EmbeddedPostgres, free_port
from shared.bus import headers_for
from shared.messages import Fill
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.faults.test_pg_restart_support import (
    FULL,
    McpClient,
    Outage,
    Outcome,
    assert_recovered,
    audit_rows,
    expected_rows,
    http_ok,
    process,
    restart,
    seed,
    service_env,
)
from tests.positions.conftest import consumed, fill
from tests.positions.test_crash import assert_positions_equal_the_fold
from tests.positions.test_properties import INSTRUMENTS
from tests.positions.test_replay import run_replay


@dataclass(frozen=True)
class Plan:
    restarts: int
    outage_s: float
    lead_s: float  # fills and calls flowing before the first stop, and between restarts
    rate: int  # fills per second


PLAN = Plan(restarts=3, outage_s=8, lead_s=5, rate=300) if FULL else Plan(1, 3, 2, 300)
AGENTS = 3  # accounts, each with its agent calling the gateway


async def _fetchval(dsn: str, query: str, *args: object) -> object:
    """One value, on a connection of its own (the database restarts under any pool)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


class Publisher:
    """Fills at a steady rate until stopped, each PubAck awaited: `acked` is what JetStream has
    taken. Every 50th fill is sent a second time without a message id (a duplicate to drop)."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, accounts: list[UUID], rate: int) -> None:
        self.js, self.subjects, self.accounts, self.rate = js, subjects, accounts, rate
        self.acked: list[Fill] = []
        self.running = True
        self._rng = random.Random(13)

    def _next(self, i: int) -> Fill:
        rng = self._rng
        return fill(rng.choice(self.accounts), f"{i:07d}", rng.choice(["buy", "sell"]),
                    rng.choice(["0.5", "1", "2", "3"]), f"{rng.randint(9_900, 10_100) / 100}", i / 60,
                    fee=rng.choice(["-0.0123", "0", "0.001"]), inst=rng.choice(sorted(INSTRUMENTS)))

    async def run(self) -> None:
        """Publish in chunks of 20 at `rate`, until `running` is cleared."""
        chunk, t0 = 20, time.monotonic()
        while self.running:
            fills = [self._next(len(self.acked) + k) for k in range(chunk)]
            futures = [await self.js.publish_async(self.subjects.for_event(f), f.to_bytes(),
                                                   headers=headers_for(f)) for f in fills]
            futures += [await self.js.publish_async(self.subjects.for_event(f), f.to_bytes())
                        for f in fills if int(f.trade_id) % 50 == 0]
            await asyncio.wait_for(asyncio.gather(*futures), 10)
            self.acked += fills
            ahead = t0 + len(self.acked) / self.rate - time.monotonic()
            await asyncio.sleep(max(ahead, 0))  # the pace of the stream


@dataclass
class Faults:
    """The restarts and where the stream stood at each stop."""

    outage: Outage = field(default_factory=Outage)
    stored_at_stop: list[int] = field(default_factory=list)  # fills in the ledger
    acked_at_stop: list[int] = field(default_factory=list)  # fills JetStream had taken

    async def inject(self, server: EmbeddedPostgres, publisher: Publisher) -> None:
        """Restart PostgreSQL PLAN.restarts times while fills and calls flow, then stop the stream."""
        for _ in range(PLAN.restarts):
            await asyncio.sleep(PLAN.lead_s)  # fills folding, calls answered
            stored = await _fetchval(server.dsn, "SELECT count(*) FROM aitrader.fills")
            assert isinstance(stored, int)
            self.stored_at_stop.append(stored)
            self.acked_at_stop.append(len(publisher.acked))
            await restart(server, PLAN.outage_s, self.outage)
        await asyncio.sleep(PLAN.lead_s)  # and after the last restart
        publisher.running = False


def _environments(dsn: str, nats_url: str, subjects: Subjects, health: int, mcp: int
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """Positions' and the gateway's, each on a port of its own."""
    positions = service_env(dsn, nats_url, subjects, AITRADER_HEALTH_PORT=str(health),
                            AITRADER_POSITIONS_ACK_WAIT_SECONDS="10")
    # The token cache outlives the outages: these calls reach the tools (the token check during
    # an outage is test_mcp_clients_restart's concern).
    gateway = service_env(dsn, nats_url, subjects, AITRADER_MCP_PORT=str(mcp),
                          AITRADER_MCP_TOKEN_CACHE_S="3600")
    return positions, gateway


@pytest.mark.timeout(400 if FULL else 120)
async def test_fills_and_tool_calls_through_immediate_postgresql_restarts(
    own_postgres: EmbeddedPostgres, nats_url: str, js: JetStreamContext, subjects: Subjects,
) -> None:
    dsn = own_postgres.dsn
    tokens, token_ids = await seed(dsn, AGENTS)
    accounts = [UUID(str(await _fetchval(dsn, "SELECT id FROM aitrader.accounts WHERE external_id = $1",
                                         f"agent-{n}"))) for n in range(AGENTS)]
    health, mcp = free_port(), free_port()
    pos_env, gw_env = _environments(dsn, nats_url, subjects, health, mcp)
    publisher, faults = Publisher(js, subjects, accounts, PLAN.rate), Faults()
    outcomes: list[Outcome] = []
    async with (process("services.positions", pos_env, f"http://127.0.0.1:{health}/readyz"),
                process("services.mcp_gateway", gw_env, f"http://127.0.0.1:{mcp}/healthz")):
        agents = [McpClient(n, f"http://127.0.0.1:{mcp}/mcp", tokens[n], f"agent-{n}", outcomes, 0.1)
                  for n in range(AGENTS)]
        async with asyncio.TaskGroup() as tasks:  # each agent ends after its call in flight
            tasks.create_task(publisher.run())
            for agent in agents:
                tasks.create_task(agent.run(lambda: not publisher.running))
            await faults.inject(own_postgres, publisher)
        await consumed(js, subjects, timeout=120)
        await wait_for(lambda: http_ok(f"http://127.0.0.1:{health}/readyz"), timeout=30,
                       message="positions ready again")
        expected = expected_rows(token_ids, outcomes)
        audited = await audit_rows(dsn, expected.total())
        assert audited == expected  # each answered call: one row, with its status
    await _assert_ledger(dsn, publisher.acked, faults.stored_at_stop)
    _assert_calls(outcomes, faults.outage)
    await _recovery(dsn, faults, outcomes, publisher.acked)


async def _assert_ledger(dsn: str, fills: list[Fill], stored_at_stop: list[int]) -> None:
    """Every acked fill folded once; the positions are the pure fold; replay agrees."""
    assert all(0 < n < len(fills) for n in stored_at_stop), stored_at_stop  # the stops hit the stream
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        ids = await pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
        assert [r[0] for r in ids] == sorted(f.trade_id for f in fills)  # nothing lost, nothing doubled
        await assert_positions_equal_the_fold(pool, fills)
        assert await pool.fetchval("SELECT count(*) FROM aitrader.dead_letters") == 0
    finally:
        await pool.close()
    code, out = await run_replay(dsn)
    assert (code, out.split(":")[0]) == (0, "identical"), out


def _assert_calls(outcomes: list[Outcome], outage: Outage) -> None:
    """Answers or the retryable error, never anything else; errors during each outage only."""
    bad = [o for o in outcomes if o.kind not in ("ok", "retryable")]
    assert bad == [], bad[:5]
    for stopped, starting in zip(outage.stopped, outage.starting, strict=True):
        during = [o for o in outcomes if stopped <= o.started and o.ended <= starting]
        assert during and all(o.kind == "retryable" for o in during), during[:5]
    assert_recovered(outcomes, outage.started[-1])


async def _recovery(dsn: str, faults: Faults, outcomes: list[Outcome], fills: list[Fill]) -> None:
    """Fills committed again within the ledger's retry bound after each restart; print the
    recovery times (shown with pytest -rP / -s)."""
    print(f"{PLAN}: {len(fills)} fills acked and folded once ({len(fills) // 50} sent twice); "
          f"{len(outcomes)} tool calls, {sum(o.kind == 'retryable' for o in outcomes)} retryable "
          f"errors, {len(outcomes)} audit rows")
    outage = faults.outage
    for i, wall in enumerate(outage.starting_wall):
        first_commit = await _fetchval(dsn, "SELECT min(created_at) FROM aitrader.fills "
                                       "WHERE created_at > $1", datetime.fromtimestamp(wall, UTC))
        assert isinstance(first_commit, datetime), "no fill committed after the restart"
        # The ledger retries a failed batch with backoff capped at positions_retry_max_seconds (30).
        assert first_commit.timestamp() - wall < 40
        started = outage.starting[i]
        answer = min(o.ended for o in outcomes if o.kind == "ok" and o.started > started)
        print(f"restart {i + 1}: {faults.stored_at_stop[i]} fills stored / {faults.acked_at_stop[i]} "
              "acked at the stop; "
              f"pg start took {outage.started[i] - started:.2f} s; after `pg_ctl start` was called: "
              f"first fill commit {first_commit.timestamp() - wall:.2f} s, first tool answer "
              f"{answer - started:.2f} s")
