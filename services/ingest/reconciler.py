"""Reconciliation: compare the ledger with OKX, record every difference, heal it
(docs/reconciliation.md). Runs on start, after every reconnect and every period, and once
from `aitrader reconcile`.

Healing, in order: backfill what is missing (the fill sweep, the order's state, the balance
snapshot); if a position still differs after a settling pause, the exchange wins — a labelled
synthetic fill (category `reconcile`) is published like any fill, so the fold, the history and
`aitrader replay` all show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.ingest import normalize_account as acct
from services.ingest.backfill import Backfiller
from services.ingest.normalize import AccountRef, BadFrame
from services.ingest.okx_rest import OkxRest
from services.ingest.publisher import Publisher
from services.ingest.reconcile import (
    Holding,
    PositionDifference,
    Slot,
    balance_differs,
    corrections,
    open_orders_unknown,
    position_differences,
    signed,
)
from services.ingest.reconcile_store import Issue, ReconcileStore
from shared.logging import get_logger
from shared.messages import Discrepancy, Event, Fill, OrderUpdate
from shared.types import RECONCILE_CATEGORY, Resolution

log = get_logger("ingest.reconcile")
SETTLE_S = 3.0  # a difference must outlast in-flight pushes before the exchange wins
LEDGER_WAIT_S = 15.0  # how long a healing entry may take to reach the ledger
ORDER_GRACE = timedelta(seconds=10)  # a pending order younger than this may not be stored yet


@dataclass
class Report:
    """What one pass found and did."""

    issues: list[Discrepancy] = field(default_factory=list)
    at: datetime | None = None

    def line(self) -> str:
        open_ = sum(d.status == "open" for d in self.issues)
        return f"{len(self.issues) - open_} healed, {open_} open"


class Reconciler:
    """One account's reconciliation against OKX."""

    def __init__(self, rest: OkxRest, store: ReconcileStore, publisher: Publisher,
                 backfiller: Backfiller, account: AccountRef, lookback: timedelta,
                 settle_s: float = SETTLE_S, ledger_wait_s: float = LEDGER_WAIT_S) -> None:
        self.rest, self.store, self.publisher = rest, store, publisher
        self.backfiller, self.account, self.lookback = backfiller, account, lookback
        self.settle_s, self.ledger_wait_s = settle_s, ledger_wait_s
        self.passes = 0

    async def run_once(self) -> Report:
        """One full comparison; every difference is an issue row and an event."""
        report = Report()
        await self._fills(report)
        await self._positions(report)
        await self._orders(report)
        await self._balance(report)
        report.at = await self.backfiller.exchange_now()
        await self.store.reconciled(report.at)
        self.passes += 1
        log.info("reconciled", account_id=str(self.account.account_id), result=report.line())
        return report

    # ------------------------------------------------------------------------ fills
    async def _fills(self, report: Report) -> None:
        found = await self.backfiller.missing_fills(self.lookback)
        for fill in found:
            issue = await self.store.open_issue("fill", f"{fill.inst_id}:{fill.trade_id}",
                                                _fill_view(fill), {})
            held = await self._until(_held(self.store, fill))
            await self._close(report, issue, _fill_view(fill), {}, "backfill" if held else None)

    # ------------------------------------------------------------------------ positions
    async def _positions(self, report: Report) -> None:
        diffs = await self._position_diffs()
        if diffs:  # pushes may be in flight: look again after a pause, with a fresh backfill
            await asyncio.sleep(self.settle_s)
            await self.backfiller.fills()
            diffs = await self._position_diffs()
        seen = {d.subject for d in diffs}
        for subject, issue_id in (await self.store.unresolved("position")).items():
            if subject not in seen:  # healed since (a late push, an earlier pass's entry)
                await self.store.resolve(issue_id, "vanished")
        for diff in diffs:
            await self._heal_position(report, diff)

    async def _position_diffs(self) -> list[PositionDifference]:
        rows = await self.rest.get("/api/v5/account/positions", {"instType": "SWAP"},
                                   signed=True)
        exchange: dict[Slot, Holding] = {}
        for row in rows:
            try:
                x = acct.exchange_position(row, self.account, _utcnow())
            except BadFrame as err:
                log.warning("reconcile_bad_position_row", error=str(err))
                continue
            exchange[(x.inst_id, x.pos_side)] = Holding(signed(x.pos_side, x.pos), x.avg_px)
        return position_differences(exchange, await self.store.holdings())

    async def _heal_position(self, report: Report, diff: PositionDifference) -> None:
        expected, found = diff.exchange.describe(), diff.ledger.describe()
        issue = await self.store.open_issue("position", diff.subject, expected, found)
        if not diff.quantity_differs:  # the average alone: no entry can say which is right
            log.warning("reconcile_average_differs", subject=diff.subject, **_pair(diff))
            await self._close(report, issue, expected, found, None)
            return
        symbol, pos_side = diff.slot
        mark = await self._mark(symbol)
        now = await self.backfiller.exchange_now()
        entries = [self._entry(issue.id, n, symbol, pos_side, c.side, c.size, c.price, now)
                   for n, c in enumerate(corrections(diff, mark), 1)]
        healing = [{"trade_id": f.trade_id, "side": f.side, "size": str(f.fill_sz),
                    "price": str(f.fill_px)} for _, f in entries]
        await self.store.record_healing(issue.id, healing)
        for order, fill in entries:
            await self.publisher.publish(order)
            await self.publisher.publish(fill)
        log.warning("reconcile_exchange_wins", subject=diff.subject, entries=healing)

        async def agrees() -> bool:
            return not [d for d in await self._position_diffs() if d.subject == diff.subject]

        healed = await self._until(agrees)
        await self._close(report, issue, expected, found, "exchange_wins" if healed else None,
                          healing)

    def _entry(self, issue: UUID, n: int, symbol: str, pos_side: Any, side: Any, size: Decimal,
               price: Decimal, now: datetime) -> tuple[OrderUpdate, Fill]:
        """A synthetic, labelled order and its fill: filled at once, no fee."""
        ord_id = f"R{issue.hex}{n}"
        common: dict[str, Any] = {"account_id": self.account.account_id,
                                  "mode": self.account.mode, "ts_event": now,
                                  "inst_id": symbol, "ord_id": ord_id, "side": side,
                                  "pos_side": pos_side, "category": RECONCILE_CATEGORY}
        order = OrderUpdate(**common, ord_type="market", state="filled", sz=size,
                            acc_fill_sz=size, avg_px=price, created_time=now)
        fill = Fill(**common, trade_id=ord_id, fill_px=price, fill_sz=size,
                    fill_fee=Decimal(0), ord_type="market",
                    raw={"reconciliation_issue": str(issue)})
        return order, fill

    async def _mark(self, symbol: str) -> Decimal:
        rows = await self.rest.get("/api/v5/public/mark-price",
                                   {"instType": "SWAP", "instId": symbol})
        if rows and isinstance(rows[0], dict) and rows[0].get("markPx"):
            return Decimal(str(rows[0]["markPx"]))
        rows = await self.rest.get("/api/v5/market/ticker", {"instId": symbol})
        return Decimal(str(rows[0]["last"]))

    # ------------------------------------------------------------------------ orders
    async def _orders(self, report: Report) -> None:
        pending = await self._pending()
        ledger_open = await self.store.open_orders()
        for ord_id in open_orders_unknown(ledger_open, pending):
            symbol = ledger_open[ord_id]
            rows = await self.rest.get("/api/v5/trade/order", {"instId": symbol, "ordId": ord_id},
                                       signed=True)
            update = acct.order_update(rows[0], self.account, _utcnow())
            expected, found = {"state": update.state}, {"state": "open"}
            issue = await self.store.open_issue("order", ord_id, expected, found)
            await self.publisher.publish(update)

            async def settled(o: str = ord_id) -> bool:
                return o not in await self.store.open_orders()

            healed = await self._until(settled)
            await self._close(report, issue, expected, found,
                              "exchange_state" if healed else None)
        now = await self.backfiller.exchange_now()
        old = {o: u for o, u in pending.items()
               if u.created_time is None or now - u.created_time > ORDER_GRACE}
        known = await self.store.known_orders(list(old))
        for ord_id in sorted(set(old) - known):
            update = old[ord_id]
            issue = await self.store.open_issue("order", ord_id, {"state": update.state}, {})
            await self.publisher.publish(update)
            await self._close(report, issue, {"state": update.state}, {}, "backfill")

    async def _pending(self) -> dict[str, OrderUpdate]:
        """The exchange's pending orders (an unreadable row is skipped, logged)."""
        out: dict[str, OrderUpdate] = {}
        rows = await self.rest.get("/api/v5/trade/orders-pending", {"instType": "SWAP"},
                                   signed=True)
        for row in rows:
            try:
                update = acct.order_update(row, self.account, _utcnow())
            except BadFrame as err:
                log.warning("reconcile_bad_order_row", error=str(err))
                continue
            out[update.ord_id] = update
        return out

    # ------------------------------------------------------------------------ balance
    async def _balance(self, report: Report) -> None:
        cash = await self._exchange_cash()
        if cash is None or not balance_differs(cash[0], await self.store.cash()):
            return
        await asyncio.sleep(self.settle_s)
        cash = await self._exchange_cash()
        ledger = await self.store.cash()
        if cash is None or not balance_differs(cash[0], ledger):
            return
        expected, found = {"cash": str(cash[0])}, {"cash": None if ledger is None else str(ledger)}
        issue = await self.store.open_issue("balance", "USDT", expected, found)
        await self.publisher.publish(cash[1])

        async def agrees() -> bool:
            return not balance_differs(cash[0], await self.store.cash())

        healed = await self._until(agrees)
        await self._close(report, issue, expected, found, "refreshed" if healed else None)

    async def _exchange_cash(self) -> tuple[Decimal, Event] | None:
        rows = await self.rest.get("/api/v5/account/balance", {"ccy": "USDT"}, signed=True)
        if not rows or not isinstance(rows[0], dict):
            return None
        found = acct.balances(rows[0], self.account, _utcnow())
        if not found:
            return None
        # As of now: the exchange's uTime is its last change, which the ledger may already hold
        # under that time with other figures (a balance is stored per account and instant).
        now = await self.backfiller.exchange_now()
        return found[0].cash_bal, found[0].model_copy(update={"ts_event": max(now, found[0].ts_event)})

    # ------------------------------------------------------------------------ plumbing
    async def _close(self, report: Report, issue: Issue, expected: dict[str, Any],
                     found: dict[str, Any], resolution: Resolution | None,
                     healing: list[dict[str, Any]] | None = None) -> None:
        """Resolve the issue (when healed) and publish what became of it."""
        if resolution is not None:
            await self.store.resolve(issue.id, resolution, healing)
        event = Discrepancy(
            account_id=self.account.account_id, mode=self.account.mode, ts_event=_utcnow(),
            issue_id=issue.id, kind=issue.kind, subject=issue.subject, expected=expected,
            found=found, status="open" if resolution is None else "resolved",
            resolution=resolution)
        await self.publisher.publish(event)
        report.issues.append(event)

    async def _until(self, check: Callable[[], Awaitable[bool]]) -> bool:
        """True once `check` holds, False after `ledger_wait_s`."""
        deadline = time.monotonic() + self.ledger_wait_s
        while True:
            if await check():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)


async def reconcile_loop(reconciler: Reconciler, wake: asyncio.Event, every_s: float) -> None:
    """A pass when woken (a connect's catch-up is done) or every `every_s`; a failed pass is
    logged and the next one tries again."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), every_s)
        wake.clear()
        try:
            await reconciler.run_once()
        except Exception:  # the loop must outlive a failed pass (REST down, DB away)
            log.exception("reconcile_failed", account_id=str(reconciler.account.account_id))


def _held(store: ReconcileStore, fill: Fill) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await store.fills_held([(fill.inst_id, fill.trade_id)])
    return check


def _fill_view(fill: Fill) -> dict[str, Any]:
    return {"trade_id": fill.trade_id, "inst_id": fill.inst_id, "side": fill.side,
            "size": str(fill.fill_sz), "price": str(fill.fill_px)}


def _pair(diff: PositionDifference) -> dict[str, Any]:
    return {"exchange": diff.exchange.describe(), "ledger": diff.ledger.describe()}


def _utcnow() -> datetime:
    return datetime.now(UTC)
