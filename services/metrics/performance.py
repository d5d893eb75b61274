"""Pure core of the performance metrics (DESIGN §6, docs/metrics.md) over polars frames.

All accounts and the three windows are computed in one pass of frame operations. Money
(PnL) stays `Decimal(38, 8)` end to end; only Sharpe uses floats. Input frames (`*` = may be
null); times are `Datetime("us", "UTC")`, `account_id` is the UUID as text:

- accounts: account_id, created_at
- equity:   account_id, id (the row's, to order points of one time), as_of, equity (Decimal)
- closed:   account_id, entry_time*, exit_time, pnl (Decimal), confidence* (f64),
            notional (Decimal: signed contracts x entry price x ctVal x ctMult),
            symbol, pos_side, closing_side*, exit_reason
- algos:    the algo orders with a stop-loss leg (`exits`)
- open:     account_id, opened_at, notional (Decimal, signed)
- orders:   account_id, filled_at, leverage* (Decimal), confidence* (Decimal)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from services.metrics.exits import exit_stats, stop_resting
from shared.definitions import (
    CONFIDENCE_BUCKETS,
    SHARPE_ANNUALIZATION,
    SHARPE_BUCKET,
    WINDOW_LENGTHS,
    WINDOWS,
)
from shared.drawdown import deepest_falls

KEYS = ["account_id", "window"]
MONEY = pl.Decimal(38, 8)
_BUCKET_US = int(SHARPE_BUCKET.total_seconds() * 1_000_000)
_NOTIONAL_UNITS = 100_000_000


@dataclass(frozen=True)
class PerformanceInputs:
    """What the metrics are computed from (see the module docstring for the columns)."""

    accounts: pl.DataFrame
    equity: pl.DataFrame
    closed: pl.DataFrame
    open: pl.DataFrame
    orders: pl.DataFrame
    algos: pl.DataFrame


def _in_window(column: str) -> pl.Expr:
    return pl.col(column).is_between(pl.col("start"), pl.col("end"))


def window_bounds(inputs: PerformanceInputs, now: datetime) -> pl.DataFrame:
    """One row per (account, window): start and end (= now). all_time starts at the
    account's first trace: its creation, or an earlier equity point, position or fill."""
    firsts = [
        inputs.accounts.select("account_id", first=pl.col("created_at")),
        inputs.equity.group_by("account_id").agg(first=pl.col("as_of").min()),
        inputs.closed.group_by("account_id").agg(
            first=pl.min_horizontal(pl.col("entry_time").min(), pl.col("exit_time").min())
        ),
        inputs.open.group_by("account_id").agg(first=pl.col("opened_at").min()),
        inputs.orders.group_by("account_id").agg(first=pl.col("filled_at").min()),
    ]
    first = (
        pl.concat([f.cast({"first": pl.Datetime("us", "UTC")}) for f in firsts])
        .group_by("account_id")
        .agg(pl.col("first").min())
        .join(inputs.accounts.select("account_id"), on="account_id", how="semi")
    )
    end = pl.lit(now, dtype=pl.Datetime("us", "UTC"))
    frames = []
    for window in WINDOWS:
        length = WINDOW_LENGTHS[window]
        start = end - length if length is not None else pl.min_horizontal("first", end)
        frames.append(first.select("account_id", window=pl.lit(window), start=start, end=end))
    return pl.concat(frames)


def sharpe(equity: pl.DataFrame, bounds: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Annualized Sharpe of 5-minute simple returns per (account, window); null if undefined.

    A bucket's sample is its last equity point. Buckets without a point repeat the previous
    sample (a zero return), which is counted without materializing it: N returns span the
    first to the last sampled bucket, and only the returns across sampled buckets can be
    non-zero.
    """
    samples = (
        equity.filter(pl.col("as_of") <= now)
        .with_columns(bucket=pl.col("as_of").dt.epoch("us") // _BUCKET_US)
        .group_by("account_id", "bucket")
        .agg(
            pl.col("equity").cast(pl.Float64).get(pl.col("as_of").arg_max()),
            pl.col("as_of").max(),
        )
        .join(bounds, on="account_id")
        .filter(_in_window("as_of"))
        .sort("bucket")
    )
    ret = pl.col("equity") / pl.col("equity").shift(1) - 1.0
    n = (pl.col("bucket").max() - pl.col("bucket").min()).cast(pl.Float64)
    mean = ret.sum() / n
    stats = samples.group_by(KEYS).agg(
        n=n,
        mean=mean,
        ss=((ret - mean) ** 2).sum() + (n - ret.count()) * mean**2,
        nonpositive=(pl.col("equity").shift(1) <= 0).any(),
    )
    value = pl.col("mean") / (pl.col("ss") / (pl.col("n") - 1)).sqrt() * SHARPE_ANNUALIZATION
    defined = (pl.col("n") >= 2) & (pl.col("ss") > 0) & ~pl.col("nonpositive")
    return stats.select(*KEYS, sharpe=pl.when(defined).then(value))


def drawdowns(equity: pl.DataFrame, bounds: pl.DataFrame) -> pl.DataFrame:
    """The deepest fall from a running peak per (account, window), over the window's points
    in (as_of, id) order (`shared.drawdown`): its peak and fall; no row without a peak > 0."""
    points = equity.join(bounds, on="account_id").filter(_in_window("as_of")).sort("as_of", "id")
    return deepest_falls(points, KEYS).rename({"peak": "drawdown_peak", "fall": "drawdown_fall"})


def trade_stats(closed: pl.DataFrame, bounds: pl.DataFrame) -> pl.DataFrame:
    """Closed positions by exit time: count, wins (net PnL > 0), sum / max / min of net PnL,
    and how many had a stop-loss resting when they closed."""
    return (
        closed.join(bounds, on="account_id")
        .filter(_in_window("exit_time"))
        .group_by(KEYS)
        .agg(
            closed_positions=pl.len(),
            wins=(pl.col("pnl") > 0).sum(),
            pnl_sum=pl.col("pnl").sum(),
            pnl_max=pl.col("pnl").max(),
            pnl_min=pl.col("pnl").min(),
            stop_resting=pl.col("stop_resting").sum(),
        )
    )


def order_stats(orders: pl.DataFrame, bounds: pl.DataFrame) -> pl.DataFrame:
    """Orders filled in the window: sums and counts of their leverage and confidence."""
    return (
        orders.join(bounds, on="account_id")
        .filter(_in_window("filled_at"))
        .group_by(KEYS)
        .agg(
            leverage_sum=pl.col("leverage").sum(),
            leverage_n=pl.col("leverage").count(),
            confidence_sum=pl.col("confidence").sum(),
            confidence_n=pl.col("confidence").count(),
        )
    )


def hold_times(
    closed: pl.DataFrame, open_: pl.DataFrame, bounds: pl.DataFrame, now: datetime
) -> pl.DataFrame:
    """Microseconds of each window with signed open notional > 0, < 0 and = 0.

    The account's notional is a step function: each position adds its signed notional at
    entry and removes it at exit (still open: at the window end). Summing the steps per
    instant exactly (integers of 1e-8 USDT) keeps an exact hedge exactly flat.
    """
    intervals = pl.concat(
        [
            closed.select(
                "account_id",
                t0=pl.coalesce("entry_time", "exit_time"),
                t1=pl.col("exit_time"),
                notional=pl.col("notional"),
            ),
            open_.select(
                "account_id",
                t0=pl.col("opened_at"),
                t1=pl.lit(now, dtype=pl.Datetime("us", "UTC")),
                notional=pl.col("notional"),
            ),
        ]
    )
    # Exact integers in 1e-8 USDT: as exact as the Decimal, and much faster to sum.
    intervals = intervals.with_columns(
        notional=(pl.col("notional").cast(MONEY) * _NOTIONAL_UNITS).cast(pl.Int64)
    )
    clipped = (
        intervals.join(bounds, on="account_id")
        .with_columns(
            t0=pl.max_horizontal("t0", "start"), t1=pl.min_horizontal("t1", "end")
        )
        .filter(pl.col("t0") < pl.col("t1"))
    )
    zero = pl.lit(0, dtype=pl.Int64)
    steps = pl.concat(
        [
            clipped.select(*KEYS, t=pl.col("t0"), delta=pl.col("notional")),
            clipped.select(*KEYS, t=pl.col("t1"), delta=-pl.col("notional")),
            bounds.select(*KEYS, t=pl.col("start"), delta=zero),
            bounds.select(*KEYS, t=pl.col("end"), delta=zero),
        ]
    )
    levels = (
        steps.group_by(*KEYS, "t")
        .agg(pl.col("delta").sum())
        .sort(*KEYS, "t")
        .with_columns(
            level=pl.col("delta").cum_sum().over(KEYS),
            dur=(pl.col("t").shift(-1).over(KEYS) - pl.col("t")).dt.total_microseconds(),
        )
    )
    held = pl.col("dur").fill_null(0)
    return levels.group_by(KEYS).agg(
        long_us=held.filter(pl.col("level") > 0).sum(),
        short_us=held.filter(pl.col("level") < 0).sum(),
        flat_us=held.filter(pl.col("level") == 0).sum(),
    )


def calibration(closed: pl.DataFrame, bounds: pl.DataFrame) -> pl.DataFrame:
    """Closed positions with a confidence, by bucket: count, wins, sum of net PnL."""
    bucket = pl.lit(None, dtype=pl.String)
    for label, low, high in reversed(CONFIDENCE_BUCKETS):
        bucket = (
            pl.when((pl.col("confidence") >= low) & (pl.col("confidence") < high))
            .then(pl.lit(label))
            .otherwise(bucket)
        )
    return (
        closed.filter(pl.col("confidence").is_not_null())
        .join(bounds, on="account_id")
        .filter(_in_window("exit_time"))
        .with_columns(bucket=bucket)
        .filter(pl.col("bucket").is_not_null())
        .group_by(*KEYS, "bucket")
        .agg(n=pl.len(), wins=(pl.col("pnl") > 0).sum(), pnl_sum=pl.col("pnl").sum())
    )


@dataclass(frozen=True)
class MetricFrames:
    """Raw statistics: one summary row per account and window, calibration rows by bucket,
    exit rows by reason (only the reasons that occur)."""

    summary: pl.DataFrame
    calibration: pl.DataFrame
    exits: pl.DataFrame


def metric_frames(inputs: PerformanceInputs, now: datetime) -> MetricFrames:
    """Every statistic of every account and window, as frames."""
    bounds = window_bounds(inputs, now)
    closed = stop_resting(inputs.closed, inputs.algos)
    summary = bounds
    for part in (
        sharpe(inputs.equity, bounds, now),
        drawdowns(inputs.equity, bounds),
        trade_stats(closed, bounds),
        order_stats(inputs.orders, bounds),
        hold_times(inputs.closed, inputs.open, bounds, now),
    ):
        summary = summary.join(part, on=KEYS, how="left")
    return MetricFrames(summary, calibration(closed, bounds), exit_stats(closed, bounds, KEYS))
