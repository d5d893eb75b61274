"""The audit writer's spill, on a PostgreSQL of the test's own that is stopped and started: rows
the database cannot take within the bound go to a local file (mode 0600, redacted) without
holding up a tool call, and are written exactly once when it is back — also by the next
process, after the one that spilled them was killed."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import time
from pathlib import Path
from uuid import UUID

import asyncpg
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from aitrader.embedded import EmbeddedPostgres
from aitrader.migrate import migrate
from services.mcp_gateway.audit import AuditWriter, ToolCall
from services.mcp_gateway.spill import ACTIVE, Spill
from shared.db import create_pool
from tests.factories import wait_for

SECRET = "atk_do-not-keep-this-anywhere"


async def _ids(dsn: str) -> list[UUID]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM aitrader.mcp_tool_calls")]
    finally:
        await conn.close()


def _modes(path: Path) -> tuple[int, int]:
    return stat.S_IMODE(os.stat(path).st_mode), stat.S_IMODE(os.stat(path.parent).st_mode)


def _read(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _count(logs: list[dict[str, object]], event: str) -> int:
    return sum(e["event"] == event for e in logs)


async def _retried(logs: list[dict[str, object]], times: int) -> None:
    async def tried() -> bool:
        return _count(logs, "audit_write_retry") >= times

    await wait_for(tried, timeout=10, message=f"{times} writes tried during the outage")


def _call(n: int) -> ToolCall:
    return ToolCall(f"tool{n}", {"n": n, "api_key": SECRET}, None, "http")


async def test_rows_spill_during_an_outage_without_blocking_calls_and_are_written_once_after(
    own_postgres: EmbeddedPostgres, tmp_path: Path,
) -> None:
    await migrate(own_postgres.dsn)
    pool = await create_pool(own_postgres.dsn, min_size=1, max_size=2)
    writer = AuditWriter(pool, maxsize=10, linger=0, spill_dir=tmp_path, spill_after=0.5)
    writer.start()
    try:
        await asyncio.to_thread(own_postgres.stop)
        calls = [_call(n) for n in range(40)]  # four times the queue: it fills, too
        slowest = 0.0
        for call in calls:
            started = time.perf_counter()
            await writer.finish(call, "success", {"n": 1}, None)
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.1  # before: a full queue made the call wait for the database
        await asyncio.wait_for(writer.flush(), 10)  # nothing waits for the database
        assert writer.spill.rows == 40
        assert REGISTRY.get_sample_value("aitrader_mcp_audit_spilled") == 40
        assert not await writer.spill_empty()  # /readyz's audit_spill check
        files = writer.spill.files()  # the active file, and one set aside by a drain tried
        assert 1 <= len(files) <= 2
        for path in files:
            assert _modes(path) == (0o600, 0o700)
            assert SECRET.encode() not in _read(path)  # the rows are redacted before they are kept

        with capture_logs() as logs:
            for _ in range(2):  # 5 rows spilled again, then a drain tried (the queue is empty)
                for call in calls[:5]:
                    await writer.finish(call, "success", {"n": 1}, None)
                await asyncio.wait_for(writer.flush(), 10)
                await _retried(logs, _count(logs, "audit_write_retry") + 1)
        aside = [p for p in writer.spill.files() if p.name != ACTIVE]
        assert len(aside) == 1  # one file waits aside, however often a drain is tried
        await asyncio.to_thread(own_postgres.start)

        async def written() -> bool:
            return writer.spill.rows == 0 and len(await _ids(own_postgres.dsn)) == 40

        await wait_for(written, timeout=30, message="the spilled rows in the table")
        assert sorted(await _ids(own_postgres.dsn)) == sorted(c.id for c in calls)
        assert writer.spill.files() == []
    finally:
        await asyncio.wait_for(writer.close(), 10)
        await asyncio.wait_for(pool.close(), 10)


_SPILLER = """
import asyncio, sys
from pathlib import Path
from services.mcp_gateway.audit import AuditWriter, ToolCall
from shared.db import create_pool

async def main():
    pool = await create_pool(sys.argv[1], min_size=0, max_size=1)
    writer = AuditWriter(pool, linger=0, spill_dir=Path(sys.argv[2]), spill_after=0.2)
    writer.start()
    for n in range(5):
        await writer.finish(ToolCall(f"killed{n}", {}, None, "http"), "success", {"n": n}, None)
    await writer.flush()
    print("SPILLED", writer.spill.rows, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_rows_spilled_by_a_killed_process_are_written_by_the_next_one(
    own_postgres: EmbeddedPostgres, tmp_path: Path,
) -> None:
    await migrate(own_postgres.dsn)
    dsn = own_postgres.dsn
    await asyncio.to_thread(own_postgres.stop)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    spiller = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SPILLER, dsn, str(tmp_path), stdout=asyncio.subprocess.PIPE, env=env)
    try:
        assert spiller.stdout is not None
        out = spiller.stdout

        async def spilled() -> bytes:  # its log lines come first, on the same stdout
            while (line := await out.readline()) and not line.startswith(b"SPILLED"):
                pass
            return line

        line = await asyncio.wait_for(spilled(), 30)
        assert line.split() == [b"SPILLED", b"5"]
    finally:
        spiller.send_signal(signal.SIGKILL)  # no close: nothing flushed on the way out
        await asyncio.wait_for(spiller.wait(), 10)
    await asyncio.to_thread(own_postgres.start)

    pool = await create_pool(dsn, min_size=1, max_size=2)
    writer = AuditWriter(pool, linger=0, spill_dir=tmp_path)
    assert writer.spill.rows == 5
    writer.start()
    try:
        async def written() -> bool:
            return writer.spill.rows == 0

        await wait_for(written, timeout=30, message="the rows written at start")
        assert len(await _ids(dsn)) == 5
    finally:
        await asyncio.wait_for(writer.close(), 10)
        await asyncio.wait_for(pool.close(), 10)


async def test_a_spill_replayed_after_a_crash_between_write_and_removal_is_written_once(
    own_postgres: EmbeddedPostgres, tmp_path: Path,
) -> None:
    """The rows were written but the file not removed (a crash in between), and its last line
    was cut short by a crash mid-append: the replay writes nothing twice and skips the stub."""
    await migrate(own_postgres.dsn)
    pool = await create_pool(own_postgres.dsn, min_size=1, max_size=2)
    calls = [_call(n) for n in range(3)]
    rows = [c.row("success", {"n": 1}, None, 1) for c in calls]
    spill = Spill(tmp_path)
    spill.append(rows)
    with (tmp_path / ACTIVE).open("ab") as stub:
        stub.write(b'{"id": "cut sh')
    spill.append([_call(9).row("failed", None, "late", 2)])  # after the stub: a line of its own
    await pool.executemany(
        "INSERT INTO aitrader.mcp_tool_calls (id, tool_name, request_payload, status) "
        "VALUES ($1, $2, $3, $4)", [(r[0], r[2], r[3], r[5]) for r in rows])
    writer = AuditWriter(pool, linger=0, spill_dir=tmp_path)
    writer.start()
    try:
        async def written() -> bool:
            return writer.spill.rows == 0

        await wait_for(written, timeout=15, message="the spill replayed")
        assert len(await _ids(own_postgres.dsn)) == 4
    finally:
        await asyncio.wait_for(writer.close(), 10)
        await asyncio.wait_for(pool.close(), 10)
