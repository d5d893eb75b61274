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
from typing import TypeVar
from uuid import UUID

from services.positions.algo_rows import OrphanAlgo
from services.positions.catalog import InstrumentCatalog
from services.positions.domain import Entry, LedgerFill
from services.positions.events import Slot, SlotChange, needs_refold, position_events, slot_of
from services.positions.inbound import Inbound, LedgerEntryEvent
from services.positions.store import LedgerStore, StoredSlots
from shared.consumer import PERMANENT, DeadLetter
from shared.instruments import InstrumentSpec
from shared.logging import get_logger
from shared.messages import (
    AlgoOrderUpdate,
    Balance,
    ExchangePosition,
    OrderUpdate,
    PositionEvent,
)

log = get_logger("positions")
FOLD_ANOMALY = "fold_anomaly"  # the dead letter's kind: the entry is kept in the ledger, not applied
E = TypeVar("E")
NewEntries = list[tuple[Entry, Inbound]]


@dataclass
class BatchOutcome:
    """What to do with each message after commit, and what changed (to publish)."""

    dead: dict[int, DeadLetter] = field(default_factory=dict)  # index -> why (ack after recording)
    retry: dict[int, float] = field(default_factory=dict)  # index -> redelivery delay (nak)
    changes: list[SlotChange] = field(default_factory=list)
    orphans: list[OrphanAlgo] = field(default_factory=list)  # live algos of closed slots
    stored: int = 0
    duplicates: int = 0
    refolds: int = 0

    def merge(self, other: BatchOutcome) -> None:
        """Add what another part of the same batch did."""
        self.dead.update(other.dead)
        self.retry.update(other.retry)
        self.changes.extend(other.changes)
        self.orphans.extend(other.orphans)
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.refolds += other.refolds

    def events(self) -> list[PositionEvent]:
        """The position events of this batch (built after commit, outside the transaction)."""
        return position_events(self.changes)


async def handle_batch(
    store: LedgerStore, items: Sequence[Inbound], catalog: InstrumentCatalog
) -> BatchOutcome:
    """Apply a batch inside the store's transaction; nothing is acked here."""
    out = BatchOutcome()
    modes = await store.lock_accounts({i.event.account_id for i in items})
    valid = [i for i in items if _account_ok(i, modes, out)]
    await store.upsert_orders(_of(valid, OrderUpdate))
    algos = _of(valid, AlgoOrderUpdate)
    await store.upsert_algo_orders(algos)
    await _patch_exit_reasons(store, [u for u, _ in algos])
    ledger = [i for i in valid if isinstance(i.event, LedgerEntryEvent)]
    instruments = await _instruments(store, ledger, catalog, out)
    ledger = [i for i in ledger if i.index not in out.retry and i.index not in out.dead]
    if ledger:
        stored = await store.slot_state(list(dict.fromkeys(map(_slot, ledger))))  # before the batch
        new = await store.add_entries(ledger)
        out.stored, out.duplicates = len(new), len(ledger) - len(new)
        by_slot: defaultdict[Slot, NewEntries] = defaultdict(list)
        for entry, item in new:
            by_slot[_slot(item)].append((entry, item))
        changes = [await _change(store, slot, pairs, stored, instruments[slot.symbol],
                                 modes[slot.account_id], out) for slot, pairs in by_slot.items()]
        out.changes = await store.write_changes(changes)  # events are built after commit
        out.orphans = await store.orphan_algos(out.changes)  # cancelled after commit
    await store.insert_balances(_of(valid, Balance))
    await store.update_exchange_view([e for e, _ in _of(valid, ExchangePosition)])
    return out


async def _patch_exit_reasons(store: LedgerStore, updates: Sequence[AlgoOrderUpdate]) -> None:
    """Closes folded before their algo's leg was known get the leg's reason now. No event: the
    `closed` event said `external`; positions_closed is the truth (a log line per row)."""
    for row in await store.patch_exit_reasons(updates):
        log.info("exit_reason_patched", account=str(row["account_id"]), symbol=row["symbol"],
                 pos_side=row["pos_side"], closing_trade=row["closing_trade_id"],
                 exit_reason=row["exit_reason"])


async def _change(
    store: LedgerStore, slot: Slot, new: NewEntries, stored: StoredSlots, instrument: InstrumentSpec,
    mode: str, out: BatchOutcome,
) -> SlotChange:
    """Fold the slot's new entries onto its open position, or refold it from the ledger."""
    entries = [entry for entry, _ in new]
    before = stored.open.get(slot)
    if needs_refold(entries, stored.last_keys.get(slot)):
        out.refolds += 1
        ledger, old_closed = await store.load_slot(slot)
        change = SlotChange.refolded(slot, before, ledger, old_closed, instrument)
    else:
        change = SlotChange.folded(slot, before, entries, instrument)
    change = change.at(max(e.key for e in entries), mode)
    _report_anomalies(change, new, out)
    return change


def _of(items: Sequence[Inbound], kind: type[E]) -> list[tuple[E, str]]:
    return [(i.event, i.body) for i in items if isinstance(i.event, kind)]


def _slot(item: Inbound) -> Slot:
    event = item.event
    assert isinstance(event, LedgerEntryEvent)
    return slot_of(event)


def _account_ok(item: Inbound, modes: dict[UUID, str], out: BatchOutcome) -> bool:
    event = item.event
    mode = modes.get(event.account_id)
    if mode is None:
        out.dead[item.index] = DeadLetter(f"unknown account {event.account_id}", PERMANENT)
    elif mode != event.mode:
        out.dead[item.index] = DeadLetter(
            f"event mode {event.mode} but account {event.account_id} is {mode}", PERMANENT)
    return item.index not in out.dead


async def _instruments(
    store: LedgerStore, items: list[Inbound], catalog: InstrumentCatalog, out: BatchOutcome
) -> dict[str, InstrumentSpec]:
    symbols = {getattr(i.event, "inst_id", "") for i in items}
    known = await catalog.resolve(store, symbols)
    for item in items:
        symbol = getattr(item.event, "inst_id", "")
        if symbol in known:
            continue
        delay = catalog.retry_delay(item.published_at)
        if delay is None:
            out.dead[item.index] = DeadLetter(
                f"unknown instrument {symbol}: not in aitrader.instruments after a refresh, "
                f"{catalog.grace_seconds:g} s after start and publication", PERMANENT)
        else:
            out.retry[item.index] = delay
    return known


def _report_anomalies(change: SlotChange, new: NewEntries, out: BatchOutcome) -> None:
    ours = {_entry_id(entry): item for entry, item in new}
    for anomaly in change.result.anomalies:
        item = ours.get(anomaly.entry_id)
        if item is None:  # an older entry that a refold could not apply either
            log.warning("fold_anomaly", slot=str(change.slot), entry=anomaly.entry_id, reason=anomaly.reason)
            continue
        out.dead[item.index] = DeadLetter(
            f"fold anomaly, kept in the ledger but not applied: {anomaly.reason}", FOLD_ANOMALY)


def _entry_id(entry: Entry) -> str:
    return entry.trade_id if isinstance(entry, LedgerFill) else entry.bill_id
