"""Exit plans as use cases: the plan an order carries (checked, versioned, attached to an order
that opens a position), what follows a trade (the plan algo kept in step with the position),
and update_exit_plan. The exchange side is `exit_orders`; the design is issue #16.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID, uuid5

from services.mcp_gateway import exit_orders, exit_store, views
from services.mcp_gateway.audit import ToolCall
from services.mcp_gateway.errors import InvalidArgument
from services.mcp_gateway.exit_store import Slot
from services.mcp_gateway.gateway import Gateway
from services.mcp_gateway.rules import (
    TradeRequest,
    check_exit_plan,
    check_exit_triggers,
    check_plan_order,
    merged_exit_plan,
    plan_legs,
)
from shared.instruments import InstrumentSpec
from shared.messages import AttachedAlgo
from shared.money import plain_decimal as fmt
from shared.types import Direction, PosSide

Kind = Literal["open", "flip", "add", "reduce"]
LEGS = ("take_profit", "stop_loss")


def trade_kind(req: TradeRequest, before: Slot | None) -> Kind:
    """What the order does to its slot: open a position, flip it (net mode), add, or reduce."""
    if req.reduce_only:
        return "reduce"
    if before is None:
        return "open"
    if before.side == direction_of(req):
        return "add"
    return "flip" if req.size > before.contracts else "reduce"


def direction_of(req: TradeRequest) -> Direction:
    return "long" if req.side == "buy" else "short"


def version_after(previous: dict[str, Any] | None) -> int:
    """1 for a first plan; the previous version + 1 (a plan stored before versions was 1)."""
    return int(previous.get("version") or 1) + 1 if previous else 1


def order_plan(
    req: TradeRequest,
    given: views.ExitPlanFields | None,
    before: Slot | None,
    mark: Decimal | None,
    inst: InstrumentSpec,
) -> dict[str, Any] | None:
    """The plan document an order carries, checked against the mark and the tick, versioned."""
    if given is None:
        return None
    check_plan_order(True, req.reduce_only)
    kind, side = trade_kind(req, before), direction_of(req)
    if kind == "reduce":
        assert before is not None
        raise InvalidArgument(
            f"This {req.side} of {fmt(req.size)} only reduces the {before.side} position of "
            f"{fmt(before.contracts)} contracts, so an exit plan for a {side} has no position "
            "to protect; omit exit_plan (change the position's plan with update_exit_plan)."
        )
    plan = given.model_dump(mode="json", exclude_none=True)
    check_exit_plan(plan, side)
    check_exit_triggers({k: Decimal(plan[k]) for k in LEGS if k in plan}, side, mark, inst)
    plan["version"] = version_after(before.exit_plan if before and kind == "add" else None)
    return plan


def attach_id(order_id: UUID) -> str:
    """The attached algo's client id (OKX attachAlgoClOrdId): the same for every retry of the order."""
    return uuid5(order_id, "exit-plan").hex


def attached(order_id: UUID, plan: dict[str, Any] | None, kind: Kind) -> AttachedAlgo | None:
    """The plan's legs on an order that opens a position: they rest from its fill."""
    tp, sl = plan_legs(plan)
    if kind not in ("open", "flip") or (tp is None and sl is None):
        return None
    return AttachedAlgo(**exit_orders.legs(tp, sl), attach_algo_cl_ord_id=attach_id(order_id))


async def after_trade(
    gw: Gateway,
    call: ToolCall,
    order: views.Order,
    account_id: UUID,
    pos_side: PosSide,
    kind: Kind,
    plan: dict[str, Any] | None,
    filled: Decimal,
) -> str | None:
    """Once the fills are folded: keep the slot's plan algo in step with the position (the
    trade stands whatever happens here; the outcome is the returned note)."""
    has_legs = plan_legs(plan) != (None, None)
    if filled <= 0:
        return _unfilled_note(plan, kind, has_legs)
    slot = await exit_store.open_slot(gw.pool, account_id, order.symbol, pos_side)
    if slot is None:
        return None  # flat: the exchange cancels the slot's close-only algos
    if kind == "open":  # the fold stored the order's plan; its legs came with the fill
        if plan is None:
            return None
        first = await exit_store.save_exit_plan(gw.pool, slot, plan, call.id, on_position=False)
        how = f"attached to order {order.exchange_order_id}" if has_legs else "no leg"
        if has_legs and order.status != "filled":  # OKX places attached legs at the full fill
            how += (
                f" (filled {fmt(filled)} of {fmt(order.size)} so far: OKX places the legs once it is"
                " filled completely; if the rest is cancelled, call update_exit_plan to place them)"
            )
        await exit_store.record_outcome(gw.pool, first, None, "0", how)
        return f"Exit plan version {plan['version']}: {how}." if has_legs else None
    if kind == "flip" and has_legs:
        await _await_attached(gw, account_id, attach_id(order.order_id))
    if plan is not None and kind != "flip":  # the order's plan becomes the position's
        return (await change(gw, slot, plan, call.id)).note
    if plan is not None:  # the fold stored the flip's plan on the new position
        history: int | None = await exit_store.save_exit_plan(gw.pool, slot, plan, call.id, on_position=False)
    else:
        plan, history = slot.exit_plan, await exit_store.latest_history_id(gw.pool, slot)
        if plan_legs(plan) == (None, None):
            return None
    return await make_rest(gw, slot, history)


def _unfilled_note(plan: dict[str, Any] | None, kind: Kind, has_legs: bool) -> str | None:
    if plan is None:
        return None
    if kind in ("open", "flip") and has_legs:
        return "The exit plan is attached to the order: OKX places it once the order is filled."
    return (
        "The order has no fill yet, so its exit plan is not applied to the position; "
        "call update_exit_plan once it fills."
    )


async def _await_attached(gw: Gateway, account_id: UUID, cl_id: str) -> None:
    """Until the attached algo's update reached the ledger (bounded): else the planner would
    place a second one beside it."""
    deadline = time.monotonic() + gw.config.mcp_exit_settle_ms / 1000
    while time.monotonic() < deadline:
        if await exit_store.algo_state(gw.pool, account_id, cl_id) is not None:
            return
        await asyncio.sleep(0.02)  # the update comes through ingest and positions: no event here


def updated_plan(
    slot: Slot, changes: dict[str, Any], mark: Decimal | None, inst: InstrumentSpec
) -> dict[str, Any]:
    """update_exit_plan's new plan: merged, checked against the mark and the tick, versioned."""
    plan = merged_exit_plan(slot.exit_plan, **changes)
    check_exit_plan(plan, slot.side)
    given = {k: v for k, v in changes.items() if k in LEGS and isinstance(v, Decimal)}
    check_exit_triggers(given, slot.side, mark, inst)
    plan["version"] = version_after(slot.exit_plan)
    return plan


@dataclass(frozen=True)
class Change:
    """update_exit_plan's (or an order's) new plan: stored or not, and what happened, in words."""

    stored: bool
    note: str


async def change(gw: Gateway, slot: Slot, plan: dict[str, Any], tool_call_id: UUID) -> Change:
    """Make the exchange hold the new plan's legs, then store the plan with its history. When
    OKX refuses, the exchange is put back to the stored plan and nothing is stored: the stored
    legs are always what rests (the price the gateway checked against can be behind OKX's)."""
    async with exit_orders.slot_lock(slot):
        current = await exit_store.open_slot(gw.pool, slot.account_id, slot.symbol, slot.pos_side)
        if current is None:
            return Change(False, exit_orders.CLOSED.note)
        if current.position_id != slot.position_id:  # closed and opened again meanwhile
            return Change(False, "The position changed while the plan was being changed; nothing was "
                          "sent. Read get_account_state and call again.")
        outcome = await exit_orders.sync_locked(gw, current, plan)
        if outcome.ok:
            history = await exit_store.save_exit_plan(gw.pool, current, plan, tool_call_id)
            await exit_store.record_outcome(gw.pool, history, outcome.algo_id, outcome.s_code, outcome.s_msg)
            return Change(True, outcome.note)
        back = await exit_orders.restore(gw, current, current.exit_plan, outcome)
    old = current.exit_plan
    kept = f"its plan version {old.get('version') or 1}" if old else "no plan"
    restored = (
        "what rested before rests again"
        if back.ok
        else f"restoring what rested before failed too ({back.s_code} {back.s_msg}): see get_account_state"
    )
    return Change(
        False, f"{outcome.note} The new plan was not stored: the position keeps {kept}; {restored}."
    )


async def make_rest(gw: Gateway, slot: Slot, history: int | None) -> str:
    """Make the exchange hold the stored plan's legs; the outcome goes on its history row."""
    outcome = await exit_orders.sync(gw, slot)
    if history is not None:
        await exit_store.record_outcome(gw.pool, history, outcome.algo_id, outcome.s_code, outcome.s_msg)
    return outcome.note


def one_slot(slots: list[Slot], symbol: str, side: str | None) -> Slot:
    if side is not None:
        slots = [s for s in slots if s.side == side]
    if not slots:
        which = f"{side} position" if side else "position"
        raise InvalidArgument(
            f"No open {which} in {symbol}; an exit plan needs an open position "
            "(see get_account_state for the open ones)."
        )
    if len(slots) > 1:
        raise InvalidArgument(f"Both a long and a short position are open in {symbol}; give side.")
    return slots[0]
