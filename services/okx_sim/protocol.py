"""OKX v5 wire conventions: number formatting, error codes, REST envelopes, websocket events."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

# REST error codes -> (message, HTTP status). Messages follow OKX's published texts.
REST_ERRORS: dict[str, tuple[str, int]] = {
    "50002": ("Json data format error", 400),
    "50011": ("Too Many Requests", 429),
    "50014": ("Parameter {0} can not be empty.", 400),
    "50101": ("APIKey does not match current environment.", 401),
    "50102": ("Timestamp request expired", 401),
    "50103": ("Request header OK-ACCESS-KEY can not be empty.", 401),
    "50104": ("Request header OK-ACCESS-PASSPHRASE can not be empty.", 401),
    "50105": ("Request header OK-ACCESS-PASSPHRASE incorrect.", 401),
    "50106": ("Request header OK-ACCESS-SIGN can not be empty.", 401),
    "50107": ("Request header OK-ACCESS-TIMESTAMP can not be empty.", 401),
    "50111": ("Invalid OK-ACCESS-KEY", 401),
    "50112": ("Invalid OK-ACCESS-TIMESTAMP", 401),
    "50113": ("Invalid Sign", 401),
    "51000": ("Parameter {0} error", 400),
    "51001": ("Instrument ID does not exist", 200),
    "51008": ("Order failed. Insufficient USDT margin in account", 200),
    "51016": ("Duplicated clOrdId", 200),
    "51020": ("Your order should meet or exceed the minimum order amount.", 200),
    "51112": ("Close order size exceeds your available size.", 200),
    "51148": ("reduceOnly cannot increase the position quantity.", 200),
    "51121": ("Order quantity must be a multiple of the lot size.", 200),
    "51400": ("Order cancellation failed as the order has been filled, canceled or does not "
              "exist.", 200),
    "51102": ("Entered amount exceeds the max pending count.", 200),
    "51065": ("algoClOrdId already exists.", 200),
    "51169": ("Order failed because you don't have any positions in this direction for this "
              "contract to reduce or close.", 200),
    "51277": ("TP trigger price cannot be higher than the last price.", 200),
    "51278": ("SL trigger price cannot be lower than the last price.", 200),
    "51279": ("TP trigger price cannot be lower than the last price.", 200),
    "51280": ("SL trigger price cannot be higher than the last price.", 200),
    "51300": ("TP trigger price cannot be higher than the mark price", 200),
    "51302": ("SL trigger price cannot be lower than the mark price", 200),
    "51303": ("TP trigger price cannot be lower than the mark price", 200),
    "51304": ("SL trigger price cannot be higher than the mark price", 200),
    "51305": ("TP trigger price cannot be higher than the index price", 200),
    "51306": ("SL trigger price cannot be lower than the index price", 200),
    "51307": ("TP trigger price cannot be lower than the index price", 200),
    "51308": ("SL trigger price cannot be higher than the index price", 200),
    "51328": ("closeFraction is only available for reduceOnly orders", 200),
    "51330": ("closeFraction is only available for stop market orders", 200),
    "51333": ("Close position order in hedge-mode or reduce-only order in one-way mode cannot "
              "attach TPSL", 200),
    "51342": ("Closing order already exists. Please try again later", 200),
    "51500": ("You must enter a price, quantity, or TP/SL", 200),
    "51503": ("Your order has already been filled or canceled.", 200),
    "51524": ("Unable to modify the order quantity of a stop order that closes an entire "
              "position. Please modify the trigger price instead.", 200),
    "51527": ("Order modification unsuccessful. The stop order does not exist.", 200),
    "51531": ("Order modification unsuccessful. The stop order must have either take profit "
              "or stop loss attached.", 200),
    "51603": ("Order does not exist.", 200),
    "59000": ("Settings failed. Delete any open positions or orders before changing "
              "settings.", 200),
    "59102": ("Leverage exceeds the maximum leverage. Please adjust the leverage.", 200),
}

# Websocket error codes -> message template.
WS_ERRORS: dict[str, str] = {
    "50101": "APIKey does not match current environment.",
    "60004": "Invalid timestamp",
    "60005": "Invalid OK-ACCESS-KEY",
    "60006": "Timestamp request expired",
    "60007": "Invalid sign",
    "60009": "Login failed.",
    "60011": "Please log in",
    "60012": "Invalid request: {0}",
    "60013": "Invalid args",
    "60018": "Wrong URL or channel:{0} doesn't exist. Please use the correct URL, channel "
    "and parameters referring to API document.",
    "60019": "Invalid op: {0}",
    "60024": "Wrong passphrase",
    "60031": "The WS login request has been sent. Please do not send it repeatedly.",
    "64003": "Your trading fee tier doesn't meet the requirement to access this channel",
}


def fmt(value: Decimal | int | None) -> str:
    """An OKX number string: plain notation, no trailing zeros, `""` for None."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


class OkxError(Exception):
    """A request OKX would refuse, carrying its code, message and HTTP status."""

    def __init__(self, code: str, *params: str, msg: str | None = None) -> None:
        template, status = REST_ERRORS.get(code, ("", 200))
        self.code = code
        self.msg = msg if msg is not None else template.format(*params)
        self.status = status
        super().__init__(f"{code}: {self.msg}")


class Reject(Exception):
    """A per-item failure (`sCode`/`sMsg`) inside a successful envelope, e.g. a refused order."""

    def __init__(self, code: str, *params: str) -> None:
        template = REST_ERRORS.get(code, ("", 200))[0]
        self.code = code
        self.msg = template.format(*params)
        super().__init__(f"{code}: {self.msg}")


def ok(data: list[Any]) -> dict[str, Any]:
    """The success envelope."""
    return {"code": "0", "msg": "", "data": data}


def error_body(err: OkxError) -> dict[str, Any]:
    """The error envelope; auth errors carry no `data`, as on OKX."""
    if err.status == 401:
        return {"msg": err.msg, "code": err.code}
    return {"code": err.code, "msg": err.msg, "data": []}


NOT_FOUND_BODY: dict[str, Any] = {
    "code": 404, "data": {}, "detailMsg": "", "error_code": "404",
    "error_message": "Not Found", "msg": "Not Found",
}


def ws_error(code: str, *params: str, conn_id: str, req_id: str | None = None) -> str:
    """A websocket `error` event."""
    body: dict[str, Any] = {}
    if req_id is not None:
        body["id"] = req_id
    body.update({"event": "error", "code": code,
                 "msg": WS_ERRORS.get(code, "").format(*params), "connId": conn_id})
    return dumps(body)


def ws_event(event: str, conn_id: str, req_id: str | None = None, **fields: Any) -> str:
    """A websocket ack event (`subscribe`, `unsubscribe`, `login`)."""
    body: dict[str, Any] = {}
    if req_id is not None:
        body["id"] = req_id
    body["event"] = event
    body.update(fields)
    body["connId"] = conn_id
    return dumps(body)


def dumps(obj: Any) -> str:
    """Compact JSON, as OKX sends it."""
    return json.dumps(obj, separators=(",", ":"))
