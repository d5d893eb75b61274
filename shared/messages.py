"""The event contract (DESIGN §4): frozen pydantic models, one per message kind.

Every event carries `event_id`, `ts_event` (exchange time), `ts_init` (our time) and
`schema_version`; account events carry `account_id` and `mode`. On the wire (JSON) decimals
are strings and times are ISO-8601 UTC. `msg_id()` is the JetStream `Nats-Msg-Id`: derived
from the natural key, so a duplicate push, a reconnect, a REST backfill and a redelivery all
collapse to one message inside the stream's duplicate window (and to one row after it, through
the database's unique keys).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, Self
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.clock import to_ms, utcnow
from shared.errors import PermanentError
from shared.types import (
    AlgoLeg,
    AlgoOrdType,
    AlgoState,
    Direction,
    DiscrepancyKind,
    ExitReason,
    Mode,
    OrderType,
    PositionEventKind,
    PosSide,
    Resolution,
    Side,
    TdMode,
    TriggerPxType,
)

SCHEMA_VERSION = 1

Money = Decimal
Qty = Annotated[Decimal, Field(ge=0)]
# Size limits (docs/events.md): an id or a code longer than its bound, or a message longer than
# MAX_EVENT_BYTES (`check_size`), is a dead letter, never a stored row. OKX's ids are at most 32
# characters (clOrdId), its codes a few; its largest push we keep as `raw` is about 2 KB.
ID_MAX_LENGTH: Final = 64
CODE_MAX_LENGTH: Final = 32
Id = Annotated[str, Field(max_length=ID_MAX_LENGTH)]
Code = Annotated[str, Field(max_length=CODE_MAX_LENGTH)]
MAX_EVENT_BYTES: Final = 64 * 1024


class OversizedMessage(PermanentError):
    """A message longer than MAX_EVENT_BYTES: refused before it is decoded."""

    kind = "oversized"


def check_size(data: bytes) -> None:
    """Refuse a message longer than `MAX_EVENT_BYTES` before it is decoded."""
    if len(data) > MAX_EVENT_BYTES:
        raise OversizedMessage(f"message of {len(data):,} bytes exceeds the limit of {MAX_EVENT_BYTES:,}")
Price = Annotated[Decimal, Field(gt=0)]
# An algo leg's execution price: a limit price, or "market" (OKX's ordPx "-1").
OrderPrice = Price | Literal["market"]
Text = Annotated[str, Field(max_length=256)]  # OKX's sMsg and our own refusal reasons


class Event(BaseModel):
    """Base of every event on the bus."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    event_id: UUID = Field(default_factory=uuid4)
    ts_event: AwareDatetime
    ts_init: AwareDatetime = Field(default_factory=utcnow)

    def msg_id(self) -> str:
        """The JetStream deduplication id; overridden where a natural key exists."""
        return str(self.event_id)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


# ---------------------------------------------------------------------------- market data
class Candle(Event):
    """A candle update; `confirmed` is OKX `confirm == "1"` (the bar is closed)."""

    inst_id: Id
    bar: Code  # OKX bar: 1m, 3m, 1H, 4H ...
    open_time: AwareDatetime  # OKX ts: the bar's open time
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Qty  # contracts
    volume_ccy: Qty | None = None
    volume_quote: Qty | None = None
    confirmed: bool

    def msg_id(self) -> str:
        return f"candle:{self.inst_id}:{self.bar}:{to_ms(self.open_time)}:{int(self.confirmed)}"


class Ticker(Event):
    inst_id: Id
    last: Price
    bid_px: Decimal | None = None
    ask_px: Decimal | None = None
    vol_24h: Decimal | None = None

    def msg_id(self) -> str:
        return f"ticker:{self.inst_id}:{to_ms(self.ts_event)}"


class MarkPrice(Event):
    inst_id: Id
    mark_px: Price

    def msg_id(self) -> str:
        return f"mark:{self.inst_id}:{to_ms(self.ts_event)}"


class FundingRate(Event):
    inst_id: Id
    funding_rate: Decimal
    funding_time: AwareDatetime | None = None
    next_funding_time: AwareDatetime | None = None

    def msg_id(self) -> str:
        return f"fundrate:{self.inst_id}:{to_ms(self.ts_event)}:{self.funding_rate}"


class OpenInterest(Event):
    inst_id: Id
    oi: Qty  # contracts
    oi_ccy: Decimal | None = None
    oi_usd: Decimal | None = None

    def msg_id(self) -> str:
        return f"oi:{self.inst_id}:{to_ms(self.ts_event)}"


# ---------------------------------------------------------------------------- account data
class AccountEvent(Event):
    account_id: UUID
    mode: Mode


class OrderUpdate(AccountEvent):
    """An order state change as OKX pushes it (orders channel) or REST reports it."""

    inst_id: Id
    ord_id: Id
    cl_ord_id: Id | None = None
    side: Side
    pos_side: PosSide
    ord_type: Code  # market, limit, post_only, fok, ioc, ...
    state: Code  # live, partially_filled, filled, canceled, mmp_canceled
    px: Decimal | None = None
    sz: Qty
    acc_fill_sz: Qty = Decimal(0)
    avg_px: Decimal | None = None
    lever: Decimal | None = None
    category: Code = "normal"
    reduce_only: bool = False
    created_time: AwareDatetime | None = None  # OKX cTime; ts_event is uTime
    algo_id: Id | None = None  # the algo (TP/SL) order that placed it when it fired

    def msg_id(self) -> str:
        return f"order:{self.account_id}:{self.ord_id}:{to_ms(self.ts_event)}:{self.state}:{self.acc_fill_sz}"


class Fill(AccountEvent):
    """One trade of one order: the ledger's input. `ts_event` is OKX fillTime."""

    inst_id: Id
    trade_id: Id
    ord_id: Id
    cl_ord_id: Id | None = None
    side: Side
    pos_side: PosSide
    fill_px: Price
    fill_sz: Annotated[Decimal, Field(gt=0)]
    fill_fee: Money  # OKX sign: negative = charged, positive = rebate
    fill_fee_ccy: Code = "USDT"
    fill_pnl: Money | None = None
    exec_type: Code | None = None  # T taker, M maker
    category: Code = "normal"  # normal, full_liquidation, partial_liquidation, adl, ...
    lever: Decimal | None = None
    ord_type: Code | None = None
    reduce_only: bool | None = None
    algo_id: Id | None = None  # the algo (TP/SL) order whose trigger placed this fill's order
    raw: dict[str, Any] = Field(default_factory=dict)

    def msg_id(self) -> str:
        return f"fill:{self.account_id}:{self.inst_id}:{self.trade_id}"


class AlgoOrderUpdate(AccountEvent):
    """An algo (TP/SL) order state change as OKX pushes it (orders-algo) or REST lists it.

    A leg not set has its trigger price, type and order price None; an order price is a limit
    price or "market" (OKX -1). `sz` is 0 for a close-position algo (`close_fraction` 1) until
    it fires. `ord_id` is the order it placed when it fired (`actual_side` says which leg);
    `fail_code` the sCode of that order's refusal (state order_failed). ts_event is uTime.
    """

    inst_id: Id
    algo_id: Id
    algo_cl_ord_id: Id | None = None
    ord_type: AlgoOrdType
    side: Side
    pos_side: PosSide
    state: AlgoState
    sz: Qty
    close_fraction: Annotated[Decimal, Field(gt=0, le=1)] | None = None
    reduce_only: bool = False
    tp_trigger_px: Price | None = None
    tp_trigger_px_type: TriggerPxType | None = None
    tp_ord_px: OrderPrice | None = None
    sl_trigger_px: Price | None = None
    sl_trigger_px_type: TriggerPxType | None = None
    sl_ord_px: OrderPrice | None = None
    actual_side: AlgoLeg | None = None
    actual_sz: Qty | None = None
    ord_id: Id | None = None
    fail_code: Code | None = None
    req_id: Id | None = None  # OKX reqId of the amendment this state follows
    created_time: AwareDatetime | None = None  # OKX cTime

    def msg_id(self) -> str:
        # An amendment is `live` again: its reqId keeps it apart from the state it replaces
        # when both carry the same uTime (OKX's clock is in ms; the sim's may stand still).
        base = f"algo:{self.account_id}:{self.algo_id}:{to_ms(self.ts_event)}:{self.state}"
        return f"{base}:{self.req_id}" if self.req_id else base


class Balance(AccountEvent):
    """USDT balance as the exchange reports it."""

    ccy: Code = "USDT"
    cash_bal: Money
    avail_bal: Money
    frozen_bal: Money = Decimal(0)
    eq: Money | None = None
    upl: Money | None = None

    def msg_id(self) -> str:
        return f"balance:{self.account_id}:{self.ccy}:{to_ms(self.ts_event)}"


class ExchangePosition(AccountEvent):
    """The exchange's view of one position (positions channel), for reconciliation and
    the margin / liquidation price / mark price the ledger does not compute."""

    inst_id: Id
    pos_side: PosSide
    pos: Decimal  # signed in net mode
    avg_px: Decimal | None = None
    upl: Money | None = None
    lever: Decimal | None = None
    liq_px: Decimal | None = None
    margin: Money | None = None
    mark_px: Decimal | None = None
    mgn_mode: Code = "cross"
    pos_id: Id | None = None

    def msg_id(self) -> str:
        return f"xpos:{self.account_id}:{self.inst_id}:{self.pos_side}:{to_ms(self.ts_event)}:{self.pos}"


class Discrepancy(AccountEvent):
    """A difference between the exchange and the ledger that reconciliation found (status
    open), or its end (resolved, with how). `expected` is the exchange's view, `found` the
    ledger's; the record is the aitrader.reconciliation_issues row `issue_id`."""

    issue_id: UUID
    kind: DiscrepancyKind
    subject: Id  # symbol:pos_side, an order id, a trade id, a currency
    expected: dict[str, Any]
    found: dict[str, Any]
    status: Literal["open", "resolved"]
    resolution: Resolution | None = None

    def msg_id(self) -> str:
        return f"reconcile:{self.issue_id}:{self.status}"


class FundingPayment(AccountEvent):
    """A funding fee settled on a position (OKX bill type 8). `amount` > 0 = received."""

    inst_id: Id
    pos_side: PosSide = "net"
    bill_id: Id
    amount: Money

    def msg_id(self) -> str:
        return f"funding:{self.account_id}:{self.bill_id}"


# ---------------------------------------------------------------------------- positions
class PositionState(BaseModel):
    """The values of a `positions_open` row (or of the position just closed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    side: Direction
    quantity: Qty
    avg_entry_price: Decimal
    leverage: Decimal | None = None
    realized_gross_usdt: Money = Decimal(0)
    fees_usdt: Money = Decimal(0)
    funding_usdt: Money = Decimal(0)
    average_confidence: Decimal | None = None
    opened_at: AwareDatetime
    exit_plan: dict[str, Any] | None = None


class ClosedPositionState(BaseModel):
    """The values of a `positions_closed` row."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    side: Direction
    quantity: Qty
    entry_price: Decimal
    exit_price: Decimal
    realized_pnl_usdt: Money
    gross_pnl_usdt: Money
    fee_usdt: Money
    funding_usdt: Money
    holding_minutes: Decimal
    average_confidence: Decimal | None = None
    entry_time: AwareDatetime
    exit_time: AwareDatetime
    exit_reason: ExitReason
    closing_trade_id: Id


class PositionEvent(AccountEvent):
    """Published by the positions service after commit: `aitrader.positions.<acc>.<instId>`.

    `kind` is past tense (opened / changed / closed). A flip publishes `closed` for the old
    position and `opened` for the new one. `position` is the open row after the change (None
    once closed); `closed` is the closed row when kind is `closed`.
    """

    kind: PositionEventKind
    inst_id: Id
    pos_side: PosSide
    trade_id: Id | None = None  # the fill (or funding bill) that caused it
    position: PositionState | None = None
    closed: ClosedPositionState | None = None

    def msg_id(self) -> str:
        return f"pos:{self.account_id}:{self.inst_id}:{self.pos_side}:{self.kind}:{self.trade_id}"


# ---------------------------------------------------------------------------- commands
class _Legs(BaseModel):
    """Take-profit and/or stop-loss legs: a trigger price, what price it watches, and the
    execution price ("market" or a limit price). At least one leg."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tp_trigger_px: Price | None = None
    tp_trigger_px_type: TriggerPxType = "last"
    tp_ord_px: OrderPrice = "market"
    sl_trigger_px: Price | None = None
    sl_trigger_px_type: TriggerPxType = "last"
    sl_ord_px: OrderPrice = "market"

    @model_validator(mode="after")
    def _a_leg(self) -> Self:
        if self.tp_trigger_px is None and self.sl_trigger_px is None:
            raise ValueError("a take-profit or a stop-loss trigger price is required")
        return self


class _AlgoCommand(BaseModel):
    """What every algo-order command carries: our request id (OKX `algoClOrdId` / `reqId` is
    its hex), the account and the instrument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    request_id: UUID
    account_id: UUID
    inst_id: Id
    ts_init: AwareDatetime = Field(default_factory=utcnow)


class AttachedAlgo(_Legs):
    """TP/SL attached to an order (OKX `attachAlgoOrds`, one element): placed by OKX as one
    reduce-only algo order of the order's size once the order is filled."""

    attach_algo_cl_ord_id: Id | None = None


class PlaceOrder(BaseModel):
    """Request on `aitrader.cmd.<account_id>.place_order` (core NATS request/reply).

    `order_id` is our `orders.id`; OKX `clOrdId` is its 32 hex chars (`cl_ord_id`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    order_id: UUID
    account_id: UUID
    inst_id: Id
    side: Side
    pos_side: PosSide = "net"
    ord_type: OrderType = "market"
    sz: Annotated[Decimal, Field(gt=0)]
    px: Decimal | None = None
    lever: Annotated[Decimal, Field(gt=0)]
    td_mode: TdMode = "cross"
    reduce_only: bool = False
    attach_algo: AttachedAlgo | None = None  # TP/SL placed once the order is filled
    ts_init: AwareDatetime = Field(default_factory=utcnow)

    @property
    def cl_ord_id(self) -> str:
        return self.order_id.hex


class PlaceOrderReply(BaseModel):
    """Reply to `PlaceOrder`: OKX's order id, or OKX's rejection (`s_code`, `s_msg`).

    `s_code` "0" is success. Our own codes: "timeout" (no answer from OKX in time; the order
    may still exist, ingest reconciles it), "invalid" (refused before reaching OKX).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    order_id: UUID
    ok: bool
    ord_id: Id | None = None
    s_code: Code
    s_msg: str = ""
    ts: datetime = Field(default_factory=utcnow)


class PlaceAlgo(_AlgoCommand, _Legs):
    """Request on `aitrader.cmd.<account_id>.place_algo`: a standalone algo order (OKX
    `order-algo`). `request_id` is ours; OKX `algoClOrdId` is its 32 hex chars. Exactly one of
    `sz` (contracts) and `close_fraction` (1: the whole position when it fires, reduce-only)."""

    ord_type: AlgoOrdType = "conditional"
    side: Side
    pos_side: PosSide = "net"
    td_mode: TdMode = "cross"
    sz: Annotated[Decimal, Field(gt=0)] | None = None
    close_fraction: Literal[1] | None = None
    reduce_only: bool = False

    @model_validator(mode="after")
    def _one_size(self) -> Self:
        if (self.sz is None) == (self.close_fraction is None):
            raise ValueError("exactly one of sz and close_fraction is required")
        if self.ord_type == "oco" and (self.tp_trigger_px is None or self.sl_trigger_px is None):
            raise ValueError("an oco algo order needs both a take-profit and a stop-loss")
        return self

    @property
    def algo_cl_ord_id(self) -> str:
        return self.request_id.hex


class AmendAlgo(_AlgoCommand):
    """Request on `aitrader.cmd.<account_id>.amend_algo` (OKX `amend-algos`): a field given
    replaces, None keeps; `cancel_tp` / `cancel_sl` delete that leg. OKX `reqId` is the
    request id's hex. `cxl_on_fail`: OKX cancels the algo when it refuses the amendment."""

    algo_id: Id
    new_sz: Annotated[Decimal, Field(gt=0)] | None = None
    new_tp_trigger_px: Price | None = None
    new_tp_trigger_px_type: TriggerPxType | None = None
    new_tp_ord_px: OrderPrice | None = None
    new_sl_trigger_px: Price | None = None
    new_sl_trigger_px_type: TriggerPxType | None = None
    new_sl_ord_px: OrderPrice | None = None
    cancel_tp: bool = False
    cancel_sl: bool = False
    cxl_on_fail: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.cancel_tp and self.new_tp_trigger_px is not None:
            raise ValueError("cancel_tp with a new take-profit trigger price")
        if self.cancel_sl and self.new_sl_trigger_px is not None:
            raise ValueError("cancel_sl with a new stop-loss trigger price")
        return self

    @property
    def req_id(self) -> str:
        return self.request_id.hex


class CancelAlgo(_AlgoCommand):
    """Request on `aitrader.cmd.<account_id>.cancel_algo` (OKX `cancel-algos`, one item)."""

    algo_id: Id


class AlgoReply(BaseModel):
    """Reply to PlaceAlgo, AmendAlgo and CancelAlgo: OKX's algo id, or OKX's refusal of the
    item (`s_code`, `s_msg`). `s_code` "0" is success; ours: "timeout" (no answer in time: the
    change may still have happened, the orders-algo stream tells), "invalid" (refused before
    OKX)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    request_id: UUID
    ok: bool
    algo_id: Id | None = None
    s_code: Code
    s_msg: Text = ""
    ts: datetime = Field(default_factory=utcnow)


class MarketDataRefresh(BaseModel):
    """Request: fetch the latest closed candles of `inst_id`/`bars` over REST and publish them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inst_id: Id
    bars: list[str]
    limit: int = Field(default=100, ge=1, le=300)


class MarketDataRefreshReply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    published: int = 0
    error: str | None = None
