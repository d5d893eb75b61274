"""Websocket connections and push fan-out (public/business market data, private account data)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from . import shapes
from .bars import channel_bar
from .models import AccountUpdate, AlgoUpdate, Event, OrderUpdate, Position
from .params import attached
from .protocol import dumps

if TYPE_CHECKING:
    from .core import SimCore

PUBLIC_CHANNELS = ("tickers", "funding-rate", "open-interest", "mark-price")
PRIVATE_CHANNELS = ("orders", "positions", "account", "balance_and_position", "fills")
BUSINESS_PRIVATE = ("orders-algo",)  # on /ws/v5/business, after a login there
HEARTBEAT_S = {"tickers": 10.0, "mark-price": 10.0, "funding-rate": 30.0,
               "open-interest": 10.0}
MAX_CONFIRMED_PER_TICK = 50


@dataclass(frozen=True)
class Close:
    """Queue sentinel: close the socket with this code."""

    code: int
    reason: str = ""


@dataclass
class _Topic:
    fingerprint: str = ""
    pushed_at: float = 0.0
    bar_ts: int | None = None


@dataclass(eq=False)
class Conn:
    """One client websocket: its endpoint, login, subscriptions and outgoing queue."""

    ws: WebSocket
    endpoint: str  # public | business | private
    live: bool = False  # a production endpoint (/live/ws/v5/...), else demo trading
    conn_id: str = field(default_factory=lambda: secrets.token_hex(4))
    api_key: str | None = None
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    queue: asyncio.Queue[str | Close] = field(default_factory=asyncio.Queue)
    last_sent: float = field(default_factory=time.monotonic)

    def send(self, text: str) -> None:
        """Queue a text frame."""
        self.queue.put_nowait(text)

    async def writer(self, idle_timeout_s: float) -> None:
        """Send queued frames; close with 4004 when nothing was sent for idle_timeout_s."""
        while True:
            wait = self.last_sent + idle_timeout_s - time.monotonic()
            try:
                item = await asyncio.wait_for(self.queue.get(), timeout=max(wait, 0.001))
            except TimeoutError:
                item = Close(4004, "No data received in 30s.")
            if isinstance(item, Close):
                await self.ws.close(code=item.code, reason=item.reason)
                return
            await self.ws.send_text(item)
            self.last_sent = time.monotonic()


def sub_key(arg: dict[str, Any]) -> str:
    """A stable key for a subscription arg."""
    return json.dumps(arg, sort_keys=True)


class Hub:
    """All open websockets of one simulator and what is pushed to them."""

    def __init__(self, core: SimCore, idle_timeout_s: float) -> None:
        self.core = core
        self.idle_timeout_s = idle_timeout_s
        self.conns: set[Conn] = set()
        self.paused: set[str] = set()
        self._topics: dict[tuple[str, str], _Topic] = {}
        self._last_private: dict[str, str] = {}

    def add(self, conn: Conn) -> None:
        self.conns.add(conn)

    def remove(self, conn: Conn) -> None:
        self.conns.discard(conn)

    def close_all(self, code: int = 1001) -> None:
        """Ask every socket to close (server shutdown)."""
        for conn in self.conns:
            conn.queue.put_nowait(Close(code, "server shutting down"))

    # --- public / business -----------------------------------------------------------------
    def market_tick(self, now: int) -> None:
        """Push changed market data to the public and business subscribers."""
        topics: dict[tuple[str, str], list[tuple[Conn, dict[str, Any]]]] = {}
        for conn in self.conns:
            if conn.endpoint == "private":
                continue
            for arg in conn.subs.values():
                if arg["channel"] not in BUSINESS_PRIVATE:
                    topics.setdefault((arg["channel"], arg["instId"]), []).append((conn, arg))
        for topic, subscribers in topics.items():
            for data in self._updates(topic, now):
                for conn, arg in subscribers:
                    conn.send(dumps({"arg": arg, "data": data}))

    def snapshot(self, channel: str, inst_id: str, now: int) -> list[Any]:
        """Current data of a public/business channel."""
        m = self.core.market
        bar = channel_bar(channel)
        if bar is not None:
            # Track bars from the moment of subscription, so that a bar closing before the next
            # market tick is still pushed as confirmed.
            state = self._topics.setdefault((channel, inst_id), _Topic())
            if state.bar_ts is None:
                state.bar_ts = bar.start(now)
            candle = m.candle(inst_id, bar, bar.start(now), now)
            return [shapes.candle_row(candle)] if candle else []
        if channel == "tickers":
            return [shapes.ticker(m.ticker(inst_id, now))]
        if channel == "mark-price":
            return [shapes.mark_price(inst_id, m.mark(inst_id, now), now)]
        if channel == "funding-rate":
            return [shapes.funding_rate(inst_id, m.funding(inst_id, now), now)]
        spec = self.core.specs[inst_id]
        return [shapes.open_interest(spec, m.open_interest(inst_id, now), m.last(inst_id, now),
                                     now)]

    def _updates(self, topic: tuple[str, str], now: int) -> list[list[Any]]:
        channel, inst_id = topic
        state = self._topics.setdefault(topic, _Topic())
        out: list[list[Any]] = []
        bar = channel_bar(channel)
        if bar is not None:
            current = bar.start(now)
            ts = state.bar_ts if state.bar_ts is not None else current
            while ts < current and len(out) < MAX_CONFIRMED_PER_TICK:
                candle = self.core.market.candle(inst_id, bar, ts, now)
                if candle is not None:
                    out.append([shapes.candle_row(candle)])
                ts += bar.ms
            state.bar_ts = current
        data = self.snapshot(channel, inst_id, now)
        fingerprint = dumps([{k: v for k, v in d.items() if k != "ts"} if isinstance(d, dict)
                             else d for d in data])
        mono = time.monotonic()
        stale = mono - state.pushed_at >= HEARTBEAT_S.get(channel, 1e9)
        if data and (fingerprint != state.fingerprint or stale or out):
            out.append(data)
            state.fingerprint, state.pushed_at = fingerprint, mono
        return out

    # --- private -------------------------------------------------------------------------
    def private_event(self, event: Event) -> None:
        """Turn an exchange event into orders / positions / account / balance_and_position."""
        key = event.api_key
        if key in self.paused:
            return
        ex = self.core.exchange
        if isinstance(event, AlgoUpdate):
            a = event.algo
            self._push_private(key, "orders-algo", [shapes.algo(a)], a.inst_id,
                               endpoint="business")
            return
        if isinstance(event, OrderUpdate):
            o = event.order
            acct = ex.accounts[key]
            data = [shapes.order(o, event.fill, ex.last[o.inst_id], attached(acct, o))]
            self._push_private(key, "orders", data, o.inst_id)
            return
        assert isinstance(event, AccountUpdate)
        now = self.core.now()
        for pos in event.positions:
            self._push_private(key, "positions", [self._position(key, pos)], pos.inst_id,
                               eventType="event_update")
        self._push_private(key, "account", [self._balance(key)], None)
        acct = ex.accounts[key]
        bp = shapes.balance_and_position(acct, event.reason, list(event.positions),
                                         list(event.fills), now)
        self._push_private(key, "balance_and_position", [bp], None)

    def private_snapshot(self, conn: Conn, arg: dict[str, Any]) -> None:
        """The push a private channel sends right after it is subscribed."""
        key, channel = conn.api_key, arg["channel"]
        if key is None or channel in ("orders", "fills"):
            return
        acct = self.core.exchange.accounts[key]
        positions = [p for p in acct.open_positions() if _matches(arg, p.inst_id)]
        if channel == "positions":
            conn.send(dumps({"arg": {**arg, "uid": acct.uid}, "eventType": "snapshot",
                             "curPage": 1, "lastPage": True,
                             "data": [self._position(key, p) for p in positions]}))
        elif channel == "account":
            conn.send(dumps({"arg": {**arg, "uid": acct.uid}, "data": [self._balance(key)]}))
        else:
            bp = shapes.balance_and_position(acct, "snapshot", positions, [], self.core.now())
            conn.send(dumps({"arg": {**arg, "uid": acct.uid}, "data": [bp]}))

    def _position(self, key: str, pos: Position) -> dict[str, Any]:
        ex = self.core.exchange
        view = next((v for v in ex.account_view(key).positions
                     if (v.position.inst_id, v.position.pos_side) == (pos.inst_id, pos.pos_side)
                     and pos.pos != 0), None)
        return shapes.position(view, pos, ex.specs[pos.inst_id], ex.mark[pos.inst_id],
                               ex.last[pos.inst_id], ex.mmr_rate)

    def _balance(self, key: str) -> dict[str, Any]:
        ex = self.core.exchange
        return shapes.balance(ex.accounts[key], ex.account_view(key))

    def _push_private(self, key: str, channel: str, data: list[Any], inst_id: str | None,
                      endpoint: str = "private", **extra: Any) -> None:
        uid = self.core.exchange.accounts[key].uid
        for conn in self.conns:
            if conn.endpoint != endpoint or conn.api_key != key:
                continue
            for arg in conn.subs.values():
                if arg["channel"] == channel and (inst_id is None or _matches(arg, inst_id)):
                    text = dumps({"arg": {**arg, "uid": uid}, **extra, "data": data})
                    conn.send(text)
                    if endpoint == "private":
                        self._last_private[key] = text

    # --- test controls ---------------------------------------------------------------------
    def _private_conns(self, key: str | None, endpoint: str = "private") -> list[Conn]:
        return [c for c in self.conns if c.endpoint == endpoint and c.api_key is not None
                and (key is None or c.api_key == key)]

    def drop_private(self, key: str | None, code: int, endpoint: str = "private") -> int:
        conns = self._private_conns(key, endpoint)
        for conn in conns:
            conn.queue.put_nowait(Close(code, "dropped by test control"))
        return len(conns)

    def repeat_last(self, key: str) -> bool:
        text = self._last_private.get(key)
        if text is None:
            return False
        for conn in self._private_conns(key):
            conn.send(text)
        return True

    def send_malformed(self, key: str | None) -> int:
        conns = self._private_conns(key)
        for conn in conns:
            conn.send('{"arg":{"channel":"orders","instType":"SWAP"},"data":[{"ordId":')
        return len(conns)


def _matches(arg: dict[str, Any], inst_id: str) -> bool:
    """Whether a private subscription arg covers an instrument."""
    if arg.get("instType", "ANY") not in ("ANY", "SWAP"):
        return False
    if arg.get("instId") and arg["instId"] != inst_id:
        return False
    return not (arg.get("instFamily") and arg["instFamily"] != inst_id.removesuffix("-SWAP"))
