"""Helpers of the PostgreSQL-restart fault tests (test_pg_restart_fills.py,
test_mcp_clients_restart.py; no tests here): services run as processes, PostgreSQL stopped
with `-m immediate` and started again, MCP agents recording each request's outcome, and the
check that every answered call has its one audit row."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aitrader.embedded import EmbeddedPostgres
from aitrader.migrate import migrate
from services.mcp_gateway.auth import create_token
from shared.db import create_pool
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments, wait_for
from tests.mcp_gateway.conftest import TOOL_VIEWS, assert_is_view
from tests.servers import scratch_dir

FULL = os.environ.get("AITRADER_FAULTS") == "full"
RETRYABLE = "Temporarily unavailable: the gateway cannot reach its database"
CALL_DEADLINE_S = 10.0  # no request may take longer, outage or not
TOOLS = ("get_account_state", "get_performance_metrics")


@dataclass(frozen=True)
class Outcome:
    """One request of one client: when it ran and what came back."""

    client: int
    tool: str  # or "initialize", the opening of a session
    started: float  # time.monotonic()
    ended: float
    kind: str  # ok | retryable | http_<status ≥ 500> | timeout | wrong | error
    detail: str = ""

    @property
    def answered(self) -> bool:
        """A tool answered it (a result or the retryable tool error): it has an audit row."""
        return self.kind in ("ok", "retryable") and self.tool != "initialize"


@dataclass
class Outage:
    """Each PostgreSQL stop: when `pg_ctl stop` returned, `start` was called, and returned."""

    stopped: list[float] = field(default_factory=list)
    starting: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    starting_wall: list[float] = field(default_factory=list)  # time.time(), to compare with rows

    def down(self, o: Outcome) -> bool:
        """The request ran entirely while PostgreSQL was stopped."""
        return any(a <= o.started and o.ended <= b for a, b in zip(self.stopped, self.starting, strict=True))


def stop_immediately(server: EmbeddedPostgres) -> None:
    """`pg_ctl -m immediate stop`: no checkpoint, no goodbye to clients; crash recovery at start."""
    # EmbeddedPostgres.stop is `-m fast`; its runner knows the server's user and binaries.
    result = server._run(server._bin() / "pg_ctl", "-D", server.data_dir, "-m", "immediate", "-w", "stop")
    assert result.returncode == 0, result.stderr


async def restart(server: EmbeddedPostgres, outage_s: float, outage: Outage) -> None:
    """Stop PostgreSQL at once, keep it down `outage_s`, start it again (same data, same port)."""
    await asyncio.to_thread(stop_immediately, server)
    outage.stopped.append(time.monotonic())
    await asyncio.sleep(outage_s)  # the outage itself: a duration, not a condition
    outage.starting.append(time.monotonic())
    outage.starting_wall.append(time.time())
    await asyncio.to_thread(server.start)
    outage.started.append(time.monotonic())


def service_env(dsn: str, nats_url: str, subjects: Subjects, **extra: str) -> dict[str, str]:
    """The environment a user would give a service process (AITRADER_* variables)."""
    return {**os.environ, "AITRADER_DATABASE_URL": dsn, "AITRADER_NATS_URL": nats_url,
            "AITRADER_NATS_SUBJECT_ROOT": subjects.root,
            "AITRADER_NATS_STREAM_PREFIX": subjects.stream_prefix,
            "AITRADER_LOG_LEVEL": "warning", "AITRADER_LOG_FORMAT": "json", **extra}


@contextlib.asynccontextmanager
async def process(module: str, env: dict[str, str], ready_url: str) -> AsyncIterator[Path]:
    """`python -m <module>` until the block exits; entered once `ready_url` answers 200. Its log
    is kept (and named in the failure) only if the block fails."""
    log = Path(tempfile.mkstemp(prefix=f"{module.replace('.', '-')}-", suffix=".log")[1])
    with log.open("ab") as out:  # noqa: ASYNC230 - a local file, opened once
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env,
                                                    stdout=out, stderr=out)
    try:
        await wait_for(lambda: http_ok(ready_url), timeout=30, message=f"{module} ready ({log})")
        yield log
    except BaseException:
        print(f"{module} log: {log}")  # shown with the failure
        raise
    else:
        os.unlink(log)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def http_ok(url: str) -> bool:
    try:
        async with httpx2.AsyncClient(timeout=2) as hc:
            return (await hc.get(url)).status_code == 200
    except httpx2.HTTPError:
        return False


def classify(tool: str, result: Any, external_id: str) -> tuple[str, str]:
    """(kind, detail) of a tool result: a correct answer, the retryable error, or wrong."""
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        return ("retryable" if RETRYABLE in text else "wrong"), text[:200]
    try:
        assert_is_view(result, TOOL_VIEWS[tool])
        if tool == "get_account_state":
            assert result.structured_content["account"] == external_id, result.structured_content
    except AssertionError as exc:
        return "wrong", str(exc)[:200]
    return "ok", ""


@dataclass
class McpClient:
    """One agent: its own token and sessions; records every request's outcome."""

    n: int
    url: str
    token: str
    external_id: str
    out: list[Outcome]
    pace_s: float
    statuses: list[int] = field(default_factory=list)  # every HTTP status it received

    async def run(self, done: Callable[[], bool]) -> None:
        """Call the tools in turn until `done()`; a failed session is opened again."""
        async def seen(response: httpx2.Response) -> None:
            self.statuses.append(response.status_code)

        calls = 0
        while not done():
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.token}"},
                                          timeout=CALL_DEADLINE_S, event_hooks={"response": [seen]}) as hc:
                client = Client(streamable_http_client(self.url, http_client=hc))
                if not await self._request("initialize", client.__aenter__()):
                    continue
                try:
                    while not done():
                        tool = TOOLS[calls % len(TOOLS)]
                        calls += 1
                        await self._request(tool, client.call_tool(tool, {}))
                        await asyncio.sleep(self.pace_s)  # the agent's think time between calls
                finally:
                    # In this task (anyio's scopes are per task), within the deadline.
                    async with asyncio.timeout(CALL_DEADLINE_S):
                        await client.__aexit__(None, None, None)

    async def _request(self, tool: str, request: Any) -> bool:
        """Await one request within the deadline and record it; False: open a new session."""
        t0, before = time.monotonic(), len(self.statuses)
        try:
            async with asyncio.timeout(CALL_DEADLINE_S):
                result = await request
        except TimeoutError:
            self.out.append(Outcome(self.n, tool, t0, time.monotonic(), "timeout"))
            return False
        except Exception as exc:  # the SDK's MCPError for a refused request: classified, kept
            codes = self.statuses[before:]
            kind = f"http_{codes[-1]}" if codes and codes[-1] >= 500 else "error"
            self.out.append(Outcome(self.n, tool, t0, time.monotonic(), kind, repr(exc)[:300]))
            await asyncio.sleep(0.1)  # the agent's back-off before trying again
            return tool != "initialize"
        if tool != "initialize":
            self.out.append(Outcome(self.n, tool, t0, time.monotonic(),
                                    *classify(tool, result, self.external_id)))
        return True


def assert_recovered(outcomes: list[Outcome], started: float) -> None:
    """Recovered for good: once a call is answered after the restart, every later one is too."""
    first = min(o.ended for o in outcomes if o.kind == "ok" and o.started > started)
    late = [o for o in outcomes if o.started > first]
    assert late and all(o.kind == "ok" for o in late), [o for o in late if o.kind != "ok"][:5]


def expected_rows(tokens: dict[int, UUID], outcomes: list[Outcome]) -> Counter[tuple[UUID, str]]:
    """The audit rows the answered calls must have: by (token, status)."""
    return Counter((tokens[o.client], "success" if o.kind == "ok" else "failed")
                   for o in outcomes if o.answered)


async def audit_rows(dsn: str, expected: int) -> Counter[tuple[UUID, str]]:
    """The audit rows by (token, status), once `expected` are written (or 60 s have passed)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async def counted() -> Counter[tuple[UUID, str]]:
            rows = await conn.fetch("SELECT token_id, status, count(*) AS n FROM aitrader.mcp_tool_calls "
                                    "GROUP BY 1, 2")
            return Counter({(r["token_id"], r["status"]): r["n"] for r in rows})

        async def written() -> bool:
            return (await counted()).total() >= expected

        with contextlib.suppress(AssertionError):  # the caller compares, and shows the difference
            await wait_for(written, timeout=60, message=f"{expected} audit rows")
        return await counted()
    finally:
        await conn.close()


async def seed(dsn: str, agents: int) -> tuple[list[str], dict[int, UUID]]:
    """Migrate; instruments, accounts agent-<n> and one read token each: (tokens, token ids)."""
    await migrate(dsn)
    pool = await create_pool(dsn)
    try:
        await create_instruments(pool)
        tokens, ids = [], {}
        for n in range(agents):
            await create_account(pool, f"agent-{n}")
            token, row = await create_token(pool, f"agent-{n}", "read")
            tokens.append(token)
            ids[n] = row["id"]
        return tokens, ids
    finally:
        await pool.close()


@contextlib.contextmanager
def own_server() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of the caller's own, started, stopped on exit (the `own_postgres` fixture's,
    and a module fixture's)."""
    with scratch_dir("aitrader-fault-pg-") as root:
        server = EmbeddedPostgres(root / "pg")
        server.start()
        try:
            yield server
        finally:
            server.stop()
