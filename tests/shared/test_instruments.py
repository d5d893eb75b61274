"""The order rules (pure): which rules an order breaks and in which order; the contract size."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from shared.instruments import SPEC_COLUMNS, InstrumentSpec, Violation, order_violations
from tests.shared.cases import ORDER_CASES, SOL, OrderCase


@pytest.mark.parametrize("case", ORDER_CASES)
def test_first_violation(case: OrderCase) -> None:
    found = order_violations(case.instrument, **case.order())
    assert (found[0].kind if found else None) == case.kind


def test_every_violation_is_reported_in_the_order_to_fix_them() -> None:
    # suspended; 0.05 < 1 and not a multiple of 0.1; 60 > 50; price off tick; long in net mode
    found = order_violations(
        replace(SOL, status="suspend"),
        size=Decimal("0.05"),
        leverage=Decimal(60),
        order_type="limit",
        price=Decimal("1.005"),
        pos_mode="net_mode",
        pos_side="long",
    )
    assert found == [
        Violation("not_live"),
        Violation("below_min_size", Decimal("0.05"), Decimal(1)),
        Violation("not_lot_multiple", Decimal("0.05"), Decimal("0.1")),
        Violation("leverage_out_of_range", Decimal(60), Decimal(50)),
        Violation("not_tick_multiple", Decimal("1.005"), Decimal("0.01")),
        Violation("pos_side_for_mode"),
    ]


def test_a_caller_may_cap_leverage_below_the_instrument_maximum() -> None:
    order = OrderCase(None, None, None, leverage="21").order()
    assert order_violations(SOL, **order) == []
    assert order_violations(SOL, **order, leverage_cap=Decimal(20)) == [
        Violation("leverage_out_of_range", Decimal(21), Decimal(20))
    ]
    capped = OrderCase(None, None, None, leverage="51").order()
    assert order_violations(SOL, **capped, leverage_cap=Decimal(100)) == [  # the instrument's 50 holds
        Violation("leverage_out_of_range", Decimal(51), Decimal(50))
    ]


def test_contract_size_is_ct_val_times_ct_mult() -> None:
    one = Decimal(1)
    spec = InstrumentSpec("X-USDT-SWAP", "X", Decimal("0.1"), Decimal(10), one, one, one, one, "live")
    assert spec.contract_size == Decimal(1)
    assert replace(SOL, ct_val=Decimal("0.01")).contract_size == Decimal("0.01")


def test_spec_columns_name_every_field() -> None:
    assert SPEC_COLUMNS.split(", ") == [
        "symbol", "base_asset", "ct_val", "ct_mult", "lot_sz", "min_sz", "tick_sz", "max_leverage", "status"
    ]
