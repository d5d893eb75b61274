"""Concurrent MCP clients (the SDK's, over streamable HTTP, each with its own session and token)
through a PostgreSQL `-m immediate` stop and restart under the gateway running as a process:
every call gets a correct answer or the documented retryable error within its deadline, every
answered call has exactly one audit row afterwards, `/readyz` is red during the outage and
green after. Short by default (8 clients, 14 s); `AITRADER_FAULTS=full`: 32 clients for 60 s."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from uuid import UUID

import httpx2
import pytest
import pytest_asyncio

from aitrader.embedded import free_port
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.faults.test_pg_restart_support import (
    CALL_DEADLINE_S,
    FULL,
    McpClient,
    Outage,
    Outcome,
    assert_recovered,
    audit_rows,
    expected_rows,
    own_server,
    process,
    restart,
    seed,
    service_env,
)


@dataclass(frozen=True)
class Plan:
    clients: int
    run_s: float
    stop_at_s: float
    outage_s: float


PLAN = Plan(clients=32, run_s=60, stop_at_s=15, outage_s=10) if FULL else Plan(8, 14, 3, 3)


@dataclass
class Run:
    """What one run of the scenario saw."""

    outcomes: list[Outcome]
    outage: Outage
    readiness: list[tuple[float, int]]  # (time.monotonic(), /readyz status)
    audited: Counter[tuple[UUID, str]]  # audit rows by (token, status)
    expected: Counter[tuple[UUID, str]]  # answered calls by (token, status)


async def watch_readiness(url: str, done: Callable[[], bool], seen: list[tuple[float, int]]) -> None:
    """Ask /readyz every 0.1 s, as a load balancer would, and note the answers."""
    async with httpx2.AsyncClient(timeout=5) as hc:
        while not done():
            try:
                seen.append((time.monotonic(), (await hc.get(url)).status_code))
            except httpx2.HTTPError:
                seen.append((time.monotonic(), 0))
            await asyncio.sleep(0.1)  # the probe's period


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def run(nats_url: str) -> AsyncIterator[Run]:
    """The scenario, once for the tests below: clients calling, PostgreSQL stopped and started."""
    with own_server() as server:
        tokens, ids = await seed(server.dsn, PLAN.clients)
        port = free_port()
        subjects = Subjects(f"mcp{port}", f"MCP{port}_")
        env = service_env(server.dsn, nats_url, subjects, AITRADER_MCP_PORT=str(port))
        base = f"http://127.0.0.1:{port}"
        outcomes: list[Outcome] = []
        readiness: list[tuple[float, int]] = []
        outage = Outage()
        async with process("services.mcp_gateway", env, f"{base}/healthz"):
            began = time.monotonic()
            until = began + PLAN.run_s
            everyone = set(range(PLAN.clients))

            def answered_all(since: float) -> bool:
                return {o.client for o in outcomes if o.kind == "ok" and o.started > since} == everyone

            def done() -> bool:
                # The planned length, and longer on a loaded machine until every client has been
                # answered again after the restart (bounded: the test's timeout).
                return time.monotonic() >= until and bool(outage.started) and answered_all(
                    outage.started[0])

            agents = [McpClient(n, f"{base}/mcp", tokens[n], f"agent-{n}", outcomes, 0.1)
                      for n in range(PLAN.clients)]
            async with asyncio.TaskGroup() as tasks:
                for agent in agents:
                    tasks.create_task(agent.run(done))
                tasks.create_task(watch_readiness(f"{base}/readyz", done, readiness))
                # Calls flowing before the fault: the planned time, and at least one answer to
                # every client (a loaded machine may take longer to start them all).
                async def flowing() -> bool:
                    return answered_all(began) and time.monotonic() - began >= PLAN.stop_at_s

                await wait_for(flowing, timeout=60, message="every client answered")
                await restart(server, PLAN.outage_s, outage)
            expected = expected_rows(ids, outcomes)
            audited = await audit_rows(server.dsn, expected.total())  # while the gateway writes
        yield Run(outcomes, outage, readiness, audited, expected)


def report(run: Run) -> None:
    """Print what the run saw: counts by kind, recovery times (shown with pytest -rP / -s)."""
    started = run.outage.started[0]
    first_ok = min(o.ended for o in run.outcomes if o.kind == "ok" and o.started >= started)
    green = min(t for t, status in run.readiness if status == 200 and t >= started)
    kinds = Counter(o.kind for o in run.outcomes)
    last_failure = max((o.ended for o in run.outcomes if o.kind != "ok"), default=started)
    print(f"{PLAN}: {len(run.outcomes)} requests {dict(kinds)}, audit rows {run.audited.total()} "
          f"(expected {run.expected.total()}); after pg start returned: first "
          f"answer in {first_ok - started:.2f} s, /readyz green in {green - started:.2f} s, last failure at "
          f"{last_failure - started:+.2f} s; "
          f"pg down {run.outage.starting[0] - run.outage.stopped[0]:.1f} s, start took "
          f"{started - run.outage.starting[0]:.2f} s")


@pytest.mark.timeout(300 if FULL else 120)
async def test_every_call_is_answered_or_retryable_and_audited_through_a_restart(run: Run) -> None:
    report(run)
    out, outage = run.outcomes, run.outage
    # 503: a token the gateway could not check (none verified within the outage grace)
    bad = [o for o in out if o.kind not in ("ok", "retryable", "http_503")]
    assert bad == [], bad[:5]
    assert max(o.ended - o.started for o in out) < CALL_DEADLINE_S
    # The fault happened under the calls: every client failed during the outage, tool errors
    # (not only refused requests) among them, and every client was answered before and after.
    assert {o.client for o in out if outage.down(o) and o.kind != "ok"} == set(range(PLAN.clients))
    assert not any(outage.down(o) and o.kind == "ok" for o in out)
    assert any(outage.down(o) and o.kind == "retryable" for o in out)
    everyone = set(range(PLAN.clients))
    assert {o.client for o in out if o.kind == "ok" and o.ended < outage.stopped[0]} == everyone
    assert {o.client for o in out if o.kind == "ok" and o.started > outage.started[0]} == everyone
    assert_recovered(out, outage.started[0])
    assert run.audited == run.expected  # every answered call: one row, its status
    # /readyz: green before, red while the database is down, green after.
    assert any(s == 200 and t < outage.stopped[0] for t, s in run.readiness)
    assert any(s == 503 and outage.stopped[0] < t < outage.starting[0] for t, s in run.readiness)
    assert run.readiness[-1][1] == 200


async def test_no_request_gets_a_bare_http_500_during_the_outage(run: Run) -> None:
    assert [o for o in run.outcomes if o.kind == "http_500"] == []
