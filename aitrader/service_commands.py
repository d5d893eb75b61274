"""`aitrader run <service>` (one service in the foreground: what each container runs) and
`aitrader healthcheck <service>` (is it ready?)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from aitrader.ports import SERVICES, default_data_dir, health_env, health_url
from shared.runner import run_service


@click.command("healthcheck")
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--timeout", default=3.0, show_default=True, help="Seconds to wait for the answer.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="AITRADER_DATA_DIR",
    help="The stack (`aitrader up --data-dir`) to ask (default: per-user data dir).",
)
def healthcheck_command(service: str, timeout: float, data_dir: Path | None) -> None:
    """Exit 0 when SERVICE answers that it is ready (database and NATS reachable, consumers
    making progress); print why not and exit 1 otherwise, or when nothing answers."""
    import httpx

    url = health_url(service, dict(os.environ), data_dir or default_data_dir())
    try:
        answer = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        click.echo(f"{service}: not answering at {url} ({type(exc).__name__})", err=True)
        raise SystemExit(1) from None
    if answer.status_code != 200:
        click.echo(f"{service}: not ready ({answer.status_code}): {answer.text[:500]}", err=True)
        raise SystemExit(1)
    raise SystemExit(0)


@click.command("run")
@click.argument("service", type=click.Choice(SERVICES))
def run_command(service: str) -> None:
    """Run one service in the foreground (configured by AITRADER_* variables; its health on
    its default port unless AITRADER_HEALTH_PORT says otherwise)."""
    for name, value in health_env(service).items():
        os.environ.setdefault(name, value)
    run_service(service)
