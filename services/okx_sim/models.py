"""The exchange's records: orders, fills, positions, bills, accounts and the events they emit."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)


@dataclass
class Order:
    """An order as OKX tracks it; `px` is None for market orders."""

    ord_id: str
    cl_ord_id: str
    tag: str
    inst_id: str
    side: str  # buy | sell
    pos_side: str  # net | long | short
    ord_type: str
    td_mode: str
    px: Decimal | None
    sz: Decimal
    reduce_only: bool
    lever: int
    c_time: int
    u_time: int
    state: str = "live"
    acc_fill_sz: Decimal = ZERO
    notional: Decimal = ZERO  # sum of fill px * fill sz, for avgPx
    fee: Decimal = ZERO
    pnl: Decimal = ZERO
    cancel_source: str = ""
    category: str = "normal"
    algo_id: str = ""  # the algo order whose trigger placed this order (OKX `algoId`)
    algo_cl_ord_id: str = ""
    source: str = ""  # OKX `source`: "7" = placed by a triggered TP/SL algo order

    @property
    def avg_px(self) -> Decimal:
        """Volume-weighted fill price, 0 before the first fill."""
        return self.notional / self.acc_fill_sz if self.acc_fill_sz else ZERO

    @property
    def remaining(self) -> Decimal:
        """Contracts still to fill."""
        return self.sz - self.acc_fill_sz

    @property
    def is_open(self) -> bool:
        """Live or partially filled."""
        return self.state in ("live", "partially_filled")


@dataclass(frozen=True)
class Leg:
    """One side (take-profit or stop-loss) of an algo order; `ord_px` None = market (-1)."""

    trigger_px: Decimal
    trigger_px_type: str  # last | mark | index
    ord_px: Decimal | None


@dataclass(frozen=True)
class Attach:
    """An `attachAlgoOrds` element: TP and/or SL to create when the parent order fills."""

    cl_id: str
    tp: Leg | None
    sl: Leg | None


@dataclass(frozen=True)
class OrderRequest:
    """A validated place-order request (contracts and prices as Decimal)."""

    inst_id: str
    side: str
    ord_type: str
    sz: Decimal
    td_mode: str = "cross"
    px: Decimal | None = None
    pos_side: str = ""
    reduce_only: bool = False
    cl_ord_id: str = ""
    tag: str = ""
    attach: Attach | None = None
    algo_id: str = ""  # set when a triggered algo order places it
    algo_cl_ord_id: str = ""
    source: str = ""


@dataclass
class AlgoOrder:
    """A TP/SL algo order (`conditional` or `oco`) as OKX tracks it.

    `state` is OKX's: live, effective, canceled, order_failed; `attached` is the sim's own
    state of an `attachAlgoOrds` leg whose parent order has not filled yet (not listed).
    `sz` is 0 when `close_fraction` is "1" (the whole position, sized at trigger time).
    """

    algo_id: str
    algo_cl_ord_id: str
    inst_id: str
    ord_type: str  # conditional | oco
    side: str
    pos_side: str
    td_mode: str
    sz: Decimal
    close_fraction: str
    reduce_only: bool
    tag: str
    lever: int
    c_time: int
    u_time: int
    last: Decimal  # last price when placed
    tp_trigger_px: Decimal | None = None
    tp_trigger_px_type: str = ""
    tp_ord_px: Decimal | None = None  # None with a TP trigger = market (-1)
    sl_trigger_px: Decimal | None = None
    sl_trigger_px_type: str = ""
    sl_ord_px: Decimal | None = None
    state: str = "live"
    parent_ord_id: str = ""  # the order it was attached to
    ord_id: str = ""  # the order placed on trigger
    actual_side: str = ""  # tp | sl
    actual_sz: Decimal = ZERO
    actual_px: Decimal | None = None
    trigger_time: int = 0
    fail_code: str = ""
    req_id: str = ""
    amend_result: str = ""

    @property
    def tp(self) -> Leg | None:
        """The take-profit leg, if set."""
        if self.tp_trigger_px is None:
            return None
        return Leg(self.tp_trigger_px, self.tp_trigger_px_type, self.tp_ord_px)

    @property
    def sl(self) -> Leg | None:
        """The stop-loss leg, if set."""
        if self.sl_trigger_px is None:
            return None
        return Leg(self.sl_trigger_px, self.sl_trigger_px_type, self.sl_ord_px)

    @property
    def is_live(self) -> bool:
        """Waiting for its trigger (listed in orders-algo-pending)."""
        return self.state == "live"


@dataclass(frozen=True)
class Fill:
    """One trade of one order (OKX: one tradeId)."""

    trade_id: str
    bill_id: str
    ord_id: str
    cl_ord_id: str
    tag: str
    inst_id: str
    side: str
    pos_side: str
    fill_px: Decimal
    fill_sz: Decimal
    fee: Decimal  # OKX sign: negative = charged
    fee_rate: Decimal  # OKX sign, e.g. -0.0005
    pnl: Decimal
    exec_type: str  # T taker | M maker
    ts: int
    sub_type: str  # bill subType: 3 open long, 4 open short, 5 close long, 6 close short …
    category: str
    mark_px: Decimal


@dataclass
class Position:
    """One position: signed `pos` in net mode, positive in long/short mode."""

    inst_id: str
    pos_side: str
    pos_id: str
    mgn_mode: str
    lever: int
    c_time: int
    u_time: int
    pos: Decimal = ZERO
    avg_px: Decimal = ZERO
    pnl: Decimal = ZERO  # realized price PnL since open
    fee: Decimal = ZERO
    funding_fee: Decimal = ZERO
    liq_penalty: Decimal = ZERO
    trade_id: str = ""

    @property
    def realized_pnl(self) -> Decimal:
        """pnl + fee + fundingFee + liqPenalty, as OKX defines it."""
        return self.pnl + self.fee + self.funding_fee + self.liq_penalty

    @property
    def direction(self) -> int:
        """+1 long, -1 short, 0 flat."""
        if self.pos_side == "short":
            return -1 if self.pos else 0
        return (self.pos > 0) - (self.pos < 0)


@dataclass(frozen=True)
class Bill:
    """One balance change (trade, liquidation or funding fee)."""

    bill_id: str
    type: str
    sub_type: str
    ts: int
    bal_chg: Decimal
    bal: Decimal
    sz: Decimal
    px: Decimal
    pnl: Decimal
    fee: Decimal
    inst_id: str
    ord_id: str = ""
    trade_id: str = ""
    mgn_mode: str = "cross"
    exec_type: str = ""


@dataclass
class Account:
    """A trading account with one API key."""

    api_key: str
    uid: str
    cash: Decimal
    pos_mode: str  # net_mode | long_short_mode
    levers: dict[str, int] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    bills: list[Bill] = field(default_factory=list)
    u_time: int = 0
    algos: dict[str, AlgoOrder] = field(default_factory=dict)

    def open_positions(self) -> list[Position]:
        """Positions with a non-zero size."""
        return [p for p in self.positions.values() if p.pos != 0]


@dataclass(frozen=True)
class OrderUpdate:
    """An order changed (and, if `fill` is set, traded)."""

    api_key: str
    order: Order  # a snapshot
    fill: Fill | None = None


@dataclass(frozen=True)
class AccountUpdate:
    """Balances/positions changed; `reason` is the balance_and_position eventType."""

    api_key: str
    reason: str
    positions: tuple[Position, ...] = ()  # snapshots of the positions that changed
    fills: tuple[Fill, ...] = ()


@dataclass(frozen=True)
class AlgoUpdate:
    """An algo order changed state (an `orders-algo` push)."""

    api_key: str
    algo: AlgoOrder  # a snapshot


Event = OrderUpdate | AccountUpdate | AlgoUpdate


class IdSequence:
    """A counter whose next value can be read and restored (itertools.count hides it)."""

    def __init__(self, start: int) -> None:
        self.next = start

    def __next__(self) -> int:
        value = self.next
        self.next += 1
        return value
