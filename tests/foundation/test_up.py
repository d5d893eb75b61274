"""`aitrader up` with no servers configured: embedded PostgreSQL + NATS, migrated, and the data
survives a Ctrl-C and a second `up`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nats
import pytest
import pytest_asyncio

from aitrader.embedded import free_port
from tests.servers import scratch_dir


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    env.update(AITRADER_LOG_FORMAT="json", **extra)
    return env


class UpProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, object]] = []

    async def wait_for_event(self, event: str, timeout: float = 60.0) -> dict[str, object]:
        async def read() -> dict[str, object]:
            assert self.process.stderr is not None
            while True:
                raw = await self.process.stderr.readline()
                if not raw:
                    raise AssertionError(f"aitrader up exited before {event!r}: {self.lines[-5:]}")
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                self.lines.append(line)
                if line.get("event") == event:
                    return line

        return await asyncio.wait_for(read(), timeout)

    async def interrupt(self) -> int:
        """Ctrl-C, then collect what it logged while stopping."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.stderr is not None
        rest = await asyncio.wait_for(self.process.stderr.read(), 30)
        for raw in rest.splitlines():
            try:
                self.lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
        return await asyncio.wait_for(self.process.wait(), 30)


@pytest_asyncio.fixture(loop_scope="session")
async def data_dir() -> AsyncIterator[Path]:
    with scratch_dir("aitrader-up-") as path:
        yield path


async def start_up(data_dir: Path, pg_port: int, nats_port: int) -> UpProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aitrader.cli",
        "up",
        "--services",
        "none",
        "--data-dir",
        str(data_dir),
        env=clean_env(AITRADER_EMBEDDED_PG_PORT=str(pg_port), AITRADER_EMBEDDED_NATS_PORT=str(nats_port)),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    return UpProcess(process)


async def test_up_starts_embedded_servers_and_keeps_data_across_restarts(data_dir: Path) -> None:
    pg_port, nats_port = free_port(), free_port()
    up = await start_up(data_dir, pg_port, nats_port)
    try:
        ready = await up.wait_for_event("ready")
        dsn = str(ready["database"])
        assert dsn == f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"
        conn = await asyncpg.connect(dsn)
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'aitrader'"
        )
        assert tables >= 15
        await conn.execute(
            "INSERT INTO aitrader.accounts (external_id, mode) VALUES ('kept-across-restarts', 'simulated')"
        )
        await conn.close()
        nc = await nats.connect(str(ready["nats"]))
        streams = {s.config.name for s in await nc.jetstream().streams_info()}
        await nc.close()
        assert {"MARKET", "ACCOUNT", "POSITIONS"} <= streams
    finally:
        code = await up.interrupt()
    assert code == 0
    assert [line["event"] for line in up.lines if line.get("event") == "stopped"] == ["stopped", "stopped"]

    again = await start_up(data_dir, pg_port, nats_port)
    try:
        ready = await again.wait_for_event("ready")
        migrated = next(line for line in again.lines if line.get("event") == "migrated")
        assert migrated["applied"] == []
        conn = await asyncpg.connect(str(ready["database"]))
        kept = await conn.fetchval(
            "SELECT count(*) FROM aitrader.accounts WHERE external_id = 'kept-across-restarts'"
        )
        await conn.close()
        assert kept == 1
    finally:
        assert await again.interrupt() == 0


@pytest.mark.parametrize("setting", ["AITRADER_EMBEDDED_PG_PORT", "AITRADER_EMBEDDED_NATS_PORT"])
async def test_a_port_in_use_is_one_clear_line(data_dir: Path, setting: str) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    busy = server.sockets[0].getsockname()[1]
    ports = {"AITRADER_EMBEDDED_PG_PORT": str(free_port()), "AITRADER_EMBEDDED_NATS_PORT": str(free_port())}
    ports[setting] = str(busy)
    try:
        up = await start_up(
            data_dir, int(ports["AITRADER_EMBEDDED_PG_PORT"]), int(ports["AITRADER_EMBEDDED_NATS_PORT"])
        )
        process = up.process
        _, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        server.close()
    text = err.decode()
    assert process.returncode == 2
    assert f"aitrader: configuration error: {setting}: port {busy} is already in use" in text
    assert "Traceback" not in text


async def test_ctrl_c_in_the_terminal_stops_everything_cleanly(data_dir: Path) -> None:
    """A terminal's Ctrl-C reaches the whole foreground process group: `up` alone must act on
    it (each service in a session of its own, stopped by `up` in order), so nothing is torn down
    twice and no error is logged on the way out."""
    pg_port, nats_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aitrader.cli", "up", "--services", "positions,mcp_gateway",
        "--data-dir", str(data_dir),
        env=clean_env(AITRADER_EMBEDDED_PG_PORT=str(pg_port),
                      AITRADER_EMBEDDED_NATS_PORT=str(nats_port),
                      AITRADER_MCP_PORT=str(free_port())),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # the test plays the terminal: this is its foreground group
    )
    up = UpProcess(process)
    await up.wait_for_event("ready", timeout=90)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
    assert process.stderr is not None
    rest = await asyncio.wait_for(process.stderr.read(), 30)
    for raw in rest.splitlines():
        try:
            up.lines.append(json.loads(raw))
        except json.JSONDecodeError:
            up.lines.append({"level": "error", "event": raw.decode(errors="replace")})
    assert await asyncio.wait_for(process.wait(), 30) == 0
    errors = [line for line in up.lines if line.get("level") in ("error", "critical")]
    assert errors == []
    stopped = {line.get("service") for line in up.lines
               if line.get("event") == "stopped" and line.get("code") == 0}
    assert {"positions", "mcp_gateway"} <= stopped
