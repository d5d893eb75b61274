"""Make a position's exit plan rest on OKX: the planner's actions (`shared.exit_legs`) sent to
ingest as PlaceAlgo / AmendAlgo / CancelAlgo, one at a time, stopping at the first refusal (a
later cancel must not remove the only stop). The outcome is returned, never raised; a caller
changing the plan stores it only when OKX took it (`exit_plans.change`), so the stored legs
and the exchange's agree.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import weakref
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from services.mcp_gateway import exit_store
from services.mcp_gateway.commands import CommandFailed, amend_algo, cancel_algo, place_algo
from services.mcp_gateway.exit_store import Slot
from services.mcp_gateway.gateway import Gateway
from services.mcp_gateway.rules import plan_legs
from shared.exit_legs import Action, Amend, Cancel, Place, closing_side, plan_actions
from shared.logging import get_logger
from shared.messages import AlgoReply, AmendAlgo, CancelAlgo, PlaceAlgo
from shared.money import plain_decimal as fmt
from shared.types import AlgoOrdType

log = get_logger("mcp_gateway.exit_orders")
GONE = frozenset({"51503", "51527"})  # amend: the algo is not live / unknown
CANCELED_ALREADY = "51400"  # cancel: not live (its position closed, it fired): gone all the same


@dataclass(frozen=True)
class Outcome:
    """How making the plan rest went: the algo holding its legs, OKX's answer, in words."""

    algo_id: str | None
    s_code: str
    s_msg: str
    note: str
    # What this sync changed that the ledger may not show yet (its updates come back through
    # ingest and positions): the algos it cancelled or found gone, and those it placed.
    gone: frozenset[str] = frozenset()
    placed: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return self.s_code == "0"


CLOSED = Outcome(None, "0", "", "The position is closed: OKX cancels its exit orders.")


async def sync(gw: Gateway, slot: Slot) -> Outcome:
    """Make the slot's live algos match its stored plan. The plan and the position's size are
    read again under the slot's lock: of two calls at once, the second sees what the first did
    and the stored plan that is newest."""
    async with slot_lock(slot):
        current = await exit_store.open_slot(gw.pool, slot.account_id, slot.symbol, slot.pos_side)
        if current is None:
            return CLOSED
        return await sync_locked(gw, current, current.exit_plan)


_locks: weakref.WeakValueDictionary[tuple[UUID, str, str], asyncio.Lock] = weakref.WeakValueDictionary()


def slot_lock(slot: Slot) -> asyncio.Lock:
    """One change of a slot's exit orders at a time (in this process)."""
    key = (slot.account_id, slot.symbol, slot.pos_side)
    lock = _locks.get(key)
    if lock is None:
        lock = _locks[key] = asyncio.Lock()
    return lock


async def sync_locked(
    gw: Gateway, slot: Slot, plan: dict[str, Any] | None, gone: frozenset[str] = frozenset()
) -> Outcome:
    """Make the slot's live algos hold `plan`'s legs; the caller holds `slot_lock(slot)`.
    `gone`: algos known to be gone that the ledger may still show live."""
    tp, sl = plan_legs(plan)
    live = [a for a in await exit_store.live_algos(gw.pool, slot) if a.algo_id not in gone]
    actions = plan_actions(slot.side, slot.pos_side, slot.contracts, tp, sl, live)
    if not actions:
        kept = live[0].algo_id if live else None
        return Outcome(kept, "0", "", _resting(tp, sl, kept, "already resting"))
    done: list[str] = []
    holder: str | None = None
    ended: set[str] = set()
    placed: set[str] = set()
    for index, planned in enumerate(actions):
        action, reply = await _send_one(gw, slot, planned, tp, sl)
        if action is not planned and isinstance(planned, Amend):  # amended one gone: placed anew
            ended.add(planned.algo_id)
        if reply.ok and isinstance(action, Cancel):
            ended.add(action.algo_id)
        if reply.ok and isinstance(action, Place) and reply.algo_id:
            placed.add(reply.algo_id)
        if not reply.ok:
            failed = _failed(action, reply, done, actions[index + 1 :], tp, sl)
            return dataclasses.replace(failed, gone=frozenset(ended), placed=frozenset(placed))
        done.append(_words(action, reply.algo_id))
        if isinstance(action, Place | Amend):
            holder = reply.algo_id or getattr(action, "algo_id", None)
    if holder is None:  # only cancels: the one kept holds the legs
        canceled = {a.algo_id for a in actions if isinstance(a, Cancel)}
        holder = next((a.algo_id for a in live if a.algo_id not in canceled), None)
    await _settle(gw, slot, tp, sl)
    return Outcome(holder, "0", "", _resting(tp, sl, holder, "; ".join(done)))


async def restore(gw: Gateway, slot: Slot, plan: dict[str, Any] | None, failed: Outcome) -> Outcome:
    """After a refused change: what the failed sync placed is cancelled, then the slot is made
    to hold `plan` again, planning from the ledger without what the sync ended or placed."""
    for algo_id in sorted(failed.placed):
        _, reply = await _send_one(gw, slot, Cancel(algo_id), None, None)
        if not reply.ok:
            return Outcome(algo_id, reply.s_code, reply.s_msg, f"could not cancel algo {algo_id}")
    return await sync_locked(gw, slot, plan, failed.gone | failed.placed)


async def _send_one(
    gw: Gateway, slot: Slot, action: Action, tp: Decimal | None, sl: Decimal | None
) -> tuple[Action, AlgoReply]:
    """One action and its answer; an amendment of an algo that is gone becomes a placement."""
    reply = await _send(gw, slot, action)
    if isinstance(action, Cancel) and reply.s_code == CANCELED_ALREADY:
        reply = reply.model_copy(update={"ok": True})  # its update had not reached the ledger
    if not reply.ok and isinstance(action, Amend) and reply.s_code in GONE:
        action = Place(_ord_type(tp, sl), closing_side(slot.side), slot.pos_side, tp, sl)
        reply = await _send(gw, slot, action)
    log.info(
        "exit_order",
        account_id=str(slot.account_id),
        symbol=slot.symbol,
        pos_side=slot.pos_side,
        action=_words(action, reply.algo_id),
        ok=reply.ok,
        code=reply.s_code,
    )
    return action, reply


async def _send(gw: Gateway, slot: Slot, action: Action) -> AlgoReply:
    """One command; a failure to ask ingest is an answer with our code."""
    wait_s = gw.config.mcp_order_timeout_ms / 1000
    request_id = uuid4()
    common: dict[str, Any] = {"request_id": request_id, "account_id": slot.account_id, "inst_id": slot.symbol}
    try:
        match action:
            case Place():
                return await place_algo(
                    gw.nc,
                    gw.subjects,
                    PlaceAlgo(
                        **common,
                        **legs(action.tp_trigger_px, action.sl_trigger_px),
                        ord_type=action.ord_type,
                        side=action.side,
                        pos_side=action.pos_side,
                        close_fraction=1,
                        reduce_only=True,
                    ),
                    wait_s,
                )
            case Amend():
                return await amend_algo(
                    gw.nc,
                    gw.subjects,
                    AmendAlgo(
                        **common,
                        algo_id=action.algo_id,
                        cancel_tp=action.cancel_tp,
                        cancel_sl=action.cancel_sl,
                        **_new_legs(action),
                    ),
                    wait_s,
                )
            case Cancel():
                return await cancel_algo(
                    gw.nc, gw.subjects, CancelAlgo(**common, algo_id=action.algo_id), wait_s
                )
    except CommandFailed as exc:
        return AlgoReply(request_id=request_id, ok=False, s_code=exc.code, s_msg=exc.detail)


def legs(tp: Decimal | None, sl: Decimal | None) -> dict[str, Any]:
    """The legs of a plan algo: triggered by the mark price, executed at market."""
    out: dict[str, Any] = {}
    if tp is not None:
        out |= {"tp_trigger_px": tp, "tp_trigger_px_type": "mark", "tp_ord_px": "market"}
    if sl is not None:
        out |= {"sl_trigger_px": sl, "sl_trigger_px_type": "mark", "sl_ord_px": "market"}
    return out


def _new_legs(action: Amend) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if action.tp_trigger_px is not None:
        out |= {"new_tp_trigger_px": action.tp_trigger_px, "new_tp_trigger_px_type": "mark"}
    if action.sl_trigger_px is not None:
        out |= {"new_sl_trigger_px": action.sl_trigger_px, "new_sl_trigger_px_type": "mark"}
    return out


def _ord_type(tp: Decimal | None, sl: Decimal | None) -> AlgoOrdType:
    return "oco" if tp is not None and sl is not None else "conditional"


async def _settle(gw: Gateway, slot: Slot, tp: Decimal | None, sl: Decimal | None) -> None:
    """Until the ledger's algo orders show what the exchange now holds (its updates come back
    through ingest and positions), or the wait is over: a repeated call then sends nothing."""
    deadline = time.monotonic() + gw.config.mcp_exit_settle_ms / 1000
    while time.monotonic() < deadline:
        live = await exit_store.live_algos(gw.pool, slot)
        if not plan_actions(slot.side, slot.pos_side, slot.contracts, tp, sl, live):
            return
        await asyncio.sleep(0.02)


def _words(action: Action, algo_id: str | None = None) -> str:
    match action:
        case Place():
            return f"placed {action.ord_type} algo {algo_id or ''} for the whole position".replace("  ", " ")
        case Amend():
            return f"amended algo {action.algo_id}"
        case Cancel():
            return f"canceled algo {action.algo_id}"


def _leg_text(tp: Decimal | None, sl: Decimal | None) -> str:
    parts = [f"take-profit {fmt(tp)}" if tp is not None else "", f"stop {fmt(sl)}" if sl is not None else ""]
    return " and ".join(p for p in parts if p)


def _resting(tp: Decimal | None, sl: Decimal | None, holder: str | None, how: str) -> str:
    if tp is None and sl is None:
        return f"No take-profit or stop in the plan: no exit order rests on OKX ({how})."
    verb = "rest" if tp is not None and sl is not None else "rests"
    return f"{_leg_text(tp, sl)} {verb} on OKX as algo {holder} (mark price, market execution): {how}."


def _failed(
    action: Action,
    reply: AlgoReply,
    done: list[str],
    left: list[Action],
    tp: Decimal | None,
    sl: Decimal | None,
) -> Outcome:
    before = f" Done before: {'; '.join(done)}." if done else ""
    after = f" Not done: {'; '.join(_words(a) for a in left)}." if left else ""
    note = (
        f"OKX did not take the exit orders ({_words(action)}: {reply.s_code} {reply.s_msg})."
        f"{before}{after}"
    )
    return Outcome(getattr(action, "algo_id", None), reply.s_code, reply.s_msg, note)
