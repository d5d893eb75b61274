"""Reconciliation's algo stage (docs/reconciliation.md): the exchange's pending algo (TP/SL)
orders against the ledger's open positions and their stored exit plans.

- An orphan — a pending algo that only closes a position neither the ledger nor the exchange
  holds — is cancelled on OKX (cancel-algos) and recorded (`canceled`).
- A stored plan with a take-profit or stop-loss and no pending algo of its position is
  recorded and left open: placing it is the gateway's (update_exit_plan); the issue vanishes
  once an algo rests again or the position is gone.
- A pending algo the ledger's algo_orders does not know (a lost push) is published as it
  stands, as the algo backfill does; it is not a difference.

Both differences must outlast a settling pause: the exchange cancels close-only algos itself
moments after a close, and a plan may be stored a moment before its algo is placed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.ingest import normalize_account as acct
from services.ingest.algo_backfill import pending_rows
from services.ingest.normalize import BadFrame
from services.ingest.reconcile import (
    Held,
    RestingAlgo,
    held,
    orphan_algos,
    plans_not_resting,
)
from services.ingest.reconcile_stages import ITEM_ERRORS
from shared.logging import get_logger
from shared.messages import AlgoOrderUpdate
from shared.types import Resolution

if TYPE_CHECKING:
    from services.ingest.reconciler import Reconciler, Report

log = get_logger("ingest.reconcile")
CANCEL_PATH = "/api/v5/trade/cancel-algos"
NOT_LIVE = "51400"  # cancel-algos: the algo is no longer live (it fired, or OKX cancelled it)


@dataclass(frozen=True, slots=True)
class Look:
    """One comparison: the pending algos, the orphans among them, the plans not resting."""

    pending: dict[str, AlgoOrderUpdate]
    orphans: dict[str, RestingAlgo]
    missing: dict[Held, dict[str, Any]]


async def algo_stage(rc: Reconciler, report: Report) -> None:
    first = await _look(rc)
    look = first
    if first.orphans or first.missing:  # pushes and the exchange's own cancels in flight
        await rc.settle()
        look = await _look(rc)
    await _publish_unknown(rc, look.pending)
    seen: set[str] = set()
    for algo_id in sorted(look.orphans.keys() & first.orphans.keys()):
        seen.add(algo_id)
        await _cancel_orphan(rc, report, look.pending[algo_id])
    for position in sorted(look.missing.keys() & first.missing.keys()):
        subject = f"{position[0]}:{position[1]}"
        seen.add(subject)
        expected, found = {"algo": None}, _plan_view(look.missing[position])
        issue = await rc.store.open_issue("algo", subject, expected, found)
        log.warning("reconcile_plan_not_resting", subject=subject, plan=found)
        await rc.close(report, issue, expected, found, None)
    await rc.vanish(report, "algo", seen)


async def _look(rc: Reconciler) -> Look:
    # The algos first: an algo placed after the positions were read is then never taken for
    # an orphan of a position that was not there yet.
    pending = await _pending(rc)
    # Strict: a position row that cannot be read must not make its stops look orphaned.
    exchange = held(await rc.exchange_holdings(strict=True))
    ledger = held(await rc.store.holdings())
    plans = await rc.store.exit_plans()
    algos = [_resting(u) for u in pending.values()]
    orphans = {a.algo_id: a for a in orphan_algos(algos, exchange | ledger)}
    missing = {p: plans[p] for p in plans_not_resting(plans, exchange & ledger, algos)}
    return Look(pending, orphans, missing)


async def _pending(rc: Reconciler) -> dict[str, AlgoOrderUpdate]:
    """The exchange's pending algos (an unreadable row is skipped, logged)."""
    out: dict[str, AlgoOrderUpdate] = {}
    now = datetime.now(UTC)
    for row in await pending_rows(rc.rest):
        try:
            update = acct.algo_order(row, rc.account, now)
        except BadFrame as err:
            log.warning("reconcile_bad_algo_row", error=str(err))
            continue
        out[update.algo_id] = update
    return out


def _resting(u: AlgoOrderUpdate) -> RestingAlgo:
    return RestingAlgo(u.algo_id, u.inst_id, u.pos_side, u.side, u.reduce_only, u.close_fraction is not None)


async def _publish_unknown(rc: Reconciler, pending: dict[str, AlgoOrderUpdate]) -> None:
    """Pending algos the ledger does not know: published as listed (a duplicate of a push
    in flight has the push's message id and is dropped)."""
    unknown = set(pending) - await rc.store.known_algos(sorted(pending))
    if unknown:
        log.info("reconcile_algo_backfilled", algo_ids=sorted(unknown))
        await rc.publisher.publish_many([pending[a] for a in sorted(unknown)])


async def _cancel_orphan(rc: Reconciler, report: Report, algo: AlgoOrderUpdate) -> None:
    """Cancel an orphan on OKX and record it: `canceled`, `vanished` when OKX says it is no
    longer live (fired or cancelled meanwhile), else left open for the next pass."""
    expected = _algo_view(algo)
    found: dict[str, Any] = {"position": None}
    issue = await rc.store.open_issue("algo", algo.algo_id, expected, found)
    how: Resolution | None = None
    try:
        item = await rc.rest.post_item(CANCEL_PATH, [{"instId": algo.inst_id, "algoId": algo.algo_id}])
    except ITEM_ERRORS as exc:
        log.warning("reconcile_item_failed", kind="algo", subject=algo.algo_id, error=str(exc)[:200])
    else:
        code = str(item.get("sCode", ""))
        log.warning(
            "reconcile_algo_orphan",
            algo_id=algo.algo_id,
            inst_id=algo.inst_id,
            pos_side=algo.pos_side,
            side=algo.side,
            code=code,
            msg=str(item.get("sMsg", ""))[:200],
        )
        how = "canceled" if code == "0" else "vanished" if code == NOT_LIVE else None
    await rc.close(report, issue, expected, found, how)


def _algo_view(u: AlgoOrderUpdate) -> dict[str, Any]:
    return {
        "algo_id": u.algo_id,
        "inst_id": u.inst_id,
        "pos_side": u.pos_side,
        "side": u.side,
        "ord_type": u.ord_type,
        "sz": str(u.sz),
        "close_fraction": None if u.close_fraction is None else str(u.close_fraction),
        "reduce_only": u.reduce_only,
        "state": u.state,
    }


def _plan_view(plan: dict[str, Any]) -> dict[str, Any]:
    return {k: plan.get(k) for k in ("take_profit", "stop_loss", "version")}
