"""Whether a position's exit plan really rests on the exchange (design decision 8): per leg of
the stored plan, the algo order of the position's slot that carries it and its state.

The algo orders of a position are those of its slot (account, symbol, pos_side) on its closing
side (`aitrader.closing_side`: sell for a long, buy for a short). Per leg the SQL picks one:
the newest `live` one with that leg, else (only for a leg in the plan) the newest one with that
leg whose last update is at or after the position opened (an older one belonged to an earlier
position of the slot). With the newest `exit_plan_history` row of the position (its `s_code`:
the exchange's answer to the last placement), a leg is

- `live`: that algo is live (its trigger may differ from the plan's: said in `note`);
- `triggered`: it is `effective` and this leg fired (`actual_side`, else its only leg);
- `failed`: it is `order_failed` (it fired, its order was refused), or the last placement was
  refused (`s_code` not "0");
- `missing`: anything else (canceled, the other leg fired, never placed).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg

from services.mcp_gateway import views

Row: TypeAlias = Mapping[str, Any] | asyncpg.Record

# (plan key, algo_orders column prefix)
LEGS = (("take_profit", "tp"), ("stop_loss", "sl"))


def _in_plan(key: str) -> str:
    return f"v.exit_plan ->> '{key}' IS NOT NULL"


# An algo last updated before the position opened belonged to an earlier position of the slot
# (its cancel may not have reached the ledger): it is not this position's.
_SINCE_OPENED = "(v.opened_at IS NULL OR a.exchange_updated_at >= v.opened_at)"


def _leg_lateral(key: str, leg: str) -> str:
    # The stop-loss is looked up live even without one in the plan: `stop_loss_resting` says
    # what rests, whatever the plan holds. A condition on the plan alone is a one-time filter.
    # The leg that fired: OKX's actualSide, else the only leg a one-leg conditional has.
    columns = f"""a.algo_id, a.state, a.fail_code,
                  COALESCE(a.actual_side, CASE WHEN a.tp_trigger_px IS NULL THEN 'sl'
                                               WHEN a.sl_trigger_px IS NULL THEN 'tp' END) AS actual_side,
                  trim_scale(a.{leg}_trigger_px)::text AS trigger_px,
                  CASE WHEN a.close_fraction IS NULL AND a.sz <> v.quantity
                       THEN trim_scale(a.sz)::text END AS covers
             FROM aitrader.algo_orders a
            WHERE a.account_id = v.account_id AND a.symbol = v.symbol AND a.pos_side = v.pos_side
              AND a.side = aitrader.closing_side(v.side) AND a.{leg}_trigger_px IS NOT NULL"""
    plan_only = "" if leg == "sl" else f"AND {_in_plan(key)}"
    return f"""LEFT JOIN LATERAL (
    (SELECT {columns} AND a.state = 'live' {plan_only} AND {_SINCE_OPENED}
      ORDER BY a.exchange_updated_at DESC LIMIT 1)
    UNION ALL
    (SELECT {columns} AND a.state <> 'live' AND {_in_plan(key)} AND {_SINCE_OPENED}
      ORDER BY a.exchange_updated_at DESC LIMIT 1)
    LIMIT 1) {leg} ON true"""


# Joined onto `positions_valued v` (the gateway's position select).
JOINS = (
    "\n".join(_leg_lateral(key, leg) for key, leg in LEGS)
    + f"""
LEFT JOIN LATERAL (
    SELECT h.s_code, h.s_msg FROM aitrader.exit_plan_history h
     WHERE ({_in_plan("take_profit")} OR {_in_plan("stop_loss")})
       AND h.account_id = v.account_id AND h.symbol = v.symbol AND h.position_id = v.id
     ORDER BY h.created_at DESC, h.id DESC LIMIT 1) h ON true"""
)

# The extra columns (alias -> SQL) the position select reads them with.
COLUMNS = {
    **{
        f"{leg}_{name}": f"{leg}.{name}"
        for _, leg in LEGS
        for name in ("algo_id", "state", "actual_side", "fail_code", "trigger_px", "covers")
    },
    # the one rule (migration 0016), also the console's open positions' stop_loss_resting
    "stop_loss_resting": "aitrader.stop_loss_resting(v.account_id, v.symbol, v.pos_side, v.side, "
    "v.opened_at)",
    "plan_s_code": "h.s_code",
    "plan_s_msg": "h.s_msg",
    "plan_version": """CASE WHEN jsonb_typeof(v.exit_plan -> 'version') = 'number'
        AND v.exit_plan ->> 'version' ~ '^[0-9]{1,9}$' THEN (v.exit_plan ->> 'version')::int END""",
}


def _refused(r: Row) -> str | None:
    code = r["plan_s_code"]
    if code is None or code == "0":
        return None
    return f"the exchange refused the last placement ({code}: {r['plan_s_msg'] or 'no message'})"


def _leg(key: str, leg: str, price: str, r: Row) -> views.Doc:
    """One `views.ExitOrder` document."""
    state, algo_id, trigger = r[f"{leg}_state"], r[f"{leg}_algo_id"], r[f"{leg}_trigger_px"]
    refused, note = _refused(r), None
    if state == "live":
        shown = "live"
        if Decimal(trigger) != Decimal(price):
            note = f"rests at {trigger}, not at the plan's {price}"
            note = f"{note}; {refused}" if refused else note
        if r[f"{leg}_covers"] is not None:
            covers = f"covers {r[f'{leg}_covers']} contracts, not the whole position"
            note = f"{note}; {covers}" if note else covers
    elif state == "effective" and r[f"{leg}_actual_side"] == leg:
        shown, note = "triggered", f"algo {algo_id} fired this leg"
    elif state == "order_failed":
        shown = "failed"
        note = f"algo {algo_id} fired but its order failed (code {r[f'{leg}_fail_code'] or 'unknown'})"
    elif refused:
        shown, note, algo_id, trigger = "failed", refused, None, None
    else:
        if state is not None:
            note = f"the last algo order with this leg ({algo_id}) is {state}"
        shown, algo_id, trigger = "missing", None, None
    return views.document(
        views.ExitOrder,
        leg=key,
        trigger_price=price,
        state=shown,
        algo_id=algo_id,
        exchange_trigger_price=trigger,
        note=note,
    )


def exit_orders_doc(plan: dict[str, Any] | None, r: Row) -> views.Doc:
    """`views.ExitOrders`' JSON form for a position row with `COLUMNS`, given its plan document."""
    prices = (plan["take_profit"], plan["stop_loss"]) if plan else (None, None)
    doc = _cached_doc(prices, tuple(r[c] for c in COLUMNS))
    return {**doc, "legs": [dict(x) for x in doc["legs"]]}  # a copy: the cached one is shared


@functools.lru_cache(maxsize=4096)
def _cached_doc(prices: tuple[str | None, str | None], values: tuple[Any, ...]) -> views.Doc:
    # The same plan and algo states repeat in every account-state call until one changes.
    return _doc(prices, dict(zip(COLUMNS, values, strict=True)))


def _doc(prices: tuple[str | None, str | None], r: Row) -> views.Doc:
    plan = [(key, leg, price) for (key, leg), price in zip(LEGS, prices, strict=True) if price]
    legs = [_leg(key, leg, price, r) for key, leg, price in plan]
    idle: list[str] = []
    for (key, leg, price), x in zip(plan, legs, strict=True):
        if x["state"] != "live":
            idle.append(f"{key} {price} is stored but not resting on the exchange (state {x['state']})")
        elif r[f"{leg}_covers"] is not None:
            covers = r[f"{leg}_covers"]
            idle.append(f"{key} {price} rests for {covers} contracts only, not the whole position")
    again = "; call update_exit_plan to place " + ("it" if len(idle) == 1 else "them") + " again"
    warning = "; ".join(idle) + again if idle else None
    return views.document(
        views.ExitOrders,
        plan_version=r["plan_version"],
        legs=legs,
        stop_loss_resting=r["stop_loss_resting"],
        warning=warning,
    )
