"""The gateway's dependencies in one object: opened once by `main.serve`, passed to handlers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
from nats.aio.client import Client

from services.mcp_gateway import repository
from services.mcp_gateway.audit import AuditWriter
from services.mcp_gateway.commands import FoldSignal
from services.mcp_gateway.config import GatewaySettings, audit_spill_dir
from services.mcp_gateway.rules import Limits, unknown_symbol
from shared.bus import connect_nats
from shared.clock import Clock, SystemClock
from shared.db import create_pool
from shared.instruments import InstrumentSpec
from shared.subjects import Subjects


@dataclass
class InstrumentCache:
    """Instruments change rarely: reloaded every `ttl` seconds, or at once for an unknown symbol."""

    pool: asyncpg.Pool
    ttl: float = 60.0
    _by_symbol: dict[str, InstrumentSpec] = field(default_factory=dict)
    _loaded_at: float = float("-inf")

    async def get(self, symbol: str) -> InstrumentSpec:
        """The instrument, or an `InvalidArgument` naming the known symbols."""
        fresh = time.monotonic() - self._loaded_at < self.ttl
        if not fresh or symbol not in self._by_symbol:
            await self._load()
        inst = self._by_symbol.get(symbol)
        if inst is None:
            raise unknown_symbol(symbol, list(self._by_symbol))
        return inst

    async def _load(self) -> None:
        instruments = await repository.fetch_instruments(self.pool)
        self._by_symbol = {i.symbol: i for i in instruments}
        self._loaded_at = time.monotonic()


@dataclass
class Gateway:
    pool: asyncpg.Pool
    nc: Client
    subjects: Subjects
    config: GatewaySettings
    audit: AuditWriter
    instruments: InstrumentCache
    folds: FoldSignal
    clock: Clock = field(default_factory=SystemClock)

    @property
    def limits(self) -> Limits:
        return Limits(self.config.mcp_max_leverage, self.config.mcp_max_notional_usdt)


@asynccontextmanager
async def open_gateway(config: GatewaySettings, clock: Clock | None = None) -> AsyncIterator[Gateway]:
    """Connect to PostgreSQL and NATS, start the audit writer and the fold signal; close all."""
    pool = await create_pool(
        config.require_database_url(),
        min_size=2,
        max_size=config.mcp_db_pool_size,
        application_name="mcp_gateway",
        # Every gateway query is an indexed lookup by account or symbol, run thousands of times
        # with different values: one generic plan fits them all. PostgreSQL's default kept
        # re-planning the account-state query at every call (custom plans, ~0.3 ms each).
        server_settings={"plan_cache_mode": "force_generic_plan"},
    )
    try:
        nc = await connect_nats(config.require_nats_url(), name="mcp_gateway")
        subjects = Subjects(config.nats_subject_root, config.nats_stream_prefix)
        try:
            gateway = Gateway(
                pool=pool,
                nc=nc,
                subjects=subjects,
                config=config,
                audit=AuditWriter(pool, maxsize=config.mcp_audit_queue_size,
                                  spill_dir=audit_spill_dir(config),
                                  spill_after=config.mcp_audit_spill_after_s),
                instruments=InstrumentCache(pool),
                folds=FoldSignal(nc, subjects),
                clock=clock or SystemClock(),
            )
            gateway.audit.start()
            await gateway.folds.start()
            try:
                yield gateway
            finally:
                await gateway.folds.close()
                await gateway.audit.close()
        finally:
            await nc.close()
    finally:
        await pool.close()
