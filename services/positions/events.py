"""What one batch changed in each slot, and the position events that says to publish (pure).

No I/O: a `SlotChange` is the stored open position of a slot before the batch and the fold
after it; the store writes it (`LedgerStore.write_changes`) and, after commit, `events()`
says what to publish.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from services.positions.domain import (
    ClosedPosition,
    Entry,
    EntryKey,
    FoldResult,
    Position,
    fold,
)
from shared.instruments import InstrumentSpec
from shared.messages import (
    ClosedPositionState,
    FundingPayment,
    PositionEvent,
    PositionState,
)
from shared.money import ZERO
from shared.types import PositionEventKind
from shared.wire import AnyFill

Identity = tuple[str, datetime]  # (side, opened_at): how a refold recognises a position


class Slot(NamedTuple):
    """Where a position lives; slots never interact (fields named as the tables' key columns)."""

    account_id: UUID
    symbol: str
    pos_side: str


def slot_of(event: AnyFill | FundingPayment) -> Slot:
    """The slot a fill or funding payment belongs to."""
    return Slot(event.account_id, event.inst_id, event.pos_side)


def needs_refold(new: Iterable[Entry], last_stored: EntryKey | None) -> bool:
    """True when a new entry sorts before the slot's last stored one: folding the new entries
    onto the stored position would not be the in-order fold, so the slot is refolded."""
    return last_stored is not None and min(e.key for e in new) < last_stored


@dataclass(frozen=True, slots=True)
class SlotChange:
    """A slot before (the stored open row) and after (the fold) one batch."""

    slot: Slot
    before: Position | None
    result: FoldResult
    refold: bool = False
    old_closed: tuple[ClosedPosition, ...] = ()
    last_key: EntryKey | None = None
    mode: str = "simulated"

    @classmethod
    def folded(cls, slot: Slot, before: Position | None, new: Sequence[Entry],
               instrument: InstrumentSpec) -> SlotChange:
        """The batch's new entries folded onto the stored open position."""
        return cls(slot, before, fold(new, instrument, before))

    @classmethod
    def refolded(cls, slot: Slot, before: Position | None, ledger: Sequence[Entry],
                 old_closed: Sequence[ClosedPosition], instrument: InstrumentSpec) -> SlotChange:
        """The slot folded again from every stored entry; exit plans carried over."""
        result = fold(ledger, instrument)
        return cls(slot, before, result, refold=True, old_closed=tuple(old_closed)).carry_plans()

    def at(self, last_key: EntryKey, mode: str) -> SlotChange:
        """The same change, stamped with the batch's last entry and the account mode."""
        # Spelled out rather than dataclasses.replace, which introspects the fields on every
        # call: this runs once per slot of every batch.
        return SlotChange(slot=self.slot, before=self.before, result=self.result, refold=self.refold,
                          old_closed=self.old_closed, last_key=last_key, mode=mode)

    @property
    def continuing(self) -> bool:
        """The stored open row is still the same position (its id and exit plan stay)."""
        pos, before = self.result.position, self.before
        if pos is None or before is None or pos.side != before.side:
            return False
        if self.refold:  # still open since (at least) the stored row's opening
            return pos.opened_at <= before.opened_at
        return pos.opened_at == before.opened_at and not self.result.closed

    @property
    def replaces_stored(self) -> bool:
        """The stored open row ends here (closed, flipped or refolded into another position)."""
        return self.before is not None and not self.continuing

    def carry_plans(self) -> SlotChange:
        """After a refold, keep the exit plans the stored rows had (set by update_exit_plan)."""
        plans: dict[Identity, Any] = {(c.side, c.entry_time): c.exit_plan for c in self.old_closed}
        if self.before is not None:
            plans[_identity(self.before)] = self.before.exit_plan
        closed = tuple(
            replace(c, exit_plan=plans.get((c.side, c.entry_time), c.exit_plan))
            for c in self.result.closed
        )
        pos = self.result.position
        if pos is not None:
            pos = replace(pos, exit_plan=plans.get(_identity(pos), pos.exit_plan))
        return replace(self, result=replace(self.result, position=pos, closed=closed))

    def closing_plan(self, plan: Any) -> SlotChange:
        """The stored position closed: its closed row keeps the exit plan the row had when it
        was deleted (set by `update_exit_plan` at any time before)."""
        assert self.before is not None
        identity = _identity(self.before)
        closed = tuple(
            replace(c, exit_plan=plan) if (c.side, c.entry_time) == identity else c
            for c in self.result.closed
        )
        return replace(self, result=replace(self.result, closed=closed))

    def new_closes(self) -> tuple[ClosedPosition, ...]:
        """The positions this batch closed (a refold's closes stored before are not new)."""
        old_ids = {c.closing_trade_id for c in self.old_closed}
        return tuple(c for c in self.result.closed if c.closing_trade_id not in old_ids)

    def events(self, now: datetime | None = None) -> list[PositionEvent]:
        """In fold order: `opened` and `closed` for every position this batch opened or
        closed (a position opened and closed within the batch too), then `opened` or `changed`
        for the position left open, with its final state (one event however many fills
        changed it). `now` is ts_init."""
        now = now or datetime.now(UTC)
        published: set[Identity] = {(c.side, c.entry_time) for c in self.old_closed}  # earlier
        if self.before is not None:
            published.add(_identity(self.before))
        openings = {_identity(p): p for p in self.result.opened}
        events = []
        for c in self.new_closes():
            opening = openings.get((c.side, c.entry_time))
            if opening is not None and (c.side, c.entry_time) not in published:
                events.append(self._opened(opening, now))
            events.append(self._event("closed", c.closing_trade_id, c.exit_time, now,
                                      closed=_closed_state(c)))
        pos = self.result.position
        assert self.last_key is not None
        time, _, (_, _, entry_id) = self.last_key
        if pos is not None and not self.continuing:
            events.append(self._event("opened", entry_id, time, now, position=_state(pos)))
        elif pos is not None and pos != self.before:
            events.append(self._event("changed", entry_id, time, now, position=_state(pos)))
        return events

    def _opened(self, p: Position, now: datetime) -> PositionEvent:
        # A position that also closed in this batch: its state right after its opening fill.
        assert p.last_trade_id is not None
        return self._event("opened", p.last_trade_id, p.opened_at, now, position=_state(p))

    def _event(self, kind: PositionEventKind, trade_id: str,
               time: datetime, now: datetime, **values: Any) -> PositionEvent:
        account_id, symbol, pos_side = self.slot
        # Every value is already typed by the fold: no second validation. A copy of a template
        # with every field replaced (`model_copy(update=...)`, which does not validate either)
        # costs 40 % less than `model_construct`, which resolves aliases and defaults per field.
        return _EVENT.model_copy(update={
            "position": None, "closed": None, **values, "kind": kind, "account_id": account_id,
            "mode": self.mode, "inst_id": symbol, "pos_side": pos_side, "trade_id": trade_id,
            "ts_event": time, "event_id": uuid4(), "ts_init": now,
        })


def position_events(changes: Iterable[SlotChange], now: datetime | None = None) -> list[PositionEvent]:
    """Every event of these changes, slot by slot; `now` (ts_init) is one instant for all."""
    now = now or datetime.now(UTC)
    return [event for change in changes for event in change.events(now)]


def _identity(position: Position) -> Identity:
    return (position.side, position.opened_at)


def _state(p: Position) -> PositionState:
    return _STATE.model_copy(update={
        "side": p.side, "quantity": p.quantity, "avg_entry_price": p.avg_entry_price,
        "leverage": p.leverage, "realized_gross_usdt": p.realized_gross_usdt,
        "fees_usdt": p.fees_usdt, "funding_usdt": p.funding_usdt,
        "average_confidence": p.average_confidence, "opened_at": p.opened_at,
        "exit_plan": p.exit_plan,
    })


def _closed_state(c: ClosedPosition) -> ClosedPositionState:
    return _CLOSED.model_copy(update={
        "side": c.side, "quantity": c.quantity, "entry_price": c.entry_price,
        "exit_price": c.exit_price, "realized_pnl_usdt": c.realized_pnl_usdt,
        "gross_pnl_usdt": c.gross_pnl_usdt, "fee_usdt": c.fee_usdt,
        "funding_usdt": c.funding_usdt, "holding_minutes": c.holding_minutes,
        "average_confidence": c.average_confidence, "entry_time": c.entry_time,
        "exit_time": c.exit_time, "exit_reason": c.exit_reason,
        "closing_trade_id": c.closing_trade_id,
    })


# The templates the events are copied from (every field is replaced in each copy; a test
# checks the copies against validated models).
_T0 = datetime(2000, 1, 1, tzinfo=UTC)
_STATE = PositionState(side="long", quantity=ZERO, avg_entry_price=ZERO, opened_at=_T0)
_CLOSED = ClosedPositionState(
    side="long", quantity=ZERO, entry_price=ZERO, exit_price=ZERO, realized_pnl_usdt=ZERO,
    gross_pnl_usdt=ZERO, fee_usdt=ZERO, funding_usdt=ZERO, holding_minutes=ZERO, entry_time=_T0,
    exit_time=_T0, exit_reason="external", closing_trade_id="-")
_EVENT = PositionEvent(kind="opened", account_id=UUID(int=0), mode="simulated", inst_id="-",
                       pos_side="net", ts_event=_T0)
