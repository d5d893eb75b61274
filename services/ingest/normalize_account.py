"""Pure normalizers of account data: orders (and the fills they carry), positions, balances,
REST fills, funding bills and instruments. Part of ingest's pure core (see normalize.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, get_args

from services.ingest import fields as f
from services.ingest.fields import POS_SIDES, SIDES, AccountRef, BadFrame, Json, build, redacted
from shared.instruments import InstrumentSpec
from shared.messages import (
    AlgoOrderUpdate,
    Balance,
    Event,
    ExchangePosition,
    Fill,
    FundingPayment,
    OrderPrice,
    OrderUpdate,
)
from shared.types import AlgoLeg, AlgoOrdType, AlgoState, TriggerPxType

FUNDING_BILL_TYPE = "8"
# REST fills have no `category`; OKX bill subTypes say which trades were forced.
_SUBTYPE_CATEGORY = {
    **{str(s): "partial_liquidation" for s in range(100, 104)},
    **{str(s): "full_liquidation" for s in range(104, 108)},
    **{str(s): "adl" for s in range(125, 129)},
}


def _account(a: AccountRef) -> dict[str, Any]:
    return {"account_id": a.account_id, "mode": a.mode}


def order_update(d: Json, a: AccountRef, received: datetime) -> OrderUpdate:
    """An orders-channel element as an order state change."""
    avg_px = f.decimal(d, "avgPx", required=False)
    return build(
        OrderUpdate, **_account(a), ts_event=f.req_time(d, "uTime"), ts_init=received,
        inst_id=f.inst_id(d), ord_id=f.ident(d, "ordId"),
        cl_ord_id=f.ident(d, "clOrdId", required=False), side=f.choice(d, "side", SIDES),
        pos_side=f.choice(d, "posSide", POS_SIDES, default="net"),
        ord_type=f.req_text(d, "ordType"), state=f.req_text(d, "state"),
        px=f.decimal(d, "px", required=False), sz=f.req_decimal(d, "sz"),
        acc_fill_sz=f.decimal(d, "accFillSz", required=False) or Decimal(0),
        avg_px=avg_px or None, lever=f.decimal(d, "lever", required=False) or None,
        category=f.text(d, "category", required=False) or "normal",
        reduce_only=bool(f.flag(d, "reduceOnly")),
        created_time=f.ms_time(d, "cTime", required=False),
        algo_id=f.ident(d, "algoId", required=False),
    )


def fill_from_order(d: Json, a: AccountRef, received: datetime) -> Fill | None:
    """The fill an orders-channel element carries (None when it has no tradeId)."""
    trade_id = f.ident(d, "tradeId", required=False)
    if trade_id is None:
        return None
    size = f.decimal(d, "fillSz", required=False)
    if not size:
        raise BadFrame("fill_without_size", trade_id)
    return build(
        Fill, **_account(a), ts_event=f.req_time(d, "fillTime"), ts_init=received,
        inst_id=f.inst_id(d), trade_id=trade_id, ord_id=f.ident(d, "ordId"),
        cl_ord_id=f.ident(d, "clOrdId", required=False), side=f.choice(d, "side", SIDES),
        pos_side=f.choice(d, "posSide", POS_SIDES, default="net"),
        fill_px=f.req_decimal(d, "fillPx"), fill_sz=size, fill_fee=f.req_decimal(d, "fillFee"),
        fill_fee_ccy=f.text(d, "fillFeeCcy", required=False) or "USDT",
        fill_pnl=f.decimal(d, "fillPnl", required=False),
        exec_type=f.text(d, "execType", required=False),
        category=f.text(d, "category", required=False) or "normal",
        lever=f.decimal(d, "lever", required=False) or None,
        ord_type=f.text(d, "ordType", required=False), reduce_only=f.flag(d, "reduceOnly"),
        algo_id=f.ident(d, "algoId", required=False), raw=redacted(d),
    )


def fill_from_rest(d: Json, a: AccountRef, received: datetime,
                   order: Json | None = None) -> Fill:
    """A GET /trade/fills(-history) row; `order` (GET /trade/order) adds lever/type/category."""
    o = order or {}
    sub_type = f.text(d, "subType", required=False) or ""
    category = (f.text(o, "category", required=False)
                or _SUBTYPE_CATEGORY.get(sub_type, "normal"))
    return build(
        Fill, **_account(a), ts_event=f.ms_time(d, "fillTime", required=False)
        or f.req_time(d, "ts"), ts_init=received, inst_id=f.inst_id(d),
        trade_id=f.ident(d, "tradeId"), ord_id=f.ident(d, "ordId"),
        cl_ord_id=f.ident(d, "clOrdId", required=False), side=f.choice(d, "side", SIDES),
        pos_side=f.choice(d, "posSide", POS_SIDES, default="net"),
        fill_px=f.req_decimal(d, "fillPx"), fill_sz=f.req_decimal(d, "fillSz"),
        fill_fee=f.req_decimal(d, "fee"), fill_fee_ccy=f.text(d, "feeCcy", required=False)
        or "USDT", fill_pnl=f.decimal(d, "fillPnl", required=False),
        exec_type=f.text(d, "execType", required=False), category=category,
        lever=f.decimal(o, "lever", required=False) or None,
        ord_type=f.text(o, "ordType", required=False), reduce_only=f.flag(o, "reduceOnly"),
        algo_id=f.ident(o, "algoId", required=False), raw=redacted(d),
    )


def exchange_position(d: Json, a: AccountRef, received: datetime) -> ExchangePosition:
    """A positions element (the exchange's view, for reconciliation and risk figures)."""
    return build(
        ExchangePosition, **_account(a), ts_event=f.ms_time(d, "uTime", required=False)
        or f.req_time(d, "pTime"), ts_init=received, inst_id=f.inst_id(d),
        pos_side=f.choice(d, "posSide", POS_SIDES, default="net"), pos=f.req_decimal(d, "pos"),
        avg_px=f.decimal(d, "avgPx", required=False), upl=f.decimal(d, "upl", required=False),
        lever=f.decimal(d, "lever", required=False),
        liq_px=f.decimal(d, "liqPx", required=False),
        margin=f.decimal(d, "margin", required=False) or f.decimal(d, "imr", required=False),
        mark_px=f.decimal(d, "markPx", required=False),
        mgn_mode=f.text(d, "mgnMode", required=False) or "cross",
        pos_id=f.ident(d, "posId", required=False),
    )


def balances(d: Json, a: AccountRef, received: datetime) -> list[Balance]:
    """The USDT balance of an account element (other currencies are not ours)."""
    details = d.get("details")
    if not isinstance(details, list):
        raise BadFrame("missing_field", "details")
    out = []
    for detail in details:
        if not isinstance(detail, dict):
            raise BadFrame("bad_field", "details")
        if detail.get("ccy") != "USDT":
            continue
        out.append(build(
            Balance, **_account(a), ts_event=f.ms_time(detail, "uTime", required=False)
            or f.req_time(d, "uTime"), ts_init=received, ccy="USDT",
            cash_bal=f.req_decimal(detail, "cashBal"), avail_bal=f.req_decimal(detail, "availBal"),
            frozen_bal=f.decimal(detail, "frozenBal", required=False) or Decimal(0),
            eq=f.decimal(detail, "eq", required=False),
            upl=f.decimal(detail, "upl", required=False),
        ))
    return out


ALGO_TYPES: tuple[AlgoOrdType, ...] = get_args(AlgoOrdType)
ALGO_STATES: tuple[AlgoState, ...] = get_args(AlgoState)
TRIGGER_TYPES: tuple[TriggerPxType, ...] = get_args(TriggerPxType)
LEGS: tuple[AlgoLeg, ...] = get_args(AlgoLeg)


def algo_order(d: Json, a: AccountRef, received: datetime) -> AlgoOrderUpdate:
    """An orders-algo element (or an orders-algo-pending/-history row) as an algo update."""
    return build(
        AlgoOrderUpdate, **_account(a), ts_event=f.req_time(d, "uTime"), ts_init=received,
        inst_id=f.inst_id(d), algo_id=f.ident(d, "algoId"),
        algo_cl_ord_id=f.ident(d, "algoClOrdId", required=False),
        ord_type=f.choice(d, "ordType", ALGO_TYPES), side=f.choice(d, "side", SIDES),
        pos_side=f.choice(d, "posSide", POS_SIDES, default="net"),
        state=f.choice(d, "state", ALGO_STATES), sz=f.decimal(d, "sz", required=False)
        or Decimal(0), close_fraction=f.decimal(d, "closeFraction", required=False) or None,
        reduce_only=bool(f.flag(d, "reduceOnly")), **_leg(d, "tp"), **_leg(d, "sl"),
        actual_side=f.choice(d, "actualSide", LEGS) if f.text(d, "actualSide", required=False)
        else None,
        actual_sz=f.decimal(d, "actualSz", required=False),
        ord_id=f.ident(d, "ordId", required=False),
        fail_code=f.text(d, "failCode", required=False) or None,
        req_id=f.ident(d, "reqId", required=False), created_time=f.ms_time(d, "cTime", required=False),
    )


def _leg(d: Json, leg: str) -> dict[str, Any]:
    """One leg's trigger price, trigger type and order price ("market" for OKX's -1)."""
    trigger = f.decimal(d, f"{leg}TriggerPx", required=False)
    if not trigger:  # "" or "0": the leg is not set
        return {}
    px = f.req_decimal(d, f"{leg}OrdPx")
    ord_px: OrderPrice = "market" if px == -1 else px
    kind = f.text(d, f"{leg}TriggerPxType", required=False) or "last"
    if kind not in TRIGGER_TYPES:
        raise BadFrame("bad_field", f"{leg}TriggerPxType")
    return {f"{leg}_trigger_px": trigger, f"{leg}_trigger_px_type": kind,
            f"{leg}_ord_px": ord_px}


def account_element(channel: str, d: Json, a: AccountRef, received: datetime) -> list[Event]:
    """Events of one element of a private channel push."""
    if channel == "orders":
        update = order_update(d, a, received)
        fill = fill_from_order(d, a, received)
        return [update] if fill is None else [fill, update]
    if channel == "positions":
        return [exchange_position(d, a, received)]
    if channel == "orders-algo":
        return [algo_order(d, a, received)]
    return list(balances(d, a, received))


def funding_payment(d: Json, a: AccountRef, received: datetime) -> FundingPayment:
    """A funding bill (type 8); `pnl` holds the amount, positive = received."""
    if f.text(d, "type") != FUNDING_BILL_TYPE:
        raise BadFrame("bad_field", "type")
    amount = f.decimal(d, "pnl", required=False)
    return build(
        FundingPayment, **_account(a), ts_event=f.req_time(d, "ts"), ts_init=received,
        inst_id=f.inst_id(d), pos_side=f.choice(d, "posSide", POS_SIDES, default="net"),
        bill_id=f.ident(d, "billId"),
        amount=amount if amount is not None else f.req_decimal(d, "balChg"),
    )


@dataclass(frozen=True)
class Listing:
    """A USDT-margined linear swap as stored in `instruments`: its contract specification and
    what else OKX lists for it."""

    spec: InstrumentSpec
    quote_asset: str
    settle_ccy: str
    ct_val_ccy: str | None
    raw: dict[str, Any]


def instrument(d: Json) -> Listing | None:
    """A /public/instruments SWAP row; None for swaps that are not linear USDT contracts."""
    symbol = f.inst_id(d)
    if d.get("settleCcy") != "USDT" or d.get("ctType") not in ("linear", None, ""):
        return None
    family = f.text(d, "instFamily", required=False) or symbol.removesuffix("-SWAP")
    base, _, quote = family.partition("-")
    values = {k: f.req_decimal(d, k) for k in ("ctVal", "ctMult", "lotSz", "minSz", "tickSz",
                                               "lever")}
    if any(v <= 0 for v in values.values()):
        raise BadFrame("invalid_value", symbol)
    spec = InstrumentSpec(
        symbol, base, values["ctVal"], values["ctMult"], values["lotSz"], values["minSz"],
        values["tickSz"], values["lever"], f.text(d, "state", required=False) or "live",
    )
    return Listing(spec, quote or "USDT", "USDT", f.text(d, "ctValCcy", required=False),
                   redacted(d))
