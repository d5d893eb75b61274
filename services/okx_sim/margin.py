"""Cross-margin arithmetic for linear swaps: unrealized PnL, margins, liquidation price."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from .config import InstrumentSpec
from .models import ZERO, Position


@dataclass(frozen=True)
class Risk:
    """Margin figures of one position at a mark price."""

    notional: Decimal
    upl: Decimal
    imr: Decimal
    mmr: Decimal


def qty(pos: Position, spec: InstrumentSpec) -> Decimal:
    """Signed position size in base coin (contracts × ctVal × ctMult)."""
    return pos.direction * abs(pos.pos) * spec.contract_size


def risk(pos: Position, spec: InstrumentSpec, mark: Decimal, mmr_rate: Decimal) -> Risk:
    """Notional, upl (at mark), initial and maintenance margin of a position."""
    q = qty(pos, spec)
    notional = abs(q) * mark
    return Risk(notional, (mark - pos.avg_px) * q, notional / pos.lever, notional * mmr_rate)


def equity(cash: Decimal, risks: Iterable[Risk]) -> Decimal:
    """Cash balance plus unrealized PnL."""
    return cash + sum((r.upl for r in risks), ZERO)


def liquidation_px(
    pos: Position, spec: InstrumentSpec, this: Risk, eq: Decimal, mmr_total: Decimal,
    mmr_rate: Decimal,
) -> Decimal | None:
    """Mark price at which account equity would fall to the maintenance margin, others fixed.

    long:  eq_o + (p − avg)·Q = mmr·p·Q + mmr_o  →  p = (avg·Q − eq_o + mmr_o) / (Q·(1 − mmr))
    short: eq_o + (avg − p)·Q = mmr·p·Q + mmr_o  →  p = (eq_o − mmr_o + avg·Q) / (Q·(1 + mmr))
    """
    q = abs(qty(pos, spec))
    if q == 0:
        return None
    eq_other = eq - this.upl
    mmr_other = mmr_total - this.mmr
    if pos.direction > 0:
        px = (pos.avg_px * q - eq_other + mmr_other) / (q * (1 - mmr_rate))
    else:
        px = (eq_other - mmr_other + pos.avg_px * q) / (q * (1 + mmr_rate))
    if px <= 0:
        return None
    return px.quantize(spec.tick_sz)
