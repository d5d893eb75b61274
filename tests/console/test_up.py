"""`aitrader up --services console` on the test's servers: the console is a process of the
stack, ready on its port as the console's role, and the ready line prints its URL."""

from __future__ import annotations

import asyncio
import sys

import httpx

from aitrader.embedded import free_port
from tests.console.conftest import Seeded
from tests.foundation.test_up import UpProcess, clean_env
from tests.servers import scratch_dir


async def test_up_runs_the_console_and_prints_its_url(db_dsn: str, nats_url: str, seeded: Seeded) -> None:
    port = free_port()
    with scratch_dir("aitrader-up-console-") as data_dir:
        env = clean_env(
            AITRADER_DATABASE_URL=db_dsn, AITRADER_NATS_URL=nats_url, AITRADER_CONSOLE_PORT=str(port)
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aitrader.cli",
            "up",
            "--services",
            "console",
            "--data-dir",
            str(data_dir),
            env=env,
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        up = UpProcess(process)
        try:
            ready = await up.wait_for_event("ready")
            assert ready["console"] == f"http://127.0.0.1:{port}/api/v1" and ready["services"] == ["console"]
            assert ready["dashboard"] == f"http://127.0.0.1:{port}/"
            async with httpx.AsyncClient(base_url=str(ready["console"]), timeout=5.0) as http:
                answer = await http.get("/accounts", headers=seeded.auth)
            assert answer.status_code == 200 and answer.json()["items"][0]["external_id"] == "A"
        finally:
            code = await up.interrupt()
        assert code == 0
