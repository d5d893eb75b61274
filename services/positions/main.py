"""The positions service: the one place that wires the pool, NATS and the ledger consumers
(one per ACCOUNT partition; the pins say which of them this instance works)."""

from __future__ import annotations

import asyncio

from services.positions.catalog import InstrumentCatalog
from services.positions.config import PositionsSettings, positions_settings
from services.positions.instance import LedgerInstance
from services.positions.orphans import OrphanSweeper
from services.positions.subscribers import PUBLISH_ASYNC_MAX_PENDING, SERVICE
from shared.bus import connect_nats, ensure_streams
from shared.clock import SystemClock
from shared.db import create_pool
from shared.health import Health, connection_checks, serving
from shared.logging import get_logger
from shared.settings import Settings
from shared.subjects import STREAM_ACCOUNT, Subjects

SETTINGS_CLASS = PositionsSettings
log = get_logger(SERVICE)
# Transactions at once: one per partition this instance owns, up to this (the rest queue).
MAX_CONCURRENT_COMMITS = 8


async def serve(settings: Settings) -> None:
    """Fold account events into the ledger tables until cancelled."""
    config = positions_settings(settings)
    partitions = config.nats_account_partitions
    pool = await create_pool(config.require_database_url(), min_size=1,
                             max_size=min(partitions, MAX_CONCURRENT_COMMITS) + 2,
                             application_name=SERVICE)
    try:
        nc = await connect_nats(config.require_nats_url(), name=SERVICE)
        try:
            subjects = Subjects(config.nats_subject_root, config.nats_stream_prefix)
            js = nc.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
            await ensure_streams(js, subjects, config.nats_stream_replicas, partitions)
            catalog = InstrumentCatalog(SystemClock(), config.positions_instrument_grace_seconds)
            health = Health(SERVICE, checks=connection_checks(
                pool, nc, list(subjects.stream_subjects())))
            sweeper = OrphanSweeper(nc, subjects, config.positions_cancel_algo_deadline_seconds)
            instance = LedgerInstance(nc, js, pool, subjects, catalog, config,
                                      progress=health.progress("ledger"), sweeper=sweeper)
            log.info("consuming", stream=subjects.stream(STREAM_ACCOUNT), partitions=partitions,
                     consumers=f"{config.positions_consumer}-0..{partitions - 1}")
            try:
                async with serving(health, config.health_host, config.health_port), \
                        asyncio.TaskGroup() as tasks:
                    tasks.create_task(instance.run())
                    tasks.create_task(health.watch())
            finally:
                await sweeper.close()
        finally:
            await nc.close()
    finally:
        await pool.close()
        log.info("stopped")
