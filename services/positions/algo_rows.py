"""The `aitrader.algo_orders` row of an algo (TP/SL) order update, and its upsert: one row per
(account, algoId), a state never goes back, and within a state the newest exchange update wins.

An order price of "market" (OKX -1) is stored as NULL beside its set trigger price.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple, get_type_hints
from uuid import UUID

from services.positions.rows import JsonText, column_types, json_columns
from shared.messages import AlgoOrderUpdate, OrderPrice

# live < partially effective/failed < the final states; a push of the same rank replaces the
# stored one only when it is not older (an amendment is `live` again with a later uTime).
ALGO_RANK = {"live": 1, "partially_effective": 2, "partially_failed": 2, "effective": 3,
             "canceled": 3, "order_failed": 3}


class AlgoOrderRow(NamedTuple):
    """An `aitrader.algo_orders` row (the columns ours to write, in statement order)."""

    account_id: UUID
    symbol: str
    pos_side: str
    algo_id: str
    algo_cl_ord_id: str | None
    ord_type: str
    side: str
    state: str
    sz: Decimal
    close_fraction: Decimal | None
    reduce_only: bool
    tp_trigger_px: Decimal | None
    tp_trigger_px_type: str | None
    tp_ord_px: Decimal | None
    sl_trigger_px: Decimal | None
    sl_trigger_px_type: str | None
    sl_ord_px: Decimal | None
    actual_side: str | None
    actual_sz: Decimal | None
    triggered_ord_id: str | None
    fail_code: str | None
    raw_payload: JsonText
    created_at: datetime
    exchange_updated_at: datetime


def _limit(px: OrderPrice | None) -> Decimal | None:
    return None if px is None or px == "market" else px


def algo_row(u: AlgoOrderUpdate, body: str) -> AlgoOrderRow:
    """The row of an algo update (its raw body kept)."""
    return AlgoOrderRow(
        account_id=u.account_id, symbol=u.inst_id, pos_side=u.pos_side, algo_id=u.algo_id,
        algo_cl_ord_id=u.algo_cl_ord_id, ord_type=u.ord_type, side=u.side, state=u.state,
        sz=u.sz, close_fraction=u.close_fraction, reduce_only=u.reduce_only,
        tp_trigger_px=u.tp_trigger_px, tp_trigger_px_type=u.tp_trigger_px_type,
        tp_ord_px=_limit(u.tp_ord_px), sl_trigger_px=u.sl_trigger_px,
        sl_trigger_px_type=u.sl_trigger_px_type, sl_ord_px=_limit(u.sl_ord_px),
        actual_side=u.actual_side, actual_sz=u.actual_sz, triggered_ord_id=u.ord_id,
        fail_code=u.fail_code, raw_payload=JsonText(body),
        created_at=u.created_time or u.ts_event, exchange_updated_at=u.ts_event,
    )


def _rank(ref: str) -> str:
    return f"(CASE {ref}.state " + " ".join(
        f"WHEN '{s}' THEN {r}" for s, r in ALGO_RANK.items()) + " ELSE 0 END)"


def _upsert() -> str:
    types, jsonb = column_types(AlgoOrderRow), json_columns(AlgoOrderRow)
    names = ", ".join(types)
    values = ", ".join(f"${n}::{t}" + ("::jsonb" if c in jsonb else "")
                       for n, (c, t) in enumerate(types.items(), start=1))
    keep = {"account_id", "algo_id", "created_at"}
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in get_type_hints(AlgoOrderRow) if c not in keep)
    new, old = _rank("EXCLUDED"), _rank("a")
    return f"""INSERT INTO aitrader.algo_orders AS a ({names}) VALUES ({values})
        ON CONFLICT (account_id, algo_id) DO UPDATE SET {updates}, updated_at = now()
        WHERE {new} > {old} OR ({new} = {old}
                                 AND EXCLUDED.exchange_updated_at >= a.exchange_updated_at)"""


UPSERT_ALGO = _upsert()
