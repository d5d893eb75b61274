"""The MCP surface: five tools, typed in and out. The docstrings are what the model reads."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AnyHttpUrl, BaseModel, Field
from pydantic_core import from_json, to_json

from services.mcp_gateway import handlers, trading, views
from services.mcp_gateway.arguments import (
    Confidence,
    ExitPlanArg,
    Leverage,
    Price,
    RemovablePrice,
    Size,
    forbid_unknown,
)
from services.mcp_gateway.audit import AuditMiddleware, current_call
from services.mcp_gateway.auth import Principal, TokenVerifier, principal_from_token
from services.mcp_gateway.errors import Refusal
from services.mcp_gateway.gate import ToolGate
from services.mcp_gateway.gateway import Gateway
from services.mcp_gateway.rules import TradeRequest
from shared.bars import Timeframe
from shared.consumer import Nak, fate_of
from shared.types import Direction, OrderType, Side, Window
from shared.version import VERSION

INSTRUCTIONS = """\
AiTrader: trade OKX USDT-margined perpetual swaps (e.g. BTC-USDT-SWAP) for one account.
Sizes are in contracts (OKX 张): one contract of BTC-USDT-SWAP is 0.01 BTC. Decimal values are
exact decimal strings. Typical loop: get_account_state -> get_market_data -> execute_trade
(with confidence and an exit plan) -> update_exit_plan as the trade develops ->
get_performance_metrics to review. Every call is recorded."""


Symbol = Annotated[str, Field(description="OKX swap id, e.g. BTC-USDT-SWAP.", min_length=1, max_length=40)]
TradeSide = Annotated[
    Side,
    Field(description="buy opens/adds a long or reduces a short; sell the opposite."),
]
SizeArg = Annotated[
    Size, Field(description="Contracts, not coins: a lot-size multiple, at least the minimum.")
]
LeverageArg = Annotated[Leverage, Field(description="1 up to the instrument's and the server's limit.")]
ConfidenceArg = Annotated[Confidence, Field(description="Your confidence in this trade, 0-100.")]
LimitPrice = Annotated[
    Price | None, Field(description="Limit price, a tick-size multiple; limit orders only.")
]
ReduceOnly = Annotated[
    bool, Field(description="True: only reduce or close a position, never open or flip one.")
]
PlanArg = Annotated[
    ExitPlanArg | None, Field(description="Take profit, stop loss, invalidation condition.")
]
IdemKey = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=128,
        description="Any unique string; a retry with the same key never places a second order. "
        "Without it a retried call may place a second order.",
    ),
]
Limit = Annotated[int, Field(ge=1, le=100, description="Candles per timeframe.")]
NewTakeProfit = Annotated[
    RemovablePrice | None,
    Field(description='New take-profit price (a tick multiple above the mark for a long, below for a '
          'short); "none" removes the take-profit. Omit to keep it.'),
]
NewStopLoss = Annotated[
    RemovablePrice | None,
    Field(description='New stop-loss price (a tick multiple below the mark for a long, above for a '
          'short); "none" removes the stop. Omit to keep it.'),
]
NewCondition = Annotated[
    str | None, Field(max_length=1000, description="New invalidation condition, in words.")
]
PositionSide = Annotated[
    Direction | None,
    Field(description="Only when both a long and a short are open in symbol."),
]
WindowArg = Annotated[
    Window,
    Field(description="daily = last 24 h, weekly = last 7 days."),
]


def build_server(
    gw: Gateway,
    *,
    transport: str,
    principal: Principal | None = None,
    verifier: TokenVerifier | None = None,
    issuer_url: str = "http://127.0.0.1",
) -> MCPServer:
    """The gateway's MCP server: bearer-token auth when `verifier` is given (HTTP), else every
    call acts for `principal` (stdio, in-process)."""
    resolve: Callable[[], Principal | None] = (
        (lambda: principal) if verifier is None else principal_from_token
    )
    auth = None
    if verifier is not None:
        auth = AuthSettings(
            issuer_url=AnyHttpUrl(issuer_url),
            resource_server_url=None,
            required_scopes=["read"],
        )
    tools = gateway_tools(gw)
    server: MCPServer = MCPServer(
        "aitrader",
        version=VERSION,
        instructions=INSTRUCTIONS,
        token_verifier=verifier,
        auth=auth,
        # outermost first: every call is recorded, a refused one too
        middleware=[AuditMiddleware(gw.audit, resolve, transport), ToolGate(tools, resolve)],
        log_level="WARNING",
        tools=tools,
    )
    return server


def _tool(fn: Callable[..., Any], annotations: ToolAnnotations) -> Tool:
    """A tool that publishes its view's output schema and whose results the SDK passes on as
    they are: each is a view model instance, validated when it was built, or a document of exact
    values from the database (`views.Doc`), dumped once by `_result`. The SDK derives the tool
    from the function (arguments, description, and the output schema from the return annotation
    `Annotated[CallToolResult, <view>]`); it is registered with metadata that carries that schema
    and no output model, which the SDK advertises without validating results against it
    (`FuncMetadata.convert_result`). The tests validate every result against the schema (the
    SDK client does, on each call) and against the model. Its arguments model refuses unknown
    names (`additionalProperties: false`): a misspelt `reduceonly` must not be dropped silently."""
    derived = Tool.from_function(_refusals_as_tool_errors(fn), annotations=annotations)
    schema = derived.fn_metadata.output_schema
    if schema is None:
        raise TypeError(f"{derived.name} must be annotated Annotated[CallToolResult, <view model>]")
    strict = forbid_unknown(derived.fn_metadata.arg_model)
    advertised = FuncMetadata(arg_model=strict, output_schema=schema)
    parameters = strict.model_json_schema(by_alias=True)
    return derived.model_copy(update={"fn_metadata": advertised, "parameters": parameters})


# What a model is told to wait before retrying a call that met the database or NATS away.
RETRY_AFTER_S = 5


def _refusals_as_tool_errors(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The tool boundary: a `Refusal` of the gateway's core reaches the model as the SDK's
    `ToolError` (an `is_error` result with the refusal's text); so does a failure a retry can
    cure (`shared.consumer.fate_of`: the database or NATS away), worded as "retry in N s";
    anything else stays a crash."""

    @functools.wraps(fn)  # the SDK reads the signature, hints and docstring through the wrapper
    async def tool(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except Refusal as exc:
            raise ToolError(str(exc)) from exc
        except Exception as exc:
            fate = fate_of(exc)
            if isinstance(fate, Nak) and not fate.unknown:
                raise ToolError(
                    f"Temporarily unavailable: the gateway cannot reach its database or message bus "
                    f"({type(exc).__name__}). Retry in {RETRY_AFTER_S} s; a trade retried with the "
                    "same idempotency_key is not placed twice.") from exc
            raise

    return tool


def gateway_tools(gw: Gateway) -> list[Tool]:
    """The five tools."""

    async def get_account_state() -> Annotated[CallToolResult, views.AccountState]:
        """Your account now: mode (live = real money, simulated = demo), USDT balances
        (available, locked, equity), every open position (side, contracts and coin quantity,
        entry and mark price, leverage, margin, liquidation price, unrealized PnL, your exit plan
        and the confidence you opened it with, opened_at) and all-time headline performance.
        Per position, exit_orders says whether each leg of your exit plan really rests on the
        exchange (state live / triggered / failed / missing, stop_loss_resting); act on its
        warning. Call it first in every decision cycle: it is the truth about what you hold."""
        return _result(await handlers.account_state(gw, _who()))

    async def get_market_data(
        symbol: Symbol,
        timeframes: list[Timeframe] = ["3m", "4H"],  # noqa: B006 - never mutated; shown in the schema
        limit: Limit = 10,
    ) -> Annotated[CallToolResult, views.MarketData]:
        """Recent closed candles of one symbol, per timeframe, oldest -> newest: close price,
        EMA20, EMA50, MACD (EMA12 - EMA26), RSI7 and RSI14 (Wilder), plus the latest funding rate
        and open interest. `stale` is true when the newest candle is older than two bars (the
        feed is behind): prefer not to open new positions on stale data."""
        return _result(await handlers.market_data(gw, symbol, list(timeframes), limit))

    async def execute_trade(
        symbol: Symbol,
        side: TradeSide,
        size: SizeArg,
        leverage: LeverageArg,
        confidence: ConfidenceArg,
        order_type: OrderType = "market",
        price: LimitPrice = None,
        reduce_only: ReduceOnly = False,
        exit_plan: PlanArg = None,
        idempotency_key: IdemKey = None,
    ) -> Annotated[CallToolResult, views.TradeResult]:
        """Place an order on OKX for your account and return it with its status and the fills
        that arrived within a short wait. To close a position, trade the opposite side with
        reduce_only=true and size = the position's contracts. Checked before anything is sent:
        the symbol exists, size is a lot-size multiple >= the minimum, leverage is within the
        limit, a limit price is a tick multiple, and the notional (size x contract value x price)
        is under the server maximum; a refusal explains what to change. Always pass an
        idempotency_key: only then is a retry safe; if the call times out, repeat it with the
        same key and you get the first order back instead of a second one. exit_plan's
        take_profit / stop_loss rest on OKX as one TP/SL order for the whole position, triggered
        by the mark price and executed at market: for a long, take_profit above the mark and
        stop_loss below it (a short: the reverse), both tick multiples; not with reduce_only.
        Given while adding to a position, it replaces the position's plan.
        exit_orders_note says what was done on OKX."""
        request = TradeRequest(symbol, side, size, leverage, confidence, order_type, price, reduce_only)
        return _result(await trading.execute_trade(gw, current_call(), request, exit_plan, idempotency_key))

    async def update_exit_plan(
        symbol: Symbol,
        take_profit: NewTakeProfit = None,
        stop_loss: NewStopLoss = None,
        invalidation_condition: NewCondition = None,
        side: PositionSide = None,
    ) -> Annotated[CallToolResult, views.ExitPlanUpdate]:
        """Change the exit plan of your open position in symbol. Fields you omit keep their
        current value; "none" for take_profit or stop_loss removes that leg. Every change is
        kept in the plan's history (its version goes up by one). For a long, take_profit must be
        above the mark and stop_loss below it (a short: the reverse), both tick multiples. The
        TP/SL order on OKX is moved to match (amended in place when it can be); calling again
        with the same values changes nothing. Returns the position with its new plan, the
        previous one, and exit_orders_note: what was done on OKX, or what failed."""
        changes = {
            "take_profit": take_profit,
            "stop_loss": stop_loss,
            "invalidation_condition": invalidation_condition,
        }
        return _result(await trading.update_exit_plan(gw, current_call(), symbol, changes, side))

    async def get_performance_metrics(
        window: WindowArg = "all_time",
    ) -> Annotated[CallToolResult, views.PerformanceMetrics]:
        """Your trading performance over a window: Sharpe ratio, win rate, average leverage and
        confidence, biggest win and loss, time share long / short / flat, realized PnL, with the
        exact definitions and when it was computed, plus how well your confidence predicted
        outcomes (calibration by confidence bucket), closed positions and net PnL by exit reason
        (your close, take_profit, stop_loss, liquidation, ...) and the share closed with a
        stop-loss resting on the exchange. available=false until the first snapshot."""
        return _result(await handlers.performance(gw, _who(), window))

    read = ToolAnnotations(read_only_hint=True)
    return [
        _tool(get_account_state, read),
        _tool(get_market_data, read),
        # Not idempotent as such: only a call carrying an idempotency_key is (the hint is per tool).
        _tool(execute_trade, ToolAnnotations(destructive_hint=True, idempotent_hint=False)),
        _tool(update_exit_plan, ToolAnnotations(idempotent_hint=True)),
        _tool(get_performance_metrics, read),
    ]


def _result(view: BaseModel | views.Doc) -> CallToolResult:
    """The view (a model, or a `views.Doc` of the hot read tools) as structured content, and the
    same JSON as text for clients that read only text: compact (fewer tokens for the model than
    the SDK's indented dump), serialized once here."""
    if isinstance(view, BaseModel):
        text = view.model_dump_json()
        data = from_json(text)  # cheaper than model_dump(mode="json"): decimals formatted once
    else:
        # A document's values are JSON-ready strings and numbers, or datetimes, UUIDs and exit
        # plans, which the SDK's JSON dump writes exactly as `to_json` does here (one serializer).
        text, data = to_json(view).decode(), view
    current_call().result_json = text  # the audit row stores this text, not a second dump
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _who() -> Principal:
    principal = current_call().principal
    assert principal is not None  # the audit middleware refuses calls without one
    return principal
