"""`aitrader retention [--dry-run]` and `aitrader archive restore FILE` (docs/retention.md)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click

from aitrader.cli_common import cli_settings, friendly_errors
from shared import archive, retention
from shared.errors import ConfigError


def _describe(step: retention.Step) -> str:
    if step.action == "create":
        return f"{step.partition:<32} {step.month:%Y-%m}  create its partition"
    rule = retention.rule_of(step.table)
    if not step.total:
        return f"{step.partition:<32} {step.month:%Y-%m}  {step.action:<10} empty partition ({rule.why})"
    return (
        f"{step.partition:<32} {step.month:%Y-%m}  {step.action:<10} {step.rows:>9,} of "
        f"{step.total:,} rows leave ({rule.why})"
    )


async def _retention(dsn: str, directory: Path | None, dry_run: bool) -> None:
    from aitrader.migrate import connect

    conn = await connect(dsn)
    try:
        now = datetime.now(UTC)
        if dry_run:
            steps = await retention.plan(conn, now)
            for step in steps:
                click.echo(_describe(step))
            target = directory or "(no AITRADER_ARCHIVE_DIR: only partitions would be created)"
            click.echo(f"dry run: {len(steps)} steps, nothing changed; archive: {target}")
            return
        for step, path in await retention.run(conn, now, directory):
            click.echo(_describe(step) + (f" -> {path}" if path else ""))
    finally:
        await conn.close()


@click.command("retention")
@click.option(
    "--dry-run", is_flag=True, help="Print what would be archived, downsampled, dropped or created."
)
@friendly_errors
def retention_command(dry_run: bool) -> None:
    """Create the months ahead; export rows past their bound to Parquet, verify, then remove them."""
    settings = cli_settings()
    directory = settings.archive_directory()
    if directory is None and not dry_run:
        raise ConfigError("AITRADER_ARCHIVE_DIR", "not set (nor AITRADER_DATA_DIR): nowhere to archive to")
    asyncio.run(_retention(settings.require_database_url(), directory, dry_run))


@click.group("archive")
def archive_group() -> None:
    """The Parquet archive of rows that left the hot tables."""


async def _restore(dsn: str, path: Path) -> tuple[archive.Manifest, int]:
    from aitrader.migrate import connect

    conn = await connect(dsn)
    try:
        return await archive.restore(conn, path)
    finally:
        await conn.close()


@archive_group.command("restore")
@click.argument("file", type=click.Path(path_type=Path))
@friendly_errors
def restore_command(file: Path) -> None:
    """Verify an archive file's checksum and load its rows back (rows already there are kept)."""
    settings = cli_settings()
    try:
        manifest, inserted = asyncio.run(_restore(settings.require_database_url(), file))
    except archive.ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{file}: {manifest.rows} rows of {manifest.table} {manifest.month}, "
        f"{inserted} inserted, {manifest.rows - inserted} already there"
    )
