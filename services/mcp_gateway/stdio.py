"""`aitrader mcp --stdio --account ID`: one local client over stdin/stdout, acting for one
account with both scopes (whoever can start it can already reach the database). Logs go to
stderr: stdout is the protocol."""

from __future__ import annotations

import asyncio

from services.mcp_gateway.auth import TokenError, local_principal
from services.mcp_gateway.config import GatewaySettings, gateway_settings
from services.mcp_gateway.gateway import open_gateway
from services.mcp_gateway.main import quiet_sdk_logs
from services.mcp_gateway.tools import build_server
from shared.errors import ConfigError
from shared.logging import configure_logging
from shared.runner import fail
from shared.settings import Settings, load_settings


async def serve_stdio(settings: Settings, external_id: str) -> None:
    """Serve the tools over stdio until the client closes stdin."""
    config = gateway_settings(settings)
    quiet_sdk_logs()
    async with open_gateway(config) as gw:
        try:
            principal = await local_principal(gw.pool, external_id)
        except TokenError as exc:
            raise ConfigError("--account", str(exc)) from None
        server = build_server(gw, transport="stdio", principal=principal)
        await server.run_stdio_async()


def run(external_id: str) -> None:
    try:
        settings = load_settings(GatewaySettings)
        configure_logging(settings.log_level, "json", service="mcp_gateway")
        asyncio.run(serve_stdio(settings, external_id))
    except ConfigError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass
