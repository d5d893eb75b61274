"""A PostgreSQL of a test's own, to stop and start again (the session's servers are shared)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aitrader.embedded import EmbeddedNats, EmbeddedPostgres


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, to stop and start again."""
    root = Path(tempfile.mkdtemp(prefix="aitrader-fault-pg-"))
    root.chmod(0o755)  # an unprivileged PostgreSQL must reach it when we are root
    server = EmbeddedPostgres(root / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_nats() -> Iterator[EmbeddedNats]:
    """A nats-server of this test's own, to kill and start again on the same store."""
    root = Path(tempfile.mkdtemp(prefix="aitrader-fault-nats-"))
    server = EmbeddedNats(root / "js")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is a fault test: `make faults` (pytest -m faults) runs them alone."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)
