"""What the tools return (pydantic models: their JSON schema is the tools' output schema).

Money, prices and quantities are `Decimal` and reach the model as exact decimal strings
("61000.1", "0.01"): a JSON number may be read back as a binary float and lose digits, and a
string shows the exact value the ledger holds. Times are ISO-8601 UTC.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, TypeAlias
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from shared.money import plain_decimal
from shared.types import Direction, ExitReason, Mode, PosSide, Side, Window

# The schemas say string (what is sent), flat: one type is cheap for a client to validate.
Dec = Annotated[
    Decimal,
    PlainSerializer(plain_decimal, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "description": "exact decimal"}),
]
# None is serialized natively: the formatter runs only for decimals.
OptDec = Annotated[Dec | None, WithJsonSchema({"type": ["string", "null"], "description": "exact decimal"})]

# The JSON form of a view, built without the model: what the hot read tools (get_account_state,
# get_market_data) return. Their values come from PostgreSQL already as exact decimal text
# (`repository`), so building and dumping the model would only re-check and re-format them; the
# dict is serialized once. The model stays the contract: it is the tool's output schema, its
# fields are the document's keys (`document`, `projection.Projection`), and the tests validate
# every such document against the schema and check that its JSON is exactly the model's.
Doc: TypeAlias = dict[str, Any]


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


def document(view: type[View], /, **values: Any) -> Doc:
    """`view`'s JSON form from its JSON-ready field values, keyed in the model's field order;
    a missing or unknown field is a TypeError (a renamed field cannot go unnoticed)."""
    fields = view.model_fields
    if values.keys() != fields.keys():
        missing, unknown = fields.keys() - values.keys(), values.keys() - fields.keys()
        raise TypeError(f"{view.__name__} document: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return {name: values[name] for name in fields}


class ExitPlanFields(View):
    """What the agent writes in an exit plan."""

    take_profit: OptDec = Field(default=None, gt=0, description="Price at which to take profit.")
    stop_loss: OptDec = Field(default=None, gt=0, description="Price at which to cut the loss.")
    invalidation_condition: str | None = Field(
        default=None,
        max_length=1000,
        description="In words: what would prove the trade idea wrong, e.g. '4H close below 60000'.",
    )


class ExitPlan(ExitPlanFields):
    """The agent's plan for leaving a position; stored with the position, kept in its history.
    Its take_profit / stop_loss rest on OKX as one TP/SL order triggered by the mark price."""

    version: int | None = Field(
        default=None,
        description="1 when the position opened with it, +1 at each change (set by the server).",
    )


class ExitOrder(View):
    """One leg of the stored plan against what rests on the exchange."""

    leg: Literal["take_profit", "stop_loss"]
    trigger_price: Dec = Field(description="The plan's trigger price.")
    state: Literal["live", "triggered", "failed", "missing"] = Field(
        description="live: an algo order of this position rests with this leg (see note if its "
        "trigger is not the plan's); triggered: it fired; failed: the exchange refused it, or its "
        "order failed when it fired; missing: stored in the plan, nothing resting.")
    algo_id: str | None = Field(description="The exchange's algo order id (null when missing).")
    exchange_trigger_price: OptDec = Field(description="The trigger price the exchange holds.")
    note: str | None


class ExitOrders(View):
    """What of the exit plan rests on the exchange (OKX algo orders of this position's slot)."""

    plan_version: int | None = Field(description="The stored plan's version (1 at entry, +1 per update).")
    legs: list[ExitOrder] = Field(description="One per leg of the stored plan.")
    stop_loss_resting: bool = Field(description="True when a stop-loss rests on the exchange now.")
    warning: str | None = Field(description="Set when a leg of the plan is not resting: act on it.")


class Position(View):
    symbol: str
    side: Direction
    pos_side: PosSide = Field(description="OKX position slot.")
    contracts: Dec = Field(description="Size in contracts (OKX 张).")
    coin_quantity: Dec = Field(description="contracts x ctVal x ctMult, in base_asset.")
    base_asset: str
    entry_price: OptDec
    mark_price: OptDec
    leverage: OptDec
    margin_usdt: OptDec
    liquidation_price: OptDec
    unrealized_pnl_usdt: OptDec = Field(description="(mark - entry) x coin_quantity x direction.")
    notional_usdt: OptDec = Field(description="coin_quantity x mark_price.")
    exit_plan: ExitPlan | None
    exit_orders: ExitOrders
    confidence: OptDec = Field(description="Contract-weighted confidence of the opening fills.")
    opened_at: AwareDatetime | None
    updated_at: AwareDatetime


class HeadlinePerformance(View):
    window: Window = "all_time"
    realized_pnl_usdt: OptDec
    closed_positions: int
    win_rate: OptDec
    sharpe_ratio: OptDec
    updated_at: AwareDatetime


class OpenDiscrepancy(View):
    kind: str = Field(description="position, balance, order or fill.")
    subject: str = Field(description="symbol:pos_side, an order id, instId:tradeId or USDT.")
    exchange: dict[str, Any] = Field(description="What OKX holds.")
    ledger: dict[str, Any] = Field(description="What this ledger holds.")
    since: AwareDatetime = Field(description="When it was first seen.")


class Reconciliation(View):
    last_reconciled_at: AwareDatetime | None = Field(
        description="When the ledger was last compared with OKX (null: never).")
    in_doubt: bool = Field(
        description="True when the book may not be what OKX holds: never compared, last "
        "compared more than 15 minutes ago, or a difference is still open. Check positions on "
        "the exchange before relying on them.")
    open: list[OpenDiscrepancy] = Field(description="Differences not healed yet.")


class AccountState(View):
    account: str = Field(description="The account's external id.")
    account_id: UUID
    mode: Mode = Field(description="live = real money on OKX; simulated = demo trading.")
    available_usdt: OptDec = Field(description="Free to open positions, from the latest balance.")
    locked_usdt: OptDec = Field(description="Held as margin and by open orders, from the latest balance.")
    cash_usdt: OptDec = Field(description="Cash balance (OKX cashBal): excludes unrealized PnL.")
    equity_usdt: OptDec = Field(
        description="Live equity: cash_usdt (else available + locked) + the sum of the open positions' "
        "unrealized_pnl_usdt at the latest mark price; moves with the market between balance updates. "
        "Null without a balance or when a position has no price."
    )
    exchange_equity_usdt: OptDec = Field(
        description="The exchange's own equity figure as of balance_as_of (updated only by balance pushes)."
    )
    balance_as_of: AwareDatetime | None = Field(description="Time of the latest balance from the exchange.")
    positions: list[Position]
    performance: HeadlinePerformance | None = Field(
        description="All-time headline figures; null until the metrics service has run."
    )
    reconciliation: Reconciliation = Field(
        description="How this book compares with OKX (docs/reconciliation.md).")
    as_of: AwareDatetime


class Candle(View):
    as_of: AwareDatetime = Field(description="Close time of the candle.")
    price: OptDec = Field(description="Close price.")
    ema20: OptDec
    ema50: OptDec
    macd: OptDec
    rsi7: OptDec
    rsi14: OptDec


class Series(View):
    timeframe: str
    candles: list[Candle] = Field(description="Closed candles, oldest first.")
    as_of: AwareDatetime | None = Field(description="Close time of the newest candle.")
    stale: bool = Field(description="True when the newest candle is older than two bars.")


class MarketData(View):
    symbol: str
    series: list[Series]
    funding_rate: OptDec = Field(description="Latest funding rate (0.0001 = 0.01% per period).")
    open_interest: OptDec = Field(description="Latest open interest, in contracts.")
    as_of: AwareDatetime | None
    stale: bool = Field(description="True when any timeframe is stale; treat the data with care.")


class Fill(View):
    trade_id: str
    price: Dec
    size: Dec = Field(description="Contracts.")
    fee_usdt: Dec = Field(description="OKX sign: negative = fee charged.")
    time: AwareDatetime


class Order(View):
    order_id: UUID
    client_order_id: str
    exchange_order_id: str | None
    symbol: str
    side: Side
    pos_side: str | None
    order_type: str
    size: Dec
    price: OptDec
    leverage: OptDec
    confidence: OptDec
    reduce_only: bool
    status: str = Field(description="pending, submitted, rejected, failed, unknown, or the exchange's.")
    filled_size: Dec
    avg_fill_price: OptDec
    reject_code: str | None
    reject_reason: str | None
    exit_plan: ExitPlan | None
    created_at: AwareDatetime


class TradeResult(View):
    order: Order
    fills: list[Fill] = Field(description="Fills folded into the ledger within the short wait.")
    replayed: bool = Field(description="True: this idempotency_key was used before; nothing was sent.")
    note: str
    exit_orders_note: str | None = Field(
        default=None,
        description="What was done on OKX to make the exit plan's take-profit / stop-loss rest, "
        "and any failure (the trade itself stands).",
    )


class ExitPlanUpdate(View):
    position: Position
    previous_exit_plan: ExitPlan | None
    exit_orders_note: str | None = Field(
        default=None,
        description="What was done on OKX to make the new take-profit / stop-loss rest, and any "
        "failure (the plan is stored either way).",
    )


class CalibrationBucket(View):
    bucket: str = Field(description="Confidence range, e.g. 70-85.")
    closed_positions: int
    win_rate: OptDec
    mean_pnl_usdt: OptDec


class ExitAttribution(View):
    exit_reason: ExitReason = Field(description="Why the positions closed.")
    closed_positions: int
    realized_pnl_usdt: OptDec = Field(description="Sum of their net realized PnL.")


class PerformanceMetrics(View):
    window: Window
    available: bool = Field(description="False until the metrics service has written this window.")
    sharpe_ratio: OptDec = None
    win_rate: OptDec = None
    average_leverage: OptDec = None
    average_confidence: OptDec = None
    biggest_win_usdt: OptDec = None
    biggest_loss_usdt: OptDec = None
    hold_ratio_long: OptDec = None
    hold_ratio_short: OptDec = None
    hold_ratio_flat: OptDec = None
    closed_positions: int = 0
    realized_pnl_usdt: OptDec = None
    stop_loss_resting_ratio: OptDec = Field(
        default=None, description="Share of the closed positions that had a stop-loss resting on "
        "the exchange when they closed.")
    max_drawdown_pct: OptDec = Field(
        default=None, description="Largest fall from a running peak of equity, percent of it.")
    window_start: AwareDatetime | None = None
    window_end: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    definitions: dict[str, str]
    definitions_version: str | None = Field(
        default=None, description="The definitions version this snapshot was computed with."
    )
    calibration: list[CalibrationBucket]
    exit_attribution: list[ExitAttribution] = Field(
        description="Closed positions and net PnL by exit reason (reasons with none are left out).")
