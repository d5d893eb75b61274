"""Ingest's pure core: OKX v5 websocket frames and REST rows -> shared events.

No I/O and no clock: the receive time is an argument. Bad input raises (or is collected as)
`BadFrame` with a stable reason; nothing partially read is ever returned.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.ingest import fields as f
from services.ingest import normalize_account as acct
from services.ingest.fields import AccountRef, BadFrame, Json, build
from shared.bars import channel_bar
from shared.messages import Candle, Event, FundingRate, MarkPrice, OpenInterest, Ticker

__all__ = ["AccountRef", "BadFrame", "Json"]

ACCOUNT_CHANNELS = ("orders", "positions", "account", "balance_and_position", "orders-algo")
CANDLE_FIELDS = ("ts", "o", "h", "l", "c", "vol", "volCcy", "volCcyQuote", "confirm")


@dataclass(frozen=True)
class Pong:
    """OKX's answer to our text `ping`."""


@dataclass(frozen=True)
class WsEvent:
    """A non-data frame: login / subscribe ack, error, notice, channel-conn-count."""

    event: str
    code: str
    msg: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Push:
    """A data push: `{"arg": {...}, "data": [...]}`."""

    channel: str
    arg: dict[str, Any]
    data: list[Any]
    event_type: str | None = None


Frame = Pong | WsEvent | Push


@dataclass
class Normalized:
    """What one push turned into: events, per-element errors, and follow-up signals."""

    events: list[Event] = field(default_factory=list)
    errors: list[BadFrame] = field(default_factory=list)
    funding_settled: bool = False


def _no_constant(name: str) -> Any:
    raise BadFrame("bad_number", name)


def parse_frame(raw: str | bytes) -> Frame:
    """Classify one websocket frame (numbers never become floats)."""
    if raw in ("pong", b"pong"):
        return Pong()
    try:
        obj = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadFrame("not_json") from None
    if not isinstance(obj, dict):
        raise BadFrame("not_object")
    if "event" in obj:
        event = obj["event"]
        if not isinstance(event, str) or not event:
            raise BadFrame("bad_event")
        return WsEvent(event, str(obj.get("code", "")), str(obj.get("msg", "")), obj)
    arg, data = obj.get("arg"), obj.get("data")
    if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str):
        raise BadFrame("bad_arg")
    if not isinstance(data, list):
        raise BadFrame("data_not_list")
    event_type = obj.get("eventType")
    return Push(arg["channel"], arg, data, event_type if isinstance(event_type, str) else None)


# ---------------------------------------------------------------------------- market data
def candle(inst: str, bar: str, row: Any, received: datetime) -> Candle:
    """One candle row `[ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm]` (older rows are shorter)."""
    if not isinstance(row, list) or not 6 <= len(row) <= len(CANDLE_FIELDS):
        raise BadFrame("bad_candle_row")
    cells = dict(zip(CANDLE_FIELDS, row, strict=False))
    return build(
        Candle, ts_event=f.req_time(cells, "ts"), ts_init=received, inst_id=inst, bar=bar,
        open_time=f.req_time(cells, "ts"), open=f.req_decimal(cells, "o"),
        high=f.req_decimal(cells, "h"), low=f.req_decimal(cells, "l"),
        close=f.req_decimal(cells, "c"), volume=f.req_decimal(cells, "vol"),
        volume_ccy=f.decimal(cells, "volCcy", required=False),
        volume_quote=f.decimal(cells, "volCcyQuote", required=False),
        confirmed=f.choice(cells, "confirm", ("0", "1"), default="0") == "1",
    )


def closed_candles(inst: str, bar: str, rows: Sequence[Any], received: datetime) -> list[Candle]:
    """Confirmed candles of a REST answer (newest first on the wire), oldest first."""
    found = [candle(inst, bar, row, received) for row in rows]
    return sorted((c for c in found if c.confirmed), key=lambda c: c.open_time)


def ticker(d: Json, received: datetime) -> Ticker:
    return build(
        Ticker, ts_event=f.req_time(d, "ts"), ts_init=received, inst_id=f.inst_id(d),
        last=f.req_decimal(d, "last"), bid_px=f.decimal(d, "bidPx", required=False),
        ask_px=f.decimal(d, "askPx", required=False),
        vol_24h=f.decimal(d, "vol24h", required=False),
    )


def mark_price(d: Json, received: datetime) -> MarkPrice:
    return build(MarkPrice, ts_event=f.req_time(d, "ts"), ts_init=received,
                  inst_id=f.inst_id(d), mark_px=f.req_decimal(d, "markPx"))


def funding_rate(d: Json, received: datetime) -> FundingRate:
    return build(
        FundingRate, ts_event=f.req_time(d, "ts"), ts_init=received, inst_id=f.inst_id(d),
        funding_rate=f.req_decimal(d, "fundingRate"),
        funding_time=f.ms_time(d, "fundingTime", required=False),
        next_funding_time=f.ms_time(d, "nextFundingTime", required=False),
    )


def open_interest(d: Json, received: datetime) -> OpenInterest:
    return build(
        OpenInterest, ts_event=f.req_time(d, "ts"), ts_init=received, inst_id=f.inst_id(d),
        oi=f.req_decimal(d, "oi"), oi_ccy=f.decimal(d, "oiCcy", required=False),
        oi_usd=f.decimal(d, "oiUsd", required=False),
    )


_MARKET: dict[str, Callable[[Json, datetime], Event]] = {
    "tickers": ticker, "mark-price": mark_price, "funding-rate": funding_rate,
    "open-interest": open_interest,
}


# ---------------------------------------------------------------------------- dispatch
def normalize_push(push: Push, received: datetime, account: AccountRef | None) -> Normalized:
    """Every event of one push; a bad element is collected, the good ones are kept."""
    out = Normalized()
    bar = channel_bar(push.channel)
    if bar is None and push.channel not in _MARKET and push.channel not in ACCOUNT_CHANNELS:
        out.errors.append(BadFrame("unknown_channel", push.channel[:40]))
        return out
    if push.channel in ACCOUNT_CHANNELS and account is None:
        out.errors.append(BadFrame("no_account", push.channel))
        return out
    if push.channel == "balance_and_position":
        out.funding_settled = any(isinstance(d, dict) and d.get("eventType") == "funding_fee"
                                  for d in push.data)
        return out
    for element in push.data:
        try:
            if bar is not None:
                out.events.append(candle(f.inst_id(push.arg), bar, element, received))
            elif not isinstance(element, dict):
                raise BadFrame("bad_element", push.channel)
            elif push.channel in _MARKET:
                out.events.append(_MARKET[push.channel](element, received))
            else:
                assert account is not None
                out.events.extend(acct.account_element(push.channel, element, account, received))
        except BadFrame as err:
            out.errors.append(err)
    return out
