"""Builders of the pure performance inputs (polars frames) for one account."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl

from services.metrics.performance import MONEY, PerformanceInputs

TIME = pl.Datetime("us", "UTC")
FACTOR = pl.Decimal(38, 2)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a 5-minute boundary
ACCOUNT = "00000000-0000-0000-0000-0000000000a1"


def ago(hours: float = 0, minutes: float = 0) -> datetime:
    return NOW - timedelta(hours=hours, minutes=minutes)


def closed(
    exit_time: datetime, pnl: str, *, entry_time: datetime | None = None,
    notional: str = "0", confidence: float | None = None, exit_reason: str = "agent",
    symbol: str = "BTC-USDT-SWAP", closing_side: str | None = "sell",
) -> dict[str, object]:
    return {"account_id": ACCOUNT, "entry_time": entry_time, "exit_time": exit_time,
            "pnl": Decimal(pnl), "confidence": confidence, "notional": Decimal(notional),
            "symbol": symbol, "pos_side": "net", "closing_side": closing_side,
            "exit_reason": exit_reason}


def algo(created_at: datetime, ended_at: datetime | None, *, fired: bool = False,
         symbol: str = "BTC-USDT-SWAP", side: str = "sell") -> dict[str, object]:
    """An algo order with a stop-loss leg (ended_at None: not ended)."""
    return {"account_id": ACCOUNT, "symbol": symbol, "pos_side": "net", "side": side,
            "created_at": created_at, "ended_at": ended_at, "fired": int(fired)}


def opened(opened_at: datetime, notional: str) -> dict[str, object]:
    return {"account_id": ACCOUNT, "opened_at": opened_at, "notional": Decimal(notional)}


def order(filled_at: datetime, leverage: str | None, confidence: str | None) -> dict[str, object]:
    return {"account_id": ACCOUNT, "filled_at": filled_at,
            "leverage": None if leverage is None else Decimal(leverage),
            "confidence": None if confidence is None else Decimal(confidence)}


def inputs(
    *, equity: Sequence[tuple[datetime, float | str]] = (),
    closed_rows: Sequence[dict[str, object]] = (),
    open_rows: Sequence[dict[str, object]] = (),
    orders: Sequence[dict[str, object]] = (),
    algos: Sequence[dict[str, object]] = (),
    created_at: datetime = NOW - timedelta(days=30),
) -> PerformanceInputs:
    return PerformanceInputs(
        accounts=pl.DataFrame({"account_id": [ACCOUNT], "created_at": [created_at]},
                              schema={"account_id": pl.String, "created_at": TIME}),
        equity=pl.DataFrame(
            {"account_id": [ACCOUNT] * len(equity), "id": list(range(len(equity))),
             "as_of": [t for t, _ in equity], "equity": [Decimal(str(e)) for _, e in equity]},
            schema={"account_id": pl.String, "id": pl.Int64, "as_of": TIME, "equity": MONEY},
        ),
        closed=pl.DataFrame(list(closed_rows), schema={
            "account_id": pl.String, "entry_time": TIME, "exit_time": TIME, "pnl": MONEY,
            "confidence": pl.Float64, "notional": MONEY, "symbol": pl.String,
            "pos_side": pl.String, "closing_side": pl.String, "exit_reason": pl.String}),
        open=pl.DataFrame(list(open_rows), schema={
            "account_id": pl.String, "opened_at": TIME, "notional": MONEY}),
        orders=pl.DataFrame(list(orders), schema={
            "account_id": pl.String, "filled_at": TIME, "leverage": FACTOR,
            "confidence": FACTOR}),
        algos=pl.DataFrame(list(algos), schema={
            "account_id": pl.String, "symbol": pl.String, "pos_side": pl.String,
            "side": pl.String, "created_at": TIME, "ended_at": TIME, "fired": pl.Int8}),
    )
