"""Per-account summaries the metrics service stores: the performance row of a window, its exit
attribution, the confidence calibration, and the equity series.

The operator's CLI (`aitrader performance`, `aitrader status`) reads them here; the console's
`/accounts/{id}/performance`, `/calibration` and `/equity` endpoints should reuse these
functions and models (one home for each query), run in the console's token-scoped transaction.
Each takes a connection and the account's id and runs one statement.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from services.console.models import Dec, Utc
from shared.db import Connection

Window = Literal["daily", "weekly", "all_time"]
WINDOWS: Final = ("daily", "weekly", "all_time")
STEPS: Final = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
MAX_POINTS: Final = 2000


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ExitShare(Summary):
    exit_reason: str
    closed_positions: int
    realized_pnl_usdt: Dec | None


class Performance(Summary):
    """The `performance_snapshots` row of one window; `available` false when metrics has not
    computed it yet (then every figure is null)."""

    window: str
    available: bool
    sharpe_ratio: Dec | None = None
    win_rate: Dec | None = None
    average_leverage: Dec | None = None
    average_confidence: Dec | None = None
    biggest_win_usdt: Dec | None = None
    biggest_loss_usdt: Dec | None = None
    hold_ratio_long: Dec | None = None
    hold_ratio_short: Dec | None = None
    hold_ratio_flat: Dec | None = None
    closed_positions: int | None = None
    realized_pnl_usdt: Dec | None = None
    stop_loss_resting_ratio: Dec | None = None
    definitions_version: str | None = None
    window_start: Utc | None = None
    window_end: Utc | None = None
    updated_at: Utc | None = None
    exit_attribution: list[ExitShare] = []


class CalibrationBucket(Summary):
    bucket: str
    closed_positions: int
    win_rate: Dec | None
    mean_pnl_usdt: Dec | None


class EquityPoint(Summary):
    time: Utc
    equity_usdt: Dec


_PERFORMANCE = """
SELECT sharpe_ratio, win_rate, average_leverage, average_confidence, biggest_win_usdt,
       biggest_loss_usdt, hold_ratio_long, hold_ratio_short, hold_ratio_flat, closed_positions,
       realized_pnl_usdt, stop_loss_resting_ratio, definitions_version, window_start, window_end,
       updated_at
FROM aitrader.performance_snapshots WHERE account_id = $1 AND "window" = $2
"""
# The window's exit reasons that closed a position, most positions first.
_EXITS = """
SELECT exit_reason, closed_positions, realized_pnl_usdt FROM aitrader.exit_attribution
WHERE account_id = $1 AND "window" = $2 AND closed_positions > 0
ORDER BY closed_positions DESC, exit_reason
"""
_CALIBRATION = """
SELECT bucket, closed_positions, win_rate, mean_pnl_usdt FROM aitrader.confidence_calibration
WHERE account_id = $1 AND "window" = $2 ORDER BY split_part(bucket, '-', 1)::int
"""
_EQUITY_SPAN = "SELECT min(as_of), max(as_of) FROM aitrader.equity_snapshots WHERE account_id = $1"
# The last sample of each bucket (date_bin from the epoch), at the bucket's start.
_EQUITY = """
SELECT DISTINCT ON (bucket) date_bin($2::interval, as_of, 'epoch') AS bucket, equity
FROM aitrader.equity_snapshots WHERE account_id = $1 AND as_of >= $3 AND as_of < $4
ORDER BY bucket, as_of DESC, id DESC
"""


async def performance(conn: Connection, account_id: UUID, window: Window) -> Performance:
    """The window's performance row with its exit attribution (two statements, one snapshot
    when the caller runs them in a repeatable-read transaction)."""
    row = await conn.fetchrow(_PERFORMANCE, account_id, window)
    if row is None:
        return Performance(window=window, available=False)
    exits = [ExitShare(**dict(r)) for r in await conn.fetch(_EXITS, account_id, window)]
    return Performance(window=window, available=True, exit_attribution=exits, **dict(row))


async def calibration(conn: Connection, account_id: UUID, window: Window) -> list[CalibrationBucket]:
    rows = await conn.fetch(_CALIBRATION, account_id, window)
    return [CalibrationBucket(**dict(r)) for r in rows]


def default_step(span: timedelta) -> str:
    """The finest step that draws `span` in at most MAX_POINTS points (1d beyond)."""
    for name, step in STEPS.items():
        if span / step <= MAX_POINTS:
            return name
    return "1d"


async def equity(
    conn: Connection,
    account_id: UUID,
    from_: datetime | None = None,
    to: datetime | None = None,
    step: str | None = None,
) -> tuple[str, list[EquityPoint]]:
    """(step, points) of `equity_snapshots` in [from, to): the last value per step, oldest first.
    Missing bounds are the account's first and last sample; ValueError when the step would give
    more than MAX_POINTS points (the endpoint's 422)."""
    if from_ is None or to is None:
        first, last = await conn.fetchrow(_EQUITY_SPAN, account_id) or (None, None)
        if first is None or last is None:
            return step or "1m", []
        from_ = from_ or first
        to = to or last + timedelta(microseconds=1)
    chosen = step or default_step(to - from_)
    if (to - from_) / STEPS[chosen] > MAX_POINTS:
        raise ValueError(f"step {chosen} gives more than {MAX_POINTS} points from {from_} to {to}")
    rows = await conn.fetch(_EQUITY, account_id, STEPS[chosen], from_, to)
    return chosen, [EquityPoint(time=r["bucket"], equity_usdt=r["equity"]) for r in rows]
