"""The console service: the one place that wires the pool (as the console's role), the token
checker, the API and the health endpoints, and serves them over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.console import api_views, web
from services.console.api import router
from services.console.auth import RETRY_AFTER_S
from services.console.config import ConsoleSettings, console_settings
from services.console.events import EventHub, EventsConfig
from services.console.events import router as events_router
from services.console.repository import ConsoleDb
from shared.consumer import Nak, fate_of
from shared.db import create_pool
from shared.health import Health, database_ok
from shared.http_server import listening_socket, serving_app
from shared.logging import get_logger
from shared.settings import Settings
from shared.subjects import Subjects
from shared.tokens import TokenChecker

SETTINGS_CLASS = ConsoleSettings
SERVICE = "console"
API_VERSION = "1"
log = get_logger(SERVICE)


def api_app(lifespan: Any = None) -> FastAPI:
    """The API alone: its routes and its document (docs/console-openapi.json)."""
    app = FastAPI(
        lifespan=lifespan,
        title="AiTrader console API",
        version=API_VERSION,
        description="Read-only views of the ledger, per account (docs/console.md).",
        docs_url=None,  # FastAPI's /docs and /redoc load their scripts from a CDN
        redoc_url=None,
    )
    app.include_router(router)
    app.include_router(api_views.router)
    app.include_router(events_router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The NATS connection of GET /events: opened with the app, closed with it."""
    hub: EventHub | None = app.state.events
    if hub is not None:
        await hub.start()
    try:
        yield
    finally:
        if hub is not None:
            await hub.stop()


def create_app(pool: asyncpg.Pool, token_cache_s: float = 2.0, events: EventHub | None = None) -> FastAPI:
    """The console's ASGI app on a pool connected as the console's role; `events` (its NATS
    connection started by the app's lifespan) serves GET /events, 503 without it."""
    app = api_app(_lifespan)
    app.state.db = ConsoleDb(pool)
    app.state.checker = TokenChecker(pool, token_cache_s)
    app.state.events = events
    app.add_exception_handler(OSError, _database_away)
    app.add_exception_handler(asyncpg.PostgresError, _database_away)
    app.add_exception_handler(asyncpg.InterfaceError, _database_away)
    checks: dict[str, Any] = {"database": lambda: database_ok(pool)}
    if events is not None:
        checks["nats"] = _connected(events)
    health = Health(SERVICE, checks=checks)
    app.router.routes.extend(health.routes())  # /healthz, /readyz, /metrics: not in the API document
    app.router.routes.extend(web.routes())  # the dashboard at / (services/console/web.py)
    return app


def _connected(hub: EventHub) -> Any:
    async def check() -> bool:
        return hub.connected

    return check


def events_hub(config: ConsoleSettings) -> EventHub | None:
    """The hub of GET /events from the settings; None when no NATS URL is set."""
    if config.nats_url is None:
        return None
    return EventHub(
        EventsConfig(
            nats_url=config.nats_url,
            subjects=Subjects(config.nats_subject_root, config.nats_stream_prefix),
            queue_size=config.console_events_queue_size,
            heartbeat_s=config.console_events_heartbeat_s,
            retry_ms=config.console_events_retry_ms,
            send_timeout_s=config.console_events_send_timeout_s,
            replay_size=config.console_events_replay,
        )
    )


async def _database_away(_request: Request, exc: Exception) -> JSONResponse:
    """A read the database could not answer: 503 with Retry-After; anything else is a bug."""
    fate = fate_of(exc)
    if not isinstance(fate, Nak) or fate.unknown:
        raise exc
    log.warning("console_database_unavailable", error=type(exc).__name__)
    return JSONResponse(
        {"detail": f"database unavailable, retry in {RETRY_AFTER_S} s"},
        503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def openapi_json() -> str:
    """The API document as committed in docs/console-openapi.json."""
    return json.dumps(api_app().openapi(), indent=2, sort_keys=True) + "\n"


async def serve(settings: Settings) -> None:
    """Serve the console until cancelled."""
    config = console_settings(settings)
    pool = await create_pool(
        config.console_dsn(),
        min_size=1,
        max_size=config.console_db_pool_size,
        application_name=SERVICE,
        setting="AITRADER_CONSOLE_DB_ROLE",  # the connection as the console's role (its password)
    )
    try:
        hub = events_hub(config)
        app = create_app(pool, config.console_token_cache_s, hub)
        sock = listening_socket(config.console_host, config.console_port)
        async with serving_app(app, sock, "console-http", lifespan="on"):
            bound = sock.getsockname()[1]
            log.info("console_listening", url=f"http://{config.console_host}:{bound}/api/v1")
            try:
                await asyncio.Event().wait()
            finally:
                if hub is not None:
                    hub.end_streams()  # or uvicorn's shutdown waits for the open streams
    finally:
        await pool.close()
