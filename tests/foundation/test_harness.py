"""The harness itself: isolated databases and NATS namespaces on real servers."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
from nats.js import JetStreamContext

from shared.bus import publish_event
from shared.clock import utcnow
from shared.messages import Ticker
from shared.subjects import Subjects


async def test_each_test_gets_a_migrated_database(db_pool: asyncpg.Pool) -> None:
    tables = await db_pool.fetchval(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'aitrader'"
    )
    assert tables >= 15
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.accounts") == 0


async def test_nats_namespace_is_isolated_and_deduplicates(js: JetStreamContext, subjects: Subjects) -> None:
    event = Ticker(inst_id="BTC-USDT-SWAP", last=Decimal("50000.1"), ts_event=utcnow())
    first = await publish_event(js, subjects.ticker("BTC-USDT-SWAP"), event)
    again = await publish_event(js, subjects.ticker("BTC-USDT-SWAP"), event)
    assert first.stream == subjects.stream("MARKET")
    assert again.duplicate and again.seq == first.seq
