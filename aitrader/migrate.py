"""Forward-only SQL migrations: `aitrader/migrations/NNNN_name.sql` (package data, so an
installed wheel has them), applied in order.

Each applied file is recorded with its SHA-256; an edited applied file is refused. A session
advisory lock makes concurrent runs safe: the second waits, then finds nothing to do.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal

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
    """AITRADER_MIGRATIONS_DIR when set, else the migrations shipped in this package."""
    override = os.environ.get("AITRADER_MIGRATIONS_DIR")
    return Path(override) if override else Path(str(files("aitrader.migrations")))


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


async def connect(
    dsn: str, setting: str = "AITRADER_DATABASE_URL", timeout: float = 10.0
) -> asyncpg.Connection:
    """One connection; any failure to get it is a one-line `ConfigError` naming the URL
    (without its password) and what is wrong."""
    where = describe_dsn(dsn)
    try:
        conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(setting, f"cannot connect to {where} ({type(exc).__name__}: {exc})") from None
    except asyncpg.InvalidCatalogNameError:
        raise ConfigError(setting, f"database does not exist: {where}") from None
    except asyncpg.InvalidPasswordError:
        raise ConfigError(setting, f"wrong password for {where}") from None
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise ConfigError(setting, f"role refused at {where} ({exc})") from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise ConfigError(setting, f"{where}: {type(exc).__name__}: {exc}") from None
    return conn


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
    conn = await connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            return await _migrate_locked(conn, wanted)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def _migrate_locked(conn: asyncpg.Connection, wanted: list[Migration]) -> list[Migration]:
    try:
        await conn.execute(_BOOKKEEPING)
        rows = await conn.fetch("SELECT version, name, checksum FROM aitrader.schema_migrations")
    except asyncpg.PostgresError as exc:  # e.g. a role without CREATE on the database
        raise MigrationError(f"cannot record migrations in aitrader.schema_migrations: {exc}") from None
    applied = {r["version"]: r for r in rows}
    _check_applied(applied, {m.version: m for m in wanted})
    done: list[Migration] = []
    for migration in wanted:
        if migration.version not in applied:
            await _apply(conn, migration)
            done.append(migration)
    return done


def _check_applied(applied: dict[int, asyncpg.Record], by_version: dict[int, Migration]) -> None:
    """Every applied migration still has its file, unchanged."""
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


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    """One migration and its record, in one transaction (a failure leaves neither)."""
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO aitrader.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{migration.path.name} failed, nothing of it applied: {exc}") from None


State = Literal["applied", "pending", "edited", "missing"]


@dataclass(frozen=True)
class Status:
    """One migration as the database sees it (`missing`: applied, its file gone)."""

    version: int
    name: str
    state: State
    applied_at: str | None = None


async def status(dsn: str, directory: Path | None = None) -> list[Status]:
    """Every migration on disk or in the database, in version order; changes nothing."""
    wanted = {m.version: m for m in discover(directory)}
    conn = await connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('aitrader.schema_migrations') IS NOT NULL")
        rows = await conn.fetch(
            "SELECT version, name, checksum, applied_at FROM aitrader.schema_migrations"
        ) if exists else []
    finally:
        await conn.close()
    applied = {r["version"]: r for r in rows}
    result: list[Status] = []
    for version in sorted(set(wanted) | set(applied)):
        row, migration = applied.get(version), wanted.get(version)
        if row is None:
            assert migration is not None
            result.append(Status(version, migration.name, "pending"))
            continue
        state: State = "missing" if migration is None else (
            "applied" if migration.checksum == row["checksum"] else "edited")
        result.append(Status(version, row["name"], state, row["applied_at"].isoformat(timespec="seconds")))
    return result
