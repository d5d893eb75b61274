"""Reconciliation: compare the ledger with OKX, record every difference, heal it
(docs/reconciliation.md). Runs on start, after every reconnect and every period, and once
from `aitrader reconcile`.

Healing, in order: backfill what is missing (the fill sweep, the order's state, the balance
snapshot); if a position still differs once the ledger holds every fill the exchange lists
(it has caught up), the exchange wins — labelled synthetic fills (category `reconcile`) are
published like any fill, so the fold, the history and `aitrader replay` all show them. Each
stage, and each item in it, fails on its own: one bad answer never stops the pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from services.ingest import normalize_account as acct
from services.ingest.backfill import Backfiller
from services.ingest.normalize import AccountRef, BadFrame
from services.ingest.okx_rest import OkxRest, OkxUnavailable
from services.ingest.publisher import Publisher
from services.ingest.reconcile import (
    Holding,
    PositionDifference,
    Slot,
    corrections,
    entry_view,
    labelled_entry,
    position_differences,
    signed,
)
from services.ingest.reconcile_algo import algo_stage
from services.ingest.reconcile_stages import ITEM_ERRORS, balance_stage, orders_stage, utcnow
from services.ingest.reconcile_store import Issue, ReconcileStore
from shared.logging import get_logger
from shared.messages import Discrepancy
from shared.types import DiscrepancyKind, Resolution

log = get_logger("ingest.reconcile")
SETTLE_S = 3.0  # a difference must outlast in-flight pushes before it is acted on
LEDGER_WAIT_S = 15.0  # how long the entries of one stage may take to reach the ledger


@dataclass
class Report:
    """What one pass found and did."""

    issues: list[Discrepancy] = field(default_factory=list)
    at: datetime | None = None
    failed: list[str] = field(default_factory=list)  # stages that could not complete

    def line(self) -> str:
        open_ = sum(d.status == "open" for d in self.issues)
        failed = f", stages failed: {', '.join(self.failed)}" if self.failed else ""
        return f"{len(self.issues) - open_} healed, {open_} open{failed}"


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
        """One full comparison; every difference is an issue row and an event. The pass counts
        as done (`accounts.last_reconciled_at`) only when every stage completed."""
        report = Report()
        stages: tuple[tuple[str, Callable[[Report], Awaitable[None]]], ...] = (
            ("fills", self._fills), ("positions", self._positions),
            ("orders", lambda r: orders_stage(self, r)), ("algo", lambda r: algo_stage(self, r)),
            ("balance", lambda r: balance_stage(self, r)))
        for n, (name, stage) in enumerate(stages):
            try:
                await stage(report)
            except OkxUnavailable as exc:  # OKX away: the other stages would only wait it out
                report.failed.extend(s for s, _ in stages[n:])
                log.warning("reconcile_okx_unavailable", stage=name, error=str(exc)[:200])
                break
            except ITEM_ERRORS as exc:
                report.failed.append(name)
                log.warning("reconcile_stage_failed", stage=name, error=str(exc)[:200])
        report.at = await self.backfiller.exchange_now()
        if not report.failed:
            await self.store.reconciled(report.at)
        self.passes += 1
        log.info("reconciled", account_id=str(self.account.account_id), result=report.line())
        return report

    # ------------------------------------------------------------------------ fills
    async def _fills(self, report: Report) -> None:
        found = await self.backfiller.missing_fills(self.lookback)
        issues = [(await self.store.open_issue("fill", f"{f.inst_id}:{f.trade_id}",
                                               entry_view(f), {}), f) for f in found]
        keys = {(f.inst_id, f.trade_id) for f in found}
        held = await self.until(lambda: self.store.fills_held(keys))
        for issue, fill in issues:
            await self.close(report, issue, entry_view(fill), {}, "backfill" if held else None)
        await self.vanish(report, "fill", {i.subject for i, _ in issues})

    # ------------------------------------------------------------------------ positions
    async def _positions(self, report: Report) -> None:
        diffs = await self._position_diffs()
        if diffs:  # pushes may be in flight: look again after a pause, with a fresh backfill
            await self.settle()
            await self.backfiller.fills()
            diffs = await self._position_diffs()
        await self.vanish(report, "position", {d.subject for d in diffs})
        for diff in diffs:
            try:
                await self._heal_position(report, diff)
            except ITEM_ERRORS as exc:
                log.warning("reconcile_item_failed", kind="position", subject=diff.subject,
                            error=str(exc)[:200])

    async def _position_diffs(self) -> list[PositionDifference]:
        return position_differences(await self.exchange_holdings(), await self.store.holdings())

    async def exchange_holdings(self, strict: bool = False) -> dict[Slot, Holding]:
        """The exchange's positions per slot; an unreadable row is skipped, logged — or, when
        `strict` (a missing row would look flat), raises BadFrame."""
        rows = await self.rest.get("/api/v5/account/positions", {"instType": "SWAP"},
                                   signed=True)
        exchange: dict[Slot, Holding] = {}
        for row in rows:
            try:
                x = acct.exchange_position(row, self.account, utcnow())
            except BadFrame as err:
                log.warning("reconcile_bad_position_row", error=str(err))
                if strict:
                    raise
                continue
            exchange[(x.inst_id, x.pos_side)] = Holding(signed(x.pos_side, x.pos), x.avg_px)
        return exchange

    async def _heal_position(self, report: Report, diff: PositionDifference) -> None:
        expected, found = diff.exchange.describe(), diff.ledger.describe()
        issue = await self.store.open_issue("position", diff.subject, expected, found)
        earlier = issue.attempts
        if not diff.quantity_differs:  # the average alone: no entry can say which is right
            log.warning("reconcile_average_differs", subject=diff.subject, exchange=expected,
                        ledger=found)
            await self.close(report, issue, expected, found, None)
            return
        symbol = diff.slot[0]
        # The exchange wins only over a ledger that has caught up: every fill the exchange
        # lists for the symbol, and every entry of an earlier attempt, is folded. Otherwise the
        # difference may be the ledger's lag (positions behind), not a real one: next pass.
        waiting = {k for k in self.backfiller.listed if k[0] == symbol} | {
            (symbol, e["trade_id"]) for attempt in earlier for e in attempt}
        if "fills" in report.failed or not await self.store.fills_held(waiting):
            log.info("reconcile_ledger_behind", subject=diff.subject)
            await self.close(report, issue, expected, found, None)
            return
        mark, now = await self._mark(symbol), await self.backfiller.exchange_now()
        attempt = len(earlier) + 1  # each attempt's entries have ids of their own
        entries = [labelled_entry(self.account.account_id, self.account.mode, issue.id,
                                  attempt, n, diff.slot, c, now)
                   for n, c in enumerate(corrections(diff, mark), 1)]
        await self.store.add_attempt(issue.id, [entry_view(f) for _, f in entries])
        for order, fill in entries:
            await self.publisher.publish(order)
            await self.publisher.publish(fill)
        log.warning("reconcile_exchange_wins", subject=diff.subject, attempt=attempt,
                    entries=[entry_view(f) for _, f in entries])
        keys = {(symbol, f.trade_id) for _, f in entries}
        healed = await self.until(lambda: self.store.fills_held(keys))
        await self.close(report, issue, expected, found, "exchange_wins" if healed else None)

    async def _mark(self, symbol: str) -> Decimal:
        rows = await self.rest.get("/api/v5/public/mark-price",
                                   {"instType": "SWAP", "instId": symbol})
        if rows and isinstance(rows[0], dict) and rows[0].get("markPx"):
            return Decimal(str(rows[0]["markPx"]))
        rows = await self.rest.get("/api/v5/market/ticker", {"instId": symbol})
        return Decimal(str(rows[0]["last"]))

    # ------------------------------------------------------------------------ plumbing
    async def vanish(self, report: Report, kind: DiscrepancyKind, seen: set[str]) -> None:
        """Close the open issues of `kind` this pass did not find again (a late push, an
        earlier pass's entry: `vanished`); an earlier pass's missing fill once the ledger holds
        it (`backfill`)."""
        for subject, open_issue in (await self.store.unresolved(kind)).items():
            if subject in seen:
                continue
            how: Resolution = "vanished"
            if kind == "fill":
                inst, _, trade = subject.partition(":")
                if not await self.store.fills_held({(inst, trade)}):
                    continue
                how = "backfill"
            await self.close(report, open_issue.issue, open_issue.expected, open_issue.found,
                              how)

    async def close(self, report: Report, issue: Issue, expected: dict[str, Any],
                     found: dict[str, Any], resolution: Resolution | None) -> None:
        """Resolve the issue (when healed) and publish what became of it."""
        if resolution is not None:
            await self.store.resolve(issue.id, resolution)
        event = Discrepancy(
            account_id=self.account.account_id, mode=self.account.mode, ts_event=utcnow(),
            issue_id=issue.id, kind=issue.kind, subject=issue.subject, expected=expected,
            found=found, status="open" if resolution is None else "resolved",
            resolution=resolution)
        await self.publisher.publish(event)
        report.issues.append(event)

    async def settle(self) -> None:
        """The pause a difference must outlast before it is acted on."""
        await asyncio.sleep(self.settle_s)

    async def until(self, check: Callable[[], Awaitable[bool]]) -> bool:
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


