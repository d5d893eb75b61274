"""Reconciliation's order and balance stages (docs/reconciliation.md): the exchange's pending
orders and USDT cash against the ledger's; functions of the `Reconciler` they run in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from services.ingest import normalize_account as acct
from services.ingest.normalize import BadFrame
from services.ingest.okx_rest import OkxApiError, OkxUnavailable
from services.ingest.reconcile import balance_differs
from services.ingest.reconcile_store import Issue
from shared.logging import get_logger
from shared.messages import Event, OrderUpdate
from shared.types import Resolution

if TYPE_CHECKING:
    from services.ingest.reconciler import Reconciler, Report

log = get_logger("ingest.reconcile")
ORDER_GRACE = timedelta(seconds=10)  # a pending order younger than this may not be stored yet
OPEN_STATES = frozenset({"live", "partially_filled"})
# What one item (an order, a position) or one stage can fail with without failing the others
# (OKX refusing or unreachable, an unreadable answer).
ITEM_ERRORS = (OkxApiError, OkxUnavailable, BadFrame, LookupError, ValueError, TypeError)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------ orders
async def orders_stage(rc: Reconciler, report: Report) -> None:
    ledger_open = await rc.store.open_orders()  # first: an order stored after the
    pending = await _pending(rc)  # exchange's answer is then not taken for a stale one
    seen: set[str] = set()
    updates: list[tuple[Issue, dict[str, Any], OrderUpdate]] = []
    for ord_id in sorted(set(ledger_open) - set(pending)):
        try:
            found = await _order_state(rc, ord_id, ledger_open[ord_id])
        except ITEM_ERRORS as exc:
            log.warning("reconcile_item_failed", kind="order", subject=ord_id,
                        error=str(exc)[:200])
            seen.add(ord_id)
            issue = await rc.store.open_issue("order", ord_id, {"state": "unknown"},
                                                {"state": "open"})
            await rc.close(report, issue, {"state": "unknown"}, {"state": "open"}, None)
            continue
        if found is None:  # still open on the exchange: the two reads crossed
            continue
        seen.add(ord_id)
        issue = await rc.store.open_issue("order", ord_id, {"state": found.state},
                                            {"state": "open"})
        updates.append((issue, {"state": found.state}, found))
    now = await rc.backfiller.exchange_now()
    young = {o for o, u in pending.items()
             if u.created_time is not None and now - u.created_time <= ORDER_GRACE}
    known = await rc.store.known_orders(sorted(set(pending) - young))
    for ord_id in sorted(set(pending) - young - known):
        seen.add(ord_id)
        issue = await rc.store.open_issue("order", ord_id, {"state": pending[ord_id].state}, {})
        updates.append((issue, {"state": pending[ord_id].state}, pending[ord_id]))
    for _, _, update in updates:  # the same state's push may be held unapplied in the stream
        await rc.publisher.publish_read(update)
    stale = {u.ord_id for _, _, u in updates if u.ord_id in ledger_open}
    unknown = {u.ord_id for _, _, u in updates} - stale

    async def agree() -> bool:  # the stale ones closed, the unknown ones stored
        closed = not stale & set(await rc.store.open_orders())
        return closed and unknown <= await rc.store.known_orders(sorted(unknown))

    healed = await rc.until(agree)
    for issue, expected, _ in updates:
        was_open = issue.subject in stale
        how: Resolution = "exchange_state" if was_open else "backfill"
        await rc.close(report, issue, expected, {"state": "open"} if was_open else {},
                          how if healed else None)
    await rc.vanish(report, "order", seen)

async def _order_state(rc: Reconciler, ord_id: str, symbol: str) -> OrderUpdate | None:
    """The exchange's final state of an order the ledger holds open; None while open."""
    rows = await rc.rest.get("/api/v5/trade/order", {"instId": symbol, "ordId": ord_id},
                               signed=True)
    update = acct.order_update(rows[0], rc.account, utcnow())
    return None if update.state in OPEN_STATES else update

async def _pending(rc: Reconciler) -> dict[str, OrderUpdate]:
    """The exchange's pending orders (an unreadable row is skipped, logged)."""
    out: dict[str, OrderUpdate] = {}
    rows = await rc.rest.get("/api/v5/trade/orders-pending", {"instType": "SWAP"},
                               signed=True)
    for row in rows:
        try:
            update = acct.order_update(row, rc.account, utcnow())
        except BadFrame as err:
            log.warning("reconcile_bad_order_row", error=str(err))
            continue
        out[update.ord_id] = update
    return out

# ------------------------------------------------------------------------ balance
async def balance_stage(rc: Reconciler, report: Report) -> None:
    cash = await _exchange_cash(rc)
    differs = cash is not None and balance_differs(cash[0], await rc.store.cash())
    if differs:
        await asyncio.sleep(rc.settle_s)
        cash = await _exchange_cash(rc)
    ledger = await rc.store.cash()
    if cash is None or not balance_differs(cash[0], ledger):
        await rc.vanish(report, "balance", set())
        return
    exchange_cash, snapshot = cash
    expected, found = {"cash": str(exchange_cash)}, {"cash": None if ledger is None else str(ledger)}
    issue = await rc.store.open_issue("balance", "USDT", expected, found)
    await rc.publisher.publish(snapshot)

    async def agrees() -> bool:
        return not balance_differs(exchange_cash, await rc.store.cash())

    healed = await rc.until(agrees)
    await rc.close(report, issue, expected, found, "refreshed" if healed else None)

async def _exchange_cash(rc: Reconciler) -> tuple[Decimal, Event] | None:
    rows = await rc.rest.get("/api/v5/account/balance", {"ccy": "USDT"}, signed=True)
    if not rows or not isinstance(rows[0], dict):
        return None
    found = acct.balances(rows[0], rc.account, utcnow())
    if not found:
        return None
    # As of now: the exchange's uTime is its last change, which the ledger may already hold
    # under that time with other figures (a balance is stored per account and instant).
    now = await rc.backfiller.exchange_now()
    return found[0].cash_bal, found[0].model_copy(update={"ts_event": max(now, found[0].ts_event)})
