"""Per-account summaries the metrics service stores: the performance row of a window, its exit
attribution, the confidence calibration, and the equity series.

The operator's CLI (`aitrader performance`, `aitrader status`) reads them here, with the
statements the console's `/accounts/{id}/performance`, `/calibration` and `/equity` endpoints
run (`figures`): one home for each query. Each takes a connection and the account's id.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal
from uuid import UUID

from services.console import figures

# The answers' models are the endpoints' (`view_models`): the CLI's --json is the API's answer.
from services.console.view_models import Bucket as CalibrationBucket
from services.console.view_models import EquityPoint, Performance
from services.console.view_models import ExitReasonRow as ExitShare
from shared.db import Connection

Window = Literal["daily", "weekly", "all_time"]
WINDOWS: Final = ("daily", "weekly", "all_time")


# The statements are the console endpoints' (`figures`): one home for each query.
_PERFORMANCE, _EXITS, _CALIBRATION = figures.PERFORMANCE, figures.EXIT_ATTRIBUTION, figures.CALIBRATION
_EQUITY_SPAN = "SELECT min(as_of), max(as_of) FROM aitrader.equity_snapshots WHERE account_id = $1"


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
    chosen = figures.choose_step(from_, to, step)  # type: ignore[arg-type]
    rows = await conn.fetch(figures.EQUITY_SERIES, account_id, figures.STEPS[chosen], from_, to)
    return chosen, [EquityPoint(**dict(r)) for r in rows]
