"""One durable consumer per ACCOUNT partition, owned by one instance at a time through a NATS
pinned-client priority group (nats-server >= 2.11, ADR-42): no coordinator of our own.

Every instance pulls on every partition consumer, in the consumer's priority group. The server
pins one puller per consumer (the `Nats-Pin-Id` header on what it delivers) and serves no one
else; a pinned client that stops pulling for `pinned_ttl` (killed, frozen, cut off) loses the pin
to a waiting puller — a standby — which the next delivery tells (a new pin id). A client whose
pin moved gets status 423 on its next pull and is a standby again.

The pin says who receives, not who has finished: when it moves, the messages the previous owner
held are still unacknowledged, and the server does not wait for them. With `AckPolicy.ALL` an
ack of a later message would acknowledge them unprocessed, so a batch whose consumer sequence
does not follow the last one this client received (the first batch, a takeover) first takes
the partition's messages between the consumer's ack floor and itself from the stream
(`catch_up`): they are folded again (duplicates of what the previous owner committed are
no-ops), and only then is anything acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.positions.config import PositionsSettings
from shared.errors import TransientError
from shared.logging import get_logger
from shared.subjects import STREAM_ACCOUNT, Subjects

GROUP = "ledger"  # the consumers' one priority group
PIN_HEADER = "Nats-Pin-Id"
WRONG_PIN = "423"  # our pin moved to another client
REFUSED = "409"  # the request was refused or cut short: wait a moment before the next
END_OF_PULL = frozenset({"404", "408", "409", WRONG_PIN})  # statuses that end a pull request
API_DEADLINE_S = 5.0
REST_WAIT_S = 0.05  # for the rest of a delivery the server is sending
PULL_RETRY_S = 0.5
CATCH_UP_BATCH = 1000  # after a pull request could not be sent (reconnecting)
NS = 1_000_000_000
log = get_logger("positions")


def consumer_name(base: str, partition: int) -> str:
    """The durable consumer of one partition: `positions-0`, `positions-1`, ..."""
    return f"{base}-{partition}"


def consumer_config(settings: PositionsSettings, subjects: Subjects, partition: int) -> dict[str, Any]:
    """The partition consumer, as the JetStream API takes it (nats-py 2.16 has no fields for
    priority groups): ack all, pinned-client group, its partition's subjects only."""
    name = consumer_name(settings.positions_consumer, partition)
    return {
        "name": name, "durable_name": name, "ack_policy": "all", "deliver_policy": "all",
        "filter_subject": subjects.partition_filter(STREAM_ACCOUNT, partition),
        "ack_wait": int(settings.positions_ack_wait_seconds * NS), "max_deliver": -1,
        "max_ack_pending": settings.positions_max_ack_pending,
        "priority_groups": [GROUP], "priority_policy": "pinned_client",
        "priority_timeout": int(settings.positions_pinned_ttl_seconds * NS),
    }


async def api(nc: Client, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JetStream API request, bounded; an error answer raises TransientError (the caller
    retries: the server restarting) — a refusal of our config would repeat, and says why."""
    payload = json.dumps(body).encode() if body is not None else b""
    try:
        reply = await nc.request(subject, payload, timeout=API_DEADLINE_S)
    except (nats.errors.Error, TimeoutError) as exc:
        raise TransientError(f"{subject}: {type(exc).__name__}: {exc}") from exc
    answer: dict[str, Any] = json.loads(reply.data)
    if "error" in answer:
        raise TransientError(f"{subject}: {answer['error']}")
    return answer


async def ensure_consumer(nc: Client, settings: PositionsSettings, subjects: Subjects, partition: int) -> str:
    """Create (or update) a partition's durable consumer; its name."""
    config = consumer_config(settings, subjects, partition)
    stream = subjects.stream(STREAM_ACCOUNT)
    await api(nc, f"$JS.API.CONSUMER.CREATE.{stream}.{config['name']}",
              {"stream_name": stream, "config": config, "action": ""})
    return str(config["name"])


@dataclass
class PinnedPull:
    """The pull requests of this client on one partition consumer, and its pin.

    At most one request is open at a time; every message delivered to it is returned by
    `fetch` — none is ever dropped, for an ack of a later one would acknowledge it."""

    nc: Client
    stream: str
    consumer: str
    expires: float  # of each request: below the pinned TTL, so that an owner keeps its pin
    pin: str | None = None
    takeovers: int = 0  # how often this client became the pinned one
    _sub: Subscription | None = None
    _inbox: str = ""
    _arrived: list[Msg] = field(default_factory=list)
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _open_until: float = 0.0  # monotonic deadline of the open request; 0: none open
    _open_pin: str | None = None  # the pin id the open request carried
    _open_left: int = 0  # messages the open request may still deliver
    _paused: bool = False
    _ended: asyncio.Event = field(default_factory=asyncio.Event)  # no request open

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_message)

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        self._arrived.append(msg)
        self._event.set()

    @property
    def owner(self) -> bool:
        """This client holds the pin, as far as it knows (the server may have moved it)."""
        return self.pin is not None

    @property
    def requesting(self) -> bool:
        return self._open_until > time.monotonic()

    async def fetch(self, batch: int, wait: float) -> list[Msg]:
        """The messages delivered to this client, at least one if any arrive within `wait` s;
        [] otherwise. Sends a pull request whenever none is open (and not paused)."""
        deadline = time.monotonic() + wait
        while True:
            if not self._paused and not self.requesting:
                await self._request(batch)
            msgs = self._take()
            if msgs:
                return await self._rest_of(msgs, batch)
            if not self._paused and not self.requesting:
                continue  # the request just ended: the next one at once (an owner keeps its pin)
            now = time.monotonic()
            if now >= deadline:
                return []
            until = min(deadline, self._open_until) if self.requesting else deadline
            self._event.clear()
            if self._arrived:  # arrived between the take and the clear
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), max(until - now, 0.001))

    async def _rest_of(self, msgs: list[Msg], batch: int) -> list[Msg]:
        """Complete a batch with what the server is sending already: the last message's
        metadata says how many more the consumer holds, and the open request has room for
        them (they may just be in the socket's next read). Bounded by `REST_WAIT_S` each."""
        while self.requesting and len(msgs) < batch and msgs[-1].metadata.num_pending > 0:
            self._event.clear()
            if not self._arrived:
                try:
                    await asyncio.wait_for(self._event.wait(), REST_WAIT_S)
                except TimeoutError:
                    break
            more = self._take()
            if not more:
                break
            msgs += more
        return msgs

    def _take(self) -> list[Msg]:
        """The data messages arrived so far; status messages end the open request."""
        arrived, self._arrived = self._arrived, []
        msgs: list[Msg] = []
        for msg in arrived:
            headers = msg.headers or {}
            status = headers.get("Status") if not msg.data else None
            if status is None:
                self._on_delivery(headers.get(PIN_HEADER))
                msgs.append(msg)
                self._open_left -= 1
                if self._open_left <= 0:  # the request is complete: the server sends no status
                    self._ended_now()
            elif status in END_OF_PULL:
                if status == WRONG_PIN and self._open_pin is not None and self._open_pin == self.pin:
                    log.info("partition_lost", consumer=self.consumer)
                    self.pin = None
                self._ended_now()
                if status == REFUSED:  # the consumer deleted, too many waiting pulls, ...
                    log.debug("pull_refused", consumer=self.consumer,
                              reason=headers.get("Description", ""))
                    self._open_until = time.monotonic() + PULL_RETRY_S
        return msgs

    def _ended_now(self) -> None:
        self._open_until = 0.0
        self._ended.set()

    def _on_delivery(self, pin: str | None) -> None:
        if pin is not None and pin != self.pin:
            self.pin = pin
            self.takeovers += 1
            log.info("partition_pinned", consumer=self.consumer)

    async def _request(self, batch: int) -> None:
        body: dict[str, Any] = {"batch": batch, "expires": int(self.expires * NS), "group": GROUP}
        if self.pin is not None:
            body["id"] = self.pin
        # Open before the first await: `fetch` and `keep_pin` must not both send one. The
        # server ends it with a status after `expires`; a lost one (a reconnect) is given up
        # a little later, and its late messages, if any, are still taken.
        self._open_pin, self._open_left = self.pin, batch
        self._open_until = time.monotonic() + self.expires + 1.0
        self._ended.clear()
        try:
            await self.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}",
                                  json.dumps(body).encode(), reply=self._inbox)
        except nats.errors.Error as exc:  # reconnecting: try again in a moment
            log.debug("pull_failed", consumer=self.consumer, error=f"{type(exc).__name__}: {exc}")
            self._open_pin, self._open_until = None, time.monotonic() + PULL_RETRY_S

    async def keep_pin(self) -> None:
        """While the pipeline is busy (no `fetch` running): a pull for one message, so that the
        server sees the owner pulling within the pinned TTL. What it delivers waits for the
        next `fetch` (at most one message per call)."""
        if self.owner and not self._paused and not self.requesting:
            await self._request(1)

    async def request_ended(self) -> None:
        """Until the open request (if any) has ended, or has been given up."""
        remaining = self._open_until - time.monotonic()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), remaining)

    def pause(self) -> None:
        """Stop pulling (to hand the partition over): no request after the open one."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    async def unpin(self) -> None:
        """Ask the server to pick another client of the group now."""
        self.pin = None
        await api(self.nc, f"$JS.API.CONSUMER.UNPIN.{self.stream}.{self.consumer}", {"group": GROUP})


async def catch_up(
    js: JetStreamContext, nc: Client, stream: str, consumer: str, subject_filter: str,
    before: int,
) -> list[Msg]:
    """The partition's messages between the consumer's ack floor and stream sequence `before`
    (exclusive), read from the stream by an ephemeral consumer: what a previous owner held
    unacknowledged. They carry a reply subject of the partition's consumer with delivery
    sequence 0, for their metadata only: they are acknowledged by the batch's one ack, never by
    themselves."""
    try:
        async with asyncio.timeout(API_DEADLINE_S):
            info = await js.consumer_info(stream, consumer)
        start = info.ack_floor.stream_seq + 1
        if start >= before:
            return []
        async with asyncio.timeout(API_DEADLINE_S):
            first = await js.get_msg(stream, seq=start, subject=subject_filter, next=True)
        if first.seq is None or first.seq >= before:
            return []  # nothing of this partition in between: the common case
        return await _read(js, nc, stream, consumer, subject_filter, first.seq, before)
    except NotFoundError:
        return []
    except (nats.errors.Error, TimeoutError) as exc:
        raise TransientError(f"catch-up of {consumer}: {type(exc).__name__}: {exc}") from exc


async def _read(
    js: JetStreamContext, nc: Client, stream: str, consumer: str, subject_filter: str, start: int,
    before: int,
) -> list[Msg]:
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
                            ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
                            num_replicas=1)
    sub = await js.pull_subscribe(subject_filter, stream=stream, config=config)
    found: list[Msg] = []
    try:
        while True:
            # One, then exactly what its metadata says is pending (nats-py's fetch of more than
            # exists waits its whole timeout).
            msgs = await sub.fetch(1, timeout=API_DEADLINE_S)
            wanted = min(CATCH_UP_BATCH, msgs[-1].metadata.num_pending)
            if wanted:
                msgs += await sub.fetch(wanted, timeout=API_DEADLINE_S)
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq >= before:
                    return found
                stamp = int(msg.metadata.timestamp.timestamp() * NS)
                found.append(Msg(_client=nc, subject=msg.subject, data=msg.data, headers=msg.headers,
                                 reply=f"$JS.ACK.{stream}.{consumer}.1.{seq}.0.{stamp}.0"))
            if msgs[-1].metadata.num_pending == 0:
                return found
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


def delivered(msg: Msg) -> bool:
    """A message this consumer delivered (not one `catch_up` read from the stream)."""
    return bool(msg.metadata.sequence.consumer)


def last_of(msgs: Sequence[Msg]) -> Msg:
    """The delivered message with the highest stream sequence: its ack (AckAll) settles all."""
    return max((m for m in msgs if delivered(m)), key=lambda m: m.metadata.sequence.stream)


@dataclass(frozen=True, slots=True)
class Backlog:
    """The partition consumers together, as JetStream counts them."""

    partitions: int
    consumers: int  # that exist
    pending: int  # not delivered yet
    ack_pending: int  # delivered, not acknowledged
    delivered_stream_seq: int  # the highest stream sequence delivered by any of them

    @property
    def settled(self) -> bool:
        """Every partition consumer exists and has nothing left to deliver or acknowledge."""
        return self.consumers == self.partitions and self.pending == 0 and self.ack_pending == 0


async def backlog(js: JetStreamContext, subjects: Subjects, base: str, partitions: int) -> Backlog:
    """How far the ledger is behind the ACCOUNT stream, over all `partitions` consumers."""
    consumers = pending = ack_pending = delivered_seq = 0
    for partition in range(partitions):
        try:
            async with asyncio.timeout(API_DEADLINE_S):
                info = await js.consumer_info(subjects.stream(STREAM_ACCOUNT), consumer_name(base, partition))
        except NotFoundError:
            continue
        consumers += 1
        pending += info.num_pending or 0
        ack_pending += info.num_ack_pending or 0
        delivered_seq = max(delivered_seq, info.delivered.stream_seq or 0)
    return Backlog(partitions, consumers, pending, ack_pending, delivered_seq)
