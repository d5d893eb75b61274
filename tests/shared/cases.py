"""Tables of cases for the rules in `shared/`, each run through every service that uses the rule.

ORDER_CASES: `shared.instruments.order_violations` (pure, tests/shared), the gateway's trade
check (tests/mcp_gateway/test_rules.py) and ingest's place-order command handler on PostgreSQL
(tests/ingest/test_orders.py). Each case says what each side answers: None = accepted, else a
fragment of its refusal. CONFIDENCE_CASES: `shared.money.average_confidence`, through the
ledger's fold (tests/positions) and the gateway's position view (tests/mcp_gateway).
BAR_CASES: `shared.bars`, through ingest, metrics and the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.instruments import InstrumentSpec, ViolationKind
from shared.types import OrderType, PosMode, PosSide, Side

SOL = InstrumentSpec(
    "SOL-USDT-SWAP",
    "SOL",
    ct_val=Decimal(1),
    ct_mult=Decimal(1),
    lot_sz=Decimal("0.1"),
    min_sz=Decimal(1),
    tick_sz=Decimal("0.01"),
    max_leverage=Decimal(50),
    status="live",
)


@dataclass(frozen=True)
class OrderCase:
    """An order for SOL (with `spec` changes): the first rule it breaks, and what the gateway
    (for the model) and ingest (in its command reply) answer."""

    kind: ViolationKind | None
    gateway: str | None
    ingest: str | None
    size: str = "2"
    leverage: str = "5"
    order_type: OrderType = "market"
    price: str | None = None
    side: Side = "buy"
    pos_mode: PosMode | None = "net_mode"
    pos_side: PosSide = "net"  # what the command carries (the gateway derives its own)
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def instrument(self) -> InstrumentSpec:
        return replace(SOL, **self.spec)

    def order(self) -> dict[str, Any]:
        """The order's values as `order_violations` takes them."""
        return {
            "size": Decimal(self.size),
            "leverage": Decimal(self.leverage),
            "order_type": self.order_type,
            "price": None if self.price is None else Decimal(self.price),
            "pos_mode": self.pos_mode,
            "pos_side": self.pos_side,
        }


ORDER_CASES = [
    pytest.param(OrderCase(None, None, None), id="valid-market"),
    pytest.param(OrderCase(None, None, None, order_type="limit", price="101.25"), id="valid-limit"),
    pytest.param(
        OrderCase(None, None, None, pos_mode=None, pos_side="long"), id="unknown-pos-mode-checks-no-pos-side"
    ),
    pytest.param(
        OrderCase(
            "not_live",
            "SOL-USDT-SWAP is not tradable now (OKX state: suspend).",
            "SOL-USDT-SWAP is suspend, not live",
            spec={"status": "suspend"},
        ),
        id="suspended",
    ),
    pytest.param(
        OrderCase(
            "below_min_size",
            "size 0.5 is below the minimum 1 contracts for SOL-USDT-SWAP",
            "size 0.5 is below minSz 1",
            size="0.5",
        ),
        id="below-min-size",
    ),
    pytest.param(
        OrderCase(
            "not_lot_multiple",
            "size 1.05 is not a multiple of the lot size 0.1 for SOL-USDT-SWAP; use 1 or 1.1",
            "size 1.05 is not a multiple of lotSz 0.1",
            size="1.05",
        ),
        id="not-lot-multiple",
    ),
    pytest.param(  # both: the minimum is named first (it is what the size must reach)
        OrderCase("below_min_size", "below the minimum 1 contracts", "size 0.05 is below minSz 1",
                  size="0.05"),
        id="below-min-and-not-lot-multiple",
    ),
    pytest.param(  # both: an instrument that does not trade refuses any order
        OrderCase("not_live", "not tradable now", "not live", size="0.5", spec={"status": "preopen"}),
        id="not-live-and-below-min",
    ),
    pytest.param(
        OrderCase(
            "leverage_out_of_range",
            "leverage 51 is outside the allowed range 1 to 50 for SOL-USDT-SWAP",
            "leverage 51 exceeds the maximum 50",
            leverage="51",
        ),
        id="leverage-above-instrument-maximum",
    ),
    pytest.param(
        OrderCase(
            "leverage_out_of_range",
            "leverage 0.5 is outside the allowed range 1 to 50",
            "leverage 0.5 is below the minimum 1",
            leverage="0.5",
        ),
        id="leverage-below-one",
    ),
    pytest.param(
        OrderCase(
            "price_on_market_order",
            "price is only for limit orders; omit it for a market order.",
            "px 100 is only for limit orders",
            price="100",
        ),
        id="price-on-market-order",
    ),
    pytest.param(
        OrderCase(
            "price_missing",
            "a limit order needs price (> 0, a multiple of the tick size).",
            "a limit order needs a positive px",
            order_type="limit",
        ),
        id="limit-without-price",
    ),
    pytest.param(
        OrderCase(
            "price_not_positive",
            "price must be > 0; got -1.",
            "a limit order needs a positive px",
            order_type="limit",
            price="-1",
        ),
        id="limit-price-not-positive",
    ),
    pytest.param(
        OrderCase(
            "not_tick_multiple",
            "price 1.005 is not a multiple of the tick size 0.01 for SOL-USDT-SWAP; use 1 or 1.01.",
            "px 1.005 is not a multiple of tickSz 0.01",
            order_type="limit",
            price="1.005",
        ),
        id="limit-price-off-tick",
    ),
    # The gateway derives posSide from the account's mode (rules.pos_side_for), so its orders
    # never break this rule; ingest checks the command it is given.
    pytest.param(
        OrderCase(
            "pos_side_for_mode",
            None,
            "the account is in net mode: pos_side must be net",
            pos_side="long",
        ),
        id="long-in-net-mode",
    ),
    pytest.param(
        OrderCase(
            "pos_side_for_mode",
            None,
            "the account is in long/short mode: pos_side must be long or short",
            pos_mode="long_short_mode",
        ),
        id="net-in-long-short-mode",
    ),
]

# (confidence_weight_sum, confidence_quantity, average confidence) of a position's opening fills.
CONFIDENCE_CASES = [
    pytest.param("210.000000000000", "3.00000000", "70", id="exact"),
    pytest.param("100", "3", "33.33", id="no-exact-quotient"),  # 33.333...
    pytest.param("33.325", "1", "33.32", id="half-to-even-down"),
    pytest.param("99.975", "1", "99.98", id="half-to-even-up"),
    pytest.param("0.000000333250", "0.00000001", "33.32", id="tiny-quantity"),
    pytest.param(  # 30 significant digits: rounded once, not first to the default 28
        "33.33499999999999999999999999999", "1", "33.33", id="beyond-28-digits"
    ),
    pytest.param("0", "0", None, id="no-confidence"),  # no opening fill carried one
]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# (bar name, its length in ms or None, the close time of a candle opened at T0 or None = no bar)
BAR_CASES = [
    pytest.param("1s", 1_000, T0 + timedelta(seconds=1), id="1s"),
    pytest.param("3m", 180_000, T0 + timedelta(minutes=3), id="3m"),
    pytest.param("4H", 14_400_000, T0 + timedelta(hours=4), id="4H"),
    pytest.param("1D", 86_400_000, T0 + timedelta(days=1), id="1D"),
    pytest.param("1Dutc", 86_400_000, T0 + timedelta(days=1), id="1Dutc"),
    pytest.param("1W", 604_800_000, T0 + timedelta(weeks=1), id="1W"),
    pytest.param("3M", None, datetime(2026, 4, 1, tzinfo=UTC), id="3M-calendar-months"),
    pytest.param("0m", None, None, id="zero-count"),
    pytest.param("100m", None, None, id="three-digit-count"),
    pytest.param("3x", None, None, id="unknown-unit"),
    pytest.param("m", None, None, id="no-count"),
    pytest.param("", None, None, id="empty"),
]
