"""`aitrader migrate`: ordered, recorded, idempotent, safe under concurrency, refuses edits."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from aitrader.migrate import discover, migrate, migrations_dir
from shared.errors import MigrationError
from tests.conftest import with_database


@pytest_asyncio.fixture(loop_scope="session")
async def empty_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    name = f"aitrader_empty_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_admin_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def own_migrations(tmp_path: Path) -> Path:
    """A private copy of migrations/ plus a second migration, free to be edited."""
    directory = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), directory)
    (directory / "9001_probe.sql").write_text("CREATE TABLE aitrader.probe (id INTEGER);\n")
    return directory


async def recorded(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, checksum FROM aitrader.schema_migrations ORDER BY 1")
        return [(r["version"], r["checksum"]) for r in rows]
    finally:
        await conn.close()


async def test_applies_in_order_and_records_checksums(empty_dsn: str, own_migrations: Path) -> None:
    applied = await migrate(empty_dsn, own_migrations)
    assert [m.version for m in applied] == [m.version for m in discover(own_migrations)]
    assert await recorded(empty_dsn) == [(m.version, m.checksum) for m in discover(own_migrations)]


async def test_second_run_is_a_no_op(empty_dsn: str, own_migrations: Path) -> None:
    await migrate(empty_dsn, own_migrations)
    before = await recorded(empty_dsn)
    assert await migrate(empty_dsn, own_migrations) == []
    assert await recorded(empty_dsn) == before


async def test_two_concurrent_runs_apply_once(empty_dsn: str, own_migrations: Path) -> None:
    first, second = await asyncio.gather(
        migrate(empty_dsn, own_migrations), migrate(empty_dsn, own_migrations)
    )
    assert sorted([len(first), len(second)]) == [0, len(discover(own_migrations))]
    assert len(await recorded(empty_dsn)) == len(discover(own_migrations))


async def test_an_edited_applied_migration_is_refused(empty_dsn: str, own_migrations: Path) -> None:
    await migrate(empty_dsn, own_migrations)
    probe = own_migrations / "9001_probe.sql"
    probe.write_text(probe.read_text() + "-- sneaky edit\n")
    with pytest.raises(MigrationError, match=r"9001_probe\.sql was edited after it was applied"):
        await migrate(empty_dsn, own_migrations)


async def test_a_new_migration_is_applied_after_the_others(empty_dsn: str, own_migrations: Path) -> None:
    await migrate(empty_dsn, own_migrations)
    (own_migrations / "9002_more.sql").write_text("ALTER TABLE aitrader.probe ADD COLUMN x TEXT;\n")
    applied = await migrate(empty_dsn, own_migrations)
    assert [m.name for m in applied] == ["more"]


def test_a_badly_named_file_is_refused(own_migrations: Path) -> None:
    (own_migrations / "latest.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover(own_migrations)
