"""The console API, /api/v1: read-only lists, each a keyset page newest first (docs/console.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

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
from services.console.repository import ConsoleDb, Listing, as_page, page_sql
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
    db: ConsoleDb = request.app.state.db
    filters = query.model_dump(include=set(listing.filters))
    rows = await db.page(reader.digest, listing, page_sql(listing, reader.accounts, query, filters))
    return as_page(rows, query.limit)


def answer(model: type[Page[Any]], page: dict[str, Any]) -> Response:
    """The page validated against its model and written as JSON once (a returned model would be
    validated again by FastAPI); `response_model` on the route keeps the document exact."""
    return Response(model.model_validate(page).model_dump_json(), media_type="application/json")


@router.get("/accounts", response_model=Accounts, summary="The token's accounts, newest first (by creation)")
async def accounts(
    request: Request, reader: AllAccounts, query: Annotated[AccountsQuery, Query()]
) -> Response:
    return answer(Accounts, await read_page(request, listings.ACCOUNTS, reader, query))


@router.get(
    "/accounts/{external_id}/positions/open",
    response_model=OpenPositions,
    summary="Open positions, newest opened first",
)
async def open_positions(
    request: Request, reader: OneAccount, query: Annotated[OpenQuery, Query()]
) -> Response:
    return answer(OpenPositions, await read_page(request, listings.OPEN_POSITIONS, reader, query))


@router.get(
    "/accounts/{external_id}/positions/closed",
    response_model=ClosedPositions,
    summary="Closed positions, newest exit first",
)
async def closed_positions(
    request: Request, reader: OneAccount, query: Annotated[ClosedQuery, Query()]
) -> Response:
    return answer(ClosedPositions, await read_page(request, listings.CLOSED_POSITIONS, reader, query))


@router.get("/accounts/{external_id}/orders", response_model=Orders, summary="Orders, newest created first")
async def orders(request: Request, reader: OneAccount, query: Annotated[OrdersQuery, Query()]) -> Response:
    return answer(Orders, await read_page(request, listings.ORDERS, reader, query))


@router.get("/accounts/{external_id}/fills", response_model=Fills, summary="Fills, newest fill time first")
async def fills(request: Request, reader: OneAccount, query: Annotated[FillsQuery, Query()]) -> Response:
    return answer(Fills, await read_page(request, listings.FILLS, reader, query))


@router.get(
    "/accounts/{external_id}/tool-calls",
    response_model=ToolCalls,
    summary="The MCP tool-call audit, newest first",
)
async def tool_calls(
    request: Request, reader: OneAccount, query: Annotated[ToolCallsQuery, Query()]
) -> Response:
    return answer(ToolCalls, await read_page(request, listings.TOOL_CALLS, reader, query))
