"""The `aitrader.algo_orders` row of an algo (TP/SL) order update, and its upsert: one row per
(account, algoId), a state never goes back, and within a state the newest exchange update wins.
Also the statements that read those rows for the ledger: which leg placed a fill's order (exit
attribution, `leg_sql`), the closed rows a leg learned later re-attributes, and the live algos
a close leaves behind (the no-orphans safety net).

An order price of "market" (OKX -1) is stored as NULL beside its set trigger price.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple, get_type_hints
from uuid import UUID

from services.positions.domain import LEG_REASONS, ORIGIN_REASONS
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


class OrphanAlgo(NamedTuple):
    """A live algo order left behind by a close, to cancel."""

    account_id: UUID
    symbol: str
    algo_id: str


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


def leg_sql(a: str) -> str:
    """SQL: the leg of algo row `a` that placed the order of a fill carrying its algoId — the
    one that fired (actual_side), else the only leg that can fire (a one-leg algo; OKX runs only
    the SL of a net conditional with both), else NULL (an oco before its `effective` update)."""
    return f"""COALESCE({a}.actual_side, CASE
        WHEN {a}.sl_trigger_px IS NULL AND {a}.tp_trigger_px IS NOT NULL THEN 'tp'
        WHEN {a}.tp_trigger_px IS NULL AND {a}.sl_trigger_px IS NOT NULL THEN 'sl'
        WHEN {a}.ord_type = 'conditional' AND {a}.pos_side = 'net' THEN 'sl' END)"""


def _reason_sql(leg: str) -> str:
    return f"(CASE {leg} " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in LEG_REASONS.items()) + " END)"


# The leg of each (account, algoId) a batch's fills carry: only fills with an algoId ask.
ALGO_LEGS = f"""SELECT a.account_id, a.algo_id, {leg_sql("a")} AS leg
    FROM unnest($1::uuid[], $2::text[]) AS k(acc, id)
    JOIN aitrader.algo_orders a ON a.account_id = k.acc AND a.algo_id = k.id"""
# The fill's algoId as stored: the Fill message's `algo_id`, kept in its raw_payload.
FILL_ALGO_ID = "(f.raw_payload->>'algo_id')"
# After algo updates are stored: a close whose closing fill came from one of these algos and
# was folded before its leg was known (reason 'agent' / 'external') gets the leg's reason —
# what the fold gives now (a refold, `aitrader replay`). The closing fill cannot precede the
# algo's creation: that bounds the closed rows read.
PATCH_EXIT_REASONS = f"""UPDATE aitrader.positions_closed c SET exit_reason = {_reason_sql("k.leg")}
    FROM (SELECT a.account_id, a.symbol, a.algo_id, a.created_at, {leg_sql("a")} AS leg
          FROM unnest($1::uuid[], $2::text[]) AS u(acc, id)
          JOIN aitrader.algo_orders a ON a.account_id = u.acc AND a.algo_id = u.id) k,
         aitrader.fills f
    WHERE k.leg IS NOT NULL AND c.account_id = k.account_id AND c.symbol = k.symbol
      AND c.exit_time >= k.created_at
      AND c.exit_reason IN ({", ".join(f"'{r}'" for r in ORIGIN_REASONS)})
      AND f.account_id = c.account_id AND f.symbol = c.symbol
      AND f.exchange_trade_id = c.closing_trade_id AND {FILL_ALGO_ID} = k.algo_id
    RETURNING c.account_id, c.symbol, c.pos_side, c.closing_trade_id, c.exit_reason"""
# The algos a close leaves behind: live, of the closed slot, on the side that closed it (a
# long is closed by sells), close-only (what the exchange cancels itself: reduce-only or
# close-position in net mode, any closing-side algo in long/short mode), and created before the
# closing fill — never the algo a flip's new position brought (the other side, or later).
ORPHAN_ALGOS = """SELECT DISTINCT a.account_id, a.symbol, a.algo_id
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
         AS k(acc, sym, ps, closed_at, side)
    JOIN aitrader.algo_orders a ON a.account_id = k.acc AND a.symbol = k.sym AND a.pos_side = k.ps
    WHERE a.state = 'live' AND a.side = k.side AND a.created_at < k.closed_at
      AND (a.pos_side <> 'net' OR a.reduce_only OR a.close_fraction IS NOT NULL)
    ORDER BY a.account_id, a.symbol, a.algo_id"""
