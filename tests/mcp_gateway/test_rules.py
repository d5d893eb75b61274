"""The pure core: trade checks, position slots, staleness, exit-plan merging, decimals.

The order rules, average confidence and bar lengths are `shared`'s, run here through the
gateway with the tables of `tests/shared/cases.py` (ingest and positions run the same tables).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.mcp_gateway.errors import InvalidArgument
from services.mcp_gateway.rules import (
    REMOVE,
    Limits,
    TradeRequest,
    check_exit_plan,
    check_exit_triggers,
    check_trade,
    confidence_text,
    is_stale,
    merged_exit_plan,
    pos_side_for,
)
from shared.bars import UnknownBar
from shared.instruments import InstrumentSpec, order_violations
from shared.types import Direction, PosMode, Side
from tests.shared.cases import BAR_CASES, CONFIDENCE_CASES, ORDER_CASES, SOL, OrderCase

BTC = InstrumentSpec(
    "BTC-USDT-SWAP",
    "BTC",
    Decimal("0.01"),
    Decimal(1),
    Decimal("0.01"),
    Decimal("0.01"),
    Decimal("0.1"),
    Decimal(100),
    "live",
)
LIMITS = Limits(max_leverage=Decimal(20), max_notional_usdt=Decimal(10_000))
MARK = Decimal(60_000)


def trade(**changes: object) -> TradeRequest:
    base: dict[str, object] = dict(
        symbol="BTC-USDT-SWAP",
        side="buy",
        size=Decimal("0.5"),
        leverage=Decimal(5),
        confidence=Decimal(70),
        order_type="market",
        price=None,
        reduce_only=False,
    )
    return TradeRequest(**{**base, **changes})  # type: ignore[arg-type]


# Above SOL's own leverage maximum and any notional: the table's cases are the instrument's rules.
TABLE_LIMITS = Limits(max_leverage=Decimal(100), max_notional_usdt=Decimal(10**9))


@pytest.mark.parametrize("case", ORDER_CASES)
def test_order_rules_as_the_model_reads_them(case: OrderCase) -> None:
    price = None if case.price is None else Decimal(case.price)
    req = TradeRequest(
        case.instrument.symbol,
        case.side,
        Decimal(case.size),
        Decimal(case.leverage),
        Decimal(70),
        case.order_type,
        price,
        False,
    )
    if case.gateway is None:
        assert check_trade(req, case.instrument, TABLE_LIMITS, Decimal(100), case.pos_mode) is not None
        return
    with pytest.raises(InvalidArgument) as info:
        check_trade(req, case.instrument, TABLE_LIMITS, Decimal(100), case.pos_mode)
    assert case.gateway in str(info.value)


@pytest.mark.parametrize("pos_mode", [None, "net_mode", "long_short_mode"])
@pytest.mark.parametrize("side", ["buy", "sell"])
@pytest.mark.parametrize("reduce_only", [False, True])
def test_the_pos_side_the_gateway_derives_fits_the_mode(
    pos_mode: PosMode | None, side: Side, reduce_only: bool
) -> None:
    derived = pos_side_for(pos_mode, side, reduce_only)
    order = OrderCase(None, None, None, pos_mode=pos_mode, pos_side=derived).order()
    assert order_violations(SOL, **order) == []


def test_valid_market_order_returns_its_notional() -> None:
    # 0.5 contracts x 0.01 BTC x 60000 = 300 USDT
    assert check_trade(trade(), BTC, LIMITS, MARK, "net_mode") == Decimal("300")


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        pytest.param(
            {"size": Decimal("0.015")},
            ["not a multiple of the lot size 0.01", "0.01 or 0.02"],
            id="size-not-lot-multiple",
        ),
        pytest.param({"size": Decimal("0.001")}, ["below the minimum 0.01"], id="size-below-minimum"),
        pytest.param({"leverage": Decimal(21)}, ["leverage 21", "1 to 20"], id="leverage-above-server-limit"),
        pytest.param({"leverage": Decimal("0.5")}, ["1 to 20"], id="leverage-below-one"),
        pytest.param({"price": Decimal(60000)}, ["only for limit orders"], id="price-on-market-order"),
        pytest.param({"order_type": "limit"}, ["needs price"], id="limit-without-price"),
        pytest.param({"order_type": "limit", "price": Decimal("-1")}, ["must be > 0"], id="negative-price"),
        pytest.param(
            {"order_type": "limit", "price": Decimal("60000.05")},
            ["tick size 0.1", "60000 or 60000.1"],
            id="price-not-tick-multiple",
        ),
        pytest.param(
            {"size": Decimal(20)},
            ["exceeds the maximum 10000 USDT", "largest allowed size at this price is 16.66"],
            id="notional-too-large",
        ),
    ],
)
def test_refusals_say_what_is_wrong_and_what_is_allowed(
    changes: dict[str, object], fragments: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_trade(trade(**changes), BTC, LIMITS, MARK, "net_mode")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_instrument_limit_is_lower_than_server_limit() -> None:
    low = replace(BTC, max_leverage=Decimal(10))
    with pytest.raises(InvalidArgument, match="1 to 10"):
        check_trade(trade(leverage=Decimal(15)), low, LIMITS, MARK, "net_mode")


def test_suspended_instrument_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not tradable"):
        check_trade(trade(), replace(BTC, status="suspend"), LIMITS, MARK, "net_mode")


def test_reduce_only_is_exempt_from_the_notional_limit_and_needs_no_mark() -> None:
    assert check_trade(trade(size=Decimal(20), reduce_only=True), BTC, LIMITS, None, "net_mode") is None


def test_market_order_without_any_price_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="No market price"):
        check_trade(trade(), BTC, LIMITS, None, "net_mode")


@pytest.mark.parametrize(
    ("pos_mode", "side", "reduce_only", "expected"),
    [
        pytest.param("net_mode", "buy", False, "net", id="net"),
        pytest.param(None, "sell", True, "net", id="unknown-mode-is-net"),
        pytest.param("long_short_mode", "buy", False, "long", id="open-long"),
        pytest.param("long_short_mode", "sell", False, "short", id="open-short"),
        pytest.param("long_short_mode", "sell", True, "long", id="close-long"),
        pytest.param("long_short_mode", "buy", True, "short", id="close-short"),
    ],
)
def test_pos_side(pos_mode: str | None, side: str, reduce_only: bool, expected: str) -> None:
    assert pos_side_for(pos_mode, side, reduce_only) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "length", "closes"), BAR_CASES)
def test_stale_after_two_bars_of_any_length(name: str, length: int | None, closes: datetime | None) -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    if length is None:  # no fixed length: not a timeframe the gateway serves
        with pytest.raises(UnknownBar):
            is_stale(now, name, now)
        return
    two_bars = timedelta(milliseconds=2 * length)
    assert not is_stale(now - two_bars, name, now)
    assert is_stale(now - two_bars - timedelta(microseconds=1), name, now)


def test_stale_after_two_bars() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert not is_stale(now - timedelta(minutes=6), "3m", now)
    assert is_stale(now - timedelta(minutes=6, seconds=1), "3m", now)
    assert not is_stale(now - timedelta(hours=7), "4H", now)
    assert is_stale(None, "4H", now)


def test_exit_plan_merge_keeps_omitted_fields() -> None:
    old = {"take_profit": "70000", "stop_loss": "55000", "invalidation_condition": "x"}
    assert merged_exit_plan(old, None, Decimal("58000.0"), None) == {**old, "stop_loss": "58000"}
    with pytest.raises(InvalidArgument, match="at least one"):
        merged_exit_plan(old, None, None, None)


def test_exit_plan_merge_removes_a_leg_given_as_none() -> None:
    old = {"take_profit": "70000", "stop_loss": "55000", "version": 3}
    assert merged_exit_plan(old, REMOVE, None, None) == {"stop_loss": "55000", "version": 3}


@pytest.mark.parametrize(
    ("side", "given", "refusal"),
    [
        pytest.param(
            "long",
            {"stop_loss": "61000"},
            "stop_loss 61000 is above the mark 60500: a long's stop must be below the mark.",
            id="long-stop-above-the-mark",
        ),
        pytest.param(
            "long",
            {"stop_loss": "60500"},
            "stop_loss 60500 is at the mark 60500: a long's stop must be below the mark.",
            id="long-stop-at-the-mark-would-fire-at-once",
        ),
        pytest.param(
            "short",
            {"take_profit": "61000"},
            "take_profit 61000 is above the mark 60500: a short's take-profit must be below the mark.",
            id="short-take-profit-above-the-mark",
        ),
        pytest.param(
            "short",
            {"stop_loss": "59000.15"},
            "stop_loss 59000.15 is not a multiple of the tick size 0.1 for BTC-USDT-SWAP; "
            "use 59000.1 or 59000.2.",
            id="off-the-tick-grid",
        ),
        pytest.param("long", {"take_profit": "70000", "stop_loss": "59000"}, None, id="long-both-fine"),
        pytest.param("short", {"take_profit": "59000", "stop_loss": "62000"}, None, id="short-both-fine"),
    ],
)
def test_exit_triggers_against_the_mark_and_the_tick(
    side: Direction, given: dict[str, str], refusal: str | None
) -> None:
    legs = {k: Decimal(v) for k, v in given.items()}
    if refusal is None:
        check_exit_triggers(legs, side, Decimal(60500), BTC)
        return
    with pytest.raises(InvalidArgument) as info:
        check_exit_triggers(legs, side, Decimal(60500), BTC)
    assert str(info.value) == refusal


def test_exit_triggers_need_a_mark() -> None:
    with pytest.raises(InvalidArgument, match="No mark price is known"):
        check_exit_triggers({"stop_loss": Decimal(59000)}, "long", None, BTC)
    check_exit_triggers({}, "long", None, BTC)  # only words changed: nothing to check


@pytest.mark.parametrize(
    ("side", "tp", "sl"),
    [
        pytest.param("long", "55000", "60000", id="long-tp-below-sl"),
        pytest.param("short", "65000", "60000", id="short-tp-above-sl"),
    ],
)
def test_exit_plan_direction(side: str, tp: str, sl: str) -> None:
    with pytest.raises(InvalidArgument, match="take_profit"):
        check_exit_plan({"take_profit": tp, "stop_loss": sl}, side)


@pytest.mark.parametrize(("weight_sum", "quantity", "expected"), CONFIDENCE_CASES)
def test_average_confidence_text(weight_sum: str, quantity: str, expected: str | None) -> None:
    assert confidence_text(weight_sum, quantity) == expected
