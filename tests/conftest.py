"""The test harness: real PostgreSQL and real NATS JetStream, isolated per test.

Fixtures (all integration fixtures are async and share the session event loop):
- `pg_admin_dsn` (session): DSN of a server database we may create databases from.
- `nats_url` (session): URL of a JetStream-enabled NATS server.
- `db_dsn`: a fresh database, migrated (cloned from a migrated template, ~50 ms).
- `empty_dsn`: a fresh database with no schema.
- `db_pool`: an asyncpg pool on `db_dsn` (shared.db.create_pool).
- `subjects`: a unique subject root and stream prefix, with the three streams declared.
- `nc` / `js`: a nats-py connection and its JetStream context.
- `settings`: `shared.settings.Settings` pointing at all of the above.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from aitrader.migrate import migrate
from shared.bus import connect_nats, ensure_streams
from shared.db import create_pool
from shared.settings import Settings
from shared.subjects import Subjects
from tests.servers import nats_server, postgres_server


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    with postgres_server() as (dsn, _source):
        yield dsn


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    with nats_server() as (url, _source):
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_db(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A migrated database that every test's database is cloned from."""
    name = f"aitrader_tmpl_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrate(with_database(pg_admin_dsn, name))
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def db_dsn(pg_admin_dsn: str, template_db: str) -> AsyncIterator[str]:
    name = f"aitrader_t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield with_database(pg_admin_dsn, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def empty_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database with no schema (never migrated), dropped afterwards."""
    name = f"aitrader_empty_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_admin_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def db_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_dsn, min_size=1, max_size=5, application_name="tests")
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await connect_nats(nats_url, name="tests")
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


@pytest_asyncio.fixture(loop_scope="session")
async def subjects(js: JetStreamContext) -> AsyncIterator[Subjects]:
    tag = secrets.token_hex(4)
    namespace = Subjects(root=f"t{tag}", stream_prefix=f"T{tag.upper()}_")
    await ensure_streams(js, namespace)
    try:
        yield namespace
    finally:
        for stream in namespace.stream_subjects():
            try:
                await js.delete_stream(stream)
            except Exception:
                pass


@pytest.fixture
def settings(db_dsn: str, nats_url: str, subjects: Subjects, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,  # what a service keeps on disk (the gateway's audit spill) is the test's
        database_url=db_dsn,
        nats_url=nats_url,
        nats_subject_root=subjects.root,
        nats_stream_prefix=subjects.stream_prefix,
        log_format="console",
    )
