"""`aitrader token create|rotate|list|revoke` against a real database."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from click.testing import CliRunner

from aitrader.cli import cli
from services.mcp_gateway.tokens import parse_duration


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


def fetchall(dsn: str, sql: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql))
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


def test_revoke_and_rotate_refuse_the_secret_itself_and_take_the_label(
    runner: CliRunner, db_dsn: str, accounts: dict[str, UUID]
) -> None:
    created = runner.invoke(
        cli, ["token", "create", "--account", "acct-a", "--scope", "read", "--label", "bot"]
    )
    token = created.stdout.strip()
    for command in ("revoke", "rotate"):
        refused = runner.invoke(cli, ["token", command, token])
        assert refused.exit_code == 1
        assert refused.output.splitlines() == [
            "Error: that is a token's secret, which does not belong on a command line; give its "
            "id, its prefix (the first 12 characters) or its label (`aitrader token list`)"
        ]
    assert fetchrow(db_dsn, "SELECT revoked_at FROM aitrader.api_tokens")["revoked_at"] is None
    revoked = runner.invoke(cli, ["token", "revoke", "bot"])
    assert revoked.exit_code == 0, revoked.output
    assert fetchrow(db_dsn, "SELECT revoked_at FROM aitrader.api_tokens")["revoked_at"] is not None


def test_token_with_an_expiry_and_its_rotation(
    runner: CliRunner, db_dsn: str, accounts: dict[str, UUID]
) -> None:
    created = runner.invoke(
        cli, ["token", "create", "--account", "acct-a", "--scope", "read", "--expires", "30d"]
    )
    assert created.exit_code == 0, created.output
    old = created.stdout.strip()
    row = fetchrow(db_dsn, "SELECT *, expires_at - created_at AS lifetime FROM aitrader.api_tokens")
    assert timedelta(days=30) - row["lifetime"] < timedelta(seconds=5)
    rotated = runner.invoke(cli, ["token", "rotate", row["token_prefix"]])
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip()
    assert new.startswith("atk_") and new != old and "\n" not in new  # printed once, alone on stdout
    assert old not in rotated.output and new not in rotated.stderr
    rows = {
        r["token_hash"]: r
        for r in fetchall(db_dsn, "SELECT *, expires_at <= now() AS ended FROM aitrader.api_tokens")
    }
    retired, issued = (
        rows[hashlib.sha256(old.encode()).hexdigest()],
        rows[hashlib.sha256(new.encode()).hexdigest()],
    )
    assert retired["replaced_by"] == issued["id"] and retired["ended"] and not issued["ended"]
    assert issued["account_id"] == accounts["a"] and list(issued["scopes"]) == ["read"]
    listed = runner.invoke(cli, ["token", "list"])
    assert " rotated " in listed.output and " active " in listed.output and new not in listed.output


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("30x", id="unknown-unit"),
        pytest.param("30", id="no-unit"),
        pytest.param("0d", id="zero"),
        pytest.param("1.5h", id="fraction"),
        pytest.param("99999d", id="beyond-ten-years"),
    ],
)
def test_bad_expires_is_a_one_line_error(runner: CliRunner, accounts: dict[str, UUID], value: str) -> None:
    result = runner.invoke(
        cli, ["token", "create", "--account", "acct-a", "--scope", "read", "--expires", value]
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith(f"Error: --expires: {value!r}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30d", timedelta(days=30), id="days"),
        pytest.param("12h", timedelta(hours=12), id="hours"),
        pytest.param(" 90m ", timedelta(minutes=90), id="minutes-with-spaces"),
        pytest.param("3650d", timedelta(days=3650), id="the-longest"),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
