"""The gateway in its own process, for benchmarks/mcp_latency.py: the production HTTP app
(`serve_http`, bearer tokens, audit) plus the reference tool `ping`, which returns a constant.

    AITRADER_DATABASE_URL=... AITRADER_NATS_URL=... python -m benchmarks.mcp_server [--port 0]

Prints the /mcp URL on stdout once it listens; runs until SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio

from mcp.server import MCPServer
from pydantic import BaseModel

from services.mcp_gateway.config import GatewaySettings
from services.mcp_gateway.gateway import open_gateway
from services.mcp_gateway.main import quiet_sdk_logs, serve_http
from shared.logging import configure_logging
from shared.runner import run_until_signalled, tune_gc
from shared.settings import load_settings


class Pong(BaseModel):
    ok: bool = True


def add_ping(server: MCPServer) -> None:
    """Register the reference tool: same stack, auth and audit row as the real tools."""

    @server.tool()
    async def ping() -> Pong:
        """Reference tool: returns a constant."""
        return Pong()


async def serve(config: GatewaySettings, port: int) -> None:
    async with open_gateway(config) as gw, serve_http(gw, "127.0.0.1", port, add_ping) as url:
        print(url, flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    config = load_settings(GatewaySettings)
    configure_logging(config.log_level, config.log_format, service="mcp_gateway")
    quiet_sdk_logs()
    tune_gc()  # as run_service does for the production process
    asyncio.run(run_until_signalled(serve(config, args.port)))


if __name__ == "__main__":
    main()
