"""What one batch did to one slot: the rows to write and the events to publish."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import uuid4

import asyncpg

from services.positions import repository
from services.positions.domain import ClosedPosition, EntryKey, FoldResult, Position
from services.positions.repository import Slot
from shared.messages import ClosedPositionState, PositionEvent, PositionState

Identity = tuple[str, datetime]  # (side, opened_at): how a refold recognises a position


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

    def at(self, last_key: EntryKey, mode: str) -> SlotChange:
        """The same change, stamped with the batch's last entry and the account mode."""
        return replace(self, last_key=last_key, mode=mode)

    @property
    def continuing(self) -> bool:
        """The stored open row is still the same position (its id and exit plan stay)."""
        pos, before = self.result.position, self.before
        if pos is None or before is None or pos.side != before.side:
            return False
        if self.refold:  # still open since (at least) the stored row's opening
            return pos.opened_at <= before.opened_at
        return pos.opened_at == before.opened_at and not self.result.closed

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

    def events(self, now: datetime | None = None) -> list[PositionEvent]:
        """In fold order: `opened` and `closed` for every position this batch opened or
        closed (a position opened and closed within the batch too), then `opened` or `changed`
        for the position left open, with its final state (one event however many fills
        changed it). `now` is ts_init."""
        now = now or datetime.now(UTC)
        old_ids = {c.closing_trade_id for c in self.old_closed}
        published: set[Identity] = {(c.side, c.entry_time) for c in self.old_closed}  # earlier
        if self.before is not None:
            published.add(_identity(self.before))
        openings = {_identity(p): p for p in self.result.opened}
        events = []
        for c in self.result.closed:
            if c.closing_trade_id in old_ids:
                continue
            opening = openings.get((c.side, c.entry_time))
            if opening is not None and (c.side, c.entry_time) not in published:
                events.append(self._opened(opening, now))
            events.append(self._event("closed", c.closing_trade_id, c.exit_time, now,
                                      closed=_closed_state(c)))
        pos = self.result.position
        assert self.last_key is not None
        time, _, entry_id = self.last_key
        if pos is not None and not self.continuing:
            events.append(self._event("opened", entry_id, time, now, position=_state(pos)))
        elif pos is not None and pos != self.before:
            events.append(self._event("changed", entry_id, time, now, position=_state(pos)))
        return events

    def _opened(self, p: Position, now: datetime) -> PositionEvent:
        # A position that also closed in this batch: its state right after its opening fill.
        assert p.last_trade_id is not None
        return self._event("opened", p.last_trade_id, p.opened_at, now, position=_state(p))

    def _event(self, kind: Literal["opened", "changed", "closed"], trade_id: str,
               time: datetime, now: datetime, **values: Any) -> PositionEvent:
        account_id, symbol, pos_side = self.slot
        # model_construct: every value is already typed by the fold (no second validation).
        # event_id and ts_init are given: a default_factory costs pydantic a signature
        # inspection on every construct.
        fields: dict[str, Any] = {"position": None, "closed": None, **values}
        return PositionEvent.model_construct(
            kind=kind, account_id=account_id, mode=self.mode, inst_id=symbol, pos_side=pos_side,
            trade_id=trade_id, ts_event=time, event_id=uuid4(), ts_init=now, **fields,
        )


def _identity(position: Position) -> Identity:
    return (position.side, position.opened_at)


def _state(p: Position) -> PositionState:
    return PositionState.model_construct(
        side=p.side, quantity=p.quantity, avg_entry_price=p.avg_entry_price, leverage=p.leverage,
        realized_gross_usdt=p.realized_gross_usdt, fees_usdt=p.fees_usdt,
        funding_usdt=p.funding_usdt, average_confidence=p.average_confidence,
        opened_at=p.opened_at, exit_plan=p.exit_plan,
    )


def _closed_state(c: ClosedPosition) -> ClosedPositionState:
    return ClosedPositionState.model_construct(
        side=c.side, quantity=c.quantity, entry_price=c.entry_price, exit_price=c.exit_price,
        realized_pnl_usdt=c.realized_pnl_usdt, gross_pnl_usdt=c.gross_pnl_usdt,
        fee_usdt=c.fee_usdt, funding_usdt=c.funding_usdt, holding_minutes=c.holding_minutes,
        average_confidence=c.average_confidence, entry_time=c.entry_time, exit_time=c.exit_time,
        exit_reason=c.exit_reason, closing_trade_id=c.closing_trade_id,
    )


async def write_changes(conn: asyncpg.Connection, changes: list[SlotChange]) -> list[SlotChange]:
    """Write every slot's rows: a new position replaces the stored row, a continuing one
    updates it in place (keeping its id and exit plan)."""
    plans = await repository.delete_open(
        conn, [c.slot for c in changes if c.before is not None and not c.continuing]
    )
    changes = [c.closing_plan(plans[c.slot]) if c.slot in plans else c for c in changes]
    await repository.upsert_open(
        conn, [(c.slot, c.result.position) for c in changes if c.result.position is not None]
    )
    await repository.upsert_closed(conn, [(c.slot, x) for c in changes for x in c.result.closed])
    for change in changes:
        if change.refold:
            keep = [c.closing_trade_id for c in change.result.closed]
            await repository.delete_closed_except(conn, change.slot, keep)
    return changes
