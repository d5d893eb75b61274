"""One positions instance: a ledger consumer per ACCOUNT partition (all of them; the server's
pins say which ones it is delivered anything on) and the balancer that shares them out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.positions.balance import Balancer, RollCall
from services.positions.catalog import InstrumentCatalog
from services.positions.config import PositionsSettings
from services.positions.orphans import OrphanSweeper
from services.positions.subscribers import SERVICE, LedgerConsumer
from shared.consumer import DeadLetters
from shared.health import Progress
from shared.subjects import Subjects


@dataclass
class LedgerInstance:
    """The consumers of every partition and their balancer, run together until cancelled."""

    nc: Client
    js: JetStreamContext
    pool: asyncpg.Pool
    subjects: Subjects
    catalog: InstrumentCatalog
    settings: PositionsSettings
    progress: Progress = field(default_factory=lambda: Progress("ledger"))
    sweeper: OrphanSweeper | None = None
    consumers: list[LedgerConsumer] = field(init=False)
    balancer: Balancer = field(init=False)

    def __post_init__(self) -> None:
        letters = DeadLetters(SERVICE, self.nc, self.subjects.dead_letter(SERVICE),
                              subjects=self.subjects)
        self.consumers = [
            LedgerConsumer(self.nc, self.js, self.pool, self.subjects, self.catalog, self.settings,
                           letters, partition=p, progress=self.progress, sweeper=self.sweeper)
            for p in range(self.settings.nats_account_partitions)
        ]
        self.balancer = Balancer(self.nc, self.consumers, self.settings.positions_rebalance_seconds,
                                 self.settings.positions_pinned_ttl_seconds,
                                 RollCall(self.nc, self.subjects.positions_instances()))

    def owned(self) -> set[int]:
        """The partitions this instance holds the pin of, as far as it knows."""
        return {c.partition for c in self.balancer.owned()}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for consumer in self.consumers:
                tasks.create_task(consumer.run())
            tasks.create_task(self.balancer.run())
