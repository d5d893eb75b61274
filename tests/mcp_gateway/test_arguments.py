"""Argument hygiene: decimals bounded before any arithmetic, unknown names refused, one-line
refusals, and nothing written or sent for a refused call (SDK client, real PostgreSQL and NATS)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from pydantic import TypeAdapter, ValidationError

from services.mcp_gateway.arguments import Confidence, DecimalBounds, Leverage, Price, Size
from services.mcp_gateway.gateway import Gateway
from tests.mcp_gateway import seed
from tests.mcp_gateway.conftest import call, client_for, error_text, memory_client
from tests.mcp_gateway.fakes import FakeIngest

BTC = "BTC-USDT-SWAP"
TRADE = {"symbol": BTC, "side": "buy", "size": "0.5", "leverage": 5, "confidence": 72}
SIZE_RULE = "size must be a decimal > 0 with at most 12 digits before the point and 8 after"
TRADE_ARGS = (
    "symbol, side, size, leverage, confidence, order_type, price, reduce_only, exit_plan, idempotency_key"
)

REFUSED = [
    pytest.param("execute_trade", {**TRADE, "size": 1e30}, [SIZE_RULE, "(got 1e+30)"], id="size-1e30-number"),
    pytest.param(
        "execute_trade", {**TRADE, "size": "1e30"}, [SIZE_RULE, "(got '1e30')"], id="size-1e30-text"
    ),
    pytest.param(
        "execute_trade", {**TRADE, "size": "1e-100000"}, [SIZE_RULE, "(got '1e-100000')"], id="size-1e-100000"
    ),
    pytest.param("execute_trade", {**TRADE, "size": "NaN"}, [SIZE_RULE, "(got 'NaN')"], id="size-nan"),
    pytest.param(
        "execute_trade", {**TRADE, "size": "Infinity"}, [SIZE_RULE, "(got 'Infinity')"], id="size-infinity"
    ),
    pytest.param("execute_trade", {**TRADE, "size": "-0"}, [SIZE_RULE, "(got '-0')"], id="size-minus-zero"),
    pytest.param(
        "execute_trade",
        {**TRADE, "size": "1" * 100_000},
        [SIZE_RULE, "(got '" + "1" * 36 + "...)"],
        id="size-100000-digits",
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "leverage": "5.005"},
        ["leverage must be a decimal >= 1 with at most 8 digits before the point and 2 after"],
        id="leverage-beyond-its-column",
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "confidence": "72.001"},
        ["confidence must be a decimal from 0 to 100 with at most 2 digits after the point"],
        id="confidence-beyond-its-column",
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "side": "sell", "reduceonly": True},
        [f"unknown argument 'reduceonly'; the arguments here are {TRADE_ARGS}"],
        id="misspelt-reduce-only",
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "exit_plan": {"takeprofit": "70000", "stop_loss": "50000"}},
        [
            "unknown field 'exit_plan.takeprofit'; the fields here are take_profit, stop_loss, "
            "invalidation_condition"
        ],
        id="exit-plan-field-typo",
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "exit_plan": {"take_profit": "1e100000"}},
        ["exit_plan.take_profit must be a decimal > 0 with at most 12 digits before the point and 8 after"],
        id="exit-plan-price-1e100000",
    ),
    pytest.param(
        "update_exit_plan",
        {"symbol": BTC, "take_profit": "1e100000"},
        ["take_profit must be a decimal > 0 with at most 12 digits", "(got '1e100000')"],
        id="update-take-profit-1e100000",
    ),
    pytest.param(
        "update_exit_plan",
        {"symbol": BTC, "stop_loss": "NaN"},
        ["stop_loss must be a decimal > 0", 'or "none" to remove it', "(got 'NaN')"],
        id="update-stop-loss-nan",
    ),
    pytest.param(
        "update_exit_plan",
        {"symbol": BTC, "takeprofit": "70000"},
        [
            "unknown argument 'takeprofit'; the arguments here are symbol, take_profit, stop_loss, "
            "invalidation_condition, side"
        ],
        id="update-misspelt-take-profit",
    ),
]


async def _ledger(db: asyncpg.Pool) -> list[Any]:
    """Everything a trade tool could write: orders, open positions, exit-plan history."""
    return [
        await db.fetch(f"SELECT * FROM aitrader.{table} ORDER BY 1")
        for table in ("orders", "positions_open", "exit_plan_history")
    ]


@pytest.mark.parametrize(("tool", "arguments", "fragments"), REFUSED)
async def test_a_refused_argument_is_one_line_and_changes_nothing(
    gateway: Gateway,
    db_pool: asyncpg.Pool,
    ingest: FakeIngest,
    accounts: dict[str, UUID],
    tool: str,
    arguments: dict[str, Any],
    fragments: list[str],
) -> None:
    await seed.market_price(db_pool, BTC, "60000")
    await seed.position(db_pool, accounts["a"], BTC, exit_plan={"take_profit": "65000", "stop_loss": "55000"})
    before = await _ledger(db_pool)
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        text = error_text(await call(client, tool, **arguments))
    assert text.startswith(f"Invalid arguments for {tool}: ")
    assert "\n" not in text and len(text) <= 600, text
    for fragment in fragments:
        assert fragment in text
    assert await _ledger(db_pool) == before
    assert ingest.received == []
    await gateway.audit.flush()
    (audit,) = await seed.tool_calls(db_pool)
    assert (audit["tool_name"], audit["status"], audit["error"]) == (tool, "failed", text)


async def test_every_input_schema_refuses_unknown_names(gateway: Gateway) -> None:
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
    assert all(schema["additionalProperties"] is False for schema in tools.values())
    assert tools["execute_trade"]["$defs"]["ExitPlanArg"]["additionalProperties"] is False


# The bounds are the columns': whatever is accepted is stored exactly.
COLUMNS = [
    pytest.param(Size, "orders", "size", id="size"),
    pytest.param(Price, "orders", "price", id="price"),
    pytest.param(Leverage, "orders", "leverage", id="leverage"),
    pytest.param(Confidence, "orders", "confidence", id="confidence"),
]


def _bounds(arg: Any) -> DecimalBounds:
    (bounds,) = [m for m in arg.__metadata__ if isinstance(m, DecimalBounds)]
    return bounds


@pytest.mark.parametrize(("arg", "table", "column"), COLUMNS)
async def test_the_bounds_are_the_columns_precision_and_scale(
    db_pool: asyncpg.Pool, arg: Any, table: str, column: str
) -> None:
    bounds = _bounds(arg)
    precision, scale = await db_pool.fetchrow(
        """SELECT numeric_precision, numeric_scale FROM information_schema.columns
           WHERE table_schema = 'aitrader' AND table_name = $1 AND column_name = $2""",
        table,
        column,
    )
    assert (bounds.integer_digits + bounds.places, bounds.places) == (precision, scale)
    widest = "9" * bounds.integer_digits + "." + "9" * bounds.places
    if bounds.maximum is not None:
        widest = f"{bounds.maximum - Decimal(1).scaleb(-bounds.places)}"
    value = TypeAdapter(arg).validate_python(widest)
    stored = await db_pool.fetchval(f"SELECT $1::numeric({precision}, {scale})::text", value)
    assert Decimal(stored) == value


PARSED = [
    pytest.param(Size, "0.5", "0.5", id="plain"),
    pytest.param(Size, 0.1, "0.1", id="json-number-as-written"),
    pytest.param(Size, "1.50000000000000", "1.5", id="trailing-zeros-are-not-digits"),
    pytest.param(Size, "1E+2", "100", id="exponent-within-bounds"),
    pytest.param(Size, 1e-05, "0.00001", id="json-number-in-exponent-form"),
    pytest.param(Size, "999999999999.99999999", "999999999999.99999999", id="widest"),
    pytest.param(Confidence, "-0", "0", id="minus-zero-is-zero"),
    pytest.param(Confidence, 100, "100", id="maximum-included"),
    pytest.param(Leverage, "1", "1", id="minimum-included"),
]


@pytest.mark.parametrize(("arg", "given", "expected"), PARSED)
def test_accepted_decimals(arg: Any, given: Any, expected: str) -> None:
    value = TypeAdapter(arg).validate_python(given)
    assert str(value) == expected


NOT_PARSED = [
    pytest.param(Size, "1000000000000", id="13-digits-before-the-point"),
    pytest.param(Size, "0.000000001", id="9-digits-after-the-point"),
    pytest.param(Size, "1e-100000", id="tiny-exponent"),
    pytest.param(Size, "1e100000", id="huge-exponent"),
    pytest.param(Size, "sNaN", id="signalling-nan"),
    pytest.param(Size, "-Infinity", id="minus-infinity"),
    pytest.param(Size, "0", id="zero-where-positive"),
    pytest.param(Size, "-1", id="negative"),
    pytest.param(Size, True, id="bool"),
    pytest.param(Size, [1], id="list"),
    pytest.param(Size, "0." + "0" * 40 + "1", id="too-long-text"),
    pytest.param(Leverage, "0.99", id="leverage-below-1"),
    pytest.param(Confidence, "100.01", id="confidence-above-100"),
]


@pytest.mark.parametrize(("arg", "given"), NOT_PARSED)
def test_refused_decimals(arg: Any, given: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        TypeAdapter(arg).validate_python(given)
    assert refused.value.errors()[0]["type"] == "decimal_bounds"
