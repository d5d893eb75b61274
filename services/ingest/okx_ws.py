"""OKX v5 websocket client: login, subscribe, text ping when quiet, reconnect with
exponential backoff and full jitter, and a sink that hears about every (re)connect
before any push received on that connection is handed to it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import websockets
from prometheus_client import Counter as MetricCounter
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.ingest.normalize import BadFrame, Pong, Push, WsEvent, parse_frame
from services.ingest.signing import Credentials, login_request
from shared.logging import get_logger, redact_text

log = get_logger("ingest.ws")
CLOSE_CODES = {
    1009: "frame too long", 4001: "login failed", 4002: "invalid request",
    4003: "API key subscription limit", 4004: "no data received in 30s",
    4005: "buffer full", 4006: "abnormal disconnection", 4007: "API key updated or deleted",
    4008: "subscribed channels exceed max", 4009: "channels on this connection exceed limit",
}
OPS_PER_HOUR = 480  # subscribe/unsubscribe/login per connection
ARGS_PER_REQUEST = 20  # keeps every request far below OKX's 64 KB
ECHOING_CODES = ("60012", "60013")  # their msg echoes the request: never logged
RECONNECTS = MetricCounter("aitrader_okx_ws_reconnects", "Times an OKX websocket connects again: its "
                           "session ended or a connect failed.", ["socket"])


class Sink(Protocol):
    """What a websocket feeds: a (re)connect notice, then the pushes in arrival order."""

    async def on_connected(self) -> None: ...

    async def on_push(self, push: Push, received: datetime) -> None: ...


@dataclass(frozen=True)
class WsOptions:
    ping_after_s: float = 25.0
    pong_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_after_s: float = 10.0  # a session this long resets the backoff
    open_timeout_s: float = 10.0
    ack_timeout_s: float = 10.0


class FrameStats:
    """Counts bad frames by reason; logs each one with its reason and a short sample."""

    def __init__(self) -> None:
        self.bad: Counter[str] = Counter()
        self.pushes = 0

    def record(self, err: BadFrame, raw: str | bytes, where: str) -> None:
        self.bad[err.reason] += 1
        sample = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        log.warning("okx_bad_frame", where=where, reason=err.reason, detail=err.detail,
                    sample=redact_text(sample[:160]), total=self.bad.total())


class ConnectLimiter:
    """OKX accepts 3 new connections per second per IP: space connects out."""

    def __init__(self, per_second: float = 3.0) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            wait = self._next - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next = time.monotonic() + self.interval


class SessionEnded(Exception):
    """The current connection must be replaced (no pong, upgrade notice, login refused)."""

    def __init__(self, reason: str, *, retry_now: bool = False) -> None:
        super().__init__(reason)
        self.retry_now = retry_now


class OkxWebSocket:
    """One OKX websocket endpoint, kept connected and subscribed until cancelled."""

    def __init__(self, name: str, url: str, args: Sequence[dict[str, str]], sink: Sink, *,
                 creds: Credentials | None = None, options: WsOptions | None = None,
                 limiter: ConnectLimiter | None = None, stats: FrameStats | None = None) -> None:
        self.name, self.url, self.args, self.sink, self.creds = name, url, list(args), sink, creds
        self.options = options or WsOptions()
        self.limiter = limiter or ConnectLimiter()
        self.stats = stats or FrameStats()
        self.ready = asyncio.Event()  # set while a session is subscribed and caught up
        self.sessions = 0
        self._ops: deque[float] = deque()

    async def run(self) -> None:
        """Connect, serve, and reconnect with backoff, forever."""
        attempt = 0
        while True:
            started = time.monotonic()
            retry_now = False
            try:
                await self._session()
            except SessionEnded as exc:
                retry_now = exc.retry_now
                log.warning("okx_ws_session_ended", ws=self.name, reason=str(exc))
            except ConnectionClosed as exc:
                self._log_closed(exc)
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                log.warning("okx_ws_connect_failed", ws=self.name, error=type(exc).__name__)
            except Exception:  # a failing sink (e.g. NATS down) must not end ingest: reconnect
                log.exception("okx_ws_sink_failed", ws=self.name)
            finally:
                self.ready.clear()
            if time.monotonic() - started >= self.options.stable_after_s:
                attempt = 0
            delay = 0.0 if retry_now else random.uniform(
                0, min(self.options.backoff_max_s, self.options.backoff_initial_s * 2**attempt))
            attempt += 1
            RECONNECTS.labels(self.name).inc()
            log.info("okx_ws_reconnecting", ws=self.name, delay_s=round(delay, 3),
                     attempt=attempt)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        await self.limiter.acquire()
        opts = self.options
        async with connect(self.url, ping_interval=None, open_timeout=opts.open_timeout_s,
                           close_timeout=2, max_size=2**22) as ws:
            log.info("okx_ws_connected", ws=self.name)
            queue: asyncio.Queue[tuple[Push, datetime]] = asyncio.Queue()
            if self.creds is not None:
                await self._login(ws)
            await self._subscribe(ws, queue)
            reader = asyncio.create_task(self._read(ws, queue))
            consumer = asyncio.create_task(self._consume(queue))
            try:
                done, _ = await asyncio.wait({reader, consumer},
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            finally:
                await _stop(reader, consumer)

    async def _consume(self, queue: asyncio.Queue[tuple[Push, datetime]]) -> None:
        await self.sink.on_connected()  # backfill: published before any newer live push
        self.sessions += 1
        self.ready.set()
        while True:
            push, received = await queue.get()
            self.stats.pushes += 1
            await self.sink.on_push(push, received)

    async def _read(self, ws: ClientConnection, queue: asyncio.Queue[tuple[Push, datetime]]
                    ) -> None:
        opts = self.options
        last, ping_sent = time.monotonic(), 0.0
        while True:
            deadline = ping_sent + opts.pong_timeout_s if ping_sent else last + opts.ping_after_s
            try:
                raw = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                if ping_sent:
                    raise SessionEnded("no pong") from None
                await ws.send("ping")
                ping_sent = time.monotonic()
                continue
            last, ping_sent = time.monotonic(), 0.0
            frame = self._parse(raw)
            if isinstance(frame, Push):
                queue.put_nowait((frame, datetime.now(UTC)))
            elif isinstance(frame, WsEvent):
                self._on_event(frame)

    def _parse(self, raw: str | bytes) -> Pong | WsEvent | Push | None:
        try:
            return parse_frame(raw)
        except BadFrame as err:
            self.stats.record(err, raw, self.name)
            return None

    def _on_event(self, ev: WsEvent) -> None:
        if ev.event == "notice" and ev.code == "64008":
            raise SessionEnded("service upgrade notice (64008)", retry_now=True)
        if ev.event in ("error", "channel-conn-count-error", "notice"):
            msg = "(request echo omitted)" if ev.code in ECHOING_CODES else redact_text(ev.msg)
            log.error("okx_ws_error", ws=self.name, okx_event=ev.event, code=ev.code, msg=msg[:200],
                      channel=ev.body.get("channel"), conn_count=ev.body.get("connCount"))
        else:
            log.debug("okx_ws_event", ws=self.name, okx_event=ev.event, code=ev.code)

    async def _send_op(self, ws: ClientConnection, request: dict[str, Any]) -> None:
        now = time.monotonic()
        while self._ops and now - self._ops[0] > 3600:
            self._ops.popleft()
        if len(self._ops) >= OPS_PER_HOUR:
            raise SessionEnded("subscribe/login budget of 480 per hour used up")
        self._ops.append(now)
        await ws.send(_dumps(request))

    async def _login(self, ws: ClientConnection) -> None:
        assert self.creds is not None
        await self._send_op(ws, login_request(self.creds, datetime.now(UTC)))
        async with asyncio.timeout(self.options.ack_timeout_s):
            while True:
                frame = self._parse(await ws.recv())
                if isinstance(frame, WsEvent) and frame.event == "login" and frame.code == "0":
                    log.info("okx_ws_logged_in", ws=self.name)
                    return
                if isinstance(frame, WsEvent) and frame.event == "error":
                    raise SessionEnded(f"login refused: OKX {frame.code} {frame.msg[:80]}")

    async def _subscribe(self, ws: ClientConnection,
                         queue: asyncio.Queue[tuple[Push, datetime]]) -> None:
        waiting: dict[str, set[str]] = {}
        for n in range(0, len(self.args), ARGS_PER_REQUEST):
            chunk = self.args[n:n + ARGS_PER_REQUEST]
            req_id = f"s{n // ARGS_PER_REQUEST}"
            waiting[req_id] = {_dumps(a) for a in chunk}
            await self._send_op(ws, {"id": req_id, "op": "subscribe", "args": chunk})
        try:
            async with asyncio.timeout(self.options.ack_timeout_s):
                while any(waiting.values()):
                    frame = self._parse(await ws.recv())
                    if isinstance(frame, Push):
                        queue.put_nowait((frame, datetime.now(UTC)))
                    elif isinstance(frame, WsEvent):
                        self._on_ack(frame, waiting)
        except TimeoutError:
            log.error("okx_ws_subscribe_unanswered", ws=self.name,
                      args=sorted(a for args in waiting.values() for a in args))
        log.info("okx_ws_subscribed", ws=self.name, args=len(self.args))

    def _on_ack(self, ev: WsEvent, waiting: dict[str, set[str]]) -> None:
        arg = ev.body.get("arg")
        if ev.event == "subscribe" and isinstance(arg, dict):
            for pending in waiting.values():
                pending.discard(_dumps(arg))
        elif ev.event == "error":
            failed = waiting.pop(str(ev.body.get("id")), set())
            log.error("okx_ws_subscribe_failed", ws=self.name, code=ev.code,
                      msg=redact_text(ev.msg)[:200], request_args=sorted(failed))
        else:
            self._on_event(ev)

    def _log_closed(self, exc: ConnectionClosed) -> None:
        code = exc.rcvd.code if exc.rcvd else None
        log.warning("okx_ws_closed", ws=self.name, code=code,
                    meaning=CLOSE_CODES.get(code or 0, ""),
                    reason=exc.rcvd.reason[:120] if exc.rcvd else "")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


async def _stop(*tasks: asyncio.Task[None]) -> None:
    """Cancel until done. On Python 3.11 `asyncio.wait_for` (used inside nats-py's request)
    swallows a cancellation that races with its result; a single cancel() then leaves the
    consumer waiting on an empty queue forever and the session never ends."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    await asyncio.gather(*tasks, return_exceptions=True)
