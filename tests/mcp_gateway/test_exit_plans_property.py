"""The exit-plan invariant as a property, on the real services: after any sequence of trades,
plan updates and price moves through MCP, every open position's stored legs equal the
exchange's pending algo orders for it (read with python-okx), and no pending algo order belongs
to no position. Refused calls are part of the sequences: a refusal must change nothing.

CI runs 3 sequences; `make faults` (AITRADER_FAULTS=full, marker `faults`) runs 25 random ones."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import wait_for
from tests.mcp_gateway.conftest import call
from tests.mcp_gateway.exit_stack import BTC, Stack, stack

__all__ = ["stack"]  # the fixture
# `faults`: `make faults` runs the long variant with the other long runs.
pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
FULL = os.environ.get("AITRADER_FAULTS") == "full"

FACTORS = st.sampled_from(["0.9", "0.94", "0.97", "1.03", "1.06", "1.1"])
LEG = st.one_of(st.none(), FACTORS)
STEP = st.one_of(
    st.tuples(
        st.just("trade"),
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["1", "2", "3"]),
        st.booleans(),
        LEG,
        LEG,
    ),
    st.tuples(st.just("update"), st.one_of(FACTORS, st.just("null")), st.one_of(FACTORS, st.just("null"))),
    st.tuples(st.just("move"), st.sampled_from(["0.96", "0.98", "1.02", "1.04"])),
)


async def apply(stack: Stack, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "trade":
        _, side, size, reduce_only, tp, sl = step
        plan = {k: str(stack.price(f)) for k, f in (("take_profit", tp), ("stop_loss", sl)) if f}
        extra: dict[str, Any] = {"reduce_only": True} if reduce_only else {}
        if plan:
            extra["exit_plan"] = plan
        await call(
            stack.client,
            "execute_trade",
            symbol=BTC,
            side=side,
            size=size,
            leverage=5,
            confidence=60,
            **extra,
        )
    elif kind == "update":
        changes = {
            k: "none" if f == "null" else str(stack.price(f))
            for k, f in (("take_profit", step[1]), ("stop_loss", step[2]))
        }
        await call(stack.client, "update_exit_plan", symbol=BTC, **changes)
    else:
        stack.sim.set_price(BTC, stack.price(step[1]))


def _slot(algo: dict[str, Any]) -> str:
    """Which position an algo order closes (net mode: a sell closes the long)."""
    return "long" if algo["side"] == "sell" else "short"


async def mismatch(stack: Stack) -> str | None:
    """What breaks the invariant now, or None."""
    rows = await stack.pool.fetch("SELECT side, quantity, exit_plan FROM aitrader.positions_open")
    book = {r["side"]: r for r in rows}
    pending = await stack.pending()
    for algo in pending:
        if _slot(algo) not in book:
            return f"pending algo {algo['algoId']} closes a {_slot(algo)} position the book does not hold"
    for side, row in book.items():
        plan = row["exit_plan"] or {}
        want = (plan.get("take_profit"), plan.get("stop_loss"))
        mine = [a for a in pending if _slot(a) == side]
        if want == (None, None):
            if mine:
                return f"{side} has no plan legs but {len(mine)} pending algo orders"
            continue
        if len(mine) != 1:
            return f"{side} plan {want}: {len(mine)} pending algo orders"
        got = tuple(Decimal(mine[0][k]) if mine[0][k] else None for k in ("tpTriggerPx", "slTriggerPx"))
        if got != tuple(Decimal(v) if v else None for v in want):
            return f"{side} plan {want} but OKX holds {got}"
        if mine[0]["closeFraction"] != "1" and Decimal(mine[0]["sz"]) != row["quantity"]:
            return f"{side} holds {row['quantity']} but its algo covers {mine[0]['sz']}"
    return None


@settings(
    max_examples=25 if FULL else 3,
    deadline=None,
    derandomize=not FULL,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=3, max_size=8))
async def test_stored_legs_equal_the_exchange_after_any_sequence(stack: Stack, steps: list[Any]) -> None:
    for step in steps:
        await apply(stack, step)

    async def holds() -> bool | None:
        return True if await mismatch(stack) is None else None

    try:
        await wait_for(holds, timeout=10, message="the exit-plan invariant")
    except AssertionError:
        raise AssertionError(f"after {steps}: {await mismatch(stack)}") from None
