"""`aitrader replay`: rebuild positions from the fill ledger and say whether they match."""

from __future__ import annotations

import asyncio
import sys
from uuid import UUID

import click

from services.positions.replay import ReplayReport, replay
from services.positions.store import LedgerStore
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
            store = LedgerStore(conn)
            accounts = await _accounts(store, external_id)
            # One snapshot for the whole run, even while the service keeps writing.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                slots = await store.slots_of(list(accounts))
                with click.progressbar(length=len(slots), label="replaying", file=sys.stderr) as bar:
                    return await replay(store, accounts, slots, bar.update)
    finally:
        await pool.close()


async def _accounts(store: LedgerStore, external_id: str | None) -> dict[UUID, str]:
    accounts = await store.accounts(external_id)
    if external_id is not None and not accounts:
        raise click.BadParameter(f"no account with external_id {external_id!r}", param_hint="--account")
    return accounts
