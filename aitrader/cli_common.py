"""CLI pieces every command shares: settings loading with one-line errors, and `migrate`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from shared.errors import ConfigError, MigrationError
from shared.logging import configure_logging
from shared.runner import fail
from shared.settings import S, Settings, load_settings

if TYPE_CHECKING:
    from services.console.config import ConsoleSettings

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
    return _configured(load_settings(Settings, **overrides))


def _configured(settings: S) -> S:
    configure_logging(settings.log_level, settings.log_format)
    return settings


@click.command("migrate")
@click.option("--database-url", envvar="AITRADER_DATABASE_URL", help="PostgreSQL URL.")
@click.option("--status", "show_status", is_flag=True, help="List each migration: applied or pending.")
@friendly_errors
def migrate_command(database_url: str | None, show_status: bool) -> None:
    """Apply pending database migrations (a no-op when up to date)."""
    from aitrader.migrate import migrate, status
    from services.console.config import ConsoleSettings

    # The console's settings: the shared ones plus its role's password, which migrate sets.
    overrides = {"database_url": database_url} if database_url else {}
    settings = _configured(load_settings(ConsoleSettings, **overrides))
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
    if settings.console_db_password is not None:
        changed = asyncio.run(_console_password(settings))
        click.echo(f"console role {settings.console_db_role}: password {'set' if changed else 'unchanged'}")


async def _console_password(console: ConsoleSettings) -> bool:
    """AITRADER_CONSOLE_DB_PASSWORD becomes the console role's password (aitrader/console_role.py)."""
    from aitrader.console_role import set_password
    from aitrader.migrate import connect

    assert console.console_db_password is not None
    conn = await connect(console.require_database_url())
    try:
        return await set_password(
            conn, console.console_db_role, console.console_db_password.get_secret_value()
        )
    finally:
        await conn.close()
