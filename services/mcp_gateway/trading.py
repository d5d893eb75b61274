"""Write use cases: execute_trade and update_exit_plan.

execute_trade: validate (the exit plan too) -> (idempotent replay?) -> one transaction writing
the tool-call row (pending) then the order row -> PlaceOrder to ingest (an order opening a
position carries the plan's legs) -> record the answer -> wait briefly for the fills to be
folded -> keep the plan algo in step with the position -> return the order and its fills.
update_exit_plan: check -> make the exchange hold the new legs -> store with history; OKX
refusing them is the call's error and the old plan stays (`exit_plans.change`).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any, NoReturn
from uuid import uuid4

from services.mcp_gateway import exit_plans, exit_store, repository, views
from services.mcp_gateway.audit import ToolCall
from services.mcp_gateway.auth import Principal
from services.mcp_gateway.commands import CommandFailed, place_order
from services.mcp_gateway.errors import ExitOrdersRefused, InvalidArgument, NotAllowed, TradeNotPlaced
from services.mcp_gateway.gateway import Gateway
from services.mcp_gateway.rules import TradeRequest, check_trade, pos_side_for
from shared.messages import AttachedAlgo, PlaceOrder
from shared.money import plain_decimal
from shared.types import PosSide

ENDED = frozenset({"canceled", "rejected", "failed"})


def require_trade_scope(who: Principal, tool: str) -> None:
    if not who.can("trade"):
        raise NotAllowed(
            f"This token has scope read only; {tool} needs a token with scope trade "
            "(aitrader token create --scope trade)."
        )


async def execute_trade(
    gw: Gateway,
    call: ToolCall,
    req: TradeRequest,
    exit_plan: views.ExitPlanFields | None,
    idempotency_key: str | None,
) -> views.TradeResult:
    who = _principal(call)
    require_trade_scope(who, "execute_trade")
    if idempotency_key is not None:
        replay = await _replay(gw, who, req, idempotency_key)
        if replay is not None:
            return replay
    inst = await gw.instruments.get(req.symbol)
    pos_mode, mark = await repository.fetch_trade_context(gw.pool, who.account_id, req.symbol)
    check_trade(req, inst, gw.limits, mark, pos_mode)
    pos_side = pos_side_for(pos_mode, req.side, req.reduce_only)
    before = await exit_store.open_slot(gw.pool, who.account_id, req.symbol, pos_side)
    plan = exit_plans.order_plan(req, exit_plan, before, mark, inst)
    kind = exit_plans.trade_kind(req, before)
    values = {
        "id": uuid4(),
        "account_id": who.account_id,
        "symbol": req.symbol,
        "side": req.side,
        "order_type": req.order_type,
        "price": req.price,
        "size": req.size,
        "leverage": req.leverage,
        "confidence": req.confidence,
        "tool_call_id": call.id,
        "pos_side": pos_side,
        "reduce_only": req.reduce_only,
        "idempotency_key": idempotency_key,
        "exit_plan": plan,
    }
    async with gw.pool.acquire() as conn, conn.transaction():
        await gw.audit.write_pending(conn, call)
        row = await repository.insert_order(conn, values)
    if row is None:  # the same key won a race with this call
        assert idempotency_key is not None
        replay = await _replay(gw, who, req, idempotency_key)
        assert replay is not None
        return replay
    order = repository.order_view(row)
    result = await _send_and_wait(
        gw, who, order, req, pos_side, exit_plans.attached(order.order_id, plan, kind)
    )
    filled = sum((f.size for f in result.fills), Decimal(0))
    note = await exit_plans.after_trade(gw, call, result.order, who.account_id, pos_side, kind, plan, filled)
    return result.model_copy(update={"exit_orders_note": note})


async def _replay(gw: Gateway, who: Principal, req: TradeRequest, key: str) -> views.TradeResult | None:
    row = await repository.find_order_by_key(gw.pool, who.account_id, key)
    if row is None:
        return None
    order = repository.order_view(row)
    if (order.symbol, order.side, order.size) != (req.symbol, req.side, req.size):
        raise InvalidArgument(
            f"idempotency_key {key!r} was already used for a different order ({order.side} "
            f"{order.size} {order.symbol}, order {order.order_id}); use a new key for a new order."
        )
    fills = await repository.fetch_fills(gw.pool, order.order_id)
    return views.TradeResult(
        order=order,
        fills=fills,
        replayed=True,
        note=f"Replay: this idempotency_key was first used by order {order.order_id} "
        f"(status {order.status}); nothing was sent this time.",
    )


async def _send_and_wait(
    gw: Gateway,
    who: Principal,
    order: views.Order,
    req: TradeRequest,
    pos_side: PosSide,
    attach: AttachedAlgo | None,
) -> views.TradeResult:
    cmd = PlaceOrder(
        order_id=order.order_id,
        account_id=who.account_id,
        inst_id=req.symbol,
        side=req.side,
        pos_side=pos_side,
        ord_type=req.order_type,
        sz=req.size,
        px=req.price,
        lever=req.leverage,
        reduce_only=req.reduce_only,
        attach_algo=attach,
    )
    with gw.folds.watch(who.account_id, order.symbol) as folded:
        try:
            reply = await place_order(gw.nc, gw.subjects, cmd, gw.config.mcp_order_timeout_ms / 1000)
        except CommandFailed as exc:
            await _not_placed(gw, order, exc)
        if not reply.ok:
            await repository.mark_not_placed(gw.pool, order.order_id, "rejected", reply.s_code, reply.s_msg)
            raise TradeNotPlaced(
                f"The exchange rejected order {order.order_id}: {reply.s_code} {reply.s_msg}. "
                "Nothing was executed."
            )
        await repository.mark_submitted(gw.pool, order.order_id, reply.ord_id)
        final, fills = await _wait_for_fills(gw, order, folded)
    filled = sum((f.size for f in fills), Decimal(0))
    return views.TradeResult(order=final, fills=fills, replayed=False, note=_note(final, filled))


async def _not_placed(gw: Gateway, order: views.Order, exc: CommandFailed) -> NoReturn:
    if exc.code == "timeout":
        await repository.mark_not_placed(gw.pool, order.order_id, "unknown", exc.code, exc.detail)
        raise TradeNotPlaced(
            f"Order {order.order_id} is in an unknown state: {exc.detail}. It may still be "
            "executed; call get_account_state before trading again, and do not resend it."
        )
    await repository.mark_not_placed(gw.pool, order.order_id, "failed", exc.code, exc.detail)
    raise TradeNotPlaced(
        f"Order {order.order_id} was not sent: {exc.detail}. Nothing reached the exchange; "
        "retry later with a new idempotency_key."
    )


async def _wait_for_fills(
    gw: Gateway, order: views.Order, folded: asyncio.Event
) -> tuple[views.Order, list[views.Fill]]:
    """Until the fills cover the order and its row says so (fills and the order's own update
    are folded separately), the order ends, or the wait is over."""
    deadline = time.monotonic() + gw.config.mcp_fill_wait_ms / 1000
    while True:
        folded.clear()
        fills = await repository.fetch_fills(gw.pool, order.order_id)
        row = await repository.fetch_order(gw.pool, order.order_id)
        assert row is not None
        current = repository.order_view(row)
        covered = sum((f.size for f in fills), Decimal(0)) >= order.size
        done = covered and current.filled_size >= order.size
        left = deadline - time.monotonic()
        if done or current.status in ENDED or left <= 0:
            return current, fills
        # Woken by the positions service's event; the short timeout covers the order's own
        # update, which publishes no position event.
        try:
            await asyncio.wait_for(folded.wait(), timeout=min(left, 0.02))
        except TimeoutError:
            pass


def _note(order: views.Order, filled: Decimal) -> str:
    what = f"{order.order_type} {order.side} {plain_decimal(order.size)} {order.symbol}"
    if filled >= order.size:
        return f"{what}: filled."
    if filled > 0:
        return f"{what}: {plain_decimal(filled)} filled so far; more fills may follow."
    return f"{what}: accepted by the exchange (status {order.status}); no fill yet."


async def update_exit_plan(
    gw: Gateway, call: ToolCall, symbol: str, changes: dict[str, Any], side: str | None
) -> views.ExitPlanUpdate:
    who = _principal(call)
    require_trade_scope(who, "update_exit_plan")
    inst = await gw.instruments.get(symbol)
    _, mark = await repository.fetch_trade_context(gw.pool, who.account_id, symbol)
    async with gw.pool.acquire() as conn, conn.transaction():
        slot = exit_plans.one_slot(await exit_store.lock_slots(conn, who.account_id, symbol), symbol, side)
        plan = exit_plans.updated_plan(slot, changes, mark, inst)
        await gw.audit.write_pending(conn, call)
    # After the commit: the position's row is not held locked while the exchange answers.
    changed = await exit_plans.change(gw, slot, plan, call.id)
    if not changed.stored:
        raise ExitOrdersRefused(changed.note)
    view = await repository.fetch_position(gw.pool, slot.position_id, who.account_id)
    assert view is not None
    previous = views.ExitPlan.model_validate(slot.exit_plan) if slot.exit_plan else None
    return views.ExitPlanUpdate(
        position=views.Position.model_validate(view),
        previous_exit_plan=previous,
        exit_orders_note=changed.note,
    )


def _principal(call: ToolCall) -> Principal:
    assert call.principal is not None  # the middleware refuses calls without one
    return call.principal
