"""The three OKX websocket endpoints: ping/pong, login, subscribe/unsubscribe, error events."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from .auth import LoginError, check_login
from .bars import channel_bar
from .hub import BUSINESS_PRIVATE, PRIVATE_CHANNELS, PUBLIC_CHANNELS, Conn, sub_key
from .protocol import dumps, ws_error, ws_event

if TYPE_CHECKING:
    from .core import SimCore

log = structlog.get_logger("okx_sim.ws")
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


async def serve(ws: WebSocket, core: SimCore, endpoint: str, live: bool = False) -> None:
    """Run one client connection until it closes."""
    await ws.accept()
    conn = Conn(ws, endpoint, live)
    core.hub.add(conn)
    writer = asyncio.create_task(conn.writer(core.hub.idle_timeout_s))
    try:
        while not writer.done():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            try:
                handle(conn, core, text)
            except Exception:  # a bad frame must never kill the connection or the server
                log.exception("ws frame failed", endpoint=endpoint)
                conn.send(ws_error("60012", text, conn_id=conn.conn_id))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        core.hub.remove(conn)
        if not writer.done():
            writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


def handle(conn: Conn, core: SimCore, text: str) -> None:
    """Answer one client frame."""
    if text == "ping":
        conn.send("pong")
        return
    try:
        request = json.loads(text)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        conn.send(ws_error("60012", text, conn_id=conn.conn_id))
        return
    raw_id = request.get("id")
    req_id = raw_id if isinstance(raw_id, str) and _ID.match(raw_id) else None
    op, args = request.get("op"), request.get("args")
    if op not in ("login", "subscribe", "unsubscribe"):
        conn.send(ws_error("60019", f"op {op}" if op else text, conn_id=conn.conn_id,
                           req_id=req_id))
        return
    if (raw_id is not None and req_id is None) or not isinstance(args, list) or not args \
            or not all(isinstance(a, dict) for a in args):
        conn.send(ws_error("60012", text, conn_id=conn.conn_id, req_id=req_id))
        return
    if op == "login":
        _login(conn, core, args[0], req_id)
        return
    for arg in args:
        if op == "subscribe":
            _subscribe(conn, core, arg, req_id)
        else:
            conn.subs.pop(sub_key(arg), None)
            conn.send(ws_event("unsubscribe", conn.conn_id, req_id, arg=arg))


def _login(conn: Conn, core: SimCore, arg: dict[str, Any], req_id: str | None) -> None:
    if conn.api_key is not None:
        conn.send(ws_error("60031", conn_id=conn.conn_id, req_id=req_id))
        return
    try:
        key = check_login(arg, core.keys, core.now_real_ms(), core.config.auth_window_s,
                          conn.live)
    except LoginError as err:
        conn.send(ws_error(err.code, conn_id=conn.conn_id, req_id=req_id))
        return
    conn.api_key = key.key
    conn.send(ws_event("login", conn.conn_id, req_id, code="0", msg=""))


def _kind(channel: str) -> str | None:
    if channel in PUBLIC_CHANNELS:
        return "public"
    if channel in PRIVATE_CHANNELS:
        return "private"
    if channel in BUSINESS_PRIVATE:
        return "business"
    return "business" if channel_bar(channel) is not None else None


def _subscribe(conn: Conn, core: SimCore, arg: dict[str, Any], req_id: str | None) -> None:
    channel = arg.get("channel")
    if not isinstance(channel, str) or not all(isinstance(v, str) for v in arg.values()):
        conn.send(ws_error("60012", dumps({"op": "subscribe", "args": [arg]}),
                           conn_id=conn.conn_id, req_id=req_id))
        return
    inst_id = arg.get("instId", "")
    where = f"{channel},instId:{inst_id}" if inst_id else channel
    kind = _kind(channel)
    private = kind == "private" or channel in BUSINESS_PRIVATE
    if kind != conn.endpoint or (not private and inst_id not in core.specs) or (
            private and arg.get("instType", "ANY") not in ("ANY", "SWAP")):
        conn.send(ws_error("60018", where, conn_id=conn.conn_id, req_id=req_id))
        return
    if private and conn.api_key is None:
        conn.send(ws_error("60011", conn_id=conn.conn_id, req_id=req_id))
        return
    if channel in BUSINESS_PRIVATE:  # OKX: no snapshot, pushes on changes only
        conn.subs[sub_key(arg)] = arg
        conn.send(ws_event("subscribe", conn.conn_id, req_id, arg=arg))
        return
    if channel == "fills":
        conn.send(ws_error("64003", conn_id=conn.conn_id, req_id=req_id))
        return
    conn.subs[sub_key(arg)] = arg
    conn.send(ws_event("subscribe", conn.conn_id, req_id, arg=arg))
    if kind == "private":
        count = sum(1 for c in core.hub.conns if c.api_key == conn.api_key
                    and any(a["channel"] == channel for a in c.subs.values()))
        conn.send(dumps({"event": "channel-conn-count", "channel": channel,
                         "connCount": str(count), "connId": conn.conn_id}))
        core.hub.private_snapshot(conn, arg)
    else:
        data = core.hub.snapshot(channel, inst_id, core.now())
        if data:
            conn.send(dumps({"arg": arg, "data": data}))
