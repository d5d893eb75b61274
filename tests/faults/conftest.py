"""A PostgreSQL of a test's own, to stop and start again (the session's servers are shared)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client

from aitrader.embedded import EmbeddedNats, EmbeddedPostgres
from shared.bus import connect_nats, ensure_streams
from shared.subjects import Subjects
from tests.faults.test_pg_restart_support import own_server
from tests.servers import scratch_dir


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, to stop and start again."""
    with own_server() as server:
        yield server


@pytest.fixture
def own_nats() -> Iterator[EmbeddedNats]:
    """A nats-server of this test's own, to kill and start again on the same store."""
    with scratch_dir("aitrader-fault-nats-") as root:
        server = EmbeddedNats(root / "js")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def own_client(own_nats: EmbeddedNats, subjects: Subjects) -> AsyncIterator[Client]:
    client = await connect_nats(own_nats.url, name="fault-test")
    await ensure_streams(client.jetstream(), subjects)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is a fault test: `make faults` (pytest -m faults) runs them alone."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)
