"""`aitrader up` cannot hurt itself: a second `up` on a running stack's data directory, and every
mistake preflight sees, are one line and exit 2 before anything starts; the running stack (one,
shared by the module: `up` is slow) stays healthy and nothing it owns changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import pytest
import pytest_asyncio

from aitrader.embedded import free_port
from shared.db import describe_dsn
from tests.conftest import with_database
from tests.foundation.test_up import UpProcess, clean_env
from tests.servers import scratch_dir

ERROR = "aitrader: configuration error: "


def up_cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A second `aitrader up` run to its end (a refused one ends at once)."""
    return subprocess.run(
        [sys.executable, "-m", "aitrader.cli", "up", "--data-dir", str(data_dir), *args],
        env=clean_env(**env), capture_output=True, text=True, timeout=60, check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR)]
    assert len(errors) == 1, result.stderr
    assert '"event": "ready"' not in result.stderr
    return errors[0].removeprefix(ERROR)


def healthcheck(data_dir: Path, service: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aitrader.cli", "healthcheck", service, "--data-dir", str(data_dir)],
        env=clean_env(), capture_output=True, text=True, timeout=30, check=False,
    )


@dataclass
class RunningStack:
    data_dir: Path
    pid: int
    dsn: str
    nats_url: str
    pg_port: int
    nats_port: int
    ready: dict[str, object]  # the "ready" line
    at_ready: subprocess.CompletedProcess[str]  # `aitrader healthcheck positions` asked at once


def snapshot(data_dir: Path) -> dict[str, str]:
    """What a second `up` must not touch: the lock, the ports file, the postmaster's pid file."""
    files = ["aitrader.lock", "ports.json", "postgres/data/postmaster.pid"]
    return {name: (data_dir / name).read_text() for name in files}


async def wait_healthy(data_dir: Path, service: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (result := await asyncio.to_thread(healthcheck, data_dir, service)).returncode != 0:
        assert asyncio.get_running_loop().time() < deadline, result.stderr
        await asyncio.sleep(0.5)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack() -> AsyncIterator[RunningStack]:
    """One `aitrader up --services positions` on embedded servers, healthy, for the module."""
    with scratch_dir("aitrader-upsafe-") as data_dir:
        pg_port, nats_port = free_port(), free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aitrader.cli", "up", "--services", "positions",
            "--data-dir", str(data_dir),
            env=clean_env(AITRADER_EMBEDDED_PG_PORT=str(pg_port), AITRADER_EMBEDDED_NATS_PORT=str(nats_port)),
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )
        up = UpProcess(process)
        drain: asyncio.Task[None] | None = None
        try:
            ready = await up.wait_for_event("ready", timeout=90)
            at_ready = await asyncio.to_thread(healthcheck, data_dir, "positions")
            drain = asyncio.create_task(drain_stderr(process))  # a full pipe would block `up`
            await wait_healthy(data_dir, "positions")
            yield RunningStack(data_dir, process.pid, str(ready["database"]), str(ready["nats"]),
                               pg_port, nats_port, ready, at_ready)
        finally:
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
            assert await up.interrupt() == 0


async def drain_stderr(process: asyncio.subprocess.Process) -> None:
    assert process.stderr is not None
    while await process.stderr.read(65536):
        pass


async def still_healthy(stack: RunningStack, before: dict[str, str]) -> None:
    """The first stack answers as before: database, NATS, its service, and its files unchanged."""
    assert snapshot(stack.data_dir) == before
    conn = await asyncpg.connect(stack.dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT count(*) FROM aitrader.accounts WHERE external_id = 'upsafe'") == 1
    finally:
        await conn.close()
    nc = await nats.connect(stack.nats_url, connect_timeout=3)
    await nc.close()
    result = await asyncio.to_thread(healthcheck, stack.data_dir, "positions")
    assert result.returncode == 0, result.stderr


async def test_ready_is_logged_once_every_service_it_lists_answers_ready(stack: RunningStack) -> None:
    assert stack.ready["services"] == ["positions"]
    assert stack.at_ready.returncode == 0, stack.at_ready.stderr  # no waiting: it already was


@pytest.mark.parametrize("ports", ["same", "other"])
async def test_a_second_up_on_the_same_data_dir_is_refused_and_touches_nothing(
    stack: RunningStack, ports: str
) -> None:
    conn = await asyncpg.connect(stack.dsn)
    await conn.execute("INSERT INTO aitrader.accounts (external_id, mode) VALUES ('upsafe', 'simulated') "
                       "ON CONFLICT DO NOTHING")
    await conn.close()
    before = snapshot(stack.data_dir)
    pg, nt = (stack.pg_port, stack.nats_port) if ports == "same" else (free_port(), free_port())
    result = await asyncio.to_thread(
        up_cli, stack.data_dir, "--services", "positions",
        AITRADER_EMBEDDED_PG_PORT=str(pg), AITRADER_EMBEDDED_NATS_PORT=str(nt),
    )
    line = one_error_line(result)
    assert line == (f"AITRADER_DATA_DIR: {stack.data_dir} is in use by another `aitrader up` "
                    f"(pid {stack.pid}); stop it, or give this one its own --data-dir")
    await still_healthy(stack, before)


@pytest.fixture
def other_dir() -> Iterator[Path]:
    with scratch_dir("aitrader-upsafe-other-") as path:
        yield path


def nothing_started(data_dir: Path) -> None:
    """A refused `up` leaves at most its (released) lock: no server was started, no file written
    (a setting the settings classes refuse stops it before it takes the lock)."""
    assert {p.name for p in data_dir.iterdir()} <= {"aitrader.lock"}
    lock = data_dir / "aitrader.lock"
    assert not lock.exists() or lock.read_text() == ""


@contextlib.asynccontextmanager
async def listening() -> AsyncIterator[int]:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_busy_mcp_port_is_one_line(other_dir: Path) -> None:
    async with listening() as busy:
        result = await asyncio.to_thread(
            up_cli, other_dir, "--market", "sim", "--services", "mcp_gateway",
            AITRADER_MCP_PORT=str(busy), AITRADER_EMBEDDED_PG_PORT=str(free_port()),
        )
    assert one_error_line(result) == f"AITRADER_MCP_PORT: port {busy} is already in use"
    nothing_started(other_dir)


async def test_a_health_port_taken_by_another_stack_is_one_line(stack: RunningStack, other_dir: Path) -> None:
    taken = json.loads((stack.data_dir / "ports.json").read_text())["positions"]
    before = snapshot(stack.data_dir)
    result = await asyncio.to_thread(
        up_cli, other_dir, "--services", "positions", "--health-port-base", str(taken - 1),
        AITRADER_EMBEDDED_PG_PORT=str(free_port()), AITRADER_EMBEDDED_NATS_PORT=str(free_port()),
    )
    assert one_error_line(result) == (
        f"AITRADER_HEALTH_PORT_BASE: the positions health port {taken} is already in use")
    nothing_started(other_dir)
    assert snapshot(stack.data_dir) == before


async def untouched(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regnamespace('aitrader')") is None
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        pytest.param("AITRADER_TIMEFRAMES", "3m,5min", "AITRADER_TIMEFRAMES: unknown bar '5min'; allowed: "
                     "a count 1-99 and a unit s, m, H, D, W or M, optionally with 'utc', e.g. 1m,3m,5m,",
                     id="timeframe"),
        pytest.param("AITRADER_SYMBOLS", "BTCUSDT", "AITRADER_SYMBOLS: 'BTCUSDT' is not an OKX USDT-margined "
                     "swap; allowed: BASE-USDT-SWAP instrument ids, e.g. BTC-USDT-SWAP", id="symbol"),
        pytest.param("AITRADER_POSITIONS_BATCH_SIZE", "0", "AITRADER_POSITIONS_BATCH_SIZE: Input should be "
                     "greater than or equal to 1", id="one-service-setting"),
    ],
)
async def test_a_setting_one_service_reads_is_one_line_before_ready(
    empty_dsn: str, other_dir: Path, setting: str, value: str, expected: str
) -> None:
    result = await asyncio.to_thread(
        up_cli, other_dir, "--market", "sim", AITRADER_DATABASE_URL=empty_dsn, **{setting: value}
    )
    assert one_error_line(result).startswith(expected)
    nothing_started(other_dir)
    await untouched(empty_dsn)


async def test_okx_unreachable_is_one_line_before_ready(empty_dsn: str, other_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await asyncio.to_thread(
        up_cli, other_dir, "--market", "okx", "--services", "ingest",
        AITRADER_DATABASE_URL=empty_dsn, AITRADER_OKX_REST_URL=url,
    )
    assert one_error_line(result).startswith(
        f"AITRADER_OKX_REST_URL: OKX not reachable at {url}/api/v5/public/time (ConnectError")
    nothing_started(other_dir)
    await untouched(empty_dsn)


@pytest.mark.parametrize("problem", ["database", "role"])
async def test_a_missing_database_or_role_is_one_line(
    pg_admin_dsn: str, other_dir: Path, problem: str
) -> None:
    missing = f"no_such_{secrets.token_hex(3)}"
    dsn = with_database(pg_admin_dsn, missing)
    if problem == "role":
        dsn = pg_admin_dsn.replace("postgres@", f"{missing}@", 1)
        if missing not in dsn:
            pytest.skip("the admin DSN does not name the role postgres")
    result = await asyncio.to_thread(up_cli, other_dir, "--services", "none", AITRADER_DATABASE_URL=dsn)
    line = one_error_line(result)
    where = describe_dsn(dsn)
    if problem == "database":
        assert line == f"AITRADER_DATABASE_URL: database does not exist: {where}"
    else:
        assert line.startswith(f"AITRADER_DATABASE_URL: role refused at {where} (role \"{missing}\" does not")
    nothing_started(other_dir)
