"""`aitrader status | trades | performance | calls`: the console's views in a terminal (docs/console.md).

An operator tool: it reads AITRADER_DATABASE_URL as the schema's owner (no token, no row-level
security), with the console's own queries (services.console.listings through `page_sql`, and
services.console.summaries) and the console's parameter rules (its query models), so a filter
means here what it means in the API. `--json` prints what the API answers (decimals as strings).
Exit 2: a bad option, one line; exit 1: an unknown account.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import click
from pydantic import BaseModel, ValidationError
from rich.console import Console

from aitrader import views_render as render
from aitrader.summary import EquityPoint, equity_chart
from services.console import api, listings, models, summaries
from services.console.paging import PageQuery
from services.console.repository import QUERY_TIMEOUT_S, Listing, as_page, fetch_page_rows, page_sql
from shared.db import Connection, create_pool
from shared.errors import ConfigError
from shared.runner import fail
from shared.settings import Settings, load_settings

T = TypeVar("T")
Q = TypeVar("Q", bound=PageQuery)
Work = Callable[[Connection, dict[str, UUID]], Awaitable[T]]


class Refused(Exception):
    """A one-line answer and its exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _read(work: Work[T]) -> T:
    """Run `work` on one connection from AITRADER_DATABASE_URL in a read-only snapshot, with
    the accounts (external id -> id) it may name."""

    async def run() -> T:
        settings = load_settings(Settings)
        pool = await create_pool(
            settings.require_database_url(), max_size=1, application_name="aitrader-views"
        )
        try:
            async with asyncio.timeout(QUERY_TIMEOUT_S), pool.acquire() as conn:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    rows = await conn.fetch(
                        "SELECT external_id, id FROM aitrader.accounts ORDER BY created_at"
                    )
                    return await work(conn, {r["external_id"]: r["id"] for r in rows})
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except ConfigError as exc:
        fail(exc)
        raise
    except Refused as exc:
        click.echo(f"aitrader: {exc}", err=True)
        sys.exit(exc.status)


def _one(accounts: dict[str, UUID], external_id: str | None) -> tuple[str, UUID]:
    """The account named, or the only one there is."""
    if external_id is None:
        if len(accounts) == 1:
            return next(iter(accounts.items()))
        names = ", ".join(accounts) or "none"
        raise Refused(f"--account: name one of the accounts ({names})", 2)
    if external_id not in accounts:
        raise Refused(f"no account {external_id!r}", 1)
    return external_id, accounts[external_id]


def _query(model: type[Q], **values: Any) -> Q:
    """The console's parameter rules: a refusal is one line naming the option, exit 2."""
    given = {k.removesuffix("_"): v for k, v in values.items() if v is not None}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "options"
        click.echo(f"aitrader: {name}: {str(first['msg']).removeprefix('Value error, ')}", err=True)
        sys.exit(2)


async def _page(
    conn: Connection, listing: Listing, account_ids: list[UUID], query: PageQuery
) -> dict[str, Any]:
    filters = query.model_dump(include=set(listing.filters))
    rows = await fetch_page_rows(conn, listing, page_sql(listing, account_ids, query, filters))
    return as_page(rows, query.limit)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _json(document: BaseModel | dict[str, Any]) -> None:
    if isinstance(document, BaseModel):
        click.echo(document.model_dump_json(indent=2))
        return
    wrapped = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in document.items()}
    click.echo(json.dumps(wrapped, indent=2))


def _more(console: Console, page: dict[str, Any]) -> None:
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}", soft_wrap=True)


account_option = click.option("--account", metavar="EXTERNAL_ID", help="The account (accounts.external_id).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (the console API's shape).")
limit_option = click.option("--limit", default=None, help="Rows per page (1-500, default 100).")
cursor_option = click.option("--cursor", default=None, help="The next page: a `more: --cursor` value.")
from_option = click.option("--from", "from_", metavar="TIME", help="Inclusive, ISO 8601 with a zone.")
to_option = click.option("--to", metavar="TIME", help="Exclusive, ISO 8601 with a zone.")
symbol_option = click.option("--symbol", help="BASE-USDT-SWAP.")


@click.command("status")
@account_option
@click.option("--status", default=None, help="Accounts: active or disabled.")
@click.option("--mode", default=None, help="Accounts: live or simulated.")
@symbol_option
@click.option("--side", default=None, help="Open positions (with --account): long, short or net.")
@limit_option
@json_option
def status_command(account: str | None, as_json: bool, **options: Any) -> None:
    """The accounts (equity, open positions, last reconciliation); with --account, that
    account, its open positions and its equity sparkline."""
    if account is None:
        for name in ("symbol", "side"):
            if options[name] is not None:
                click.echo(
                    f"aitrader: --{name}: filters open positions: name the account (--account)", err=True
                )
                sys.exit(2)
        query = _query(
            api.AccountsQuery, status=options["status"], mode=options["mode"], limit=options["limit"]
        )
        page = _read(lambda conn, accounts: _page(conn, listings.ACCOUNTS, list(accounts.values()), query))
        if as_json:
            return _json(models.Accounts.model_validate(page))
        console = _console()
        console.print(render.table("Accounts", render.ACCOUNTS, page["items"], console.width))
        return _more(console, page)
    open_query = _query(api.OpenQuery, symbol=options["symbol"], side=options["side"], limit=options["limit"])

    async def work(conn: Connection, accounts: dict[str, UUID]) -> tuple[Any, ...]:
        _name, account_id = _one(accounts, account)
        row = await _page(
            conn, listings.ACCOUNTS, [account_id], api.AccountsQuery.model_validate({"limit": 1})
        )
        positions = await _page(conn, listings.OPEN_POSITIONS, [account_id], open_query)
        step, points = await summaries.equity(conn, account_id)
        return row["items"][0], positions, step, points

    found, positions, step, points = _read(work)
    if as_json:
        return _json(
            {
                "account": models.Account.model_validate(found),
                "open_positions": models.OpenPositions.model_validate(positions),
                "equity": {"step": step, "points": [p.model_dump(mode="json") for p in points]},
            }
        )
    console = _console()
    console.print(render.table(f"Account {account}", render.ACCOUNTS, [found], console.width))
    console.print(render.equity_line([p.equity_usdt for p in points], console.width))
    console.print(render.table("Open positions", render.OPEN, positions["items"], console.width))
    return _more(console, positions)


@click.command("trades")
@account_option
@symbol_option
@click.option("--side", default=None, help="long or short.")
@click.option("--exit-reason", default=None, help="agent, take_profit, stop_loss, liquidation, ...")
@from_option
@to_option
@limit_option
@cursor_option
@json_option
def trades_command(account: str | None, as_json: bool, **options: Any) -> None:
    """Closed positions, newest exit first (`from` / `to` apply to the exit time)."""
    query = _query(api.ClosedQuery, **options)
    _list(
        account,
        as_json,
        listings.CLOSED_POSITIONS,
        query,
        models.ClosedPositions,
        "Closed trades",
        render.TRADES,
    )


@click.command("calls")
@account_option
@click.option("--tool", default=None, help="An MCP tool's name, e.g. execute_trade.")
@click.option("--status", default=None, help="pending, success or failed.")
@from_option
@to_option
@limit_option
@cursor_option
@json_option
def calls_command(account: str | None, as_json: bool, **options: Any) -> None:
    """The MCP tool-call audit, newest first."""
    query = _query(api.ToolCallsQuery, **options)
    _list(account, as_json, listings.TOOL_CALLS, query, models.ToolCalls, "Tool calls", render.CALLS)


def _list(
    account: str | None,
    as_json: bool,
    listing: Listing,
    query: PageQuery,
    model: type[models.Page[Any]],
    title: str,
    columns: tuple[render.Column, ...],
) -> None:
    async def work(conn: Connection, accounts: dict[str, UUID]) -> tuple[str, dict[str, Any]]:
        name, account_id = _one(accounts, account)
        return name, await _page(conn, listing, [account_id], query)

    name, page = _read(work)
    if as_json:
        return _json(model.model_validate(page))
    console = _console()
    console.print(render.table(f"{title} of {name}", columns, page["items"], console.width))
    _more(console, page)


@click.command("performance")
@account_option
@click.option("--window", type=click.Choice(summaries.WINDOWS), default="all_time", show_default=True)
@json_option
def performance_command(account: str | None, window: summaries.Window, as_json: bool) -> None:
    """What the metrics service computed for the window: figures, exit attribution, confidence
    calibration, and the equity curve over the window."""

    async def work(conn: Connection, accounts: dict[str, UUID]) -> tuple[Any, ...]:
        name, account_id = _one(accounts, account)
        perf = await summaries.performance(conn, account_id, window)
        buckets = await summaries.calibration(conn, account_id, window)
        step, points = await summaries.equity(conn, account_id, perf.window_start, perf.window_end)
        return name, perf, buckets, step, points

    name, perf, buckets, step, points = _read(work)
    if as_json:
        calibration = {"window": window, "buckets": [b.model_dump(mode="json") for b in buckets]}
        equity = {"step": step, "points": [p.model_dump(mode="json") for p in points]}
        return _json({"account": name, "performance": perf, "calibration": calibration, "equity": equity})
    console = _console()
    if not perf.available:
        console.print(f"Performance ({window}) of {name}: not computed yet by the metrics service")
    else:
        console.print(render.performance_table(perf.model_dump()))
        exits = [e.model_dump() for e in perf.exit_attribution]
        console.print(render.table("Exits", render.EXITS, exits, console.width))
    calibrated = [b.model_dump() for b in buckets]
    console.print(render.table("Confidence calibration", render.CALIBRATION, calibrated, console.width))
    if len(points) < 2:
        console.print("Equity: too few samples to draw")
        return
    curve = [EquityPoint(p.time, p.equity_usdt) for p in points]
    console.print(f"Equity (USDT, {len(points)} points of {step})")
    console.print(equity_chart(curve), markup=False, highlight=False)
