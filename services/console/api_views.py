"""The console's views beyond the lists (docs/console.md): the leaderboard, an account's equity
series, performance, calibration, exit-plan history and funding, and the market's candles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.console import figures, listings
from services.console.api import ERRORS, Symbol, Word, serve_page
from services.console.auth import AllAccounts, OneAccount, Token
from services.console.paging import TimedQuery
from services.console.repository import ConsoleDb
from services.console.view_models import (
    Calibration,
    DeadLetters,
    EquitySeries,
    ExitPlans,
    Funding,
    Leaderboard,
    Market,
    Performance,
    Step,
)
from shared.bars import Timeframe
from shared.settings import SYMBOL
from shared.types import Window

MAX_CANDLES: Final = 1000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WindowQuery(Strict):
    window: Window = "all_time"


class EquityQuery(Strict):
    """`from` (inclusive; default: the first equity point) and `to` (exclusive; default now)."""

    from_: AwareDatetime | None = Field(None, alias="from", description="inclusive, ISO 8601")
    to: AwareDatetime | None = Field(None, description="exclusive, ISO 8601; default now")
    step: Step | None = Field(None, description="bucket length; default: the finest that fits")

    @model_validator(mode="after")
    def _check_span(self) -> EquityQuery:
        if self.from_ is not None:
            end = self.to or datetime.now(UTC)
            if self.from_ >= end:
                raise ValueError("`from` must be before `to`")
            figures.choose_step(self.from_, end, self.step)
        return self


class ExitPlansQuery(TimedQuery):
    """`from` / `to` apply to created_at."""

    cursor_id: ClassVar[type[UUID] | type[int]] = int  # exit_plan_history.id is a serial
    symbol: Symbol | None = None


class FundingQuery(TimedQuery):
    """`from` / `to` apply to the payment's time."""

    symbol: Symbol | None = None


class DeadLettersQuery(TimedQuery):
    """`from` / `to` apply to created_at."""

    cursor_id: ClassVar[type[UUID] | type[int]] = int  # dead_letters.id is a serial
    service: Word | None = None
    error_type: Word | None = None


class MarketQuery(Strict):
    timeframe: Timeframe = "3m"
    limit: int = Field(100, ge=1, le=MAX_CANDLES, description="the newest candles, returned oldest first")


router = APIRouter(prefix="/api/v1", responses=ERRORS)


def _db(request: Request) -> ConsoleDb:
    db: ConsoleDb = request.app.state.db
    return db


def _json(model: type[BaseModel], value: dict[str, Any]) -> Response:
    return Response(model.model_validate(value).model_dump_json(), media_type="application/json")


@router.get("/leaderboard", response_model=Leaderboard, summary="The token's accounts, best return first")
async def leaderboard(
    request: Request, reader: AllAccounts, query: Annotated[WindowQuery, Query()]
) -> Response:
    # PostgreSQL writes the answer (figures.leaderboard_json_sql): one statement, no decimals
    # decoded and re-encoded in Python; `response_model` keeps the document exact.
    async with _db(request).reading(reader.digest, "leaderboard") as conn:
        sql = figures.leaderboard_json_sql(query.window)
        body = await conn.fetchval(sql, list(reader.accounts), query.window)
    return Response(body, media_type="application/json")


@router.get(
    "/accounts/{external_id}/equity",
    response_model=EquitySeries,
    summary="The equity history, the last point of each bucket",
)
async def equity(request: Request, reader: OneAccount, query: Annotated[EquityQuery, Query()]) -> Response:
    account = reader.accounts[0]
    end = query.to or datetime.now(UTC)
    async with _db(request).reading(reader.digest, "equity_snapshots") as conn:
        start = query.from_ or await conn.fetchval(figures.EQUITY_START, account)
        if start is None:
            return _json(EquitySeries, {"step": query.step or "1m", "points": []})
        step = _step(start, end, query.step)
        rows = await conn.fetch(figures.EQUITY_SERIES, account, figures.STEPS[step], start, end)
    return _json(EquitySeries, {"step": step, "points": [dict(r) for r in rows]})


def _step(start: datetime, end: datetime, step: Step | None) -> Step:
    """As choose_step, a span too long for its step a 422 like a bad parameter."""
    try:
        return figures.choose_step(start, end, step)
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "step"), "msg": f"Value error, {exc}", "input": step}]
        ) from None


@router.get(
    "/accounts/{external_id}/performance",
    response_model=Performance,
    summary="The metrics service's figures for a window, with exit attribution",
)
async def performance(
    request: Request, reader: OneAccount, query: Annotated[WindowQuery, Query()]
) -> Response:
    account = reader.accounts[0]
    async with _db(request).reading(reader.digest, "performance_snapshots") as conn:
        row = await conn.fetchrow(figures.PERFORMANCE, account, query.window)
        exits = await conn.fetch(figures.EXIT_ATTRIBUTION, account, query.window) if row else []
    if row is None:
        return _json(Performance, {"window": query.window, "available": False})
    values = dict(row) | {"window": query.window, "available": True}
    return _json(Performance, values | {"exit_attribution": [dict(r) for r in exits]})


@router.get(
    "/accounts/{external_id}/calibration",
    response_model=Calibration,
    summary="Closed positions by confidence bucket",
)
async def calibration(
    request: Request, reader: OneAccount, query: Annotated[WindowQuery, Query()]
) -> Response:
    async with _db(request).reading(reader.digest, "confidence_calibration") as conn:
        rows = await conn.fetch(figures.CALIBRATION, reader.accounts[0], query.window)
    return _json(Calibration, {"window": query.window, "buckets": [dict(r) for r in rows]})


@router.get(
    "/accounts/{external_id}/exit-plans",
    response_model=ExitPlans,
    summary="Every exit-plan version, newest first",
)
async def exit_plans(
    request: Request, reader: OneAccount, query: Annotated[ExitPlansQuery, Query()]
) -> Response:
    return await serve_page(request, ExitPlans, listings.EXIT_PLANS, reader, query)


@router.get(
    "/accounts/{external_id}/funding", response_model=Funding, summary="Funding payments, newest first"
)
async def funding(request: Request, reader: OneAccount, query: Annotated[FundingQuery, Query()]) -> Response:
    return await serve_page(request, Funding, listings.FUNDING, reader, query)


@router.get(
    "/accounts/{external_id}/dead-letters",
    response_model=DeadLetters,
    summary="Messages the services gave up, of this account, newest first",
)
async def dead_letters(
    request: Request, reader: OneAccount, query: Annotated[DeadLettersQuery, Query()]
) -> Response:
    return await serve_page(request, DeadLetters, listings.DEAD_LETTERS, reader, query)


@router.get("/market/{symbol}", response_model=Market, summary="Candles with their indicators, oldest first")
async def market(
    request: Request,
    verified: Token,
    symbol: Annotated[str, Path(pattern=SYMBOL.pattern, description="an OKX swap, e.g. BTC-USDT-SWAP")],
    query: Annotated[MarketQuery, Query()],
) -> Response:
    async with _db(request).reading(verified.digest, "market_snapshots") as conn:
        rows = await conn.fetch(figures.CANDLES, symbol, query.timeframe, query.limit)
    return _json(Market, {"symbol": symbol, "timeframe": query.timeframe, "candles": [dict(r) for r in rows]})
