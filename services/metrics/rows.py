"""Pure: raw statistics -> the stored rows, rounded to their columns (half-even) in Decimal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, get_args
from uuid import UUID

import polars as pl

from services.metrics.calculations import to_numeric
from services.metrics.performance import MetricFrames
from shared.definitions import CONFIDENCE_BUCKETS, DEFINITIONS_VERSION
from shared.drawdown import drawdown_pct
from shared.money import LEDGER_CONTEXT, quantize
from shared.types import ExitReason

EXIT_REASONS: tuple[ExitReason, ...] = get_args(ExitReason)

# NUMERIC(10, 6): a Sharpe at or beyond this magnitude cannot be stored; it is stored null.
SHARPE_LIMIT = Decimal(10) ** 4
RATIO_UNITS = 10_000  # NUMERIC(6, 4)


@dataclass(frozen=True)
class PerformanceRow:
    """One `performance_snapshots` row."""

    account_id: UUID
    window: str
    window_start: datetime
    window_end: datetime
    sharpe_ratio: Decimal | None
    win_rate: Decimal | None
    average_leverage: Decimal | None
    average_confidence: Decimal | None
    biggest_win_usdt: Decimal | None
    biggest_loss_usdt: Decimal | None
    hold_ratio_long: Decimal | None
    hold_ratio_short: Decimal | None
    hold_ratio_flat: Decimal | None
    closed_positions: int
    realized_pnl_usdt: Decimal | None
    stop_loss_resting_ratio: Decimal | None
    max_drawdown_pct: Decimal | None
    definitions_version: str = DEFINITIONS_VERSION


@dataclass(frozen=True)
class CalibrationRow:
    """One `confidence_calibration` row."""

    account_id: UUID
    window: str
    bucket: str
    closed_positions: int
    win_rate: Decimal | None
    mean_pnl_usdt: Decimal | None


@dataclass(frozen=True)
class ExitRow:
    """One `exit_attribution` row."""

    account_id: UUID
    window: str
    exit_reason: ExitReason
    closed_positions: int
    realized_pnl_usdt: Decimal | None


class StoredRows(NamedTuple):
    """Everything one refresh upserts."""

    performance: list[PerformanceRow]
    calibration: list[CalibrationRow]
    exits: list[ExitRow]


def _places(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def ratio(numerator: int | Decimal | None, denominator: int | None, places: int) -> Decimal | None:
    """numerator / denominator rounded to `places`; None when there is nothing to divide."""
    if numerator is None or not denominator:
        return None
    return quantize(LEDGER_CONTEXT.divide(Decimal(numerator), Decimal(denominator)), _places(places))


def largest_remainder(parts: list[int], units: int = RATIO_UNITS) -> list[Decimal] | None:
    """Shares of `parts` in 1/units that sum to exactly 1 (Hamilton's method); ties go to the
    earlier part. None when the parts sum to zero."""
    total = sum(parts)
    if total <= 0:
        return None
    floors = [p * units // total for p in parts]
    remainders = [p * units % total for p in parts]
    order = sorted(range(len(parts)), key=lambda i: (-remainders[i], i))
    for i in order[: units - sum(floors)]:
        floors[i] += 1
    return [Decimal(f) / units for f in floors]


def sharpe_value(value: float | None) -> Decimal | None:
    """The stored Sharpe: 6 decimals, null when undefined or beyond NUMERIC(10, 6)."""
    stored = to_numeric(value, 6)
    if stored is None or abs(stored) >= SHARPE_LIMIT:
        return None
    return stored


def performance_row(raw: dict[str, Any]) -> PerformanceRow:
    """One summary row of `performance.metric_frames` as the stored row."""
    closed = raw["closed_positions"] or 0
    holds = [raw["long_us"] or 0, raw["short_us"] or 0, raw["flat_us"] or 0]
    shares: list[Decimal | None] = [None, None, None]
    shares = list(largest_remainder(holds) or shares)
    return PerformanceRow(
        account_id=UUID(raw["account_id"]),
        window=raw["window"],
        window_start=raw["start"],
        window_end=raw["end"],
        sharpe_ratio=sharpe_value(raw["sharpe"]),
        win_rate=ratio(raw["wins"], closed, 4),
        average_leverage=ratio(raw["leverage_sum"], raw["leverage_n"], 4),
        average_confidence=ratio(raw["confidence_sum"], raw["confidence_n"], 2),
        biggest_win_usdt=raw["pnl_max"],
        biggest_loss_usdt=raw["pnl_min"],
        hold_ratio_long=shares[0],
        hold_ratio_short=shares[1],
        hold_ratio_flat=shares[2],
        closed_positions=closed,
        realized_pnl_usdt=raw["pnl_sum"] if closed else None,
        stop_loss_resting_ratio=ratio(raw["stop_resting"], closed, 4),
        max_drawdown_pct=_drawdown(raw["drawdown_peak"], raw["drawdown_fall"]),
    )


def _drawdown(peak: Decimal | None, fall: Decimal | None) -> Decimal | None:
    return None if peak is None or fall is None else drawdown_pct(peak, fall)


def calibration_rows(
    summary: pl.DataFrame, buckets: pl.DataFrame
) -> list[CalibrationRow]:
    """Every (account, window) gets all four buckets; an empty bucket has count 0 and nulls."""
    found = {(r["account_id"], r["window"], r["bucket"]): r for r in buckets.iter_rows(named=True)}
    rows = []
    for key in summary.select("account_id", "window").iter_rows():
        for label, _, _ in CONFIDENCE_BUCKETS:
            hit = found.get((*key, label))
            n = hit["n"] if hit else 0
            rows.append(
                CalibrationRow(
                    account_id=UUID(key[0]),
                    window=key[1],
                    bucket=label,
                    closed_positions=n,
                    win_rate=ratio(hit["wins"], n, 4) if hit else None,
                    mean_pnl_usdt=ratio(hit["pnl_sum"], n, 8) if hit else None,
                )
            )
    return rows


def exit_rows(summary: pl.DataFrame, exits: pl.DataFrame) -> list[ExitRow]:
    """Every (account, window) gets every exit reason; one that closed nothing has count 0 and
    a null PnL (so a reason that left a sliding window is overwritten, never left behind)."""
    found = {(r["account_id"], r["window"], r["exit_reason"]): r for r in exits.iter_rows(named=True)}
    rows = []
    for key in summary.select("account_id", "window").iter_rows():
        for reason in EXIT_REASONS:
            hit = found.get((*key, reason))
            rows.append(ExitRow(account_id=UUID(key[0]), window=key[1], exit_reason=reason,
                                closed_positions=hit["n"] if hit else 0,
                                realized_pnl_usdt=hit["pnl_sum"] if hit else None))
    return rows


def stored_rows(frames: MetricFrames) -> StoredRows:
    """All rows to upsert for the accounts in `frames.summary`."""
    performance = [performance_row(raw) for raw in frames.summary.iter_rows(named=True)]
    return StoredRows(performance, calibration_rows(frames.summary, frames.calibration),
                      exit_rows(frames.summary, frames.exits))
