"""What the console's views answer (docs/console.md): the leaderboard, the equity series, the
metrics service's rows, exit-plan history, funding, candles. Decimals are strings, times UTC."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from services.console.models import Dec, Page, Row, Utc
from shared.types import Window

Step = Literal["1m", "5m", "15m", "1h", "4h", "1d"]


class Standing(Row):
    external_id: str
    mode: str
    equity_usdt: Dec | None = Field(description="live: cash + unrealized PnL at the latest mark")
    return_pct: Dec | None = Field(description="the window's first to last equity point, percent")
    sharpe_ratio: Dec | None
    win_rate: Dec | None
    max_drawdown_pct: Dec | None = Field(
        description="largest fall from a running peak, percent (metrics, as of its window_end)"
    )
    trades: int | None = Field(description="closed positions of the window (metrics)")
    fees_usdt: Dec = Field(description="fees of the window's fills, OKX sign: negative = paid")
    average_leverage: Dec | None
    average_confidence: Dec | None
    realized_pnl_usdt: Dec | None


class Leaderboard(BaseModel):
    window: Window
    as_of: Utc
    items: list[Standing]


class EquityPoint(Row):
    time: Utc = Field(description="the start of the bucket")
    equity_usdt: Dec = Field(description="the bucket's last equity point")


class EquitySeries(BaseModel):
    step: Step
    points: list[EquityPoint]


class ExitReasonRow(Row):
    exit_reason: str
    closed_positions: int
    realized_pnl_usdt: Dec | None


class Performance(BaseModel):
    """The metrics service's row for the window; only `available` (false) until it has run."""

    window: Window
    available: bool
    sharpe_ratio: Dec | None = None
    win_rate: Dec | None = None
    average_leverage: Dec | None = None
    average_confidence: Dec | None = None
    biggest_win_usdt: Dec | None = None
    biggest_loss_usdt: Dec | None = None
    hold_ratio_long: Dec | None = None
    hold_ratio_short: Dec | None = None
    hold_ratio_flat: Dec | None = None
    closed_positions: int | None = None
    realized_pnl_usdt: Dec | None = None
    stop_loss_resting_ratio: Dec | None = None
    max_drawdown_pct: Dec | None = None
    definitions_version: str | None = None
    window_start: Utc | None = None
    window_end: Utc | None = None
    updated_at: Utc | None = None
    exit_attribution: list[ExitReasonRow] = Field(default_factory=list)


class Bucket(Row):
    bucket: str
    closed_positions: int
    win_rate: Dec | None
    mean_pnl_usdt: Dec | None


class Calibration(BaseModel):
    window: Window
    buckets: list[Bucket]


class ExitPlanVersion(Row):
    id: int
    symbol: str
    pos_side: str
    position_id: UUID | None
    version: int | None
    take_profit: Dec | None
    stop_loss: Dec | None
    invalidation_condition: str | None
    algo_id: str | None = Field(description="the algo order that holds its legs")
    s_code: str | None = Field(description='OKX\'s answer ("0" resting); null: not attempted')
    s_msg: str | None
    created_at: Utc


class FundingRow(Row):
    id: UUID
    symbol: str
    pos_side: str
    amount: Dec = Field(description="USDT, positive = received")
    rate: Dec | None = Field(description="the newest funding rate recorded at or before it")
    bill_id: str
    time: Utc


class DeadLetterRow(Row):
    id: int
    service: str = Field(description="the consumer that gave the message up")
    subject: str
    reason: str
    error_type: str | None = Field(description="permanent, rejected, unknown, or the service's own")
    payload: str = Field(description="the message as text (bytes that are not UTF-8 shown as U+FFFD)")
    headers: dict[str, Any]
    stream: str | None
    stream_seq: int | None
    created_at: Utc


class Candle(Row):
    time: Utc = Field(description="the candle's close time")
    open: Dec | None
    high: Dec | None
    low: Dec | None
    close: Dec | None
    volume: Dec | None
    ema20: Dec | None
    ema50: Dec | None
    macd: Dec | None
    rsi7: Dec | None
    rsi14: Dec | None


class Market(BaseModel):
    symbol: str
    timeframe: str
    candles: list[Candle]


class ExitPlans(Page[ExitPlanVersion]):
    pass


class Funding(Page[FundingRow]):
    pass


class DeadLetters(Page[DeadLetterRow]):
    pass
