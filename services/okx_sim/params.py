"""Reading OKX request parameters, and the per-item refusal envelope (shared by the REST modules)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from .models import Account, AlgoOrder, Attach, Leg, Order
from .protocol import OkxError, Reject

if TYPE_CHECKING:
    from .core import SimCore

Params = dict[str, Any]
BODY_LIST = "__list__"  # where a JSON array body (cancel-algos) is handed to its handler
LIST_PATHS = frozenset({"/api/v5/trade/cancel-algos"})  # endpoints whose body is an array
CL_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


def get(params: Params, name: str, required: bool = False) -> str:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise OkxError("50014", name)
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise OkxError("51000", name)
    return str(value)


def integer(params: Params, name: str) -> int | None:
    text = get(params, name)
    if not text:
        return None
    if not text.lstrip("-").isdigit():
        raise OkxError("51000", name)
    return int(text)


def decimal(params: Params, name: str, required: bool = False) -> Decimal | None:
    text = get(params, name, required)
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise OkxError("51000", name) from None
    if not value.is_finite():
        raise OkxError("51000", name)
    return value


def inst(core: SimCore, params: Params, required: bool = True) -> str:
    inst_id = get(params, "instId", required)
    if inst_id and inst_id not in core.specs:
        raise OkxError("51001", msg="Instrument ID does not exist")
    return inst_id


def limit(params: Params, maximum: int, default: int = 100) -> int:
    limit = integer(params, "limit")
    if limit is None:
        return default
    if limit < 1:
        raise OkxError("51000", "limit")
    return min(limit, maximum)


class ItemError(Exception):
    """An operation refused per item: `{"code":"1","msg":"All operations failed","data":[…]}`."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.item = item
        super().__init__(item["sCode"])


def item_error(err: Reject, item: dict[str, Any]) -> ItemError:
    return ItemError({**item, "sCode": err.code, "sMsg": err.msg, "subCode": ""})




def boolean(params: Params, name: str) -> bool:
    """OKX booleans arrive as JSON true/false or the strings "true"/"false"."""
    value = params.get(name)
    if value in (None, "", False, "false"):
        return False
    if value in (True, "true"):
        return True
    raise OkxError("51000", name)


def leg(params: Params, kind: str) -> Leg | None:
    """The `tp`/`sl` leg of a request (`{kind}TriggerPx`, `…OrdPx`, `…TriggerPxType`)."""
    trigger = decimal(params, f"{kind}TriggerPx")
    ord_px = decimal(params, f"{kind}OrdPx")
    if trigger is None and ord_px is None:
        return None
    if trigger is None or ord_px is None:
        raise OkxError("51000", f"{kind}TriggerPx" if trigger is None else f"{kind}OrdPx")
    px_type = get(params, f"{kind}TriggerPxType") or "last"
    return Leg(trigger, px_type, None if ord_px == -1 else ord_px)


def attach_legs(params: Params) -> Attach | None:
    """`attachAlgoOrds` of a place-order request (the sim takes one element)."""
    raw = params.get("attachAlgoOrds")
    if raw in (None, "", []):
        return None
    if not isinstance(raw, list) or len(raw) != 1 or not isinstance(raw[0], dict):
        raise OkxError("51000", "attachAlgoOrds")
    cl_id = get(raw[0], "attachAlgoClOrdId")
    if cl_id and not CL_ID.match(cl_id):
        raise OkxError("51000", "attachAlgoClOrdId")
    return Attach(cl_id, leg(raw[0], "tp"), leg(raw[0], "sl"))


def attached(acct: Account, order: Order) -> list[AlgoOrder]:
    """The algo orders attached to an order (its `attachAlgoOrds`)."""
    return [a for a in acct.algos.values() if a.parent_ord_id == order.ord_id]


class BatchError(Exception):
    """A batch whose items (some or all) failed: OKX's code 1 or 2 envelope."""

    def __init__(self, items: list[dict[str, str]], partial: bool = False) -> None:
        self.items, self.partial = items, partial
        super().__init__("partial" if partial else "all failed")
