"""Rebuild positions from the stored ledger with the same fold and compare with the tables.

Compared: every fold column of `positions_open` and `positions_closed`. Not compared: ids,
timestamps of our own writes, the exchange-view columns (margin, liquidation and mark price,
unrealized PnL) and `exit_plan` (written by the agent through `update_exit_plan`).
`exit_reason` is compared: each fill's algo leg is read from `algo_orders` as it is now
(`store.load_entries`), which is what the live path ends with once it has patched a close
folded before its leg was known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from uuid import UUID

from services.positions.domain import ClosedPosition, Position, fold
from services.positions.events import Slot
from services.positions.store import LedgerStore
from shared.exchange_ids import id_key
from shared.instruments import InstrumentSpec

_SKIP = {"exit_plan"}


@dataclass
class ReplayReport:
    """What a replay found."""

    slots: int = 0
    entries: int = 0
    open_positions: int = 0
    closed_positions: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


async def replay(
    store: LedgerStore, accounts: dict[UUID, str], slots: Sequence[Slot],
    progress: Callable[[int], None] = lambda n: None,
) -> ReplayReport:
    """Fold these slots (of accounts: id -> external id) from the ledger and compare."""
    report = ReplayReport(slots=len(slots))
    instruments = await store.instruments()
    for slot in slots:
        label = f"{accounts[slot.account_id]} {slot.symbol} {slot.pos_side}"
        found = await _replay_slot(store, slot, instruments, report)
        report.differences.extend(f"{label}: {d}" for d in found)
        progress(1)
    return report


async def _replay_slot(
    store: LedgerStore, slot: Slot, instruments: dict[str, InstrumentSpec], report: ReplayReport
) -> list[str]:
    instrument = instruments.get(slot.symbol)
    if instrument is None:
        return [f"instrument {slot.symbol} is not in aitrader.instruments"]
    entries = await store.load_entries(slot)
    result = fold(entries, instrument)
    stored_open = (await store.load_open([slot])).get(slot)
    stored_closed = await store.load_closed(slot)
    report.entries += len(entries)
    report.open_positions += stored_open is not None
    report.closed_positions += len(stored_closed)
    return compare(result.position, result.closed, stored_open, stored_closed)


def compare(
    position: Position | None, closed: Sequence[ClosedPosition],
    stored_open: Position | None, stored_closed: Sequence[ClosedPosition],
) -> list[str]:
    """Human-readable differences between a fold and the stored rows (empty: identical)."""
    out = []
    if position is None and stored_open is not None:
        out.append(f"stored open {stored_open.side} {stored_open.quantity}, replay: none")
    elif position is not None and stored_open is None:
        out.append(f"replay open {position.side} {position.quantity}, stored: none")
    elif position is not None and stored_open is not None:
        out.extend(f"open {d}" for d in _field_differences(stored_open, position))
    want = {c.closing_trade_id: c for c in closed}
    have = {c.closing_trade_id: c for c in stored_closed}
    for trade_id in sorted(want.keys() - have.keys(), key=id_key):
        out.append(f"closed by trade {trade_id}: missing from positions_closed")
    for trade_id in sorted(have.keys() - want.keys(), key=id_key):
        out.append(f"closed by trade {trade_id}: stored, but the replay does not close there")
    for trade_id in sorted(want.keys() & have.keys(), key=id_key):
        found = _field_differences(have[trade_id], want[trade_id])
        out.extend(f"closed by trade {trade_id}: {d}" for d in found)
    return out


def _field_differences(stored: Any, rebuilt: Any) -> list[str]:
    return [
        f"{f.name} stored {getattr(stored, f.name)}, replay {getattr(rebuilt, f.name)}"
        for f in fields(stored)
        if f.name not in _SKIP and getattr(stored, f.name) != getattr(rebuilt, f.name)
    ]
