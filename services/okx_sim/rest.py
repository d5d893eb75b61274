"""REST handlers of OKX v5: each takes (core, params, api key) and returns the `data` list."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import shapes
from .algo_rest import ALGO_ROUTES
from .bars import parse_bar
from .models import Bill, Fill, OrderRequest
from .params import Params, attach_legs, attached
from .params import decimal as _decimal
from .params import get as _get
from .params import inst as _inst
from .params import integer as _int
from .params import item_error as _item_error
from .params import limit as _limit
from .protocol import OkxError, Reject

if TYPE_CHECKING:
    from .core import SimCore

Data = list[Any]
Handler = Callable[["SimCore", Params, str], Data]
R = TypeVar("R", Bill, Fill)
_CL_ORD_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


# --- public -----------------------------------------------------------------------------
def instruments(core: SimCore, p: Params, key: str) -> Data:
    inst_type = _get(p, "instType", True)
    inst_id = _inst(core, p, False)
    family = _get(p, "instFamily") or _get(p, "uly")
    if inst_type != "SWAP":
        return []
    return [shapes.instrument(s) for s in core.specs.values()
            if (not inst_id or s.inst_id == inst_id) and (not family or s.family == family)]


def public_time(core: SimCore, p: Params, key: str) -> Data:
    return [{"ts": str(core.now())}]


def _candles(core: SimCore, p: Params, maximum: int) -> Data:
    inst_id = _inst(core, p)
    try:
        bar = parse_bar(_get(p, "bar") or "1m")
    except ValueError:
        raise OkxError("51000", "bar") from None
    found = core.market.candles(inst_id, bar, core.now(), _int(p, "after"), _int(p, "before"),
                                _limit(p, maximum))
    return [shapes.candle_row(c) for c in found]


def candles(core: SimCore, p: Params, key: str) -> Data:
    return _candles(core, p, 300)


def history_candles(core: SimCore, p: Params, key: str) -> Data:
    return _candles(core, p, 100)


def ticker(core: SimCore, p: Params, key: str) -> Data:
    inst_id = _inst(core, p)
    return [shapes.ticker(core.market.ticker(inst_id, core.now()))]


def tickers(core: SimCore, p: Params, key: str) -> Data:
    _get(p, "instType", True)
    now = core.now()
    return [shapes.ticker(core.market.ticker(s, now)) for s in core.specs]


def funding_rate(core: SimCore, p: Params, key: str) -> Data:
    inst_id, now = _inst(core, p), core.now()
    return [shapes.funding_rate(inst_id, core.market.funding(inst_id, now), now)]


def mark_price(core: SimCore, p: Params, key: str) -> Data:
    inst_id, now = _inst(core, p, False), core.now()
    syms = [inst_id] if inst_id else list(core.specs)
    return [shapes.mark_price(s, core.market.mark(s, now), now) for s in syms]


def open_interest(core: SimCore, p: Params, key: str) -> Data:
    inst_id, now = _inst(core, p, False), core.now()
    syms = [inst_id] if inst_id else list(core.specs)
    m = core.market
    return [shapes.open_interest(core.specs[s], m.open_interest(s, now), m.last(s, now), now)
            for s in syms]


# --- account ----------------------------------------------------------------------------
def account_config(core: SimCore, p: Params, key: str) -> Data:
    acct = core.exchange.accounts[key]
    return [{"uid": acct.uid, "mainUid": acct.uid, "acctLv": "2", "posMode": acct.pos_mode,
             "autoLoan": False, "greeksType": "PA", "level": "Lv1", "levelTmp": "",
             "ctIsoMode": "automatic", "mgnIsoMode": "automatic", "spotOffsetType": "",
             "roleType": "0", "traderInsts": [], "spotRoleType": "0", "spotTraderInsts": [],
             "opAuth": "0", "kycLv": "2", "label": "okx-sim", "ip": "",
             "perm": "read_only,trade", "liquidationGear": "-1", "enableSpotBorrow": False,
             "spotBorrowAutoRepay": False, "type": "0", "settleCcy": "USDT",
             "settleCcyList": ["USDT"]}]


def set_position_mode(core: SimCore, p: Params, key: str) -> Data:
    mode = _get(p, "posMode", True)
    if mode not in ("net_mode", "long_short_mode"):
        raise OkxError("51000", "posMode")
    _top_level(lambda: core.exchange.set_position_mode(key, mode))
    return [{"posMode": mode}]


def set_leverage(core: SimCore, p: Params, key: str) -> Data:
    lever = _decimal(p, "lever", True)
    mgn_mode = _get(p, "mgnMode", True)
    if mgn_mode not in ("cross", "isolated"):
        raise OkxError("51000", "mgnMode")
    inst_id = _inst(core, p)
    if lever is None or lever != lever.to_integral_value() or lever < 1:
        raise OkxError("51000", "lever")
    _top_level(lambda: core.exchange.set_leverage(key, inst_id, int(lever)))
    return [{"lever": str(int(lever)), "mgnMode": mgn_mode, "instId": inst_id,
             "posSide": _get(p, "posSide")}]


def leverage_info(core: SimCore, p: Params, key: str) -> Data:
    mgn_mode = _get(p, "mgnMode", True)
    inst_id = _inst(core, p)
    return [{"instId": inst_id, "mgnMode": mgn_mode, "posSide": "net", "ccy": "",
             "lever": str(core.exchange.leverage(key, inst_id))}]


def balance(core: SimCore, p: Params, key: str) -> Data:
    acct = core.exchange.accounts[key]
    body = shapes.balance(acct, core.exchange.account_view(key))
    ccys = _get(p, "ccy").split(",") if _get(p, "ccy") else ["USDT"]
    if "USDT" not in ccys:
        body["details"] = []
    return [body]


def positions(core: SimCore, p: Params, key: str) -> Data:
    inst_type = _get(p, "instType")
    wanted = set(_get(p, "instId").split(",")) - {""}
    if inst_type and inst_type != "SWAP":
        return []
    ex = core.exchange
    views = sorted(ex.account_view(key).positions, key=lambda v: -v.position.c_time)
    return [shapes.position(v, v.position, ex.specs[v.position.inst_id], v.mark,
                            ex.last[v.position.inst_id], ex.mmr_rate)
            for v in views if not wanted or v.position.inst_id in wanted]


def bills(core: SimCore, p: Params, key: str) -> Data:
    found = [b for b in core.exchange.accounts[key].bills
             if (not _get(p, "type") or b.type == _get(p, "type"))
             and (not _get(p, "subType") or b.sub_type == _get(p, "subType"))
             and (not _get(p, "instId") or b.inst_id == _get(p, "instId"))
             and _get(p, "instType") in ("", "SWAP") and _get(p, "ccy") in ("", "USDT")]
    return [shapes.bill(b) for b in _page(found, p, lambda b: b.bill_id, lambda b: b.ts)]


# --- trade ------------------------------------------------------------------------------
def place_order(core: SimCore, p: Params, key: str) -> Data:
    inst_id = _get(p, "instId", True)
    td_mode = _get(p, "tdMode", True)
    side = _get(p, "side", True)
    ord_type = _get(p, "ordType", True)
    sz = _decimal(p, "sz", True)
    cl_ord_id, tag = _get(p, "clOrdId"), _get(p, "tag")
    for name, ok in (("tdMode", td_mode in ("cross", "isolated")),
                     ("side", side in ("buy", "sell")),
                     ("clOrdId", not cl_ord_id or _CL_ORD_ID.match(cl_ord_id) is not None),
                     ("tag", len(tag) <= 16)):
        if not ok:
            raise OkxError("51000", name)
    reduce_only = p.get("reduceOnly") in (True, "true")
    assert sz is not None
    request = OrderRequest(inst_id, side, ord_type, sz, td_mode, _decimal(p, "px"),
                           _get(p, "posSide"), reduce_only, cl_ord_id, tag, attach_legs(p))
    ts = str(core.now())
    try:
        core.refresh()
        order, events = core.exchange.place_order(key, request)
    except Reject as err:
        raise _item_error(err, {"ordId": "", "clOrdId": cl_ord_id, "tag": tag, "ts": ts}) \
            from None
    core.publish(events)
    return [{"ordId": order.ord_id, "clOrdId": cl_ord_id, "tag": tag, "ts": ts,
             "sCode": "0", "sMsg": "Order placed", "subCode": ""}]


def cancel_order(core: SimCore, p: Params, key: str) -> Data:
    inst_id = _get(p, "instId", True)
    ord_id, cl_ord_id = _get(p, "ordId"), _get(p, "clOrdId")
    if not ord_id and not cl_ord_id:
        raise OkxError("50015", msg="Either parameter ordId or clOrdId is required.")
    ts = str(core.now())
    try:
        order, events = core.exchange.cancel_order(key, inst_id, ord_id, cl_ord_id)
    except Reject as err:
        raise _item_error(err, {"ordId": ord_id, "clOrdId": cl_ord_id, "ts": ts}) from None
    core.publish(events)
    return [{"ordId": order.ord_id, "clOrdId": order.cl_ord_id, "ts": ts, "sCode": "0",
             "sMsg": ""}]


def get_order(core: SimCore, p: Params, key: str) -> Data:
    inst_id = _inst(core, p)
    ord_id, cl_ord_id = _get(p, "ordId"), _get(p, "clOrdId")
    acct = core.exchange.accounts[key]
    order = acct.orders.get(ord_id) if ord_id else next(
        (o for o in reversed(acct.orders.values()) if cl_ord_id and o.cl_ord_id == cl_ord_id),
        None)
    if order is None or order.inst_id != inst_id:
        raise OkxError("51603", msg="Order does not exist")
    last = next((f for f in reversed(acct.fills) if f.ord_id == order.ord_id), None)
    return [shapes.order(order, last, core.exchange.last[inst_id], attached(acct, order))]


def orders_pending(core: SimCore, p: Params, key: str) -> Data:
    inst_id = _inst(core, p, False)
    acct = core.exchange.accounts[key]
    ex = core.exchange
    return [shapes.order(o, None, ex.last[o.inst_id], attached(acct, o))
            for o in reversed(acct.orders.values())
            if o.is_open and (not inst_id or o.inst_id == inst_id)]


def fills(core: SimCore, p: Params, key: str) -> Data:
    inst_id = _get(p, "instId")
    ord_id = _get(p, "ordId")
    found = [f for f in core.exchange.accounts[key].fills
             if (not inst_id or f.inst_id == inst_id) and (not ord_id or f.ord_id == ord_id)
             and _get(p, "instType") in ("", "SWAP")]
    return [shapes.fill(f) for f in _page(found, p, lambda f: f.bill_id, lambda f: f.ts)]


def fills_history(core: SimCore, p: Params, key: str) -> Data:
    _get(p, "instType", True)
    return fills(core, p, key)


def _page(rows: Sequence[R], p: Params, bill_id: Callable[[R], str], ts: Callable[[R], int]
          ) -> list[R]:
    """OKX paging by billId: newest first; `after` = older than, `before` = newer than."""
    after, before = _int(p, "after"), _int(p, "before")
    begin, end = _int(p, "begin"), _int(p, "end")
    limit = _limit(p, 100)
    kept = [r for r in rows
            if (after is None or int(bill_id(r)) < after)
            and (before is None or int(bill_id(r)) > before)
            and (begin is None or ts(r) >= begin) and (end is None or ts(r) <= end)]
    kept.sort(key=lambda r: int(bill_id(r)))
    # with only `before`, return the records right after the cursor (forward paging)
    chosen = kept[:limit] if before is not None and after is None else kept[-limit:]
    return chosen[::-1]


def _top_level(action: Callable[[], None]) -> None:
    try:
        action()
    except Reject as err:
        raise OkxError(err.code, msg=err.msg) from None


# (method, path) -> (handler, private)
ROUTES: dict[tuple[str, str], tuple[Handler, bool]] = {
    ("GET", "/api/v5/public/instruments"): (instruments, False),
    ("GET", "/api/v5/public/time"): (public_time, False),
    ("GET", "/api/v5/public/funding-rate"): (funding_rate, False),
    ("GET", "/api/v5/public/mark-price"): (mark_price, False),
    ("GET", "/api/v5/public/open-interest"): (open_interest, False),
    ("GET", "/api/v5/market/candles"): (candles, False),
    ("GET", "/api/v5/market/history-candles"): (history_candles, False),
    ("GET", "/api/v5/market/ticker"): (ticker, False),
    ("GET", "/api/v5/market/tickers"): (tickers, False),
    ("GET", "/api/v5/account/config"): (account_config, True),
    ("POST", "/api/v5/account/set-position-mode"): (set_position_mode, True),
    ("POST", "/api/v5/account/set-leverage"): (set_leverage, True),
    ("GET", "/api/v5/account/leverage-info"): (leverage_info, True),
    ("GET", "/api/v5/account/balance"): (balance, True),
    ("GET", "/api/v5/account/positions"): (positions, True),
    ("GET", "/api/v5/account/bills"): (bills, True),
    ("GET", "/api/v5/account/bills-archive"): (bills, True),
    ("POST", "/api/v5/trade/order"): (place_order, True),
    ("POST", "/api/v5/trade/cancel-order"): (cancel_order, True),
    ("GET", "/api/v5/trade/order"): (get_order, True),
    ("GET", "/api/v5/trade/orders-pending"): (orders_pending, True),
    ("GET", "/api/v5/trade/fills"): (fills, True),
    ("GET", "/api/v5/trade/fills-history"): (fills_history, True),
    **ALGO_ROUTES,
}
