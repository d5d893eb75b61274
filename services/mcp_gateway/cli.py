"""`aitrader token create|revoke|list` and `aitrader mcp [--stdio --account ID]`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import click

from services.mcp_gateway.auth import TokenError, create_token, list_tokens, revoke_token
from shared.db import create_pool
from shared.errors import ConfigError
from shared.runner import fail
from shared.settings import Settings, load_settings

T = TypeVar("T")


def _with_pool(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run `work` on a small pool from AITRADER_DATABASE_URL; config errors are one line."""

    async def run() -> T:
        settings = load_settings(Settings)
        pool = await create_pool(settings.require_database_url(), min_size=1, max_size=2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except ConfigError as exc:
        fail(exc)
        raise  # unreachable: fail() exits
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("token")
def token_group() -> None:
    """MCP bearer tokens: each is bound to one account, scope read or trade."""


@token_group.command("create")
@click.option("--account", "external_id", required=True, help="The account's external id.")
@click.option(
    "--scope",
    type=click.Choice(["read", "trade"]),
    required=True,
    help="read: the read tools; trade: also execute_trade and update_exit_plan.",
)
@click.option("--label", default=None, help="A note to recognise the token by.")
def create_command(external_id: str, scope: str, label: str | None) -> None:
    """Create a token and print it once (only its SHA-256 is stored)."""
    token, row = _with_pool(lambda pool: create_token(pool, external_id, scope, label))  # type: ignore[arg-type]
    click.echo(token)
    click.echo(
        f"id {row['id']}  prefix {row['token_prefix']}  account {external_id}  "
        f"scopes {','.join(row['scopes'])} -- store it now: it cannot be shown again.",
        err=True,
    )


@token_group.command("revoke")
@click.argument("token_id_or_prefix")
def revoke_command(token_id_or_prefix: str) -> None:
    """Revoke a token by its id or prefix (takes effect within the gateway's token cache TTL)."""
    row = _with_pool(lambda pool: revoke_token(pool, token_id_or_prefix))
    click.echo(f"revoked {row['id']} ({row['token_prefix']}) at {row['revoked_at']:%Y-%m-%d %H:%M:%S}Z")


@token_group.command("list")
def list_command() -> None:
    """List tokens (never the tokens themselves)."""
    rows = _with_pool(list_tokens)
    click.echo(f"{'id':36}  {'prefix':12}  {'account':16}  {'scopes':10}  {'state':7}  label")
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        click.echo(
            f"{r['id']!s:36}  {r['token_prefix']:12}  {r['external_id']:16}  "
            f"{','.join(r['scopes']):10}  {state:7}  {r['label'] or ''}"
        )


@click.command("mcp")
@click.option("--stdio", is_flag=True, help="Serve one local client over stdin/stdout.")
@click.option("--account", "external_id", default=None, help="With --stdio: the account to act for.")
def mcp_command(stdio: bool, external_id: str | None) -> None:
    """Run the MCP gateway: streamable HTTP (bearer tokens) or, with --stdio, one local client."""
    from services.mcp_gateway import stdio as stdio_mode
    from shared.runner import run_service

    if not stdio:
        run_service("mcp_gateway")
        return
    if not external_id:
        raise click.UsageError("--stdio needs --account EXTERNAL_ID")
    stdio_mode.run(external_id)
