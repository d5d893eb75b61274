"""The console API, /api/v1: read-only lists, each a keyset page newest first (docs/console.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from services.console import listings
from services.console.auth import AllAccounts, OneAccount, Reader
from services.console.models import (
    Accounts,
    ClosedPositions,
    Fills,
    OpenPositions,
    Orders,
    Page,
    ToolCalls,
)
from services.console.paging import PageQuery, TimedQuery
from services.console.repository import ConsoleDb, Listing, as_page, page_json, page_sql
from shared.settings import SYMBOL
from shared.types import Direction, ExitReason, Mode, PosSide, Side

Symbol = Annotated[str, Field(pattern=SYMBOL.pattern, description="an OKX swap, e.g. BTC-USDT-SWAP")]
Word = Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")]


class AccountsQuery(PageQuery):
    status: Literal["active", "disabled"] | None = None
    mode: Mode | None = None


class OpenQuery(PageQuery):
    symbol: Symbol | None = None
    side: Direction | PosSide | None = None


class ClosedQuery(TimedQuery):
    """`from` / `to` apply to exit_time."""

    symbol: Symbol | None = None
    side: Direction | None = None
    exit_reason: ExitReason | None = None


class OrdersQuery(TimedQuery):
    """`from` / `to` apply to created_at."""

    symbol: Symbol | None = None
    side: Side | None = None
    status: Word | None = None


class FillsQuery(TimedQuery):
    """`from` / `to` apply to the fill time."""

    symbol: Symbol | None = None
    side: Side | None = None


class ToolCallsQuery(TimedQuery):
    """`from` / `to` apply to created_at."""

    tool: Word | None = None
    status: Literal["pending", "success", "failed"] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no bearer token, or not a valid one with the `console` scope"},
    404: {"description": "an account the token does not grant (whether or not it exists)"},
    503: {"description": "the database is unavailable; retry after Retry-After seconds"},
}
router = APIRouter(prefix="/api/v1", responses=ERRORS)


async def read_page(request: Request, listing: Listing, reader: Reader, query: PageQuery) -> dict[str, Any]:
    """The page's rows as dicts, shaped by the listing, and its next_cursor."""
    db: ConsoleDb = request.app.state.db
    filters = query.model_dump(include=set(listing.filters))
    rows = await db.page(reader.digest, listing, page_sql(listing, reader.accounts, query, filters))
    return as_page(rows, query.limit)


async def serve_page(
    request: Request, model: type[Page[Any]], listing: Listing, reader: Reader, query: PageQuery
) -> Response:
    """One page as JSON. PostgreSQL writes it (json_sql.py) when the listing's rows need no
    Python shaping: validating and encoding ~700 decimals a page in Python cost 9-15x the query;
    `response_model` on the route keeps the document exact. A shaped listing is validated
    against its model and written once (a returned model would be validated again)."""
    if listing.shape is not None:
        body = model.model_validate(await read_page(request, listing, reader, query)).model_dump_json()
        return Response(body, media_type="application/json")
    db: ConsoleDb = request.app.state.db
    (row,) = get_args(model.model_fields["items"].annotation)
    filters = query.model_dump(include=set(listing.filters))
    sql = page_json(row, page_sql(listing, reader.accounts, query, filters), query.limit)
    return Response(await db.page_body(reader.digest, listing, sql), media_type="application/json")


@router.get("/accounts", response_model=Accounts, summary="The token's accounts, newest first (by creation)")
async def accounts(
    request: Request, reader: AllAccounts, query: Annotated[AccountsQuery, Query()]
) -> Response:
    return await serve_page(request, Accounts, listings.ACCOUNTS, reader, query)


@router.get(
    "/accounts/{external_id}/positions/open",
    response_model=OpenPositions,
    summary="Open positions, newest opened first",
)
async def open_positions(
    request: Request, reader: OneAccount, query: Annotated[OpenQuery, Query()]
) -> Response:
    return await serve_page(request, OpenPositions, listings.OPEN_POSITIONS, reader, query)


@router.get(
    "/accounts/{external_id}/positions/closed",
    response_model=ClosedPositions,
    summary="Closed positions, newest exit first",
)
async def closed_positions(
    request: Request, reader: OneAccount, query: Annotated[ClosedQuery, Query()]
) -> Response:
    return await serve_page(request, ClosedPositions, listings.CLOSED_POSITIONS, reader, query)


@router.get("/accounts/{external_id}/orders", response_model=Orders, summary="Orders, newest created first")
async def orders(request: Request, reader: OneAccount, query: Annotated[OrdersQuery, Query()]) -> Response:
    return await serve_page(request, Orders, listings.ORDERS, reader, query)


@router.get("/accounts/{external_id}/fills", response_model=Fills, summary="Fills, newest fill time first")
async def fills(request: Request, reader: OneAccount, query: Annotated[FillsQuery, Query()]) -> Response:
    return await serve_page(request, Fills, listings.FILLS, reader, query)


@router.get(
    "/accounts/{external_id}/tool-calls",
    response_model=ToolCalls,
    summary="The MCP tool-call audit, newest first",
)
async def tool_calls(
    request: Request, reader: OneAccount, query: Annotated[ToolCallsQuery, Query()]
) -> Response:
    return await serve_page(request, ToolCalls, listings.TOOL_CALLS, reader, query)
