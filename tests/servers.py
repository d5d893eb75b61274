"""Where the test servers come from, in this order:

1. `AITRADER_TEST_DATABASE_URL` / `AITRADER_TEST_NATS_URL` when set;
2. testcontainers, when a Docker engine answers;
3. the embedded binaries from pip (initdb + pg_ctl in a temp dir, `nats-server -js` on a free
   port), started once per test session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aitrader.embedded import EmbeddedNats, EmbeddedPostgres


def docker_available() -> bool:
    """Probe the engine first: testcontainers fails only when a container is constructed."""
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards."""
    # World-traversable, so that an unprivileged PostgreSQL can reach it when we are root.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[tuple[str, str]]:
    """Yield (admin DSN, where it came from)."""
    env = os.environ.get("AITRADER_TEST_DATABASE_URL")
    if env:
        yield env, "AITRADER_TEST_DATABASE_URL"
        return
    if docker_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:18.6", driver=None) as container:
            yield container.get_connection_url(), "testcontainers"
        return
    with scratch_dir("aitrader-test-pg-") as root:
        server = EmbeddedPostgres(root)
        server.start()
        try:
            yield server.dsn, "embedded"
        finally:
            server.stop()


@contextmanager
def nats_server() -> Iterator[tuple[str, str]]:
    """Yield (NATS URL with JetStream, where it came from)."""
    env = os.environ.get("AITRADER_TEST_NATS_URL")
    if env:
        yield env, "AITRADER_TEST_NATS_URL"
        return
    if docker_available():
        from testcontainers.community.nats import NatsContainer

        with NatsContainer("nats:2.15.1-alpine", jetstream=True) as container:
            yield container.nats_uri(), "testcontainers"
        return
    with scratch_dir("aitrader-test-nats-") as root:
        server = EmbeddedNats(root)
        server.start()
        try:
            yield server.url, "embedded"
        finally:
            server.stop()
