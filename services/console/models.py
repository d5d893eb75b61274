"""What the console answers: one model per row kind, and a page of them. Decimals are strings
(exact, no exponent), times ISO 8601 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from shared.money import plain_decimal

# A NUMERIC column as a JSON string: "0.01", never 1E-2.
Dec = Annotated[Decimal, PlainSerializer(plain_decimal, return_type=str, when_used="json")]
# A timestamptz in UTC: "2026-12-03T14:00:00Z".
Utc = Annotated[datetime, AfterValidator(lambda t: t.astimezone(UTC))]


class Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Account(Row):
    external_id: str
    mode: str
    status: str
    equity_usdt: Dec | None = Field(description="cash + unrealized PnL at the latest mark")
    unrealized_pnl_usdt: Dec | None
    return_pct: Dec | None = Field(
        description="first to last equity point of the history, in percent (docs/console.md)"
    )
    open_positions: int
    balance_as_of: Utc | None
    last_reconciled_at: Utc | None
    created_at: Utc


class OpenPosition(Row):
    id: UUID
    symbol: str
    side: str
    pos_side: str
    quantity: Dec = Field(description="contracts")
    avg_entry_price: Dec | None
    mark_price: Dec | None
    unrealized_pnl_usdt: Dec | None
    notional_usdt: Dec | None
    leverage: Dec | None
    margin_usdt: Dec | None
    liquidation_price: Dec | None
    average_confidence: Dec | None
    exit_plan: dict[str, Any] | None
    stop_loss_resting: bool = Field(
        description="a stop-loss rests on the exchange now (aitrader.stop_loss_resting, migration 0016)"
    )
    opened_at: Utc | None
    updated_at: Utc


class ClosedPosition(Row):
    id: UUID
    symbol: str
    side: str
    pos_side: str
    quantity: Dec = Field(description="contracts closed in total")
    entry_price: Dec | None
    exit_price: Dec | None
    realized_pnl_usdt: Dec | None = Field(description="net: gross + fees + funding")
    gross_pnl_usdt: Dec
    fee_usdt: Dec
    funding_usdt: Dec
    holding_minutes: Dec | None
    average_confidence: Dec | None
    leverage: Dec | None
    fill_count: int
    exit_reason: str
    exit_plan: dict[str, Any] | None
    entry_time: Utc | None
    exit_time: Utc


class Order(Row):
    id: UUID
    symbol: str
    side: str
    pos_side: str | None
    order_type: str
    price: Dec | None
    size: Dec
    filled_size: Dec
    avg_fill_price: Dec | None
    status: str
    leverage: Dec | None
    confidence: Dec | None
    reduce_only: bool
    source: str
    category: str | None
    exchange_order_id: str | None
    client_order_id: str | None
    algo_id: str | None
    reject_code: str | None
    reject_reason: str | None
    exit_plan: dict[str, Any] | None
    tool_call_id: UUID | None
    created_at: Utc
    updated_at: Utc


class FillRow(Row):
    id: UUID
    order_id: UUID
    symbol: str
    side: str
    pos_side: str
    price: Dec
    size: Dec
    fee_usdt: Dec = Field(description="OKX sign: negative = charged")
    fee_ccy: str | None
    pnl_usdt: Dec | None
    confidence: Dec | None
    leverage: Dec | None
    exec_type: str | None
    category: str
    exchange_trade_id: str
    exchange_order_id: str | None
    time: Utc = Field(description="the exchange's fill time")


class ToolCall(Row):
    id: UUID
    tool: str
    status: str
    latency_ms: int | None
    error: str | None
    transport: str | None
    request: Any = Field(description="the request as the audit stored it (redacted)")
    response: Any = Field(description="the response as the audit stored it")
    created_at: Utc


T = TypeVar("T", bound=Row)


class Page(BaseModel, Generic[T]):
    """One page, newest first; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None


class Accounts(Page[Account]):
    pass


class OpenPositions(Page[OpenPosition]):
    pass


class ClosedPositions(Page[ClosedPosition]):
    pass


class Orders(Page[Order]):
    pass


class Fills(Page[FillRow]):
    pass


class ToolCalls(Page[ToolCall]):
    pass
