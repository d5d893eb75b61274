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
    stop_resting: bool = False,
) -> dict[str, object]:
    return {"account_id": ACCOUNT, "entry_time": entry_time, "exit_time": exit_time,
            "pnl": Decimal(pnl), "confidence": confidence, "notional": Decimal(notional),
            "exit_reason": exit_reason, "stop_resting": int(stop_resting)}


def opened(opened_at: datetime, notional: str) -> dict[str, object]:
    return {"account_id": ACCOUNT, "opened_at": opened_at, "notional": Decimal(notional)}


def order(filled_at: datetime, leverage: str | None, confidence: str | None) -> dict[str, object]:
    return {"account_id": ACCOUNT, "filled_at": filled_at,
            "leverage": None if leverage is None else Decimal(leverage),
            "confidence": None if confidence is None else Decimal(confidence)}


def inputs(
    *, equity: Sequence[tuple[datetime, float]] = (),
    closed_rows: Sequence[dict[str, object]] = (),
    open_rows: Sequence[dict[str, object]] = (),
    orders: Sequence[dict[str, object]] = (),
    created_at: datetime = NOW - timedelta(days=30),
) -> PerformanceInputs:
    return PerformanceInputs(
        accounts=pl.DataFrame({"account_id": [ACCOUNT], "created_at": [created_at]},
                              schema={"account_id": pl.String, "created_at": TIME}),
        equity=pl.DataFrame(
            {"account_id": [ACCOUNT] * len(equity), "as_of": [t for t, _ in equity],
             "equity": [e for _, e in equity]},
            schema={"account_id": pl.String, "as_of": TIME, "equity": pl.Float64},
        ),
        closed=pl.DataFrame(list(closed_rows), schema={
            "account_id": pl.String, "entry_time": TIME, "exit_time": TIME, "pnl": MONEY,
            "confidence": pl.Float64, "notional": MONEY, "exit_reason": pl.String,
            "stop_resting": pl.Int8}),
        open=pl.DataFrame(list(open_rows), schema={
            "account_id": pl.String, "opened_at": TIME, "notional": MONEY}),
        orders=pl.DataFrame(list(orders), schema={
            "account_id": pl.String, "filled_at": TIME, "leverage": FACTOR,
            "confidence": FACTOR}),
    )
