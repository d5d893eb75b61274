"""Forward-only SQL migrations: `migrations/NNNN_name.sql`, applied in order.

Each applied file is recorded with its SHA-256; an edited applied file is refused. A session
advisory lock makes concurrent runs safe: the second waits, then finds nothing to do.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shared.db import describe_dsn
from shared.errors import ConfigError, MigrationError

LOCK_KEY = 0x41495452_4144  # "AITRAD": one advisory lock for the whole product
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations_dir() -> Path:
    override = os.environ.get("AITRADER_MIGRATIONS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "migrations"


def discover(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found.append(Migration(int(match[1]), match[2], path, digest))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS aitrader;
CREATE TABLE IF NOT EXISTS aitrader.schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""


async def migrate(dsn: str, directory: Path | None = None) -> list[Migration]:
    """Apply pending migrations; return those applied (empty when up to date)."""
    wanted = discover(directory)
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise ConfigError("AITRADER_DATABASE_URL", f"cannot connect to {describe_dsn(dsn)} ({exc})") from None
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            return await _migrate_locked(conn, wanted)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def _migrate_locked(conn: asyncpg.Connection, wanted: list[Migration]) -> list[Migration]:
    await conn.execute(_BOOKKEEPING)
    rows = await conn.fetch("SELECT version, name, checksum FROM aitrader.schema_migrations")
    applied = {r["version"]: r for r in rows}
    by_version = {m.version: m for m in wanted}
    for version, row in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(f"migration {version:04d}_{row['name']} is applied but its file is missing")
        if migration.checksum != row["checksum"]:
            raise MigrationError(
                f"{migration.path.name} was edited after it was applied "
                f"(checksum {migration.checksum[:12]} != recorded {row['checksum'][:12]}); "
                "add a new migration instead of editing an applied one"
            )
    done: list[Migration] = []
    for migration in wanted:
        if migration.version in applied:
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO aitrader.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        done.append(migration)
    return done
