"""CLI pieces every command shares: settings loading with one-line errors, and `migrate`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from shared.errors import ConfigError, MigrationError
from shared.logging import configure_logging
from shared.runner import fail
from shared.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Bad configuration or migrations: one clear line naming the problem, exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(exc)
        except MigrationError as exc:
            click.echo(f"aitrader: migration error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def cli_settings(**overrides: Any) -> Settings:
    settings = load_settings(Settings, **overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings


@click.command("migrate")
@click.option("--database-url", envvar="AITRADER_DATABASE_URL", help="PostgreSQL URL.")
@click.option("--status", "show_status", is_flag=True, help="List each migration: applied or pending.")
@friendly_errors
def migrate_command(database_url: str | None, show_status: bool) -> None:
    """Apply pending database migrations (a no-op when up to date)."""
    from aitrader.migrate import migrate, status

    settings = cli_settings(database_url=database_url) if database_url else cli_settings()
    if show_status:
        for item in asyncio.run(status(settings.require_database_url())):
            since = f" {item.applied_at}" if item.applied_at else ""
            click.echo(f"{item.version:04d}_{item.name} {item.state}{since}")
        return
    applied = asyncio.run(migrate(settings.require_database_url()))
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.path.name}")
    else:
        click.echo("database is up to date")
