"""Entry point: the gateway over streamable HTTP at /mcp (bearer tokens), plus GET /healthz."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
from mcp.server import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.mcp_gateway.auth import AnswerTokenStoreOutage, TokenVerifier
from services.mcp_gateway.config import GatewaySettings, gateway_settings
from services.mcp_gateway.gateway import Gateway, open_gateway
from services.mcp_gateway.tokens import ExpiredTokenNotice
from services.mcp_gateway.tools import build_server
from shared.health import Health, connection_checks, database_ok
from shared.http_server import listening_socket, serving_app
from shared.logging import get_logger
from shared.settings import Settings

SETTINGS_CLASS = GatewaySettings
log = get_logger("mcp_gateway")


def quiet_sdk_logs() -> None:
    """The SDK logs each refused call at INFO; the audit line already says it."""
    for name in ("mcp", "httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def http_app(
    gw: Gateway, host: str, extend: Callable[[MCPServer], None] | None = None
) -> tuple[MCPServer, Starlette]:
    """The streamable-HTTP app: stateless JSON responses, so any instance can answer any call.
    `extend` may add tools (the benchmark's reference `ping`)."""
    verifier = TokenVerifier(gw.pool, gw.config.mcp_token_cache_s,
                             outage_grace=gw.config.mcp_token_outage_grace_s)
    server = build_server(gw, transport="http", verifier=verifier)

    async def healthz(_request: Request) -> Response:
        checks = {"nats": gw.nc.is_connected, "database": await _db_ok(gw)}
        status = 200 if all(checks.values()) else 503
        return JSONResponse({"status": "ok" if status == 200 else "unavailable", **checks}, status)

    if extend is not None:
        extend(server)
    app = server.streamable_http_app(stateless_http=True, json_response=True, host=host)
    app.router.routes.append(Route("/healthz", healthz, methods=["GET"]))
    app.add_middleware(AnswerTokenStoreOutage)  # a token check during an outage: 503, not 500
    app.add_middleware(ExpiredTokenNotice, pool=gw.pool)  # says "expired" where the SDK can't
    # /readyz (database, NATS, the audit queue below its bound, no audit row spilled) and
    # /metrics, as every service
    streams = list(gw.subjects.stream_subjects())
    checks = {**connection_checks(gw.pool, gw.nc, streams), "audit_queue": gw.audit.has_room,
              "audit_spill": gw.audit.spill_empty}
    health = Health("mcp_gateway", checks=checks)
    app.router.routes.extend(r for r in health.routes() if r.path in ("/readyz", "/metrics"))
    return server, app


async def _db_ok(gw: Gateway) -> bool:
    try:
        return await asyncio.wait_for(database_ok(gw.pool), timeout=1.0)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


@asynccontextmanager
async def serve_http(
    gw: Gateway, host: str, port: int, extend: Callable[[MCPServer], None] | None = None
) -> AsyncIterator[str]:
    """Serve the gateway until the block exits; yield its /mcp URL (port 0 = a free port)."""
    _server, app = http_app(gw, host, extend)
    sock = listening_socket(host, port)
    async with serving_app(app, sock, "mcp-http", lifespan="on"):
        bound = sock.getsockname()[1]
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound}/mcp"
        log.info("mcp_listening", url=url)
        yield url


async def serve(settings: Settings) -> None:
    """Run the gateway over HTTP until cancelled."""
    config = gateway_settings(settings)
    quiet_sdk_logs()
    async with open_gateway(config) as gw, serve_http(gw, config.mcp_host, config.mcp_port):
        await asyncio.Event().wait()
