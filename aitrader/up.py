"""`aitrader up`: the whole product on one machine.

`up` takes the data directory's lock, checks everything it can before starting anything
(`aitrader.preflight`), then uses the servers named by AITRADER_DATABASE_URL / AITRADER_NATS_URL
or starts an embedded PostgreSQL and an embedded `nats-server -js` (`--nats-cluster 3`: three,
routed to each other, `aitrader.embedded_cluster`) whose data lives in the data directory (so a
restart keeps it), migrates, declares the streams (replicated on a cluster), optionally starts okx_sim
(`--market sim`), then runs every service as its own process (`aitrader.supervise`), logs
"ready" once each answers /readyz (`aitrader.readiness`), and stops all of it on Ctrl-C /
SIGTERM, or when a service exits with a configuration error.
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import click

from aitrader.cli_common import cli_settings, friendly_errors
from aitrader.embedded import EmbeddedNats, EmbeddedPostgres, free_port, port_in_use
from aitrader.embedded_cluster import EmbeddedNatsCluster, check_nats_cluster, stream_replicas
from aitrader.lock import DataDirLock
from aitrader.migrate import migrate
from aitrader.ports import (
    SERVICES,
    api_ports,
    choose_health_ports,
    default_data_dir,
    health_env,
    remove_ports,
    write_ports,
)
from aitrader.preflight import preflight
from aitrader.readiness import readiness_urls, wait_ready
from aitrader.sim import sim_environment
from aitrader.supervise import Stack, spawn, stop_children, supervise
from shared.bus import connect_nats, ensure_streams
from shared.errors import ConfigError
from shared.logging import get_logger
from shared.settings import Settings, nats_servers, redact_url
from shared.subjects import Subjects

log = get_logger("up")


def service_available(name: str) -> bool:
    return importlib.util.find_spec(f"services.{name}.main") is not None


EXPORTED = (
    "nats_subject_root",
    "nats_stream_prefix",
    "nats_stream_replicas",
    "account",
    "account_mode",
    "symbols",
    "timeframes",
    "mcp_host",
    "mcp_port",
    "console_host",
    "console_port",
    "log_level",
    "log_format",
)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings `up` was given, as the environment of the processes it starts."""
    env: dict[str, str] = {}
    for name in EXPORTED:
        value = getattr(settings, name)
        if value is not None:
            env[f"AITRADER_{name.upper()}"] = ",".join(value) if isinstance(value, list) else str(value)
    if env.get("AITRADER_LOG_FORMAT") == "auto":
        # The children write into a pipe (aitrader.supervise passes it through): they would pick
        # JSON; they log the way `up` itself does, for the terminal or not.
        env["AITRADER_LOG_FORMAT"] = "console" if sys.stderr.isatty() else "json"
    return env


def start_infrastructure(settings: Settings, data_dir: Path, stack: Stack, nats_nodes: int = 1) -> None:
    """Use the configured servers, or start embedded ones with their data in `data_dir` (NATS:
    one server, or a cluster of `nats_nodes`). A server is recorded in `stack` (to be stopped)
    only once this `up` has started it."""
    if settings.database_url:
        stack.env["AITRADER_DATABASE_URL"] = settings.database_url
    else:  # start() refuses a port in use, naming AITRADER_EMBEDDED_PG_PORT
        postgres = EmbeddedPostgres(data_dir / "postgres", port=settings.embedded_pg_port)
        postgres.start()
        stack.postgres = postgres
        stack.env["AITRADER_DATABASE_URL"] = postgres.dsn
        log.info("embedded_postgres", url=postgres.dsn, data=str(postgres.data_dir))
    stack.env["AITRADER_NATS_STREAM_REPLICAS"] = str(stream_replicas(settings, nats_nodes))
    if settings.nats_url:
        stack.env["AITRADER_NATS_URL"] = settings.nats_url
    elif nats_nodes > 1:  # each node refuses a port in use, naming AITRADER_EMBEDDED_NATS_PORT
        cluster = stack.nats = EmbeddedNatsCluster(data_dir / "nats-cluster", nats_nodes,
                                                   settings.embedded_nats_port)
        cluster.start()
        stack.env["AITRADER_NATS_URL"] = cluster.url
        log.info("embedded_nats_cluster", url=cluster.url, nodes=nats_nodes, store=str(cluster.root_dir))
    else:  # start() refuses a port in use, naming AITRADER_EMBEDDED_NATS_PORT
        nats = EmbeddedNats(data_dir / "nats", port=settings.embedded_nats_port)
        try:
            nats.start()
        finally:
            if nats.process is not None:  # started, even if it then failed its readiness
                stack.nats = nats
        stack.env["AITRADER_NATS_URL"] = nats.url
        log.info("embedded_nats", url=nats.url, store=str(nats.store_dir))


async def prepare(settings: Settings, stack: Stack) -> None:
    """Migrate the database and declare the streams."""
    applied = await migrate(stack.env["AITRADER_DATABASE_URL"])
    log.info("migrated", applied=[m.path.name for m in applied])
    nc = await connect_nats(stack.env["AITRADER_NATS_URL"], name="aitrader-up")
    try:
        subjects = Subjects(settings.nats_subject_root, settings.nats_stream_prefix)
        await ensure_streams(nc.jetstream(), subjects, int(stack.env["AITRADER_NATS_STREAM_REPLICAS"]),
                             settings.nats_account_partitions)
    finally:
        await nc.close()


async def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not port_in_use(port):
        if asyncio.get_running_loop().time() > deadline:
            raise ConfigError("okx-sim", f"did not listen on port {port} within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def start_services(stack: Stack, services: list[str], health: Mapping[str, int]) -> None:
    for name in services:
        if not service_available(name):
            log.warning("service_not_built", service=name)
            continue
        env = {**stack.env, **health_env(name, health)}
        await spawn(name, [sys.executable, "-m", f"services.{name}"], env, stack)


@asynccontextmanager
async def running_stack(
    settings: Settings,
    data_dir: Path,
    market: str,
    services: list[str],
    health: Mapping[str, int] | None = None,
    nats_nodes: int = 1,
) -> AsyncIterator[Stack]:
    """Infrastructure, migrations, streams, okx_sim (for `sim`) and the services, each ready
    (`aitrader.readiness`); all stopped in reverse order on exit. `stack.monitor`, the
    supervisor, ends on a configuration error."""
    stack = Stack(env=settings_env(settings))
    health = choose_health_ports(None) if health is None else health
    monitor: asyncio.Task[None] | None = None
    try:
        start_infrastructure(settings, data_dir, stack, nats_nodes)
        await prepare(settings, stack)
        if market == "sim":
            port = free_port()
            await spawn("okx_sim", sim_environment(stack, port, data_dir), stack.env, stack)
            await wait_for_port(port)
            log.info("okx_sim", url=f"http://127.0.0.1:{port}")
        await start_services(stack, services, health)
        ports = {**health, **api_ports(settings)}
        write_ports(data_dir, {name: port for name, port in ports.items() if name in services})
        monitor = stack.monitor = asyncio.create_task(supervise(stack), name="supervise")
        started = [name for name in services if name in stack.children]
        await wait_ready(readiness_urls(settings, started, health), monitor, settings.up_ready_timeout_s)
        log.info(
            "ready",
            services=started,
            database=stack.env["AITRADER_DATABASE_URL"],
            nats=",".join(redact_url(url) for url in nats_servers(stack.env["AITRADER_NATS_URL"])),
            nats_nodes=len(nats_servers(stack.env["AITRADER_NATS_URL"])),
            stream_replicas=int(stack.env["AITRADER_NATS_STREAM_REPLICAS"]),
            mcp=f"http://{settings.mcp_host}:{settings.mcp_port}/mcp",
            console=f"http://{settings.console_host}:{settings.console_port}/api/v1",
            dashboard=f"http://{settings.console_host}:{settings.console_port}/",
            health={name: port for name, port in health.items() if name in services},
        )
        yield stack
    finally:
        if monitor is not None:
            monitor.cancel()
            with suppress(asyncio.CancelledError, ConfigError):
                await monitor
        await stop_children(stack)
        stack.stop_servers()
        remove_ports(data_dir)


async def run_up(
    settings: Settings, data_dir: Path, market: str, services: list[str], health_base: int | None,
    nats_nodes: int = 1,
) -> None:
    """Lock, check, run until a signal (or a service's configuration error, raised)."""
    lock = DataDirLock(data_dir)
    lock.acquire()
    try:
        health = choose_health_ports(health_base)
        await preflight(settings, market, services, health, nats_nodes)
        await run_until_stopped(settings, data_dir, market, services, health, nats_nodes)
    finally:
        lock.release()


async def run_until_stopped(
    settings: Settings, data_dir: Path, market: str, services: list[str], health: Mapping[str, int],
    nats_nodes: int = 1,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_stack(settings, data_dir, market, services, health, nats_nodes) as stack:
            assert stack.monitor is not None
            monitor = stack.monitor
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([stopping, monitor], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if monitor.done() and not monitor.cancelled() and (error := monitor.exception()):
                raise error  # a service's configuration error: everything stops, up exits 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@click.command("up")
@click.option(
    "--market",
    type=click.Choice(["okx", "sim"]),
    default="okx",
    show_default=True,
    help="Trade against OKX, or against the local okx_sim exchange.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="AITRADER_DATA_DIR",
    help="Where embedded servers keep their data (default: per-user data dir); one `up` per dir.",
)
@click.option(
    "--services",
    "service_list",
    default="all",
    show_default=True,
    help="Comma list of services to run, 'all' or 'none' (infrastructure only).",
)
@click.option(
    "--health-port-base",
    type=click.IntRange(1, 65533),
    envvar="AITRADER_HEALTH_PORT_BASE",
    help="Health ports: this, +1, +2 for ingest, positions, metrics (default: free ports).",
)
@click.option(
    "--nats-cluster",
    "nats_nodes",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    envvar="AITRADER_EMBEDDED_NATS_NODES",
    help="Embedded NATS as a cluster of this many nodes (client ports from "
    "AITRADER_EMBEDDED_NATS_PORT up), streams with min(N, 3) replicas unless "
    "AITRADER_NATS_STREAM_REPLICAS says otherwise.",
)
@friendly_errors
def up_command(
    market: str, data_dir: Path | None, service_list: str, health_port_base: int | None, nats_nodes: int
) -> None:
    """Run the whole product on this machine (embedded servers unless URLs are set)."""
    settings = cli_settings()
    check_nats_cluster(settings, nats_nodes)
    chosen = parse_services(service_list)
    directory = data_dir or settings.data_dir or default_data_dir()
    asyncio.run(run_up(settings, directory, market, chosen, health_port_base, nats_nodes))


def parse_services(value: str) -> list[str]:
    if value == "all":
        return list(SERVICES)
    if value == "none":
        return []
    chosen = [s.strip() for s in value.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SERVICES))
    if unknown:
        raise ConfigError("--services", f"unknown service(s) {unknown}; known: {list(SERVICES)}")
    return chosen
