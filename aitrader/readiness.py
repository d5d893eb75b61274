"""`aitrader up` logs "ready" only once every service it started answers `/readyz` with 200.

Meanwhile the supervisor runs: a service that exits with a configuration error (status 2) ends
the wait with its one line; past AITRADER_UP_READY_TIMEOUT_S the wait ends with one line naming
each service not ready and why (its failing checks, from the `/readyz` body). Both are a
`ConfigError`: `up` stops everything it started and exits 2.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Final

import httpx

from aitrader.ports import api_hosts, api_ports
from shared.errors import ConfigError
from shared.logging import get_logger
from shared.settings import Settings

POLL_S: Final = 0.25
ANSWER_TIMEOUT_S: Final = 2.0
REASON_LIMIT: Final = 300
SETTING: Final = "AITRADER_UP_READY_TIMEOUT_S"
log = get_logger("up")


def local(host: str) -> str:
    """Where this machine reaches a server listening on `host` (any address: the loopback)."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def readiness_urls(settings: Settings, started: list[str], health: Mapping[str, int]) -> dict[str, str]:
    """The `/readyz` of each started service (the gateway's and the console's on their API
    ports). A port 0 is the OS's choice, unknown here: that service is not waited for."""
    ports = {**health, **api_ports(settings)}
    hosts = {name: settings.health_host for name in ports} | api_hosts(settings)
    return {
        name: f"http://{local(hosts[name])}:{ports[name]}/readyz"
        for name in started
        if ports.get(name)
    }


def failing_checks(answer: httpx.Response) -> str:
    """The checks a `/readyz` answer says fail (`{"database": "unavailable", ...}`), or its text."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return answer.text[:REASON_LIMIT]
    failing = {k: v for k, v in body.items() if k not in ("service", "status") and v != "ok"}
    return json.dumps(failing)[:REASON_LIMIT]


async def not_ready(client: httpx.AsyncClient, url: str) -> str | None:
    """None when `url` answers 200; else why not, in one short line."""
    try:
        answer = await client.get(url)
    except httpx.HTTPError as exc:
        return f"not answering at {url} ({type(exc).__name__})"
    if answer.status_code == 200:
        return None
    return f"{answer.status_code} {failing_checks(answer)}"


async def wait_ready(urls: Mapping[str, str], monitor: asyncio.Task[None], timeout: float) -> None:
    """Until every url answers 200. The supervisor's `ConfigError` is raised as soon as it ends;
    past `timeout`, a `ConfigError` naming every service not ready yet."""
    waiting = dict(urls)
    why: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(timeout=ANSWER_TIMEOUT_S) as client:
        while waiting:
            if monitor.done():
                monitor.result()  # a child's configuration error: its line
            answers = await asyncio.gather(*(not_ready(client, url) for url in waiting.values()))
            for name, reason in zip(list(waiting), answers, strict=True):
                if reason is None:
                    del waiting[name]
                    log.info("service_ready", service=name)
                else:
                    why[name] = reason
            if waiting and loop.time() >= deadline:
                listed = "; ".join(f"{name}: {why[name]}" for name in waiting)
                raise ConfigError(SETTING, f"not ready within {timeout:g} s: {listed}"[:600])
            if waiting:
                await asyncio.wait([monitor], timeout=POLL_S)  # wakes at once if it ends
