"""The console service: the one place that wires the pool (as the console's role), the token
checker, the API and the health endpoints, and serves them over HTTP."""

from __future__ import annotations

import asyncio
import json

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.console import web
from services.console.api import router
from services.console.auth import RETRY_AFTER_S
from services.console.config import ConsoleSettings, console_settings
from services.console.repository import ConsoleDb
from shared.consumer import Nak, fate_of
from shared.db import create_pool
from shared.health import Health, database_ok
from shared.http_server import listening_socket, serving_app
from shared.logging import get_logger
from shared.settings import Settings
from shared.tokens import TokenChecker

SETTINGS_CLASS = ConsoleSettings
SERVICE = "console"
API_VERSION = "1"
log = get_logger(SERVICE)


def api_app() -> FastAPI:
    """The API alone: its routes and its document (docs/console-openapi.json)."""
    app = FastAPI(
        title="AiTrader console API",
        version=API_VERSION,
        description="Read-only views of the ledger, per account (docs/console.md).",
        docs_url=None,  # FastAPI's /docs and /redoc load their scripts from a CDN
        redoc_url=None,
    )
    app.include_router(router)
    return app


def create_app(pool: asyncpg.Pool, token_cache_s: float = 2.0) -> FastAPI:
    """The console's ASGI app on a pool connected as the console's role."""
    app = api_app()
    app.state.db = ConsoleDb(pool)
    app.state.checker = TokenChecker(pool, token_cache_s)
    app.add_exception_handler(OSError, _database_away)
    app.add_exception_handler(asyncpg.PostgresError, _database_away)
    app.add_exception_handler(asyncpg.InterfaceError, _database_away)
    health = Health(SERVICE, checks={"database": lambda: database_ok(pool)})
    app.router.routes.extend(health.routes())  # /healthz, /readyz, /metrics: not in the API document
    app.router.routes.extend(web.routes())  # the dashboard at / (services/console/web.py)
    return app


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
        app = create_app(pool, config.console_token_cache_s)
        sock = listening_socket(config.console_host, config.console_port)
        async with serving_app(app, sock, "console-http"):
            bound = sock.getsockname()[1]
            log.info("console_listening", url=f"http://{config.console_host}:{bound}/api/v1")
            await asyncio.Event().wait()
    finally:
        await pool.close()
