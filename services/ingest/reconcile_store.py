"""SQL of reconciliation: the ledger's side of each comparison, and the issue records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from services.ingest.reconcile import Held, Holding, Slot, signed
from shared.types import DiscrepancyKind, Resolution

_OPEN_STATES = ("open", "partially_filled")


@dataclass(frozen=True, slots=True)
class Issue:
    """One open reconciliation issue (a row of aitrader.reconciliation_issues)."""

    id: UUID
    kind: DiscrepancyKind
    subject: str
    attempts: tuple[tuple[dict[str, Any], ...], ...] = ()  # healing entries of earlier attempts


@dataclass(frozen=True, slots=True)
class OpenIssue:
    """An issue still open, as a later pass finds it."""

    issue: Issue
    expected: dict[str, Any]
    found: dict[str, Any]


class ReconcileStore:
    """The ledger as reconciliation reads it, and the issues it records; one statement each."""

    def __init__(self, pool: asyncpg.Pool, account_id: UUID) -> None:
        self.pool, self.account_id = pool, account_id

    async def holdings(self) -> dict[Slot, Holding]:
        rows = await self.pool.fetch(
            """SELECT symbol, pos_side, side, quantity, avg_entry_price
               FROM aitrader.positions_open WHERE account_id = $1""", self.account_id)
        return {(r["symbol"], r["pos_side"]): Holding(
            signed(r["pos_side"], r["quantity"], r["side"]), r["avg_entry_price"]) for r in rows}

    async def exit_plans(self) -> dict[Held, dict[str, Any]]:
        """The stored exit plan of every open position, by the position it belongs to."""
        rows = await self.pool.fetch(
            """SELECT symbol, pos_side, side, exit_plan FROM aitrader.positions_open
               WHERE account_id = $1 AND exit_plan IS NOT NULL""", self.account_id)
        return {(r["symbol"], r["pos_side"], "long" if r["side"] == "long" else "short"):
                r["exit_plan"] for r in rows if isinstance(r["exit_plan"], dict)}

    async def known_algos(self, algo_ids: list[str]) -> set[str]:
        """Which of these OKX algo ids aitrader.algo_orders holds."""
        rows = await self.pool.fetch(
            """SELECT algo_id FROM aitrader.algo_orders
               WHERE account_id = $1 AND algo_id = ANY($2::text[])""", self.account_id, algo_ids)
        return {r["algo_id"] for r in rows}

    async def cash(self) -> Decimal | None:
        """The latest cash balance (OKX cashBal) the ledger holds."""
        value: Decimal | None = await self.pool.fetchval(
            """SELECT cash_usdt FROM aitrader.balance_snapshots WHERE account_id = $1
               ORDER BY as_of DESC LIMIT 1""", self.account_id)
        return value

    async def open_orders(self) -> dict[str, str]:
        """exchange order id -> symbol of the orders the ledger holds open."""
        rows = await self.pool.fetch(
            """SELECT exchange_order_id, symbol FROM aitrader.orders
               WHERE account_id = $1 AND status = ANY($2::text[])
                 AND exchange_order_id IS NOT NULL""", self.account_id, list(_OPEN_STATES))
        return {r["exchange_order_id"]: r["symbol"] for r in rows}

    async def known_orders(self, exchange_ids: list[str]) -> set[str]:
        rows = await self.pool.fetch(
            """SELECT exchange_order_id FROM aitrader.orders
               WHERE account_id = $1 AND exchange_order_id = ANY($2::text[])""",
            self.account_id, exchange_ids)
        return {r["exchange_order_id"] for r in rows}

    async def fills_held(self, keys: set[tuple[str, str]]) -> bool:
        """True when the ledger holds every (symbol, trade id)."""
        if not keys:
            return True
        held: int = await self.pool.fetchval(
            """SELECT count(DISTINCT (f.symbol, f.exchange_trade_id)) FROM aitrader.fills f
               JOIN unnest($2::text[], $3::text[]) AS k(s, t)
                 ON f.symbol = k.s AND f.exchange_trade_id = k.t
               WHERE f.account_id = $1""",
            self.account_id, [k[0] for k in keys], [k[1] for k in keys])
        return held == len(keys)

    async def open_issue(self, kind: DiscrepancyKind, subject: str, expected: dict[str, Any],
                         found: dict[str, Any]) -> Issue:
        """The open issue of (kind, subject), created or seen again."""
        row = await self.pool.fetchrow(
            """INSERT INTO aitrader.reconciliation_issues
                   (id, account_id, kind, subject, expected, found)
               VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)
               ON CONFLICT (account_id, kind, subject) WHERE resolved_at IS NULL
               DO UPDATE SET last_seen_at = now(), expected = EXCLUDED.expected,
                             found = EXCLUDED.found
               RETURNING id, healing""",
            uuid4(), self.account_id, kind, subject, expected, found)  # the pool's jsonb codec
        assert row is not None
        return Issue(row["id"], kind, subject, _attempts(row["healing"]))

    async def unresolved(self, kind: DiscrepancyKind) -> dict[str, OpenIssue]:
        """subject -> the open issue of that kind."""
        rows = await self.pool.fetch(
            """SELECT subject, id, expected, found, healing FROM aitrader.reconciliation_issues
               WHERE account_id = $1 AND kind = $2 AND resolved_at IS NULL""",
            self.account_id, kind)
        return {r["subject"]: OpenIssue(
            Issue(r["id"], kind, r["subject"], _attempts(r["healing"])), r["expected"], r["found"])
            for r in rows}

    async def resolve(self, issue_id: UUID, resolution: Resolution) -> None:
        await self.pool.execute(
            """UPDATE aitrader.reconciliation_issues SET resolved_at = now(), resolution = $2
               WHERE id = $1 AND resolved_at IS NULL""", issue_id, resolution)

    async def add_attempt(self, issue_id: UUID, entries: list[dict[str, Any]]) -> int:
        """Record one healing attempt's entries; its number (1, 2, ...) names them."""
        attempt: int = await self.pool.fetchval(
            """UPDATE aitrader.reconciliation_issues
               SET healing = COALESCE(healing, '[]'::jsonb) || jsonb_build_array($2::jsonb)
               WHERE id = $1 RETURNING jsonb_array_length(healing)""",
            issue_id, entries)
        return attempt

    async def reconciled(self, at: datetime) -> None:
        await self.pool.execute(
            "UPDATE aitrader.accounts SET last_reconciled_at = $2 WHERE id = $1",
            self.account_id, at)


def _attempts(healing: list[list[dict[str, Any]]] | None) -> tuple[tuple[dict[str, Any], ...], ...]:
    return tuple(tuple(attempt) for attempt in healing or [])
