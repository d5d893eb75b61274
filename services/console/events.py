"""`GET /api/v1/events`: server-sent events of the token's accounts, fed by NATS.

One `EventHub` per console process holds the NATS connection and one core subscription per
subject kind (fills and order updates of the ACCOUNT stream, position events of the POSITIONS
stream), whatever the number of browsers. Each message is decoded and written as JSON once,
then offered to every client whose token grants its account, on that client's bounded queue
(`put_nowait`): a client whose queue is full is dropped with a log line and never slows the
others. A client's queue is freed when its stream ends (disconnect, drop, shutdown).

Core subscriptions, not a JetStream consumer: this is live fan-out; what a browser missed
(before it connected, during a NATS reconnect) it reads from the REST lists, which are the
record. A durable consumer per browser would leave server-side state behind every tab closed
without goodbye, and one for the process would replay history nobody asked for on restart.

Each event has an `id:` `<epoch>-<n>`: n counts the hub's events, epoch names the hub (a new
one at every start; a core subscription carries no stream sequence). The hub keeps its last
`replay_size` events (raw bytes, encoded on demand): a client that reconnects with
`Last-Event-ID` gets those after it that its token may see, then the live ones; an id of
another epoch, or older than the window, gets an `event: reset` instead (read the lists again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Final
from uuid import UUID

from fastapi import APIRouter, Header, HTTPException, Query, Request
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.console.auth import Token
from services.console.event_json import event_data, event_model
from shared.bus import connect_nats
from shared.errors import ConfigError
from shared.logging import get_logger
from shared.subjects import SubjectError, Subjects
from shared.tokens import TokenChecker, TokenStoreUnavailable, VerifiedToken

KINDS: Final = ("fill", "order", "position")
CONNECT_RETRY_S: Final = 2.0
HEARTBEAT: Final = ServerSentEvent(comment="heartbeat").encode()
CLIENTS = Gauge("console_sse_clients", "Server-sent event streams open")
DROPPED = Counter("console_sse_dropped", "SSE clients dropped because their queue was full")
log = get_logger("console")


@dataclass(frozen=True)
class EventsConfig:
    nats_url: str | None
    subjects: Subjects
    queue_size: int = 256
    heartbeat_s: float = 15.0
    retry_ms: int = 3000
    send_timeout_s: float = 10.0
    replay_size: int = 1000  # the events kept for a Last-Event-ID resume


@dataclass(frozen=True)
class Recent:
    """An event kept for a resume: its number, account, kind and the bytes NATS carried."""

    seq: int
    account: UUID
    kind: str
    data: bytes


@dataclass(eq=False)
class SseClient:
    """One open stream: the accounts it may see (id -> external id) and its bounded queue;
    None on the queue ends the stream."""

    accounts: dict[UUID, str]
    queue: asyncio.Queue[bytes | None]
    closed: bool = field(default=False)


class EventHub:
    """The process's NATS subscriptions and the open SSE clients they feed."""

    def __init__(self, config: EventsConfig) -> None:
        self.config = config
        self.clients: set[SseClient] = set()
        self.nc: Client | None = None
        self._subscriptions: list[Subscription] = []
        self._connecting: asyncio.Task[None] | None = None
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self.recent: deque[Recent] = deque(maxlen=config.replay_size)

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def start(self) -> None:
        """Connect in the background (the API serves without NATS; readyz says so)."""
        if self.config.nats_url is not None and self._connecting is None:
            self._connecting = asyncio.create_task(self._connect(self.config.nats_url), name="console-nats")

    async def _connect(self, url: str) -> None:
        while True:
            try:
                nc = await connect_nats(url, name="console")  # 3 s deadline, then reconnects forever
                break
            except ConfigError as exc:
                log.warning("console_nats_unavailable", error=str(exc), retry_s=CONNECT_RETRY_S)
                await asyncio.sleep(CONNECT_RETRY_S)
        subjects = self.config.subjects
        for kind in KINDS:
            sub = await nc.subscribe(subjects.filter(kind), cb=self._on_message, pending_msgs_limit=65536)
            self._subscriptions.append(sub)
        await asyncio.wait_for(nc.flush(), 5.0)  # the subscriptions are in place on the server
        self.nc = nc
        log.info("console_events_subscribed", kinds=list(KINDS))

    async def stop(self) -> None:
        """End every stream, then drop the subscriptions and the connection."""
        self.end_streams()
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 5.0)
            if not self.nc.is_closed:
                await self.nc.close()
        self.nc, self._subscriptions, self._connecting = None, [], None

    def end_streams(self) -> None:
        for client in list(self.clients):
            self._close(client)

    def add(self, verified: VerifiedToken, external_id: str | None) -> SseClient:
        grants = [g for g in verified.grants if external_id is None or g.external_id == external_id]
        client = SseClient(
            {g.account_id: g.external_id for g in grants}, asyncio.Queue(self.config.queue_size)
        )
        self.clients.add(client)
        CLIENTS.set(len(self.clients))
        return client

    def remove(self, client: SseClient) -> None:
        self.clients.discard(client)
        CLIENTS.set(len(self.clients))

    def _close(self, client: SseClient) -> None:
        """Free the client's queue and wake its stream with the end marker."""
        client.closed = True
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)
        self.remove(client)

    async def _on_message(self, msg: Msg) -> None:
        try:
            parsed = self.config.subjects.parse(msg.subject)
            account = UUID(parsed.tokens["account_id"])
        except (SubjectError, KeyError, ValueError):
            return
        self.seq += 1
        kept = Recent(self.seq, account, parsed.route.kind, msg.data)
        self.recent.append(kept)  # decoded only if a client resumes over it
        targets = [c for c in self.clients if account in c.accounts]
        if not targets:
            return
        # encoded once for every client (sse-starlette passes bytes through)
        sse = self._encode(kept, targets[0].accounts[account])
        if sse is None:
            return
        for client in targets:
            try:
                client.queue.put_nowait(sse)
            except asyncio.QueueFull:
                DROPPED.inc()
                log.warning(
                    "console_sse_client_dropped",
                    reason="queue full",
                    queue_size=self.config.queue_size,
                    accounts=len(client.accounts),
                )
                self._close(client)

    def _encode(self, kept: Recent, external_id: str) -> bytes | None:
        try:
            event = event_model(kept.kind).model_validate_json(kept.data)
        except ValidationError as exc:
            log.warning("console_event_unreadable", kind=kept.kind, errors=exc.error_count())
            return None
        data = event_data(event, kept.kind, external_id)
        return ServerSentEvent(data=data, event=kept.kind, id=f"{self.epoch}-{kept.seq}").encode()

    def replay(self, client: SseClient, last_event_id: str) -> list[bytes]:
        """The kept events after `last_event_id` that the client may see, or one `reset` event
        when they cannot all be given (another epoch, an id older than the window, not an id).
        Called right after `add`, with no await between: later events reach its queue."""
        epoch, _, number = last_event_id.partition("-")
        oldest = self.recent[0].seq if self.recent else self.seq + 1
        if epoch != self.epoch or not number.isdigit() or not oldest - 1 <= int(number) <= self.seq:
            reset = json.dumps({"reason": "events were missed: read the lists again"})
            return [ServerSentEvent(data=reset, event="reset", id=f"{self.epoch}-{self.seq}").encode()]
        after = int(number)
        out = []
        for kept in self.recent:
            if kept.seq > after and kept.account in client.accounts:
                sse = self._encode(kept, client.accounts[kept.account])
                if sse is not None:
                    out.append(sse)
        return out


async def _stream(
    hub: EventHub,
    verified: VerifiedToken,
    account: str | None,
    checker: TokenChecker,
    raw_token: str,
    last_event_id: str | None,
) -> AsyncIterator[bytes]:
    """The client's events, a heartbeat comment when idle for heartbeat_s; the token is checked
    again at every heartbeat (a revoked token ends the stream within heartbeat_s + the cache).
    The client is registered here, not in the handler: a generator never started (the client
    gone before the response began) never runs its `finally`, so it would stay registered."""
    config = hub.config
    client = hub.add(verified, account)
    missed = [] if last_event_id is None else hub.replay(client, last_event_id)
    try:
        yield ServerSentEvent(comment="connected", retry=config.retry_ms).encode()
        for old in missed:
            yield old
        beat = time.monotonic() + config.heartbeat_s
        while True:
            try:
                item = await asyncio.wait_for(client.queue.get(), max(0.0, beat - time.monotonic()))
            except TimeoutError:
                beat = time.monotonic() + config.heartbeat_s
                if not await _still_good(checker, raw_token):
                    return
                yield HEARTBEAT
                continue
            if item is None:
                return
            yield item
    finally:
        hub.remove(client)


async def _still_good(checker: TokenChecker, raw_token: str) -> bool:
    try:
        verified = await checker.check(raw_token)
    except TokenStoreUnavailable:
        return True  # the database away is not the token revoked: keep streaming
    return verified is not None


router = APIRouter(prefix="/api/v1")


@router.get(
    "/events",
    summary="Live fills, order updates and position events of the token's accounts (SSE)",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "an event stream"},
        401: {"description": "no bearer token, or not a valid one with the `console` scope"},
        404: {"description": "an account the token does not grant (whether or not it exists)"},
        503: {"description": "live events are unavailable (NATS not connected or not configured)"},
    },
)
async def events(
    request: Request,
    verified: Token,
    account: Annotated[
        str | None, Query(max_length=64, description="one external id; all when absent")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(max_length=64, description="the id of the last event received: resume after it"),
    ] = None,
) -> EventSourceResponse:
    hub: EventHub | None = getattr(request.app.state, "events", None)
    if hub is None or not hub.connected:
        raise HTTPException(503, "live events are unavailable, retry later", headers={"Retry-After": "5"})
    if account is not None and verified.grant(account) is None:
        raise HTTPException(404, f"no account {account!r}")
    raw_token = request.headers["authorization"].partition(" ")[2].strip()
    # sse-starlette sets Cache-Control: no-store and X-Accel-Buffering: no; a write blocked
    # longer than send_timeout ends the stream (a dropped client stuck in a full socket)
    return EventSourceResponse(
        _stream(hub, verified, account, request.app.state.checker, raw_token, last_event_id),
        send_timeout=hub.config.send_timeout_s,
    )
