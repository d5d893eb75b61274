"""The fill ledger's pure fold: positions from fills and funding payments (DESIGN §3).

No I/O, no clock, no async. Every value is computed in the ledger's decimal context and
quantized to its column's scale with one rounding mode (`shared.money`), so a position loaded
back from PostgreSQL equals the one held in memory and a replay compares equal. The cost is kept
exact (sum of px x sz of the opening and of the closing fills, 16 decimals): a closed position's
gross PnL is proceeds minus cost, exact to its column, never computed from the rounded average.
Entries at the same instant fold in exchange-id order (`shared.exchange_ids`: as integers). A position
lives in one slot: (account, symbol, pos_side), where pos_side is OKX's `net`, or `long` /
`short` in long/short mode; slots never interact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from shared.exchange_ids import IdKey, id_key
from shared.instruments import InstrumentSpec
from shared.money import LEDGER_CONTEXT, Q4, Q8, Q12, Q16, ZERO, average_confidence, quantize
from shared.types import RECONCILE_CATEGORY, AlgoLeg, Direction, ExitReason, PosSide, Side

EntryKey = tuple[datetime, int, IdKey]

LIQUIDATION_CATEGORIES = frozenset({"full_liquidation", "partial_liquidation"})
# The exit reason of a close by a fill of the order an algo (TP/SL) leg placed when it fired.
LEG_REASONS: dict[AlgoLeg, ExitReason] = {"tp": "take_profit", "sl": "stop_loss"}
# A close's reason when neither its category nor an algo leg says more: what a leg, learned
# later, replaces.
ORIGIN_REASONS: tuple[ExitReason, ...] = ("agent", "external")
_MICROSECONDS_PER_MINUTE = Decimal(60_000_000)


class FoldAnomaly(ValueError):
    """An entry the fold refuses to apply (it is kept in the ledger and skipped)."""

    def __init__(self, entry_id: str, reason: str) -> None:
        super().__init__(f"{entry_id}: {reason}")
        self.entry_id = entry_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LedgerFill:
    """One stored fill, with what it inherits from its order (confidence, leverage, origin)."""

    trade_id: str
    time: datetime
    side: Side
    pos_side: PosSide
    price: Decimal
    size: Decimal
    fee: Decimal = ZERO  # OKX sign: negative = charged, positive = rebate
    confidence: Decimal | None = None
    leverage: Decimal | None = None
    category: str = "normal"
    by_agent: bool = False  # the order came from an MCP tool call
    exit_plan: dict[str, Any] | None = field(default=None, hash=False)
    # The algo leg whose trigger placed the fill's order, resolved when the fill is built
    # (None: no algo, or which leg fired is not known yet).
    algo_leg: AlgoLeg | None = None

    @property
    def key(self) -> EntryKey:
        return (self.time, 1, id_key(self.trade_id))


@dataclass(frozen=True, slots=True)
class FundingEntry:
    """One funding payment on a slot; amount > 0 = received."""

    bill_id: str
    time: datetime
    pos_side: PosSide
    amount: Decimal

    @property
    def key(self) -> EntryKey:
        # At the same instant funding sorts first: it settles on the position held then.
        return (self.time, 0, id_key(self.bill_id))


Entry = LedgerFill | FundingEntry


@dataclass(frozen=True, slots=True)
class Position:
    """An open position and the accumulated state its closed row is made from."""

    pos_side: PosSide
    side: Direction
    quantity: Decimal  # contracts, > 0
    avg_entry_price: Decimal  # average cost of the contracts still open
    opened_at: datetime
    leverage: Decimal | None = None
    opened_quantity: Decimal = ZERO
    opened_value: Decimal = ZERO  # sum(px x sz) of opening fills, exact
    closed_quantity: Decimal = ZERO
    closed_value: Decimal = ZERO  # sum(px x sz) of closing fills, exact
    realized_gross_usdt: Decimal = ZERO
    fees_usdt: Decimal = ZERO
    funding_usdt: Decimal = ZERO
    confidence_weight_sum: Decimal = ZERO  # sum(confidence x sz) of opening fills with one
    confidence_quantity: Decimal = ZERO
    fill_count: int = 0
    last_fill_time: datetime | None = None
    last_trade_id: str | None = None
    exit_plan: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    @property
    def average_confidence(self) -> Decimal | None:
        return average_confidence(self.confidence_weight_sum, self.confidence_quantity)


@dataclass(frozen=True, slots=True)
class ClosedPosition:
    """A position that reached zero: the values of its `positions_closed` row."""

    pos_side: PosSide
    side: Direction
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    realized_pnl_usdt: Decimal  # gross + fees + funding
    gross_pnl_usdt: Decimal
    fee_usdt: Decimal
    funding_usdt: Decimal
    holding_minutes: Decimal
    average_confidence: Decimal | None
    entry_time: datetime
    exit_time: datetime
    exit_reason: ExitReason
    leverage: Decimal | None
    fill_count: int
    closing_trade_id: str
    exit_plan: dict[str, Any] | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class FoldResult:
    """The state of one slot after a sequence of entries."""

    position: Position | None
    closed: tuple[ClosedPosition, ...] = ()
    anomalies: tuple[FoldAnomaly, ...] = ()
    opened: tuple[Position, ...] = ()  # every position opened here, as of its opening fill


def apply_fill(
    position: Position | None, fill: LedgerFill, instrument: InstrumentSpec
) -> tuple[Position | None, ClosedPosition | None]:
    """Apply one fill to its slot: open, add, reduce, close, or (net mode) flip."""
    if position is not None and position.pos_side != fill.pos_side:
        raise ValueError(
            f"fill {fill.trade_id} is for slot {fill.pos_side}, not {position.pos_side}"
        )
    with localcontext(LEDGER_CONTEXT):
        if fill.pos_side == "net":
            return _apply_net(position, fill, instrument)
        return _apply_hedged(position, fill, instrument)


def apply_funding(position: Position | None, funding: FundingEntry) -> Position:
    """Accumulate a funding payment on the open position of its slot."""
    if position is None:
        reason = f"funding {funding.amount} with no open {funding.pos_side} position"
        raise FoldAnomaly(funding.bill_id, reason)
    return replace(position, funding_usdt=position.funding_usdt + funding.amount)


def fold(
    entries: Iterable[Entry], instrument: InstrumentSpec, position: Position | None = None
) -> FoldResult:
    """Apply entries in (time, kind, id) order; anomalies are skipped and reported."""
    closed: list[ClosedPosition] = []
    anomalies: list[FoldAnomaly] = []
    opened: list[Position] = []
    for entry in sorted(entries, key=entry_key):
        try:
            if isinstance(entry, FundingEntry):
                position = apply_funding(position, entry)
                continue
            before = position
            position, done = apply_fill(position, entry, instrument)
        except FoldAnomaly as anomaly:
            anomalies.append(anomaly)
            continue
        if done is not None:
            closed.append(done)
        if position is not None and (before is None or done is not None):  # opened or flipped
            opened.append(position)
    return FoldResult(position, tuple(closed), tuple(anomalies), tuple(opened))


def entry_key(entry: Entry) -> EntryKey:
    """The fold order: fill time, funding before fills at the same instant, then the id."""
    return entry.key


def exit_reason(fill: LedgerFill) -> ExitReason:
    """Why a position closed: the closing fill's OKX category, else the algo leg that placed
    its order, else its order's origin."""
    if fill.category in LIQUIDATION_CATEGORIES:
        return "liquidation"
    if fill.category == "adl":
        return "adl"
    if fill.category == RECONCILE_CATEGORY:
        return "reconcile"
    if fill.algo_leg is not None:
        return LEG_REASONS[fill.algo_leg]
    return "agent" if fill.by_agent else "external"


def _direction(side: Side) -> Direction:
    return "long" if side == "buy" else "short"


def _apply_net(
    position: Position | None, fill: LedgerFill, instrument: InstrumentSpec
) -> tuple[Position | None, ClosedPosition | None]:
    direction = _direction(fill.side)
    if position is None:
        return _open(fill, direction, fill.size, fill.fee), None
    if position.side == direction:
        return _add(position, fill), None
    if fill.size <= position.quantity:
        return _reduce(position, fill, fill.size, fill.fee, instrument)
    # Flip: the fee is split pro rata by contracts; the two parts add up to the fill's fee.
    close_fee = quantize(fill.fee * position.quantity / fill.size, Q8)
    _, closed = _reduce(position, fill, position.quantity, close_fee, instrument)
    opened = _open(fill, direction, fill.size - position.quantity, fill.fee - close_fee)
    return opened, closed


def _apply_hedged(
    position: Position | None, fill: LedgerFill, instrument: InstrumentSpec
) -> tuple[Position | None, ClosedPosition | None]:
    slot: Direction = "long" if fill.pos_side == "long" else "short"
    if _direction(fill.side) == slot:
        if position is None:
            return _open(fill, slot, fill.size, fill.fee), None
        return _add(position, fill), None
    held = position.quantity if position is not None else ZERO
    if position is None or fill.size > held:
        raise FoldAnomaly(
            fill.trade_id,
            f"over-close: {fill.side} {fill.size} contracts against a {slot} position of {held}"
            " (long/short mode never flips)",
        )
    return _reduce(position, fill, fill.size, fill.fee, instrument)


def _confidence(fill: LedgerFill, size: Decimal) -> tuple[Decimal, Decimal]:
    if fill.confidence is None:
        return ZERO, ZERO
    return quantize(fill.confidence * size, Q12), size


def _open(fill: LedgerFill, side: Direction, size: Decimal, fee: Decimal) -> Position:
    weight, weighted_qty = _confidence(fill, size)
    return Position(
        pos_side=fill.pos_side,
        side=side,
        quantity=size,
        avg_entry_price=fill.price,
        opened_at=fill.time,
        leverage=fill.leverage,
        opened_quantity=size,
        opened_value=quantize(fill.price * size, Q16),
        fees_usdt=fee,
        confidence_weight_sum=weight,
        confidence_quantity=weighted_qty,
        fill_count=1,
        last_fill_time=fill.time,
        last_trade_id=fill.trade_id,
        exit_plan=fill.exit_plan,
    )


def _add(position: Position, fill: LedgerFill) -> Position:
    # Every field spelled out rather than dataclasses.replace: this runs once per fill, and
    # replace introspects the fields on every call (several times slower).
    p = position
    quantity = p.quantity + fill.size
    cost = p.avg_entry_price * p.quantity + fill.price * fill.size
    weight, weighted_qty = _confidence(fill, fill.size)
    return Position(
        pos_side=p.pos_side, side=p.side, quantity=quantity,
        avg_entry_price=quantize(cost / quantity, Q8), opened_at=p.opened_at,
        leverage=fill.leverage if fill.leverage is not None else p.leverage,
        opened_quantity=p.opened_quantity + fill.size,
        opened_value=p.opened_value + quantize(fill.price * fill.size, Q16),
        closed_quantity=p.closed_quantity, closed_value=p.closed_value,
        realized_gross_usdt=p.realized_gross_usdt, fees_usdt=p.fees_usdt + fill.fee,
        funding_usdt=p.funding_usdt, confidence_weight_sum=p.confidence_weight_sum + weight,
        confidence_quantity=p.confidence_quantity + weighted_qty, fill_count=p.fill_count + 1,
        last_fill_time=fill.time, last_trade_id=fill.trade_id, exit_plan=p.exit_plan,
    )


def _reduce(
    position: Position, fill: LedgerFill, size: Decimal, fee: Decimal, instrument: InstrumentSpec
) -> tuple[Position | None, ClosedPosition | None]:
    sign = 1 if position.side == "long" else -1
    p = position  # every field spelled out: see _add
    quantity = p.quantity - size
    closed_value = p.closed_value + quantize(fill.price * size, Q16)
    if quantity > 0:  # a partial close: its price PnL against the (stored, rounded) average
        move = fill.price - p.avg_entry_price
        gross = p.realized_gross_usdt + quantize(move * size * instrument.contract_size * sign, Q8)
    else:  # closed: proceeds minus the exact cost of every contract opened, no average involved
        gross = quantize((closed_value - p.opened_value) * instrument.contract_size * sign, Q8)
    state = Position(
        pos_side=p.pos_side, side=p.side, quantity=quantity,
        avg_entry_price=p.avg_entry_price, opened_at=p.opened_at, leverage=p.leverage,
        opened_quantity=p.opened_quantity, opened_value=p.opened_value,
        closed_quantity=p.closed_quantity + size, closed_value=closed_value,
        realized_gross_usdt=gross, fees_usdt=p.fees_usdt + fee,
        funding_usdt=p.funding_usdt, confidence_weight_sum=p.confidence_weight_sum,
        confidence_quantity=p.confidence_quantity, fill_count=p.fill_count + 1,
        last_fill_time=fill.time, last_trade_id=fill.trade_id, exit_plan=p.exit_plan,
    )
    if state.quantity > 0:
        return state, None
    return None, _close(state, fill)


def _close(state: Position, fill: LedgerFill) -> ClosedPosition:
    gross, fees, funding = state.realized_gross_usdt, state.fees_usdt, state.funding_usdt
    return ClosedPosition(
        pos_side=state.pos_side,
        side=state.side,
        quantity=state.closed_quantity,
        entry_price=quantize(state.opened_value / state.opened_quantity, Q8),
        exit_price=quantize(state.closed_value / state.closed_quantity, Q8),
        realized_pnl_usdt=gross + fees + funding,
        gross_pnl_usdt=gross,
        fee_usdt=fees,
        funding_usdt=funding,
        holding_minutes=_minutes(fill.time - state.opened_at),
        average_confidence=state.average_confidence,
        entry_time=state.opened_at,
        exit_time=fill.time,
        exit_reason=exit_reason(fill),
        leverage=state.leverage,
        fill_count=state.fill_count,
        closing_trade_id=fill.trade_id,
        exit_plan=state.exit_plan,
    )


def _minutes(span: timedelta) -> Decimal:
    # Integer microseconds: no float on the way to NUMERIC(14,4).
    return quantize(Decimal(span // timedelta(microseconds=1)) / _MICROSECONDS_PER_MINUTE, Q4)
