"""Algo (TP/SL) order commands on core NATS request/reply, one subject each:
`place_algo` (POST /trade/order-algo), `amend_algo` (/trade/amend-algos) and `cancel_algo`
(/trade/cancel-algos) -> `AlgoReply`.

Checked against `instruments` before OKX sees them ("invalid": prices off the tick grid, a size
off the lot grid, a posSide the account's mode does not take). OKX's per-item sCode/sMsg come back
as they are; no answer within the bound is the answer "timeout" (the change may still have
happened: the orders-algo stream tells). Never retried on an ambiguous failure.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import ValidationError

from services.ingest.okx_rest import OkxApiError, OkxRest, OkxUnavailable
from services.ingest.repository import Repository
from services.ingest.responder import Responder
from shared.instruments import InstrumentSpec, is_multiple
from shared.logging import get_logger
from shared.messages import (
    AlgoReply,
    AmendAlgo,
    AttachedAlgo,
    CancelAlgo,
    OrderPrice,
    PlaceAlgo,
)
from shared.money import plain_decimal
from shared.types import PosMode

log = get_logger("ingest.algo")
C = TypeVar("C", PlaceAlgo, AmendAlgo, CancelAlgo)
PATHS = {PlaceAlgo: "/api/v5/trade/order-algo", AmendAlgo: "/api/v5/trade/amend-algos",
         CancelAlgo: "/api/v5/trade/cancel-algos"}


def ord_px(px: OrderPrice) -> str:
    """An order price on OKX's wire: "-1" for market."""
    return "-1" if px == "market" else plain_decimal(px)


def legs(cmd: AttachedAlgo | PlaceAlgo) -> dict[str, str]:
    """The set legs as OKX fields (tp/slTriggerPx, -TriggerPxType, -OrdPx)."""
    out: dict[str, str] = {}
    for leg in ("tp", "sl"):
        trigger = getattr(cmd, f"{leg}_trigger_px")
        if trigger is not None:
            out |= {f"{leg}TriggerPx": plain_decimal(trigger),
                    f"{leg}TriggerPxType": getattr(cmd, f"{leg}_trigger_px_type"),
                    f"{leg}OrdPx": ord_px(getattr(cmd, f"{leg}_ord_px"))}
    return out


def attach_body(attached: AttachedAlgo) -> list[dict[str, str]]:
    """`attachAlgoOrds` of a POST /trade/order (one element)."""
    element = legs(attached)
    if attached.attach_algo_cl_ord_id:
        element["attachAlgoClOrdId"] = attached.attach_algo_cl_ord_id
    return [element]


def place_body(cmd: PlaceAlgo, pos_mode: PosMode | None) -> dict[str, Any]:
    """The POST /trade/order-algo body (algoClOrdId = request id hex)."""
    body: dict[str, Any] = {"instId": cmd.inst_id, "tdMode": cmd.td_mode, "side": cmd.side,
                            "ordType": cmd.ord_type, "algoClOrdId": cmd.algo_cl_ord_id,
                            **legs(cmd)}
    if cmd.sz is not None:
        body["sz"] = plain_decimal(cmd.sz)
    else:
        body["closeFraction"] = "1"
    if cmd.pos_side != "net":
        body["posSide"] = cmd.pos_side
    if (cmd.reduce_only or cmd.close_fraction) and pos_mode != "long_short_mode":
        body["reduceOnly"] = True  # OKX: closeFraction in net mode requires it
    return body


def amend_body(cmd: AmendAlgo) -> dict[str, Any]:
    """The POST /trade/amend-algos body: only what changes (a deleted leg's trigger is "0")."""
    body: dict[str, Any] = {"instId": cmd.inst_id, "algoId": cmd.algo_id, "reqId": cmd.req_id,
                            "cxlOnFail": cmd.cxl_on_fail}
    if cmd.new_sz is not None:
        body["newSz"] = plain_decimal(cmd.new_sz)
    for leg, name in (("tp", "Tp"), ("sl", "Sl")):
        if getattr(cmd, f"cancel_{leg}"):
            body[f"new{name}TriggerPx"] = "0"
            continue
        trigger, kind = getattr(cmd, f"new_{leg}_trigger_px"), getattr(cmd, f"new_{leg}_trigger_px_type")
        px = getattr(cmd, f"new_{leg}_ord_px")
        if trigger is not None:
            body[f"new{name}TriggerPx"] = plain_decimal(trigger)
        if kind is not None:
            body[f"new{name}TriggerPxType"] = kind
        if px is not None:
            body[f"new{name}OrdPx"] = ord_px(px)
    return body


def prices_of(cmd: AttachedAlgo | PlaceAlgo | AmendAlgo) -> Iterable[tuple[str, Decimal]]:
    """Every trigger and limit price a command sends, by field name."""
    for name, value in cmd:
        if name.endswith(("_trigger_px", "_ord_px")) and isinstance(value, Decimal):
            yield name, value


def price_problem(cmd: AttachedAlgo | PlaceAlgo | AmendAlgo, spec: InstrumentSpec) -> str | None:
    """The first price off the instrument's tick grid, in words."""
    for name, value in prices_of(cmd):
        if not is_multiple(value, spec.tick_sz):
            return f"{name} {value} is not a multiple of tickSz {spec.tick_sz}"
    return None


def _size_problem(size: Decimal | None, spec: InstrumentSpec) -> str | None:
    if size is None:
        return None
    if size < spec.min_sz:
        return f"size {size} is below minSz {spec.min_sz}"
    if not is_multiple(size, spec.lot_sz):
        return f"size {size} is not a multiple of lotSz {spec.lot_sz}"
    return None


def check_algo(cmd: PlaceAlgo | AmendAlgo | CancelAlgo, account_id: UUID,
               spec: InstrumentSpec | None, pos_mode: PosMode | None) -> str | None:
    """Why OKX must not see this command, or None when it may."""
    if cmd.account_id != account_id:
        return f"command for account {cmd.account_id}, this ingest serves {account_id}"
    if spec is None:
        return f"unknown instrument {cmd.inst_id}"
    if isinstance(cmd, CancelAlgo):
        return None
    if isinstance(cmd, PlaceAlgo):
        if (pos_mode == "net_mode" and cmd.pos_side != "net") or (
                pos_mode == "long_short_mode" and cmd.pos_side == "net"):
            return f"the account is in {pos_mode}: pos_side {cmd.pos_side} does not fit"
        size = _size_problem(cmd.sz, spec)
    else:
        size = _size_problem(cmd.new_sz, spec)
    return size or price_problem(cmd, spec)


class AlgoCommands(Responder, Generic[C]):
    """Serves one algo command kind for one account; each request runs in its own task."""

    def __init__(self, model: type[C], rest: OkxRest, repo: Repository, account_id: UUID,
                 pos_mode: Callable[[], PosMode | None], timeout_s: float = 5.0) -> None:
        super().__init__()
        self.model: type[C] = model
        self.rest, self.repo, self.account_id = rest, repo, account_id
        self.pos_mode, self.timeout_s = pos_mode, timeout_s

    async def handle(self, data: bytes) -> AlgoReply:
        """One command -> one reply, always within the bound."""
        try:
            cmd = self.model.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            log.warning("algo_command_invalid", kind=self.model.__name__,
                        error=f"{where}: {first['msg']}"[:200])
            return AlgoReply(request_id=_request_id(data), ok=False, s_code="invalid",
                             s_msg=f"{where}: {first['msg']}"[:256])
        problem = check_algo(cmd, self.account_id, await self.repo.instrument_spec(cmd.inst_id),
                             self.pos_mode())
        if problem:
            log.info("algo_command_refused", request_id=str(cmd.request_id), reason=problem)
            return _refused(cmd, "invalid", problem)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._send(cmd)
        except (TimeoutError, OkxUnavailable) as exc:
            log.warning("algo_command_timeout", request_id=str(cmd.request_id),
                        error=type(exc).__name__)
            return _refused(cmd, "timeout", f"no answer from OKX within {self.timeout_s} s")

    async def _send(self, cmd: C) -> AlgoReply:
        body: Any
        if isinstance(cmd, PlaceAlgo):
            body = place_body(cmd, self.pos_mode())
        elif isinstance(cmd, AmendAlgo):
            body = amend_body(cmd)
        else:
            body = [{"instId": cmd.inst_id, "algoId": cmd.algo_id}]
        try:
            item = await self.rest.post_item(PATHS[type(cmd)], body)
        except OkxApiError as exc:
            log.warning("algo_command_rejected", request_id=str(cmd.request_id), code=exc.code)
            return _refused(cmd, exc.code, exc.msg)
        code = str(item.get("sCode", ""))
        algo_id = str(item.get("algoId") or "") or getattr(cmd, "algo_id", None)
        log.info("algo_command_done" if code == "0" else "algo_command_rejected",
                 kind=type(cmd).__name__, request_id=str(cmd.request_id), algo_id=algo_id,
                 code=code)
        return AlgoReply(request_id=cmd.request_id, ok=code == "0", algo_id=algo_id or None,
                         s_code=code[:32], s_msg=str(item.get("sMsg", ""))[:256])


def _refused(cmd: PlaceAlgo | AmendAlgo | CancelAlgo, code: str, msg: str) -> AlgoReply:
    return AlgoReply(request_id=cmd.request_id, ok=False, s_code=code[:32],
                     s_msg=msg[:256])


def _request_id(data: bytes) -> UUID:
    """The request id of a command that failed validation, if it has a readable one."""
    try:
        return UUID(str(json.loads(data).get("request_id")))
    except (ValueError, TypeError, AttributeError):
        return UUID(int=0)
