"""Health of one service process, on a port of its own (`AITRADER_HEALTH_PORT`):

- `GET /healthz`: live — the event loop answers;
- `GET /readyz`: ready — every check passes: the database and NATS reachable (each check within
  `CHECK_DEADLINE_S`), and every consumer making progress (its `Progress` beat recently);
  503 with the failing checks named otherwise. A check may pass `Degraded`: still ready (200),
  its entry says what is wrong — a cluster node down while every stream still has a leader;
- `GET /metrics`: Prometheus text (prometheus-client's default registry).

`aitrader healthcheck <service>` asks `/readyz` (so a stack that is not running fails it). A
consumer that makes no progress for `exit_after` seconds is given up by `watch`: it raises
`Stalled`, the service exits non-zero and its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import asyncpg
import nats.errors
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.errors import ConfigError
from shared.http_server import listening_socket, serving_app
from shared.logging import get_logger

# Where each service answers under `aitrader run` (one container per service) unless
# AITRADER_HEALTH_PORT says otherwise; `aitrader up` chooses ports per stack (aitrader.ports),
# so that two stacks on one host do not collide. The gateway answers on its MCP port.
DEFAULT_PORTS: Final = {"ingest": 9101, "positions": 9102, "metrics": 9103}
CHECK_DEADLINE_S: Final = 2.0
WATCH_EVERY_S: Final = 5.0

log = get_logger("health")


@dataclass(frozen=True)
class Degraded:
    """A check that passes with a warning: working, with less margin than it should have."""

    reason: str


Check = Callable[[], Awaitable[bool | Degraded]]


async def database_ok(pool: asyncpg.Pool) -> bool:
    """The database answers a trivial query (the caller bounds the wait)."""
    return bool(await pool.fetchval("SELECT 1"))


async def nats_ok(nc: Client, streams: Sequence[str] = ()) -> bool | Degraded:
    """Connected, and each of `streams` (those that exist) has a leader: True; a stream with a
    replica that is not current (its node down, or catching up): `Degraded`; not connected:
    False; a stream without a leader (quorum lost: no publish can be stored) raises."""
    if not nc.is_connected:
        return False
    js = nc.jetstream(timeout=CHECK_DEADLINE_S / 2)
    behind: list[str] = []
    for stream in streams:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            continue  # not declared yet: the service that owns it declares it
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            raise RuntimeError(f"stream {stream} has no leader (fewer than a quorum of its "
                               "replicas' nodes up)") from None
        replicas = info.cluster.replicas if info.cluster else None
        behind += [f"{stream}@{peer.name}" for peer in replicas or [] if not peer.current]
    if behind:
        return Degraded(f"replicas not current (node down or catching up): {', '.join(behind)}")
    return True


def connection_checks(pool: asyncpg.Pool, nc: Client, streams: Sequence[str] = ()) -> dict[str, Check]:
    """The checks every service has: its database and NATS (with the streams' replicas)."""
    return {"database": lambda: database_ok(pool), "nats": lambda: nats_ok(nc, streams)}


class Stalled(RuntimeError):
    """A consumer made no progress for longer than its bound: the process gives up."""


@dataclass
class Progress:
    """A consumer's watchdog: its loop beats whenever it moves (a fetch returned, even empty;
    a batch settled). Silent for `stall_after` seconds means stuck (not ready); for
    `exit_after`, given up."""

    name: str
    stall_after: float = 60.0
    exit_after: float = 180.0
    last: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        self.last = time.monotonic()

    def silent_for(self) -> float:
        return time.monotonic() - self.last


@dataclass
class Health:
    """The checks and watchdogs of one process."""

    service: str
    checks: dict[str, Check] = field(default_factory=dict)
    watchdogs: list[Progress] = field(default_factory=list)

    def progress(self, name: str, stall_after: float = 60.0, exit_after: float = 180.0) -> Progress:
        watchdog = Progress(name, stall_after, exit_after)
        self.watchdogs.append(watchdog)
        return watchdog

    async def report(self) -> tuple[bool, dict[str, str]]:
        """(ready, {check: "ok" or why not})."""
        results: dict[str, str] = {}
        passed: set[str] = set()
        for name, check in self.checks.items():
            try:
                ok = await asyncio.wait_for(check(), CHECK_DEADLINE_S)
            except TimeoutError:
                results[name] = f"no answer within {CHECK_DEADLINE_S:g} s"
                continue
            except Exception as exc:  # a check that fails says how, it never breaks the endpoint
                results[name] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            if isinstance(ok, Degraded):
                results[name] = f"degraded: {ok.reason}"[:300]
                passed.add(name)
            else:
                results[name] = "ok" if ok else "unavailable"
        for watchdog in self.watchdogs:
            silent = watchdog.silent_for()
            results[watchdog.name] = (
                "ok" if silent < watchdog.stall_after else f"no progress for {silent:.0f} s")
        return all(v == "ok" or k in passed for k, v in results.items()), results

    async def watch(self, every: float = WATCH_EVERY_S) -> None:
        """Raise `Stalled` once a consumer has made no progress for its `exit_after`."""
        while True:
            await asyncio.sleep(every)
            for watchdog in self.watchdogs:
                silent = watchdog.silent_for()
                if silent >= watchdog.exit_after:
                    log.error("watchdog_stalled", service=self.service, consumer=watchdog.name,
                              silent_s=round(silent))
                    raise Stalled(f"{watchdog.name}: no progress for {silent:.0f} s")

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())

    def routes(self) -> list[Route]:
        async def healthz(_request: Request) -> Response:
            return JSONResponse({"service": self.service, "status": "live"})

        async def readyz(_request: Request) -> Response:
            ready, results = await self.report()
            body = {"service": self.service, "status": "ready" if ready else "not ready", **results}
            return JSONResponse(body, 200 if ready else 503)

        async def metrics(_request: Request) -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        return [
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]


@contextlib.asynccontextmanager
async def serving(health: Health, host: str, port: int | None) -> AsyncIterator[int | None]:
    """Serve `health` on host:port while the block runs (None: no server, 0: any free port);
    yield the bound port. A port already taken is a `ConfigError` naming the setting."""
    if port is None:
        yield None
        return
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        raise ConfigError("AITRADER_HEALTH_PORT",
                          f"cannot listen on {host}:{port} ({exc.strerror})") from None
    async with serving_app(health.app(), sock, f"{health.service}-health"):
        bound: int = sock.getsockname()[1]
        log.info("health_listening", service=health.service, url=f"http://{host}:{bound}/readyz")
        yield bound
