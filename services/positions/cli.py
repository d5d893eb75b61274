"""`aitrader replay`: rebuild positions from the fill ledger and say whether they match."""

from __future__ import annotations

import asyncio
import sys
from uuid import UUID

import asyncpg
import click

from services.positions.replay import ReplayReport, replay
from services.positions.repository import slots_of
from shared.db import create_pool
from shared.errors import ConfigError
from shared.runner import fail
from shared.settings import Settings, load_settings


@click.command("replay")
@click.option("--account", "account", metavar="EXTERNAL_ID", default=None,
              help="Only this account (accounts.external_id). Default: every account.")
def replay_command(account: str | None) -> None:
    """Refold positions_open / positions_closed from fills and compare with the stored rows.

    Prints "identical" and exits 0, or prints the differences and exits 1. Reads
    AITRADER_DATABASE_URL; writes nothing.
    """
    try:
        dsn = load_settings(Settings).require_database_url()
        report = asyncio.run(_run(dsn, account))
    except ConfigError as exc:
        fail(exc)
        return
    if report.identical:
        click.echo(f"identical: {report.slots} slots, {report.entries} fills and funding payments, "
                   f"{report.open_positions} open and {report.closed_positions} closed positions")
        return
    click.echo(f"differences in {len(report.differences)} place(s):")
    for line in report.differences:
        click.echo(f"  {line}")
    sys.exit(1)


async def _run(dsn: str, external_id: str | None) -> ReplayReport:
    pool = await create_pool(dsn, min_size=1, max_size=1, application_name="aitrader-replay")
    try:
        async with pool.acquire() as conn:
            accounts = await _accounts(conn, external_id)
            # One snapshot for the whole run, even while the service keeps writing.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                slots = await slots_of(conn, list(accounts))
                with click.progressbar(length=len(slots), label="replaying", file=sys.stderr) as bar:
                    return await replay(conn, accounts, slots, bar.update)
    finally:
        await pool.close()


async def _accounts(conn: asyncpg.Connection, external_id: str | None) -> dict[UUID, str]:
    rows = await conn.fetch(
        "SELECT id, external_id FROM aitrader.accounts WHERE $1::text IS NULL OR external_id = $1",
        external_id,
    )
    if external_id is not None and not rows:
        raise click.BadParameter(f"no account with external_id {external_id!r}", param_hint="--account")
    return {r["id"]: r["external_id"] for r in rows}
