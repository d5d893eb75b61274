"""`aitrader reconcile`: one reconciliation pass for the configured account, now."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import click

from services.ingest.backfill import Backfiller
from services.ingest.config import IngestSettings
from services.ingest.main import credentials
from services.ingest.normalize import AccountRef
from services.ingest.okx_rest import OkxRest
from services.ingest.okx_ws import FrameStats
from services.ingest.publisher import Publisher
from services.ingest.reconcile_store import ReconcileStore
from services.ingest.reconciler import Reconciler, Report
from services.ingest.repository import Repository
from shared.bus import connect_nats, ensure_streams
from shared.db import create_pool
from shared.errors import ConfigError
from shared.logging import register_secrets
from shared.runner import fail
from shared.settings import load_settings
from shared.subjects import Subjects


@click.command("reconcile")
@click.option("--account", "account", metavar="EXTERNAL_ID", default=None,
              help="The account (accounts.external_id) whose OKX keys are configured. "
                   "Default: AITRADER_ACCOUNT.")
def reconcile_command(account: str | None) -> None:
    """Compare the ledger with OKX now (positions, pending orders, balance, recent fills),
    record and heal every difference (docs/reconciliation.md).

    Prints one line per difference and exits 0 when none is left open and every comparison
    completed, 1 otherwise. Uses the same settings as ingest (AITRADER_OKX_* keys,
    AITRADER_ACCOUNT, database, NATS); healing entries are folded by the running positions
    service.
    """
    try:
        cfg = load_settings(IngestSettings, **({"account": account} if account else {}))
        report = asyncio.run(_run(cfg))
    except ConfigError as exc:
        fail(exc)
        return
    if report.failed:
        click.echo(f"not completed: {', '.join(report.failed)} (OKX unreachable or refusing; "
                   "the log says why)", err=True)
    for d in report.issues:
        how = d.resolution or "OPEN"
        click.echo(f"{d.kind:8} {d.subject:32} {how:15} exchange {d.expected} ledger {d.found}")
    click.echo(f"reconciled at {report.at}: {report.line()}")
    if report.failed or any(d.status == "open" for d in report.issues):
        sys.exit(1)


async def _run(cfg: IngestSettings) -> Report:
    creds = credentials(cfg)
    if creds is None or not cfg.account:
        raise ConfigError("AITRADER_OKX_API_KEY", "reconcile needs the account's OKX keys and "
                          "AITRADER_ACCOUNT (the same settings as its ingest)")
    register_secrets(cfg.secret_values())
    pool = await create_pool(cfg.require_database_url(), min_size=1, max_size=2,
                             application_name="aitrader-reconcile")
    nc = await connect_nats(cfg.require_nats_url(), name="aitrader-reconcile")
    rest = OkxRest(cfg.okx_rest_url, creds=creds, timeout_s=cfg.ingest_rest_timeout_s,
                   simulated=cfg.account_mode == "simulated")
    try:
        repo = Repository(pool)
        account_id = await repo.account_id(cfg.account, cfg.account_mode)
        ref = AccountRef(account_id, cfg.account_mode)
        subjects = Subjects(cfg.nats_subject_root, cfg.nats_stream_prefix)
        await ensure_streams(nc.jetstream(), subjects, cfg.nats_stream_replicas, cfg.nats_account_partitions)
        publisher = Publisher(nc.jetstream(), subjects)
        backfiller = Backfiller(rest, repo, publisher, FrameStats(), ref)
        reconciler = Reconciler(rest, ReconcileStore(pool, account_id), publisher, backfiller,
                                ref, timedelta(seconds=cfg.ingest_reconcile_lookback_s),
                                cfg.ingest_reconcile_settle_s, cfg.ingest_reconcile_wait_s)
        return await reconciler.run_once()
    finally:
        await rest.aclose()
        await asyncio.wait_for(nc.close(), 5)
        await pool.close()
