"""An instrument's contract specification, and what makes an order valid for it (pure).

`InstrumentSpec` is one row of `aitrader.instruments` as every service reads it (ingest loads
the table from OKX). `order_violations` is the one statement of the exchange's order rules;
each service words a `Violation` for its own reader (the gateway for the model, ingest in its
command reply).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Literal

from shared.types import OrderType, PosMode, PosSide

MIN_LEVERAGE = Decimal(1)


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """A USDT-margined linear swap: one contract is ct_val x ct_mult units of base_asset; sizes
    are contracts in lot_sz steps from min_sz; prices are tick_sz steps."""

    symbol: str
    base_asset: str
    ct_val: Decimal
    ct_mult: Decimal
    lot_sz: Decimal
    min_sz: Decimal
    tick_sz: Decimal
    max_leverage: Decimal
    status: str  # OKX state: live, suspend, preopen, test

    @property
    def contract_size(self) -> Decimal:
        """Base-asset quantity of one contract."""
        return self.ct_val * self.ct_mult


# The `aitrader.instruments` columns an `InstrumentSpec` is made of: InstrumentSpec(**row).
SPEC_COLUMNS = ", ".join(f.name for f in fields(InstrumentSpec))

ViolationKind = Literal[
    "not_live",
    "below_min_size",
    "not_lot_multiple",
    "leverage_out_of_range",
    "price_on_market_order",
    "price_missing",
    "price_not_positive",
    "not_tick_multiple",
    "pos_side_for_mode",
]


@dataclass(frozen=True, slots=True)
class Violation:
    """One rule an order breaks: the offending value and the bound or step it breaks."""

    kind: ViolationKind
    value: Decimal | None = None
    limit: Decimal | None = None


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def order_violations(
    spec: InstrumentSpec,
    *,
    size: Decimal,
    leverage: Decimal,
    order_type: OrderType,
    price: Decimal | None,
    pos_mode: PosMode | None,
    pos_side: PosSide,
    leverage_cap: Decimal | None = None,
) -> list[Violation]:
    """Every rule the order breaks, in the order a reader should fix them (empty: valid).

    Leverage runs from 1 to the instrument's maximum, or to `leverage_cap` when the caller
    allows less (the gateway's server limit). An unknown position mode checks no posSide."""
    found: list[Violation] = []
    if spec.status != "live":
        found.append(Violation("not_live"))
    if size < spec.min_sz:
        found.append(Violation("below_min_size", size, spec.min_sz))
    if not is_multiple(size, spec.lot_sz):
        found.append(Violation("not_lot_multiple", size, spec.lot_sz))
    top = spec.max_leverage if leverage_cap is None else min(spec.max_leverage, leverage_cap)
    if leverage < MIN_LEVERAGE or leverage > top:
        found.append(Violation("leverage_out_of_range", leverage, top))
    found.extend(_price_violations(spec, order_type, price))
    if (pos_mode == "net_mode" and pos_side != "net") or (
        pos_mode == "long_short_mode" and pos_side == "net"
    ):
        found.append(Violation("pos_side_for_mode"))
    return found


def _price_violations(spec: InstrumentSpec, order_type: OrderType, price: Decimal | None) -> list[Violation]:
    if order_type == "market":
        return [] if price is None else [Violation("price_on_market_order", price)]
    if price is None:
        return [Violation("price_missing")]
    if price <= 0:
        return [Violation("price_not_positive", price)]
    if not is_multiple(price, spec.tick_sz):
        return [Violation("not_tick_multiple", price, spec.tick_sz)]
    return []
