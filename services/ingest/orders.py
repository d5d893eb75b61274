"""Order commands: `PlaceOrder` on `<root>.cmd.<account_id>.place_order` -> `PlaceOrderReply`.

Checked against `instruments` by `shared.instruments.order_violations` before OKX sees it
("invalid"), leverage set when it changed, placed with clOrdId = the command's order id; OKX's
sCode/sMsg come back as they are, and no answer within the bound is the answer "timeout" (the
order may still exist: its pushes on the orders channel tell).
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from services.ingest.algo_orders import attach_body, price_problem
from services.ingest.okx_rest import OkxApiError, OkxRest, OkxUnavailable
from services.ingest.repository import Repository
from services.ingest.responder import Responder
from shared.instruments import MIN_LEVERAGE, InstrumentSpec, Violation, order_violations
from shared.logging import get_logger
from shared.messages import PlaceOrder, PlaceOrderReply
from shared.money import plain_decimal
from shared.types import PosMode

log = get_logger("ingest.orders")


def check_command(cmd: PlaceOrder, account_id: UUID, spec: InstrumentSpec | None,
                  pos_mode: PosMode | None) -> str | None:
    """Why OKX must not see this command, or None when it may."""
    if cmd.account_id != account_id:
        return f"command for account {cmd.account_id}, this ingest serves {account_id}"
    if spec is None:
        return f"unknown instrument {cmd.inst_id}"
    violations = order_violations(spec, size=cmd.sz, leverage=cmd.lever, order_type=cmd.ord_type,
                                  price=cmd.px, pos_mode=pos_mode, pos_side=cmd.pos_side)
    if violations:
        return _words(violations[0], spec, pos_mode)
    if cmd.attach_algo is not None and cmd.reduce_only:
        return "a reduce-only order cannot carry a take-profit or stop-loss (OKX 51333)"
    return None if cmd.attach_algo is None else price_problem(cmd.attach_algo, spec)


def _words(v: Violation, spec: InstrumentSpec, pos_mode: PosMode | None) -> str:
    """A violation in the terms of the command (OKX field names)."""
    match v.kind:
        case "not_live":
            return f"{spec.symbol} is {spec.status}, not live"
        case "below_min_size":
            return f"size {v.value} is below minSz {v.limit}"
        case "not_lot_multiple":
            return f"size {v.value} is not a multiple of lotSz {v.limit}"
        case "leverage_out_of_range":
            assert v.value is not None and v.limit is not None
            if v.value > v.limit:
                return f"leverage {v.value} exceeds the maximum {v.limit}"
            return f"leverage {v.value} is below the minimum {MIN_LEVERAGE}"
        case "price_on_market_order":
            return f"px {v.value} is only for limit orders; a market order has none"
        case "price_missing" | "price_not_positive":
            return "a limit order needs a positive px"
        case "not_tick_multiple":
            return f"px {v.value} is not a multiple of tickSz {v.limit}"
        case "pos_side_for_mode" if pos_mode == "long_short_mode":
            return "the account is in long/short mode: pos_side must be long or short"
        case "pos_side_for_mode":
            return "the account is in net mode: pos_side must be net"


def order_body(cmd: PlaceOrder, pos_mode: PosMode | None) -> dict[str, Any]:
    """The POST /trade/order body (sz in contracts, clOrdId = order id hex)."""
    body: dict[str, Any] = {"instId": cmd.inst_id, "tdMode": cmd.td_mode, "side": cmd.side,
                            "ordType": cmd.ord_type, "sz": plain_decimal(cmd.sz),
                            "clOrdId": cmd.cl_ord_id}
    if cmd.ord_type == "limit" and cmd.px is not None:
        body["px"] = plain_decimal(cmd.px)
    if cmd.pos_side != "net":
        body["posSide"] = cmd.pos_side
    if cmd.reduce_only and pos_mode != "long_short_mode":
        body["reduceOnly"] = True  # OKX: only in net mode; long/short closes imply it
    if cmd.attach_algo is not None:
        body["attachAlgoOrds"] = attach_body(cmd.attach_algo)
    return body


class OrderHandler(Responder):
    """Serves place-order commands for one account; each command runs in its own task."""

    def __init__(self, rest: OkxRest, repo: Repository, account_id: UUID,
                 timeout_s: float = 5.0) -> None:
        super().__init__()
        self.rest, self.repo, self.account_id, self.timeout_s = rest, repo, account_id, timeout_s
        self.pos_mode: PosMode | None = None
        self._levers: dict[tuple[str, str], Decimal] = {}

    async def handle(self, data: bytes) -> PlaceOrderReply:
        """One command -> one reply, always within the bound."""
        try:
            cmd = PlaceOrder.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            log.warning("order_command_invalid", error=f"{where}: {first['msg']}")
            return PlaceOrderReply(order_id=_order_id(data), ok=False, s_code="invalid",
                                   s_msg=f"{where}: {first['msg']}")
        spec = await self.repo.instrument_spec(cmd.inst_id)
        problem = check_command(cmd, self.account_id, spec, self.pos_mode)
        if problem:
            log.info("order_refused", order_id=str(cmd.order_id), reason=problem)
            return _reply(cmd, "invalid", problem)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._place(cmd)
        except (TimeoutError, OkxUnavailable) as exc:
            log.warning("order_timeout", order_id=str(cmd.order_id), error=type(exc).__name__)
            return _reply(cmd, "timeout", f"no answer from OKX within {self.timeout_s} s")

    async def _place(self, cmd: PlaceOrder) -> PlaceOrderReply:
        try:
            await self._set_leverage(cmd)
            item = await self.rest.place_order(order_body(cmd, self.pos_mode))
        except OkxApiError as exc:
            log.warning("order_rejected", order_id=str(cmd.order_id), code=exc.code, msg=exc.msg)
            return _reply(cmd, exc.code, exc.msg)
        code, ord_id = str(item.get("sCode", "")), str(item.get("ordId") or "") or None
        log.info("order_placed" if code == "0" else "order_rejected",
                 order_id=str(cmd.order_id), ord_id=ord_id, code=code)
        return PlaceOrderReply(order_id=cmd.order_id, ok=code == "0", ord_id=ord_id,
                               s_code=code, s_msg=str(item.get("sMsg", "")))

    async def _set_leverage(self, cmd: PlaceOrder) -> None:
        key = (cmd.inst_id, cmd.td_mode)
        if self._levers.get(key) == cmd.lever:
            return
        body: dict[str, Any] = {"instId": cmd.inst_id, "lever": plain_decimal(cmd.lever),
                                "mgnMode": cmd.td_mode}
        if cmd.td_mode == "isolated" and cmd.pos_side != "net":
            body["posSide"] = cmd.pos_side
        await self.rest.post("/api/v5/account/set-leverage", body)
        self._levers[key] = cmd.lever


def _reply(cmd: PlaceOrder, code: str, msg: str) -> PlaceOrderReply:
    return PlaceOrderReply(order_id=cmd.order_id, ok=False, s_code=code, s_msg=msg)


def _order_id(data: bytes) -> UUID:
    """The order id of a command that failed validation, if it has a readable one."""
    try:
        return UUID(str(json.loads(data).get("order_id")))
    except (ValueError, TypeError, AttributeError):
        return UUID(int=0)
