"""The ledger's rows: one NamedTuple per table the positions service writes, its fields named
and ordered as the columns, and the mapping between each row and the domain value it holds.

The field order is the COPY / `unnest` / statement-parameter order, and the PostgreSQL types
come from the field annotations (`column_types`), so a table's column list lives here once.
No statement and no connection here: `store.LedgerStore` runs the SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple, NewType, Protocol, get_args, get_type_hints
from uuid import UUID

from asyncpg.pgproto.pgproto import UUID as PgUUID  # the uuid.UUID subclass asyncpg returns

from services.positions.domain import ClosedPosition, FundingEntry, LedgerFill, Position
from services.positions.events import Slot
from services.positions.ids import uuid7
from shared.db import json_dumps
from shared.messages import Balance, ExchangePosition, FundingPayment, OrderUpdate
from shared.money import Q2, Q8, quantize, quantize_opt
from shared.types import AlgoLeg
from shared.wire import AnyFill


class Record(Protocol):
    """A row read back by column name (an asyncpg Record)."""

    def __getitem__(self, key: str, /) -> Any: ...


JsonText = NewType("JsonText", str)  # JSON sent as text; the statement casts it to jsonb
_PG_TYPES: dict[Any, str] = {UUID: "uuid", str: "text", JsonText: "text", Decimal: "numeric",
                             datetime: "timestamptz", int: "int", bool: "bool"}


def column_types(row: type) -> dict[str, str]:
    """Column -> PostgreSQL type of a row type, in field order (from its annotations)."""
    out = {}
    for name, hint in get_type_hints(row).items():
        (python_type,) = [t for t in get_args(hint) if t is not type(None)] or [hint]
        out[name] = _PG_TYPES[python_type]
    return out


def json_columns(row: type) -> set[str]:
    """The fields of a row type that are jsonb columns (sent as JSON text)."""
    return {name for name, hint in get_type_hints(row).items() if JsonText in (hint, *get_args(hint))}


class FillRow(NamedTuple):
    """An `aitrader.fills` row (COPY-able: the fields are the staging table's columns)."""

    id: UUID
    account_id: UUID
    order_id: UUID
    symbol: str
    side: str
    price: Decimal
    size: Decimal
    fee_usdt: Decimal
    pnl_usdt: Decimal | None
    confidence: Decimal | None
    timestamp: datetime
    exchange_trade_id: str
    exchange_order_id: str
    pos_side: str
    exec_type: str | None
    category: str
    fee_ccy: str | None
    leverage: Decimal | None
    raw_payload: JsonText


class FundingRow(NamedTuple):
    """An `aitrader.funding_payments` row."""

    account_id: UUID
    symbol: str
    pos_side: str
    amount_usdt: Decimal
    exchange_bill_id: str
    timestamp: datetime
    raw_payload: JsonText


class OpenRow(NamedTuple):
    """The fold's columns of an `aitrader.positions_open` row (the slot, then `Position`)."""

    account_id: UUID
    symbol: str
    pos_side: str
    side: str
    quantity: Decimal
    avg_entry_price: Decimal
    leverage: Decimal | None
    opened_at: datetime
    opened_quantity: Decimal
    opened_value: Decimal
    closed_quantity: Decimal
    closed_value: Decimal
    realized_gross_usdt: Decimal
    fees_usdt: Decimal
    funding_usdt: Decimal
    confidence_weight_sum: Decimal
    confidence_quantity: Decimal
    fill_count: int
    last_fill_time: datetime | None
    last_trade_id: str | None
    exit_plan: JsonText  # kept on update: the agent's update_exit_plan owns it then


class ExchangeViewRow(NamedTuple):
    """The exchange's columns of an `aitrader.positions_open` row (never the fold state)."""

    account_id: UUID
    symbol: str
    pos_side: str
    margin_usdt: Decimal | None
    liquidation_price: Decimal | None
    mark_price: Decimal | None
    unrealized_pnl_usdt: Decimal | None


class ClosedRow(NamedTuple):
    """An `aitrader.positions_closed` row (the slot, then `ClosedPosition`)."""

    account_id: UUID
    symbol: str
    pos_side: str
    side: str
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    realized_pnl_usdt: Decimal
    gross_pnl_usdt: Decimal
    fee_usdt: Decimal
    funding_usdt: Decimal
    holding_minutes: Decimal
    average_confidence: Decimal | None
    entry_time: datetime
    exit_time: datetime
    exit_reason: str
    leverage: Decimal | None
    fill_count: int
    closing_trade_id: str
    exit_plan: JsonText | None


class BalanceRow(NamedTuple):
    """An `aitrader.balance_snapshots` row (`source` is always 'exchange')."""

    account_id: UUID
    available_usdt: Decimal
    locked_usdt: Decimal
    cash_usdt: Decimal
    equity_usdt: Decimal | None
    raw_payload: JsonText
    as_of: datetime


class OrderUpdateRow(NamedTuple):
    """The `aitrader.orders` values of an OKX order update; `status_rank` is not a column."""

    id: UUID | None  # ours when the clOrdId is one
    account_id: UUID
    exchange_order_id: str
    symbol: str
    side: str
    pos_side: str
    order_type: str
    price: Decimal | None
    filled_size: Decimal
    avg_fill_price: Decimal | None
    status: str
    status_rank: int
    leverage: Decimal | None
    category: str
    size: Decimal
    reduce_only: bool
    raw_payload: JsonText
    created_at: datetime | None
    algo_id: str | None


class ExternalOrderRow(NamedTuple):
    """An `aitrader.orders` row made from a fill whose order we never saw (`cl_ord_id` goes
    into raw_payload)."""

    account_id: UUID
    symbol: str
    side: str
    order_type: str
    size: Decimal
    leverage: Decimal | None
    exchange_order_id: str
    pos_side: str
    reduce_only: bool
    category: str
    cl_ord_id: str | None
    algo_id: str | None


# Every field of Position is a positions_open column, every one of ClosedPosition a
# positions_closed column: rows map to the domain by name.
POSITION_FIELDS = tuple(f.name for f in fields(Position))
CLOSED_FIELDS = tuple(f.name for f in fields(ClosedPosition))
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
# OKX order state -> orders.status; a later state never goes back to an earlier one.
STATUS = {"live": "open", "mmp_canceled": "canceled"}
RANK = {"open": 1, "partially_filled": 2, "filled": 3, "canceled": 3}


@dataclass(frozen=True, slots=True)
class OrderLink:
    """What a fill inherits from its order."""

    order_id: UUID
    confidence: Decimal | None
    leverage: Decimal | None
    by_agent: bool
    exit_plan: dict[str, Any] | None


def own_order_id(cl_ord_id: str | None) -> UUID | None:
    """Our orders.id when an OKX clOrdId is one (32 hex chars), else None."""
    if cl_ord_id is None or len(cl_ord_id) != 32:
        return None
    if _HEX32.fullmatch(cl_ord_id):  # ours, always: asyncpg's UUID parses it 4x faster
        return PgUUID(cl_ord_id)
    try:
        return UUID(hex=cl_ord_id)  # what else `UUID(hex=)` reads ("0x…", "+…"), as before
    except ValueError:
        return None


def order_link(row: Record) -> OrderLink:
    """What a fill inherits, from an `orders` row (with `by_agent`: it has a tool call)."""
    return OrderLink(row["id"], row["confidence"], row["leverage"], row["by_agent"], row["exit_plan"])


def position_from_row(row: Record) -> Position:
    """A `positions_open` row (or any row with its columns) as the fold's Position."""
    return Position(**{name: row[name] for name in POSITION_FIELDS})


def closed_from_row(row: Record) -> ClosedPosition:
    """A `positions_closed` row as the fold's ClosedPosition."""
    return ClosedPosition(**{name: row[name] for name in CLOSED_FIELDS})


def ledger_fill(f: AnyFill, link: OrderLink, algo_leg: AlgoLeg | None = None) -> LedgerFill:
    """A fill as the fold sees it: exactly the values stored in `fills` (see `fill_row`), so
    that a refold from the table sees the same fill; `algo_leg` is the leg of its algo that
    fired, as `algo_orders` says."""
    return LedgerFill(
        trade_id=f.trade_id, time=f.ts_event.astimezone(UTC), side=f.side, pos_side=f.pos_side,
        price=quantize(f.fill_px, Q8), size=quantize(f.fill_sz, Q8), fee=quantize(f.fill_fee, Q8),
        confidence=link.confidence,
        leverage=link.leverage if link.leverage is not None else quantize_opt(f.lever, Q2),
        category=f.category, by_agent=link.by_agent, exit_plan=link.exit_plan, algo_leg=algo_leg,
    )


def fill_row(f: AnyFill, e: LedgerFill, order_id: UUID, body: str) -> FillRow:
    """The `fills` row of a fill and its ledger entry."""
    return FillRow(
        id=uuid7(), account_id=f.account_id, order_id=order_id, symbol=f.inst_id, side=f.side,
        price=e.price, size=e.size, fee_usdt=e.fee, pnl_usdt=f.fill_pnl, confidence=e.confidence,
        timestamp=e.time, exchange_trade_id=f.trade_id, exchange_order_id=f.ord_id,
        pos_side=f.pos_side, exec_type=f.exec_type, category=f.category,
        fee_ccy=f.fill_fee_ccy or None, leverage=e.leverage, raw_payload=JsonText(body),
    )


def funding_entry(p: FundingPayment) -> FundingEntry:
    """A funding payment as the fold sees it (and as `funding_payments` stores it)."""
    return FundingEntry(p.bill_id, p.ts_event.astimezone(UTC), p.pos_side, quantize(p.amount, Q8))


def funding_row(p: FundingPayment, e: FundingEntry, body: str) -> FundingRow:
    """The `funding_payments` row of a payment and its ledger entry."""
    return FundingRow(account_id=p.account_id, symbol=p.inst_id, pos_side=p.pos_side,
                      amount_usdt=e.amount, exchange_bill_id=p.bill_id, timestamp=e.time,
                      raw_payload=JsonText(body))


def open_row(slot: Slot, p: Position) -> OpenRow:
    """The fold columns of a slot's open position (an absent exit plan is stored as {})."""
    values = {name: getattr(p, name) for name in POSITION_FIELDS}
    values["exit_plan"] = JsonText("{}" if p.exit_plan is None else json_dumps(p.exit_plan))
    return OpenRow(**{**slot._asdict(), **values})


def closed_row(slot: Slot, c: ClosedPosition) -> ClosedRow:
    """The `positions_closed` row of a closed position."""
    values = {name: getattr(c, name) for name in CLOSED_FIELDS}
    values["exit_plan"] = None if c.exit_plan is None else JsonText(json_dumps(c.exit_plan))
    return ClosedRow(**{**slot._asdict(), **values})


def order_update_row(u: OrderUpdate, body: str) -> OrderUpdateRow:
    """The `orders` values of an order update (status mapped, a rank to never go back)."""
    status = STATUS.get(u.state, u.state)
    return OrderUpdateRow(
        id=own_order_id(u.cl_ord_id), account_id=u.account_id, exchange_order_id=u.ord_id,
        symbol=u.inst_id, side=u.side, pos_side=u.pos_side, order_type=u.ord_type,
        price=u.px or None, filled_size=u.acc_fill_sz,
        avg_fill_price=u.avg_px if u.acc_fill_sz > 0 and u.avg_px else None, status=status,
        status_rank=RANK.get(status, 0), leverage=quantize_opt(u.lever, Q2), category=u.category,
        size=u.sz, reduce_only=u.reduce_only, raw_payload=JsonText(body), created_at=u.created_time,
        algo_id=u.algo_id,
    )


def external_order_row(f: AnyFill) -> ExternalOrderRow:
    """The `orders` row made for a fill of an order we never saw."""
    return ExternalOrderRow(
        account_id=f.account_id, symbol=f.inst_id, side=f.side, order_type=f.ord_type or "unknown",
        size=f.fill_sz, leverage=quantize_opt(f.lever, Q2), exchange_order_id=f.ord_id,
        pos_side=f.pos_side, reduce_only=bool(f.reduce_only), category=f.category,
        cl_ord_id=f.cl_ord_id, algo_id=f.algo_id,
    )


def balance_row(b: Balance, body: str) -> BalanceRow:
    """The `balance_snapshots` row of a balance push."""
    return BalanceRow(account_id=b.account_id, available_usdt=b.avail_bal, locked_usdt=b.frozen_bal,
                      cash_usdt=b.cash_bal, equity_usdt=b.eq, raw_payload=JsonText(body),
                      as_of=b.ts_event)


def exchange_view_row(p: ExchangePosition) -> ExchangeViewRow:
    """The exchange's view of a position: margin, liquidation and mark price, unrealized PnL."""
    return ExchangeViewRow(account_id=p.account_id, symbol=p.inst_id, pos_side=p.pos_side,
                           margin_usdt=p.margin, liquidation_price=p.liq_px or None,
                           mark_price=p.mark_px, unrealized_pnl_usdt=p.upl)
