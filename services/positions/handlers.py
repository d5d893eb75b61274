"""The use case: one batch (or one account partition of it) of account messages -> one
transaction -> position events.

Fills and funding payments are stored first (their unique keys make duplicates no-ops); then
each touched slot either folds its new entries onto the stored open position or, when one of
them sorts before the slot's last stored entry, is refolded from all of its stored entries.
Either way the rows equal the fold of the stored ledger in (time, kind, id) order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.positions import repository
from services.positions.catalog import InstrumentCatalog
from services.positions.changes import SlotChange, write_changes
from services.positions.domain import Entry, FundingEntry, LedgerFill, fold
from services.positions.ids import uuid7
from services.positions.inbound import Inbound
from services.positions.orders import (
    OrderLink,
    insert_balances,
    link_fills,
    update_exchange_view,
    upsert_orders,
)
from services.positions.repository import Slot
from shared.instruments import InstrumentSpec
from shared.logging import get_logger
from shared.messages import (
    Balance,
    ExchangePosition,
    Fill,
    FundingPayment,
    OrderUpdate,
    PositionEvent,
)
from shared.money import Q2, Q8, quantize, quantize_opt

log = get_logger("positions")
NewEntries = dict[Slot, list[tuple[Entry, Inbound]]]


@dataclass
class BatchOutcome:
    """What to do with each message after commit, and what changed (to publish)."""

    dead: dict[int, str] = field(default_factory=dict)  # index -> reason (ack after recording)
    retry: dict[int, float] = field(default_factory=dict)  # index -> redelivery delay (nak)
    changes: list[SlotChange] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    refolds: int = 0

    def merge(self, other: BatchOutcome) -> None:
        """Add what another part of the same batch did."""
        self.dead.update(other.dead)
        self.retry.update(other.retry)
        self.changes.extend(other.changes)
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.refolds += other.refolds

    def events(self) -> list[PositionEvent]:
        """The position events of this batch (built after commit, outside the transaction)."""
        now = datetime.now(UTC)
        return [event for change in self.changes for event in change.events(now)]


async def handle_batch(
    conn: asyncpg.Connection, items: Sequence[Inbound], catalog: InstrumentCatalog
) -> BatchOutcome:
    """Apply a batch inside the caller's transaction; nothing is acked here."""
    out = BatchOutcome()
    modes = await repository.lock_accounts(conn, {i.event.account_id for i in items})
    valid = [i for i in items if _account_ok(i, modes, out)]
    await upsert_orders(conn, [(i.event, i.body) for i in valid if isinstance(i.event, OrderUpdate)])
    ledger = [i for i in valid if isinstance(i.event, Fill | FundingPayment)]
    instruments = await _instruments(conn, ledger, catalog, out)
    ledger = [i for i in ledger if i.index not in out.retry and i.index not in out.dead]
    if ledger:
        await _fold_ledger(conn, ledger, instruments, modes, out)
    await insert_balances(conn, [(i.event, i.body) for i in valid if isinstance(i.event, Balance)])
    await update_exchange_view(
        conn, [i.event for i in valid if isinstance(i.event, ExchangePosition)]
    )
    return out


def _account_ok(item: Inbound, modes: dict[UUID, str], out: BatchOutcome) -> bool:
    event = item.event
    mode = modes.get(event.account_id)
    if mode is None:
        out.dead[item.index] = f"unknown account {event.account_id}"
    elif mode != event.mode:
        out.dead[item.index] = f"event mode {event.mode} but account {event.account_id} is {mode}"
    return item.index not in out.dead


async def _instruments(
    conn: asyncpg.Connection, items: list[Inbound], catalog: InstrumentCatalog, out: BatchOutcome
) -> dict[str, InstrumentSpec]:
    symbols = {getattr(i.event, "inst_id", "") for i in items}
    known = await catalog.resolve(conn, symbols)
    for item in items:
        symbol = getattr(item.event, "inst_id", "")
        if symbol in known:
            continue
        delay = catalog.retry_delay(item.published_at)
        if delay is None:
            out.dead[item.index] = (
                f"unknown instrument {symbol}: not in aitrader.instruments after a refresh, "
                f"{catalog.grace_seconds:g} s after start and publication"
            )
        else:
            out.retry[item.index] = delay
    return known


async def _fold_ledger(
    conn: asyncpg.Connection,
    items: list[Inbound],
    instruments: dict[str, InstrumentSpec],
    modes: dict[UUID, str],
    out: BatchOutcome,
) -> None:
    slots = sorted({_slot_of(i) for i in items})
    last, opens = await repository.slot_state(conn, slots)  # before this batch is stored
    new = await _store(conn, items, out)
    changes = []
    for slot, pairs in new.items():
        entries = [entry for entry, _ in pairs]
        first = min(e.key for e in entries)
        instrument = instruments[slot[1]]
        if slot in last and first < last[slot]:
            out.refolds += 1
            change = await _refold(conn, slot, instrument, opens.get(slot))
        else:
            result = fold(entries, instrument, opens.get(slot))
            change = SlotChange(slot, opens.get(slot), result)
        change = change.at(max(e.key for e in entries), modes[slot[0]])
        _report_anomalies(change, pairs, out)
        changes.append(change)
    out.changes.extend(await write_changes(conn, changes))  # events are built after commit


def _slot_of(item: Inbound) -> Slot:
    event: Any = item.event
    return (event.account_id, event.inst_id, event.pos_side)


async def _store(conn: asyncpg.Connection, items: list[Inbound], out: BatchOutcome) -> NewEntries:
    """Insert fills and funding payments; return the ones that were new, by slot."""
    pending: dict[tuple[Any, ...], tuple[Entry, Inbound]] = {}
    fill_rows = await _fill_rows(conn, [i for i in items if isinstance(i.event, Fill)], pending)
    funding_rows = _funding_rows([i for i in items if isinstance(i.event, FundingPayment)], pending)
    inserted = await repository.insert_fills(conn, fill_rows)
    inserted_funding = await repository.insert_funding(conn, funding_rows)
    new: NewEntries = defaultdict(list)
    for key in (*inserted, *inserted_funding):
        entry, item = pending[key]
        new[_slot_of(item)].append((entry, item))
    out.stored += len(inserted) + len(inserted_funding)
    out.duplicates += len(items) - len(inserted) - len(inserted_funding)
    return new


async def _fill_rows(
    conn: asyncpg.Connection, items: list[Inbound], pending: dict[tuple[Any, ...], tuple[Entry, Inbound]]
) -> list[tuple[Any, ...]]:
    fills: list[Fill] = [i.event for i in items]  # type: ignore[misc]
    links = await link_fills(conn, fills) if fills else {}
    rows = []
    for item, f in zip(items, fills, strict=True):
        key = (f.account_id, f.inst_id, f.trade_id)
        if key not in pending:  # the same trade twice in one batch
            link = links[(f.account_id, f.ord_id)]
            entry = _ledger_fill(f, link)
            pending[key] = (entry, item)
            rows.append(_fill_row(f, entry, link.order_id, item.body))
    return rows


def _funding_rows(
    items: list[Inbound], pending: dict[tuple[Any, ...], tuple[Entry, Inbound]]
) -> list[tuple[Any, ...]]:
    rows = []
    for item in items:
        p: FundingPayment = item.event  # type: ignore[assignment]
        key = (p.account_id, p.bill_id)
        if key not in pending:
            entry = FundingEntry(p.bill_id, p.ts_event.astimezone(UTC), p.pos_side,
                                 quantize(p.amount, Q8))
            pending[key] = (entry, item)
            rows.append((p.account_id, p.inst_id, p.pos_side, entry.amount, p.bill_id, entry.time,
                         item.body))
    return rows


def _ledger_fill(f: Fill, link: OrderLink) -> LedgerFill:
    # Exactly the values stored in `fills`, so a refold from the table sees the same fill.
    return LedgerFill(
        trade_id=f.trade_id, time=f.ts_event.astimezone(UTC), side=f.side, pos_side=f.pos_side,
        price=quantize(f.fill_px, Q8), size=quantize(f.fill_sz, Q8), fee=quantize(f.fill_fee, Q8),
        confidence=link.confidence,
        leverage=link.leverage if link.leverage is not None else quantize_opt(f.lever, Q2),
        category=f.category, by_agent=link.by_agent, exit_plan=link.exit_plan,
    )


def _fill_row(f: Fill, e: LedgerFill, order_id: UUID, body: str) -> tuple[Any, ...]:
    return (uuid7(), f.account_id, order_id, f.inst_id, f.side, e.price, e.size, e.fee, f.fill_pnl,
            e.confidence, e.time, f.trade_id, f.ord_id, f.pos_side, f.exec_type, f.category,
            f.fill_fee_ccy or None, e.leverage, body)


async def _refold(
    conn: asyncpg.Connection, slot: Slot, instrument: InstrumentSpec, before: Any
) -> SlotChange:
    entries = await repository.load_entries(conn, slot)
    old_closed = await repository.load_closed(conn, slot)
    result = fold(entries, instrument)
    return SlotChange(slot, before, result, refold=True, old_closed=tuple(old_closed)).carry_plans()


def _report_anomalies(change: SlotChange, pairs: list[tuple[Entry, Inbound]], out: BatchOutcome) -> None:
    ours = {_entry_id(entry): item for entry, item in pairs}
    for anomaly in change.result.anomalies:
        item = ours.get(anomaly.entry_id)
        if item is None:  # an older entry that a refold could not apply either
            log.warning("fold_anomaly", slot=str(change.slot), entry=anomaly.entry_id, reason=anomaly.reason)
            continue
        out.dead[item.index] = f"fold anomaly, kept in the ledger but not applied: {anomaly.reason}"


def _entry_id(entry: Entry) -> str:
    return entry.trade_id if isinstance(entry, LedgerFill) else entry.bill_id
