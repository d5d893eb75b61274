"""What `aitrader up` checks before it starts anything: every mistake it can see is one
`ConfigError` line (exit 2) before a server is started or "ready" is printed.

- every service's settings, by constructing each service's own settings class (the shared
  settings' validators include the market settings: symbols and timeframes OKX accepts);
- the ports it is about to listen on (embedded servers, MCP, console, health) free;
- a configured database and NATS reachable, the database with the given role and name;
- OKX's public REST API answering, for `--market okx`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from typing import Final

import httpx

from aitrader.migrate import connect
from shared.bus import connect_nats
from shared.errors import ConfigError
from shared.http_server import listening_socket
from shared.settings import Settings, load_settings

OKX_TIME_PATH: Final = "/api/v5/public/time"
OKX_TIMEOUT_S: Final = 5.0


def check_service_settings(services: list[str]) -> None:
    """Load each service's own settings class from the environment, as its process will."""
    for name in services:
        if importlib.util.find_spec(f"services.{name}.main") is None:
            continue  # not in this build: `up` warns and skips it
        module = importlib.import_module(f"services.{name}.main")
        load_settings(getattr(module, "SETTINGS_CLASS", Settings))


def check_port_free(setting: str, host: str, port: int, what: str = "port") -> None:
    """`port` can be listened on now (0 means any port: always free)."""
    if port == 0:
        return
    try:
        listening_socket(host, port).close()
    except OSError:
        raise ConfigError(setting, f"{what} {port} is already in use") from None


def check_ports(
    settings: Settings, services: list[str], health: Mapping[str, int], nats_nodes: int = 1
) -> None:
    """Every port this stack is about to listen on is free (an embedded NATS cluster: one client
    port per node, from AITRADER_EMBEDDED_NATS_PORT up)."""
    if not settings.database_url:
        check_port_free("AITRADER_EMBEDDED_PG_PORT", "127.0.0.1", settings.embedded_pg_port)
    if not settings.nats_url:
        for node in range(nats_nodes):
            check_port_free("AITRADER_EMBEDDED_NATS_PORT", "127.0.0.1", settings.embedded_nats_port + node)
    if "mcp_gateway" in services:
        check_port_free("AITRADER_MCP_PORT", settings.mcp_host, settings.mcp_port)
    if "console" in services:
        check_port_free("AITRADER_CONSOLE_PORT", settings.console_host, settings.console_port)
    for name, port in health.items():
        if name in services:
            what = f"the {name} health port"
            check_port_free("AITRADER_HEALTH_PORT_BASE", settings.health_host, port, what)


async def check_database(dsn: str) -> None:
    """The database answers with the given role and name."""
    conn = await connect(dsn, timeout=5.0)
    await conn.close()


async def check_nats(url: str) -> None:
    nc = await connect_nats(url, name="aitrader-preflight")
    await nc.close()


async def check_okx(rest_url: str) -> None:
    """OKX's public time endpoint answers within OKX_TIMEOUT_S (no key needed)."""
    url = rest_url + OKX_TIME_PATH
    try:
        async with httpx.AsyncClient(timeout=OKX_TIMEOUT_S) as client:
            answer = await client.get(url)
    except httpx.HTTPError as exc:
        raise ConfigError("AITRADER_OKX_REST_URL", f"OKX not reachable at {url} "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if answer.status_code != 200:
        raise ConfigError("AITRADER_OKX_REST_URL", f"OKX answered {answer.status_code} at {url}")


async def preflight(
    settings: Settings, market: str, services: list[str], health: Mapping[str, int], nats_nodes: int = 1
) -> None:
    """Every check, cheapest first; the first failure is raised."""
    check_service_settings(services)
    check_ports(settings, services, health, nats_nodes)
    if settings.database_url:
        await check_database(settings.database_url)
    if settings.nats_url:
        await check_nats(settings.nats_url)
    if market == "okx" and "ingest" in services:
        await check_okx(settings.okx_rest_url)
