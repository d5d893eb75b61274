"""`aitrader token create|rotate|revoke|list` and `aitrader mcp [--stdio --account ID]`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import click

from services.mcp_gateway.auth import TokenError, create_token, list_tokens, revoke_token
from services.mcp_gateway.tokens import parse_duration, rotate_token
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
    """Bearer tokens: an MCP token (scope read or trade) is bound to one account; a console
    token (scope console) to one account or several."""


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    """A click callback: `30d`/`12h`/`90m`, or a one-line error (no usage dump)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except TokenError as exc:
        raise click.ClickException(f"--{_param.name}: {exc}") from None


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}Z" if value is not None else "-"


@token_group.command("create")
@click.option(
    "--account",
    "external_ids",
    required=True,
    multiple=True,
    help="The account's external id (a console token: repeat it for several accounts).",
)
@click.option(
    "--scope",
    type=click.Choice(["read", "trade", "console"]),
    required=True,
    help="read: the read tools; trade: also execute_trade and update_exit_plan; console: the "
    "console API (docs/console.md).",
)
@click.option("--label", default=None, help="A note to recognise the token by.")
@click.option(
    "--expires", callback=_duration, default=None, help="Lifetime: 30d, 12h or 90m (default: none)."
)
def create_command(
    external_ids: tuple[str, ...], scope: str, label: str | None, expires: timedelta | None
) -> None:
    """Create a token and print it once (only its SHA-256 is stored)."""
    expires_at = datetime.now(UTC) + expires if expires is not None else None
    first, *also = external_ids
    token, row = _with_pool(
        lambda pool: create_token(pool, first, scope, label, expires_at, also)  # type: ignore[arg-type]
    )
    external_id = ",".join(external_ids)
    click.echo(token)
    click.echo(
        f"id {row['id']}  prefix {row['token_prefix']}  account {external_id}  "
        f"scopes {','.join(row['scopes'])}  expires {_when(row['expires_at'])}"
        " -- store it now: it cannot be shown again.",
        err=True,
    )


@token_group.command("rotate")
@click.argument("ref", metavar="ID_PREFIX_OR_LABEL")
@click.option(
    "--grace",
    callback=_duration,
    default=None,
    help="Keep the old token working this long (30m, 1h); default: it stops now.",
)
@click.option("--expires", callback=_duration, default=None, help="The new token's lifetime.")
def rotate_command(ref: str, grace: timedelta | None, expires: timedelta | None) -> None:
    """Issue a new token for the same account and scopes and print it once; end the old one."""
    token, new, old = _with_pool(lambda pool: rotate_token(pool, ref, grace or timedelta(0), expires))
    click.echo(token)
    click.echo(
        f"id {new['id']}  prefix {new['token_prefix']}  expires {_when(new['expires_at'])}"
        f" -- replaces {old['token_prefix']}, which stops at {_when(old['expires_at'])}"
        " (after the gateway's token cache TTL). Store it now: it cannot be shown again.",
        err=True,
    )


@token_group.command("revoke")
@click.argument("ref", metavar="ID_PREFIX_OR_LABEL")
def revoke_command(ref: str) -> None:
    """Revoke a token by its id, prefix or label, never its secret (effective within the token cache TTL)."""
    row = _with_pool(lambda pool: revoke_token(pool, ref))
    click.echo(f"revoked {row['id']} ({row['token_prefix']}) at {row['revoked_at']:%Y-%m-%d %H:%M:%S}Z")


@token_group.command("list")
def list_command() -> None:
    """List tokens (never the tokens themselves)."""
    for line in token_table(_with_pool(list_tokens), datetime.now(UTC)):
        click.echo(line)


def token_table(rows: Iterable[asyncpg.Record], now: datetime) -> list[str]:
    """`token list`'s lines: a header, then one token a line (never the token itself)."""
    lines = [
        f"{'id':36}  {'prefix':12}  {'account':16}  {'scope':7}  {'state':7}  {'created':17}  "
        f"{'expires':17}  {'last used':17}  label"
    ]
    for r in rows:
        lines.append(
            f"{r['id']!s:36}  {r['token_prefix']:12}  {_accounts(r):16}  "
            f"{_scope(r['scopes']):7}  {_state(r, now):7}  "
            f"{_when(r['created_at']):17}  {_when(r['expires_at']):17}  "
            f"{_when(r['last_used_at']):17}  {r['label'] or ''}"
        )
    return lines


def _scope(scopes: list[str]) -> str:
    return next((s for s in ("trade", "console", "read") if s in scopes), ",".join(scopes))


def _accounts(r: asyncpg.Record) -> str:
    more = r.get("more_accounts") or 0
    return f"{r['external_id']}+{more}" if more else str(r["external_id"])


def _state(r: asyncpg.Record, now: datetime) -> str:
    if r["revoked_at"] is not None:
        return "revoked"
    if r["expires_at"] is not None and r["expires_at"] <= now:
        return "rotated" if r["replaced_by"] is not None else "expired"
    return "active"


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
