"""Reconciliation's pure core: what the exchange holds against what the ledger holds, and the
labelled entry that makes the ledger agree when backfill could not (docs/reconciliation.md).

No I/O. Quantities are signed contracts (+ long, - short) per slot (symbol, pos_side).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from shared.messages import Fill, OrderUpdate
from shared.money import LEDGER_CONTEXT, Q8, ZERO, quantize
from shared.types import RECONCILE_CATEGORY, Direction, Mode, PosSide, Side

# An average entry price that differs by less than this fraction is the same price (OKX
# rounds its avgPx; the ledger keeps 8 decimals).
AVG_TOLERANCE = Decimal("0.000001")

Slot = tuple[str, PosSide]  # (symbol, pos_side)
Held = tuple[str, PosSide, Direction]  # a position held: its slot and which way it is exposed


@dataclass(frozen=True, slots=True)
class Holding:
    """One slot's position: signed contracts and average entry price."""

    quantity: Decimal  # + long, - short
    avg_px: Decimal | None

    def describe(self) -> dict[str, str | None]:
        return {"quantity": str(self.quantity),
                "avg_px": None if self.avg_px is None else str(self.avg_px)}


FLAT = Holding(ZERO, None)


def signed(pos_side: PosSide, pos: Decimal, side: str | None = None) -> Decimal:
    """OKX's pos as signed contracts: signed already in net mode, positive per slot otherwise;
    a ledger row's quantity (always positive) signed by its side."""
    if side is not None:
        return pos if side == "long" else -pos
    if pos_side == "short":
        return -abs(pos)
    return abs(pos) if pos_side == "long" else pos


@dataclass(frozen=True, slots=True)
class PositionDifference:
    """A slot where the exchange and the ledger disagree."""

    slot: Slot
    exchange: Holding
    ledger: Holding

    @property
    def subject(self) -> str:
        return f"{self.slot[0]}:{self.slot[1]}"

    @property
    def quantity_differs(self) -> bool:
        return self.exchange.quantity != self.ledger.quantity


def position_differences(exchange: Mapping[Slot, Holding],
                         ledger: Mapping[Slot, Holding]) -> list[PositionDifference]:
    """Slots whose contracts differ, or whose average differs beyond `AVG_TOLERANCE`."""
    out = []
    for slot in sorted(exchange.keys() | ledger.keys()):
        x, book = exchange.get(slot, FLAT), ledger.get(slot, FLAT)
        if x.quantity == 0 and book.quantity == 0:
            continue
        if x.quantity != book.quantity or not _same_price(x.avg_px, book.avg_px):
            out.append(PositionDifference(slot, x, book))
    return out


def _same_price(a: Decimal | None, b: Decimal | None) -> bool:
    if a is None or b is None:  # a missing average is no evidence of a difference
        return True
    return abs(a - b) <= AVG_TOLERANCE * max(abs(a), abs(b))


@dataclass(frozen=True, slots=True)
class Correction:
    """One labelled ledger entry: a synthetic fill of `size` contracts at `price`."""

    side: Side
    size: Decimal
    price: Decimal


def corrections(diff: PositionDifference, mark: Decimal) -> list[Correction]:
    """The fills that take the ledger's slot to the exchange's: what the ledger holds beyond
    the exchange is closed at the mark (the best known price of a close nobody saw); what the
    exchange holds beyond the ledger is opened at the price that gives the exchange's average.
    A change of direction is a close and an open. Only quantity differences are corrected."""
    have, want = diff.ledger.quantity, diff.exchange.quantity
    if have == want:
        return []
    out: list[Correction] = []
    if have != 0 and (want == 0 or (have > 0) != (want > 0) or abs(want) < abs(have)):
        keep = want if want != 0 and (have > 0) == (want > 0) else ZERO
        out.append(Correction("sell" if have > 0 else "buy", abs(have - keep), mark))
        have = keep
    if abs(want) > abs(have):
        out.append(Correction("buy" if want > 0 else "sell", abs(want - have),
                              _opening_price(diff, have, want)))
    return out


def _opening_price(diff: PositionDifference, have: Decimal, want: Decimal) -> Decimal:
    """The price of the added contracts that makes the ledger's average the exchange's."""
    target = diff.exchange.avg_px
    if target is None:
        raise ValueError(f"{diff.subject}: the exchange reports no average price")
    if have == 0 or diff.ledger.avg_px is None:
        return target
    cost = target * abs(want) - diff.ledger.avg_px * abs(have)
    price = quantize(LEDGER_CONTEXT.divide(cost, abs(want) - abs(have)), Q8)
    return price if price > 0 else target


def balance_differs(exchange_cash: Decimal, ledger_cash: Decimal | None) -> bool:
    """The exchange's cash balance against the ledger's latest snapshot of it (both are the
    exchange's cashBal: equal to the last digit, or different)."""
    return ledger_cash is None or exchange_cash != ledger_cash


def open_orders_unknown(ledger_open: Iterable[str], exchange_pending: Iterable[str]) -> list[str]:
    """Orders the ledger holds open that the exchange no longer has pending."""
    pending = set(exchange_pending)
    return sorted(o for o in set(ledger_open) if o not in pending)


@dataclass(frozen=True, slots=True)
class RestingAlgo:
    """A pending algo (TP/SL) order on the exchange, as the comparison needs it."""

    algo_id: str
    symbol: str
    pos_side: PosSide
    side: Side
    reduce_only: bool = False
    close_fraction: bool = False

    @property
    def closes(self) -> Held | None:
        """The position it only closes (so it dies with it); None for one that may open.
        Net mode: a reduce-only or close-position algo closes the direction opposite its side;
        long/short mode: the slot's closing side (sell a long, buy a short)."""
        if self.pos_side != "net":
            closing = self.side == ("sell" if self.pos_side == "long" else "buy")
            return (self.symbol, self.pos_side, self.pos_side) if closing else None
        if self.reduce_only or self.close_fraction:
            return (self.symbol, "net", "long" if self.side == "sell" else "short")
        return None


def held(holdings: Mapping[Slot, Holding]) -> set[Held]:
    """The positions held (signed contracts not zero), with the way each is exposed."""
    return {(symbol, pos_side, "long" if h.quantity > 0 else "short")
            for (symbol, pos_side), h in holdings.items() if h.quantity != 0}


def orphan_algos(algos: Iterable[RestingAlgo], held_anywhere: AbstractSet[Held]
                 ) -> list[RestingAlgo]:
    """Pending algos that only close a position no one holds: `held_anywhere` is what the
    ledger and the exchange hold together, so a stop over a position only one side knows of
    (a position difference, not an orphan) is never one."""
    return sorted((a for a in algos if a.closes is not None and a.closes not in held_anywhere),
                  key=lambda a: (a.symbol, a.algo_id))


def has_legs(plan: Mapping[str, Any] | None) -> bool:
    """Whether a stored exit plan asks for an order on the exchange (a take-profit or a
    stop-loss; an invalidation condition alone is words)."""
    return plan is not None and any(plan.get(k) is not None for k in ("take_profit", "stop_loss"))


def plans_not_resting(plans: Mapping[Held, Mapping[str, Any]], exchange_held: AbstractSet[Held],
                      algos: Iterable[RestingAlgo]) -> list[Held]:
    """Positions whose stored plan has legs but no pending algo closes them. Only positions
    the exchange holds too: one it does not hold is a position difference, and no algo can
    rest for it."""
    resting = {a.closes for a in algos}
    return sorted(p for p, plan in plans.items()
                  if has_legs(plan) and p in exchange_held and p not in resting)


def labelled_entry(account_id: UUID, mode: Mode, issue: UUID, attempt: int, n: int,
                   slot: Slot, correction: Correction, now: datetime) -> tuple[OrderUpdate, Fill]:
    """A synthetic, labelled order and its fill, filled at once without a fee; its id
    `R<issue>-<attempt>-<n>` is new for every attempt, so a later attempt is never taken for
    a duplicate of an earlier one."""
    ord_id = f"R{issue.hex}-{attempt}-{n}"
    common: dict[str, Any] = {"account_id": account_id, "mode": mode, "ts_event": now,
                              "inst_id": slot[0], "ord_id": ord_id, "side": correction.side,
                              "pos_side": slot[1], "category": RECONCILE_CATEGORY}
    order = OrderUpdate(**common, ord_type="market", state="filled", sz=correction.size,
                        acc_fill_sz=correction.size, avg_px=correction.price, created_time=now)
    fill = Fill(**common, trade_id=ord_id, fill_px=correction.price, fill_sz=correction.size,
                fill_fee=ZERO, ord_type="market", raw={"reconciliation_issue": str(issue)})
    return order, fill


def entry_view(fill: Fill) -> dict[str, str]:
    """How an entry (a fill) is shown in an issue's record."""
    return {"trade_id": fill.trade_id, "inst_id": fill.inst_id, "side": fill.side,
            "size": str(fill.fill_sz), "price": str(fill.fill_px)}
