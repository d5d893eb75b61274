"""`aitrader migrate` sets the console role's password from AITRADER_CONSOLE_DB_PASSWORD (the
compose secret) as a SCRAM verifier PostgreSQL itself would store, once. A role of the test's
own stands in for aitrader_console (a role is the whole server's: other tests use that one)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from click.testing import CliRunner

from aitrader.cli import cli
from aitrader.console_role import matches, scram_verifier


@pytest_asyncio.fixture(loop_scope="session")
async def role(db_pool: asyncpg.Pool) -> AsyncIterator[str]:
    name = f"console_t_{secrets.token_hex(4)}"
    await db_pool.execute(f"CREATE ROLE {name} LOGIN")
    try:
        yield name
    finally:
        await db_pool.execute(f"DROP ROLE {name}")


async def _stored(pool: asyncpg.Pool, role: str) -> str | None:
    verifier: str | None = await pool.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    return verifier


async def test_the_verifier_is_the_one_postgresql_computes(db_pool: asyncpg.Pool, role: str) -> None:
    async with db_pool.acquire() as conn:
        await conn.execute("SET password_encryption = 'scram-sha-256'")
        await conn.execute(f"ALTER ROLE {role} PASSWORD 'pa''ss-word'")
    stored = await _stored(db_pool, role)
    assert stored is not None and matches(stored, "pa'ss-word") and not matches(stored, "pa'ss-wore")
    assert not matches(None, "x") and not matches("md5abc", "x")
    assert matches(scram_verifier("x"), "x")


def test_migrate_sets_the_password_once_and_never_prints_it(
    db_dsn: str, db_pool: asyncpg.Pool, role: str
) -> None:
    password = secrets.token_urlsafe(32)
    env = {
        "AITRADER_DATABASE_URL": db_dsn,
        "AITRADER_CONSOLE_DB_ROLE": role,
        "AITRADER_CONSOLE_DB_PASSWORD": password,
    }
    first = CliRunner(env=env).invoke(cli, ["migrate"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert f"console role {role}: password set" in first.stdout and password not in first.output
    again = CliRunner(env=env).invoke(cli, ["migrate"], catch_exceptions=False)
    assert f"console role {role}: password unchanged" in again.stdout
    without = CliRunner(env={**env, "AITRADER_CONSOLE_DB_PASSWORD": ""}).invoke(cli, ["migrate"])
    assert without.exit_code == 0 and "console role" not in without.stdout


async def test_the_stored_password_is_the_secret(db_dsn: str, db_pool: asyncpg.Pool, role: str) -> None:
    """After the command (run in a thread of its own: it runs its own event loop)."""
    import asyncio

    password = secrets.token_urlsafe(32)
    env = {
        "AITRADER_DATABASE_URL": db_dsn,
        "AITRADER_CONSOLE_DB_ROLE": role,
        "AITRADER_CONSOLE_DB_PASSWORD": password,
    }
    result = await asyncio.to_thread(CliRunner(env=env).invoke, cli, ["migrate"])
    assert result.exit_code == 0, result.output
    stored = await _stored(db_pool, role)
    assert stored is not None and stored.startswith("SCRAM-SHA-256$4096:") and matches(stored, password)
