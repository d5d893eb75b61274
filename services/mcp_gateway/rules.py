"""The gateway's pure core: trade checks, position slots, staleness, PnL. No I/O, no clock.

Every refusal is an `InvalidArgument` whose text tells the model what was wrong and what is
allowed, with the numbers it needs to correct itself. The order rules themselves are
`shared.instruments.order_violations`; this module words them and adds the server's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from services.mcp_gateway.errors import InvalidArgument
from shared.bars import UnknownBar, bar_ms
from shared.instruments import MIN_LEVERAGE, InstrumentSpec, Violation, is_multiple, order_violations
from shared.money import Q2, average_confidence, quantize
from shared.money import plain_decimal as fmt
from shared.types import Direction, OrderType, PosMode, PosSide, Side


@dataclass(frozen=True)
class Limits:
    max_leverage: Decimal
    max_notional_usdt: Decimal


@dataclass(frozen=True)
class TradeRequest:
    symbol: str
    side: Side
    size: Decimal
    leverage: Decimal
    confidence: Decimal
    order_type: OrderType
    price: Decimal | None
    reduce_only: bool


def unknown_symbol(symbol: str, known: list[str]) -> InvalidArgument:
    return InvalidArgument(
        f"Unknown symbol {symbol!r}. Known symbols: {', '.join(sorted(known)) or 'none loaded yet'}."
    )


def _words(v: Violation, inst: InstrumentSpec, limits: Limits) -> str:
    """An order violation as the model reads it: what is wrong, and what would be allowed."""
    value = Decimal(0) if v.value is None else v.value
    limit = Decimal(0) if v.limit is None else v.limit
    unit = f"1 contract = {fmt(inst.contract_size)} {inst.base_asset}"
    match v.kind:
        case "not_live":
            return f"{inst.symbol} is not tradable now (OKX state: {inst.status})."
        case "below_min_size":
            return (
                f"size {fmt(value)} is below the minimum {fmt(limit)} contracts for "
                f"{inst.symbol} (size is in contracts; {unit})."
            )
        case "not_lot_multiple":
            return (
                f"size {fmt(value)} is not a multiple of the lot size {fmt(limit)} for "
                f"{inst.symbol}; use {_neighbours(value, limit)} ({unit})."
            )
        case "leverage_out_of_range":
            return (
                f"leverage {fmt(value)} is outside the allowed range {fmt(MIN_LEVERAGE)} to {fmt(limit)} for "
                f"{inst.symbol} (instrument maximum {fmt(inst.max_leverage)}, "
                f"server maximum {fmt(limits.max_leverage)})."
            )
        case "price_on_market_order":
            return "price is only for limit orders; omit it for a market order."
        case "price_missing":
            return "a limit order needs price (> 0, a multiple of the tick size)."
        case "price_not_positive":
            return f"price must be > 0; got {fmt(value)}."
        case "not_tick_multiple":
            return (
                f"price {fmt(value)} is not a multiple of the tick size {fmt(limit)} for "
                f"{inst.symbol}; use {_neighbours(value, limit)}."
            )
        case "pos_side_for_mode":  # not reached: the gateway derives posSide from the mode
            return "the order's position side does not match the account's position mode."


def _neighbours(value: Decimal, step: Decimal) -> str:
    """The multiples of step either side of value: "60000 or 60000.1"."""
    below = (value // step) * step
    return f"{fmt(below)} or {fmt(below + step)}"


def check_order(req: TradeRequest, inst: InstrumentSpec, limits: Limits, pos_mode: PosMode | None) -> None:
    """Refuse the first rule of the instrument the order breaks (leverage capped by the server)."""
    violations = order_violations(
        inst,
        size=req.size,
        leverage=req.leverage,
        order_type=req.order_type,
        price=req.price,
        pos_mode=pos_mode,
        pos_side=pos_side_for(pos_mode, req.side, req.reduce_only),
        leverage_cap=limits.max_leverage,
    )
    if violations:
        raise InvalidArgument(_words(violations[0], inst, limits))


def notional(size: Decimal, inst: InstrumentSpec, price: Decimal) -> Decimal:
    return size * inst.contract_size * price


def check_notional(
    req: TradeRequest, inst: InstrumentSpec, limits: Limits, mark: Decimal | None
) -> Decimal | None:
    """The order's notional in USDT; reduce-only orders are exempt (closing is always allowed)."""
    price = req.price if req.price is not None else mark
    if price is None:
        if req.reduce_only:
            return None
        raise InvalidArgument(
            f"No market price is known for {req.symbol} yet, so the notional limit cannot be "
            "checked; retry shortly or place a limit order with a price."
        )
    value = notional(req.size, inst, price)
    if not req.reduce_only and value > limits.max_notional_usdt:
        largest = (limits.max_notional_usdt / (inst.contract_size * price) / inst.lot_sz).to_integral_value(
            rounding=ROUND_DOWN
        ) * inst.lot_sz
        raise InvalidArgument(
            f"notional {fmt(quantize(value, Q2))} USDT (size {fmt(req.size)} x "
            f"{fmt(inst.contract_size)} {inst.base_asset} x price {fmt(price)}) exceeds the "
            f"maximum {fmt(limits.max_notional_usdt)} USDT per order; the largest allowed size at "
            f"this price is {fmt(largest)} contracts."
        )
    return value


def check_trade(
    req: TradeRequest, inst: InstrumentSpec, limits: Limits, mark: Decimal | None, pos_mode: PosMode | None
) -> Decimal | None:
    """Validate a trade against the instrument and the server limits; return its notional."""
    check_order(req, inst, limits, pos_mode)
    return check_notional(req, inst, limits, mark)


def pos_side_for(pos_mode: PosMode | None, side: Side, reduce_only: bool) -> PosSide:
    """OKX posSide: `net` in net mode; in long/short mode the slot the order opens or closes."""
    if pos_mode != "long_short_mode":
        return "net"
    opens_long = side == "buy"
    return "long" if opens_long != reduce_only else "short"


def is_stale(latest: datetime | None, timeframe: str, now: datetime) -> bool:
    """Stale: no candle, or the newest closed candle is older than two bars."""
    if latest is None:
        return True
    length = bar_ms(timeframe)
    if length is None:
        raise UnknownBar(timeframe)  # not a Timeframe: the tool's input schema refuses it
    return now - latest > timedelta(milliseconds=2 * length)


def confidence_text(weight_sum: str, quantity: str) -> str | None:
    """The average confidence of a position from the exact texts of its
    `confidence_weight_sum` and `confidence_quantity`: the figure the ledger will store as
    the closed position's `average_confidence`."""
    value = average_confidence(Decimal(weight_sum), Decimal(quantity))
    return None if value is None else fmt(value)


REMOVE = "none"  # update_exit_plan's value that removes a leg


def merged_exit_plan(
    old: dict[str, Any] | None,
    take_profit: Decimal | str | None,
    stop_loss: Decimal | str | None,
    invalidation_condition: str | None,
) -> dict[str, Any]:
    """The plan after an update: given fields replace the old ones, a leg given as "none" is
    removed, omitted fields are kept. The version is the caller's."""
    if take_profit is None and stop_loss is None and invalidation_condition is None:
        raise InvalidArgument(
            "Give at least one of take_profit, stop_loss, invalidation_condition; "
            f'omitted fields keep their current value, "{REMOVE}" removes a leg.'
        )
    plan = dict(old or {})
    for key, value in (
        ("take_profit", take_profit),
        ("stop_loss", stop_loss),
        ("invalidation_condition", invalidation_condition),
    ):
        if value == REMOVE and key != "invalidation_condition":
            plan.pop(key, None)
        elif value is not None:
            plan[key] = fmt(value) if isinstance(value, Decimal) else value
    return plan


def plan_legs(plan: dict[str, Any] | None) -> tuple[Decimal | None, Decimal | None]:
    """A stored plan's (take_profit, stop_loss) as decimals."""
    plan = plan or {}
    tp, sl = plan.get("take_profit"), plan.get("stop_loss")
    return (None if tp is None else Decimal(str(tp))), (None if sl is None else Decimal(str(sl)))


_LEG_WORDS = {"take_profit": "take-profit", "stop_loss": "stop"}


def check_exit_triggers(
    given: dict[str, Decimal], side: Direction, mark: Decimal | None, inst: InstrumentSpec
) -> None:
    """Each leg given lies on the tick grid and on its side of the mark: a trigger at or past
    the mark would fire at once (OKX refuses it, 51277-51308). Triggers follow the mark price."""
    for name, price in given.items():
        if not is_multiple(price, inst.tick_sz):
            raise InvalidArgument(
                f"{name} {fmt(price)} is not a multiple of the tick size {fmt(inst.tick_sz)} for "
                f"{inst.symbol}; use {_neighbours(price, inst.tick_sz)}."
            )
    if given and mark is None:
        raise InvalidArgument(
            f"No mark price is known for {inst.symbol} yet, so {' and '.join(given)} cannot be "
            "checked against it; retry shortly."
        )
    for name, price in given.items():
        assert mark is not None
        above = (name == "take_profit") == (side == "long")
        if (price <= mark) if above else (price >= mark):
            where = "at" if price == mark else ("below" if above else "above")
            must = "above" if above else "below"
            raise InvalidArgument(
                f"{name} {fmt(price)} is {where} the mark {fmt(mark)}: a {side}'s "
                f"{_LEG_WORDS[name]} must be {must} the mark."
            )


def check_plan_order(plan_given: bool, reduce_only: bool) -> None:
    """OKX refuses TP/SL on a reduce-only order (51333)."""
    if plan_given and reduce_only:
        raise InvalidArgument(
            "exit_plan cannot go with reduce_only=true (OKX refuses TP/SL on a reduce-only "
            "order); change the position's plan with update_exit_plan."
        )


def check_exit_plan(plan: dict[str, Any], side: str) -> None:
    """A long takes profit above its stop; a short below it."""
    tp, sl = plan.get("take_profit"), plan.get("stop_loss")
    if tp is None or sl is None:
        return
    tp_d, sl_d = Decimal(str(tp)), Decimal(str(sl))
    if side == "long" and tp_d <= sl_d:
        raise InvalidArgument(
            f"For a long position take_profit ({fmt(tp_d)}) must be above stop_loss ({fmt(sl_d)})."
        )
    if side == "short" and tp_d >= sl_d:
        raise InvalidArgument(
            f"For a short position take_profit ({fmt(tp_d)}) must be below stop_loss ({fmt(sl_d)})."
        )
