"""SQL of exit plans: the slot's open position and live algo orders, the plan and its history
(with the outcome of making each version rest on the exchange)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from shared.db import Executor
from shared.exit_legs import LiveAlgo, closing_side
from shared.types import Direction, PosSide


@dataclass(frozen=True)
class Slot:
    """An open position slot (account, symbol, pos_side)."""

    account_id: UUID
    symbol: str
    pos_side: PosSide
    position_id: UUID
    side: Direction
    contracts: Decimal
    exit_plan: dict[str, Any] | None


async def open_slot(db: Executor, account_id: UUID, symbol: str, pos_side: PosSide) -> Slot | None:
    row = await db.fetchrow(
        """SELECT id, side, quantity, exit_plan FROM aitrader.positions_open
           WHERE account_id = $1 AND symbol = $2 AND pos_side = $3""",
        account_id,
        symbol,
        pos_side,
    )
    if row is None:
        return None
    return Slot(
        account_id,
        symbol,
        pos_side,
        row["id"],
        row["side"],
        row["quantity"],
        row["exit_plan"] or None,
    )


async def lock_slots(db: Executor, account_id: UUID, symbol: str) -> list[Slot]:
    """The symbol's open positions, locked for an exit-plan update."""
    rows = await db.fetch(
        """SELECT id, side, pos_side, quantity, exit_plan FROM aitrader.positions_open
           WHERE account_id = $1 AND symbol = $2 ORDER BY pos_side FOR UPDATE""",
        account_id,
        symbol,
    )
    return [
        Slot(account_id, symbol, r["pos_side"], r["id"], r["side"], r["quantity"], r["exit_plan"] or None)
        for r in rows
    ]


async def live_algos(db: Executor, slot: Slot) -> list[LiveAlgo]:
    """The slot's live algo orders on the side that closes its position (after a net flip the
    old position's legs are on the other side: they are not this position's to keep)."""
    rows = await db.fetch(
        """SELECT algo_id, ord_type, sz, close_fraction, tp_trigger_px, sl_trigger_px
           FROM aitrader.algo_orders
           WHERE account_id = $1 AND symbol = $2 AND pos_side = $3 AND state = 'live' AND side = $4
           ORDER BY created_at, algo_id""",
        slot.account_id,
        slot.symbol,
        slot.pos_side,
        closing_side(slot.side),
    )
    return [LiveAlgo(**dict(r)) for r in rows]


async def algo_state(db: Executor, account_id: UUID, algo_cl_ord_id: str) -> str | None:
    """The state of the algo order with this client id, if its update has arrived."""
    state: str | None = await db.fetchval(
        """SELECT state FROM aitrader.algo_orders WHERE account_id = $1 AND algo_cl_ord_id = $2
           ORDER BY created_at DESC LIMIT 1""",
        account_id,
        algo_cl_ord_id,
    )
    return state


async def save_exit_plan(
    db: Executor, slot: Slot, plan: dict[str, Any], tool_call_id: UUID | None, *, on_position: bool = True
) -> int:
    """Store the plan on the position (unless the fold already did) and in its history; the
    history row's id, for the outcome."""
    if on_position:
        await db.execute(
            "UPDATE aitrader.positions_open SET exit_plan = $2, updated_at = now() WHERE id = $1",
            slot.position_id,
            plan,
        )
    history_id: int = await db.fetchval(
        """INSERT INTO aitrader.exit_plan_history
               (account_id, symbol, pos_side, position_id, exit_plan, tool_call_id)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
        slot.account_id,
        slot.symbol,
        slot.pos_side,
        slot.position_id,
        plan,
        tool_call_id,
    )
    return history_id


async def latest_history_id(db: Executor, slot: Slot) -> int | None:
    found: int | None = await db.fetchval(
        """SELECT id FROM aitrader.exit_plan_history WHERE position_id = $1
           ORDER BY created_at DESC, id DESC LIMIT 1""",
        slot.position_id,
    )
    return found


async def record_outcome(db: Executor, history_id: int, algo_id: str | None, s_code: str, s_msg: str) -> None:
    await db.execute(
        "UPDATE aitrader.exit_plan_history SET algo_id = $2, s_code = $3, s_msg = $4 WHERE id = $1",
        history_id,
        algo_id,
        s_code,
        s_msg[:256],
    )
