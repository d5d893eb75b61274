"""A stack's place on this machine: its default data directory, and where the services of one
`aitrader up` answer their health — ports chosen per stack, written to `<data dir>/ports.json`
so that `aitrader healthcheck` asks the right stack.

With `--health-port-base N` the services get N, N+1, N+2 (ingest, positions, metrics); without
it, free ports. The gateway and the console answer on their API ports (AITRADER_MCP_PORT,
AITRADER_CONSOLE_PORT), which the file records too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs

from aitrader.embedded import free_port
from shared.health import DEFAULT_PORTS
from shared.settings import Settings

SERVICES = ("ingest", "positions", "metrics", "mcp_gateway", "console")
# The services that answer their health on their API's host and port: (host, port) settings.
API_SERVICES: dict[str, tuple[str, str]] = {
    "mcp_gateway": ("mcp_host", "mcp_port"),
    "console": ("console_host", "console_port"),
}
PORTS_FILE = "ports.json"
HEALTH_SERVICES = tuple(DEFAULT_PORTS)  # the services with a health port of their own


def default_data_dir() -> Path:
    """Where `up` keeps a stack's data unless told (--data-dir, AITRADER_DATA_DIR)."""
    # As root, PostgreSQL runs as an unprivileged user who cannot enter /root: use /var/lib.
    if os.geteuid() == 0:
        return Path("/var/lib/aitrader")
    return Path(platformdirs.user_data_dir("aitrader"))


def choose_health_ports(base: int | None) -> dict[str, int]:
    """One health port per service: `base` + its index, or a free port each."""
    if base is None:
        return {name: free_port() for name in HEALTH_SERVICES}
    return {name: base + index for index, name in enumerate(HEALTH_SERVICES)}


def write_ports(data_dir: Path, ports: Mapping[str, int]) -> None:
    """Record the stack's ports (atomically: a reader never sees half a file)."""
    target = data_dir / PORTS_FILE
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps(dict(ports), sort_keys=True) + "\n")
    partial.replace(target)


def read_ports(data_dir: Path) -> dict[str, int]:
    """The ports a stack on `data_dir` recorded; empty when none runs there (or the file is
    unreadable: the caller falls back to the defaults)."""
    try:
        recorded = json.loads((data_dir / PORTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {str(k): v for k, v in recorded.items() if isinstance(v, int)}


def remove_ports(data_dir: Path) -> None:
    (data_dir / PORTS_FILE).unlink(missing_ok=True)


def api_ports(settings: Settings) -> dict[str, int]:
    """The API port of each service that answers its health there (the gateway, the console)."""
    return {name: int(getattr(settings, port)) for name, (_host, port) in API_SERVICES.items()}


def api_hosts(settings: Settings) -> dict[str, str]:
    return {name: str(getattr(settings, host)) for name, (host, _port) in API_SERVICES.items()}


def health_port(service: str, environ: Mapping[str, str], recorded: Mapping[str, int]) -> int:
    """The port `aitrader healthcheck` asks: the environment's explicit setting (a container's
    AITRADER_HEALTH_PORT, the gateway's AITRADER_MCP_PORT, the console's AITRADER_CONSOLE_PORT),
    else what the stack recorded, else the default."""
    api = API_SERVICES.get(service)
    variable = f"AITRADER_{api[1].upper()}" if api else "AITRADER_HEALTH_PORT"
    if environ.get(variable):
        return int(environ[variable])
    if service in recorded:
        return recorded[service]
    if api:
        return int(Settings.model_fields[api[1]].default)
    return DEFAULT_PORTS[service]


def health_env(service: str, ports: Mapping[str, int] = DEFAULT_PORTS) -> dict[str, str]:
    """Where a service answers /healthz, /readyz and /metrics (the gateway and the console: on
    their API ports)."""
    port = ports.get(service)
    return {} if port is None else {"AITRADER_HEALTH_PORT": str(port)}


def health_url(service: str, environ: Mapping[str, str], data_dir: Path | None = None) -> str:
    """The readiness URL `aitrader healthcheck` asks (`health_port`)."""
    recorded = read_ports(data_dir) if data_dir else {}
    return f"http://127.0.0.1:{health_port(service, environ, recorded)}/readyz"
