"""`aitrader token create|list|revoke` against a real database."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from click.testing import CliRunner

from aitrader.cli import cli


@pytest.fixture
def runner(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AITRADER_DATABASE_URL", db_dsn)
    return CliRunner()


def fetchrow(dsn: str, sql: str) -> Any:
    """The CLI runs its own event loop, so this test is synchronous and reads the same way."""

    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchrow(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_token_lifecycle(runner: CliRunner, db_dsn: str, accounts: dict[str, UUID]) -> None:
    created = runner.invoke(
        cli, ["token", "create", "--account", "acct-a", "--scope", "trade", "--label", "deepseek"]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    row = fetchrow(db_dsn, "SELECT * FROM aitrader.api_tokens")
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert row["token_prefix"] == token[:12] and list(row["scopes"]) == ["read", "trade"]
    assert token not in str(dict(row))
    listed = runner.invoke(cli, ["token", "list"])
    assert row["token_prefix"] in listed.output and "active" in listed.output
    assert token not in listed.output
    revoked = runner.invoke(cli, ["token", "revoke", row["token_prefix"]])
    assert revoked.exit_code == 0, revoked.output
    assert fetchrow(db_dsn, "SELECT revoked_at FROM aitrader.api_tokens")["revoked_at"]
    unknown = runner.invoke(cli, ["token", "create", "--account", "nobody", "--scope", "read"])
    assert unknown.exit_code != 0 and "no account with external id 'nobody'" in unknown.output
