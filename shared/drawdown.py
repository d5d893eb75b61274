"""Max drawdown, the one definition (docs/metrics.md): the largest fall from a running peak of
equity, in percent of that peak, over a series of equity points in time order.

Exact from the stored NUMERIC values: the running peak and the falls are Decimal (polars
`Decimal(38, 8)`); the deepest fall is chosen by comparing fall / peak in floats (two falls
within ~1e-15 relative of each other may be taken one for the other, which changes no stored
digit unless they straddle a rounding boundary of the 4th decimal), and its percentage is
computed in Decimal and rounded half-even to 4 decimals. Points before the first positive peak
do not count; no such point: no drawdown (None). A series that never fell: 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from shared.money import LEDGER_CONTEXT, Q4, quantize

MONEY = pl.Decimal(38, 8)


@dataclass(frozen=True)
class Drawdown:
    """The deepest fall: from `peak` down by `fall` (USDT)."""

    peak: Decimal
    fall: Decimal

    @property
    def pct(self) -> Decimal:
        """fall / peak x 100, 4 decimals (the stored `max_drawdown_pct`)."""
        return drawdown_pct(self.peak, self.fall)


def drawdown_pct(peak: Decimal, fall: Decimal) -> Decimal:
    """fall / peak x 100 rounded half-even to 4 decimals (peak > 0)."""
    return quantize(LEDGER_CONTEXT.divide(fall * 100, peak), Q4)


def deepest_falls(equity: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Per group of `keys`: `peak` and `fall` (Decimal) of its deepest fall in percent.

    `equity` has the key columns and `equity` (Decimal), its rows in time order within each
    group; a group whose peak never exceeds 0 is left out.
    """
    peak = pl.col("equity").cum_max().over(keys)
    return (
        equity.select(*keys, pl.col("equity").cast(MONEY))
        .with_columns(peak=peak)
        .filter(pl.col("peak") > 0)
        .with_columns(fall=pl.col("peak") - pl.col("equity"))
        .group_by(keys)
        .agg(
            pl.col("peak", "fall").get(
                (pl.col("fall").cast(pl.Float64) / pl.col("peak").cast(pl.Float64)).arg_max()
            )
        )
    )


def max_drawdown(values: Sequence[Decimal]) -> Drawdown | None:
    """The deepest fall of one series of equity values in time order; None when no value > 0."""
    frame = pl.DataFrame(
        {"series": [0] * len(values), "equity": list(values)},
        schema={"series": pl.Int8(), "equity": MONEY},
    )
    found = deepest_falls(frame, ["series"])
    if found.is_empty():
        return None
    return Drawdown(peak=found["peak"][0], fall=found["fall"][0])
