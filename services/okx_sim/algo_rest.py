"""REST handlers of OKX's TP/SL algo orders: order-algo, amend-algos, cancel-algos, queries."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import shapes
from .algo_rules import AlgoAmend, AlgoRequest, LegEdit
from .models import Account, AlgoOrder
from .params import (
    BODY_LIST,
    CL_ID,
    BatchError,
    ItemError,
    Params,
    boolean,
    decimal,
    get,
    inst,
    integer,
    item_error,
    leg,
    limit,
)
from .protocol import OkxError, Reject

if TYPE_CHECKING:
    from .core import SimCore

Data = list[Any]
ORD_TYPES = ("conditional", "oco")
HISTORY_STATES = ("effective", "canceled", "order_failed")
MAX_CANCEL = 10


def place_algo(core: SimCore, p: Params, key: str) -> Data:
    inst_id = inst(core, p)
    td_mode, side = get(p, "tdMode", True), get(p, "side", True)
    ord_type = get(p, "ordType", True)
    cl_id, tag = get(p, "algoClOrdId"), get(p, "tag")
    for name, ok in (("tdMode", td_mode in ("cross", "isolated")),
                     ("side", side in ("buy", "sell")),
                     ("algoClOrdId", not cl_id or CL_ID.match(cl_id) is not None),
                     ("tag", len(tag) <= 16)):
        if not ok:
            raise OkxError("51000", name)
    request = AlgoRequest(inst_id, td_mode, side, ord_type, decimal(p, "sz"),
                          get(p, "closeFraction"), get(p, "posSide"), boolean(p, "reduceOnly"),
                          cl_id, tag, leg(p, "tp"), leg(p, "sl"))
    item = {"algoId": "", "clOrdId": "", "algoClOrdId": cl_id, "tag": tag}
    try:
        core.refresh()
        algo, events = core.exchange.algos.place(key, request)
    except Reject as err:
        raise item_error(err, item) from None
    core.publish(events)
    return [{**item, "algoId": algo.algo_id, "sCode": "0", "sMsg": ""}]


def _edit(p: Params, kind: str) -> LegEdit:
    return LegEdit(decimal(p, f"new{kind}TriggerPx"), decimal(p, f"new{kind}OrdPx"),
                   get(p, f"new{kind}TriggerPxType"))


def amend_algo(core: SimCore, p: Params, key: str) -> Data:
    inst_id = inst(core, p)
    algo_id, cl_id, req_id = get(p, "algoId"), get(p, "algoClOrdId"), get(p, "reqId")
    if not algo_id and not cl_id:
        raise OkxError("50015", msg="Either parameter algoId or algoClOrdId is required.")
    change = AlgoAmend(decimal(p, "newSz"), _edit(p, "Tp"), _edit(p, "Sl"), req_id)
    item = {"algoId": algo_id, "algoClOrdId": cl_id, "reqId": req_id}
    book = core.exchange.algos
    try:
        core.refresh()
        algo, events = book.amend(key, inst_id, algo_id, cl_id, change)
    except Reject as err:
        if boolean(p, "cxlOnFail"):
            _cancel_quietly(core, key, inst_id, algo_id, cl_id)
        raise item_error(err, item) from None
    core.publish(events)
    return [{**item, "algoId": algo.algo_id, "algoClOrdId": algo.algo_cl_ord_id,
             "sCode": "0", "sMsg": ""}]


def _cancel_quietly(core: SimCore, key: str, inst_id: str, algo_id: str, cl_id: str) -> None:
    try:
        _, events = core.exchange.algos.cancel(key, inst_id, algo_id, cl_id)
    except Reject:
        return
    core.publish(events)


def cancel_algos(core: SimCore, p: Params, key: str) -> Data:
    items = p.get(BODY_LIST, [p])
    if not items or len(items) > MAX_CANCEL or not all(isinstance(i, dict) for i in items):
        raise OkxError("51000", "algoId")
    results = [_cancel_one(core, item, key) for item in items]
    failed = sum(1 for r in results if r["sCode"] != "0")
    if failed == len(results):
        raise ItemError(results[0]) if len(results) == 1 else BatchError(results)
    if failed:
        raise BatchError(results, partial=True)
    return results


def _cancel_one(core: SimCore, item: Params, key: str) -> dict[str, str]:
    inst_id = inst(core, item)
    algo_id, cl_id = get(item, "algoId"), get(item, "algoClOrdId")
    out = {"algoId": algo_id, "algoClOrdId": "", "clOrdId": "", "tag": "", "sCode": "0",
           "sMsg": ""}
    try:
        _, events = core.exchange.algos.cancel(key, inst_id, algo_id, cl_id)
    except Reject as err:
        return {**out, "sCode": err.code, "sMsg": err.msg}
    core.publish(events)
    return out


def _ord_types(p: Params) -> set[str]:
    wanted = set(get(p, "ordType", True).split(","))
    if len(wanted) > 1 and wanted != set(ORD_TYPES):  # OKX lets only these two be combined
        raise OkxError("51000", "ordType")
    return wanted  # other algo types are valid on OKX; the sim has none of them


def _query(core: SimCore, p: Params, key: str, keep: Callable[[AlgoOrder], bool]) -> Data:
    types = _ord_types(p)
    inst_id, algo_id = inst(core, p, False), get(p, "algoId")
    inst_type = get(p, "instType")
    after, before = integer(p, "after"), integer(p, "before")
    acct: Account = core.exchange.accounts[key]
    found = sorted((a for a in acct.algos.values() if keep(a) and a.ord_type in types
                    and (not inst_id or a.inst_id == inst_id)
                    and (not algo_id or a.algo_id == algo_id)
                    and inst_type in ("", "SWAP")
                    and (after is None or int(a.algo_id) < after)
                    and (before is None or int(a.algo_id) > before)),
                   key=lambda a: int(a.algo_id))
    n = limit(p, 100)
    chosen = found[:n] if before is not None and after is None else found[-n:]
    return [shapes.algo(a) for a in reversed(chosen)]


def pending(core: SimCore, p: Params, key: str) -> Data:
    return _query(core, p, key, lambda a: a.is_live)


def history(core: SimCore, p: Params, key: str) -> Data:
    state, algo_id = get(p, "state"), get(p, "algoId")
    if not state and not algo_id:
        raise OkxError("50014", "state")
    if state and state not in HISTORY_STATES:
        raise OkxError("51000", "state")
    return _query(core, p, key, lambda a: a.state in HISTORY_STATES
                  and (not state or a.state == state))


def details(core: SimCore, p: Params, key: str) -> Data:
    algo_id, cl_id = get(p, "algoId"), get(p, "algoClOrdId")
    if not algo_id and not cl_id:
        raise OkxError("50015", msg="Either parameter algoId or algoClOrdId is required.")
    acct = core.exchange.accounts[key]
    algo = acct.algos.get(algo_id) if algo_id else next(
        (a for a in reversed(acct.algos.values()) if a.algo_cl_ord_id == cl_id), None)
    if algo is None or algo.state == "attached":
        raise OkxError("51603", msg="Order does not exist")
    return [shapes.algo(algo)]


ALGO_ROUTES: dict[tuple[str, str], tuple[Callable[[SimCore, Params, str], Data], bool]] = {
    ("POST", "/api/v5/trade/order-algo"): (place_algo, True),
    ("POST", "/api/v5/trade/amend-algos"): (amend_algo, True),
    ("POST", "/api/v5/trade/cancel-algos"): (cancel_algos, True),
    ("GET", "/api/v5/trade/order-algo"): (details, True),
    ("GET", "/api/v5/trade/orders-algo-pending"): (pending, True),
    ("GET", "/api/v5/trade/orders-algo-history"): (history, True),
}
