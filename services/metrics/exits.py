"""Pure core of the exit attribution (docs/metrics.md): whether a stop-loss rested on the exchange
when each closed position closed, and the closed positions by exit reason.

Frames (`*` = may be null; times `Datetime("us", "UTC")`):

- closed: account_id, symbol, pos_side, closing_side*, entry_time*, exit_time, exit_reason, pnl
- algos:  account_id, symbol, pos_side, side, created_at, ended_at* (null: not ended), fired
          (0/1: it ended `effective`); only algo orders with a stop-loss leg

An algo rests at a position's exit when it is of the position's slot and closing side, created at
or before the exit and not ended before it; or it fired within the position's life and the
position closed by take_profit / stop_loss (the trigger precedes the closing fill).
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

SLOT = ["account_id", "symbol", "pos_side", "side"]
TIME = pl.Datetime("us", "UTC")
_NEVER = pl.lit(datetime(9999, 12, 31, tzinfo=UTC), dtype=TIME)
_PLAN_EXITS = ("take_profit", "stop_loss")


def stop_resting(closed: pl.DataFrame, algos: pl.DataFrame) -> pl.DataFrame:
    """`closed` with `stop_resting` (bool), in O(n log n): an algo created at or before the exit
    and ended at or after it exists iff the latest end among the slot's algos created by then
    (a running maximum over creation order) is at or after the exit; a fired one within the
    position's life exists iff the latest firing at or before the exit is at or after its entry."""
    left = closed.with_row_index("_row").rename({"closing_side": "side"}).sort("exit_time")
    reach = algos.sort("created_at").select(
        *SLOT, "created_at", reach=pl.col("ended_at").fill_null(_NEVER).cum_max().over(SLOT)
    )
    fired = algos.filter(pl.col("fired") == 1).select(*SLOT, fired_at=pl.col("ended_at")).sort("fired_at")
    joined = _asof(_asof(left, reach, "created_at"), fired, "fired_at")
    by_plan = pl.col("exit_reason").is_in(_PLAN_EXITS) & (
        pl.col("fired_at") >= pl.col("entry_time").fill_null(pl.col("fired_at"))
    )
    resting = (pl.col("reach") >= pl.col("exit_time")).fill_null(False) | by_plan.fill_null(False)
    return (
        joined.with_columns(stop_resting=resting)
        .sort("_row")
        .drop("_row", "reach", "created_at", "fired_at", strict=False)
        .rename({"side": "closing_side"})
    )


def _asof(left: pl.DataFrame, right: pl.DataFrame, on: str) -> pl.DataFrame:
    # Both sides are sorted by their time (so within each slot, as the join needs).
    return left.join_asof(right, left_on="exit_time", right_on=on, by=SLOT, check_sortedness=False)


def exit_stats(closed: pl.DataFrame, bounds: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Closed positions of each window (`bounds`: start, end) by exit reason: count, net PnL."""
    return (
        closed.join(bounds, on="account_id")
        .filter(pl.col("exit_time").is_between(pl.col("start"), pl.col("end")))
        .group_by(*keys, "exit_reason")
        .agg(n=pl.len(), pnl_sum=pl.col("pnl").sum())
    )
