"""The NATS entry: durable JetStream pull consumers; decode, call one handler, then ack.

nats-py pull subscriptions rather than FastStream handlers: messages of one consumer are
handled one at a time in stream order (the indicator state needs order), and the error type
alone decides what happens to a message:

- handled, or `DuplicateError` -> ack (after the handler's transaction committed);
- `PermanentError`, an invalid payload, a data / constraint error -> dead letter + ack;
- `TransientError`, a lost database or connection -> nak, redelivered after a delay;
- anything else -> nak, and dead letter once it has failed `max_deliver` times.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ValidationError

from shared.db import record_dead_letter
from shared.errors import DuplicateError, PermanentError, TransientError

SERVICE = "metrics"
RETRY_DELAY_S = 2.0
Handle = Callable[[str, bytes], Awaitable[str]]
M = TypeVar("M", bound=BaseModel)
TRANSIENT = (TransientError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)
REJECTED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


def decode(model: type[M], subject: str, data: bytes) -> M:
    """Parse a payload; a malformed one is a PermanentError naming the first bad field."""
    try:
        event = model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise PermanentError(f"invalid {model.__name__}: {where}: {first['msg']}") from None
    inst_id = getattr(event, "inst_id", None)
    if inst_id is not None and not subject.endswith(f".{inst_id}"):
        raise PermanentError(f"subject {subject} does not match instId {inst_id}")
    return event


@dataclass
class Consumer:
    """One durable pull consumer and the handler of its messages."""

    js: JetStreamContext
    nc: Client
    pool: asyncpg.Pool
    stream: str
    durable: str
    filters: list[str]
    handle: Handle
    dead_letter_subject: str
    log: Any
    max_deliver: int = 10
    batch: int = 100

    async def run(self) -> None:
        """Fetch and handle messages until cancelled."""
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
            filter_subjects=self.filters if len(self.filters) > 1 else None,
        )
        sub = await self.js.pull_subscribe(
            self.filters[0], durable=self.durable, stream=self.stream, config=config
        )
        self.log.info("consumer_started", durable=self.durable, filters=self.filters)
        while True:
            try:
                messages = await sub.fetch(self.batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                # nats-py raises either, depending on where the wait expired.
                continue
            for msg in messages:
                await self.process(msg)

    async def process(self, msg: Msg) -> None:
        """Handle one message and settle it according to the outcome."""
        delivered = msg.metadata.num_delivered
        log = self.log.bind(subject=msg.subject, delivered=delivered)
        try:
            outcome = await self.handle(msg.subject, msg.data)
        except DuplicateError:
            await msg.ack()
        except (PermanentError, *REJECTED) as exc:
            await self._reject(msg, log, exc)
        except TRANSIENT as exc:
            log.warning("message_retry", error=f"{type(exc).__name__}: {exc}")
            await msg.nak(delay=RETRY_DELAY_S)
        except Exception as exc:  # a bug must not block the stream forever: retry, then reject
            log.exception("message_failed")
            if delivered >= self.max_deliver:
                await self._reject(msg, log, exc)
            else:
                await msg.nak(delay=RETRY_DELAY_S)
        else:
            await msg.ack()
            log.debug("message_handled", outcome=outcome)

    async def _reject(self, msg: Msg, log: Any, exc: BaseException) -> None:
        """Keep the message with its reason (table + dead-letter subject), then ack it."""
        reason = str(exc) or type(exc).__name__
        try:
            await record_dead_letter(
                self.pool, service=SERVICE, subject=msg.subject, payload=msg.data,
                reason=reason, error_type=type(exc).__name__, headers=dict(msg.headers or {}),
                stream=msg.metadata.stream, stream_seq=msg.metadata.sequence.stream,
            )
        except TRANSIENT as db_error:  # not recorded yet: keep the message for a retry
            log.warning("dead_letter_failed", error=str(db_error))
            await msg.nak(delay=RETRY_DELAY_S)
            return
        log.warning("message_rejected", reason=reason, error_type=type(exc).__name__)
        body = json.dumps({"subject": msg.subject, "reason": reason,
                           "payload": msg.data.decode("utf-8", errors="replace")})
        try:
            await self.nc.publish(self.dead_letter_subject, body.encode())
        except nats.errors.Error as pub_error:  # the table row is the record; the subject is a courtesy
            log.warning("dead_letter_publish_failed", error=str(pub_error))
        await msg.ack()
