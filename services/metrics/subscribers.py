"""The NATS entry: durable JetStream pull consumers; decode, call one handler, then settle.

nats-py pull subscriptions rather than FastStream handlers: messages of one consumer are
handled one at a time in stream order (the indicator state needs order). The fate of a failed
message is `shared.consumer.fate_of`'s (dead letter + ack, or nak and redelivery after a
delay); an unknown failure is redelivered, and dead-lettered on its `max_deliver`-th delivery
so that a bug cannot block a market stream forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ValidationError

from shared.consumer import (
    ACK,
    UNKNOWN,
    DeadLetters,
    Fate,
    Nak,
    fate_of,
    observe_fetch,
    settle,
    watch_consumer,
)
from shared.errors import PermanentError
from shared.health import Progress
from shared.messages import check_size

SERVICE = "metrics"
FETCH_RETRY_S = 1.0  # after a fetch NATS failed (not a timeout)
Handle = Callable[[str, bytes], Awaitable[str]]
M = TypeVar("M", bound=BaseModel)


def decode(model: type[M], subject: str, data: bytes, subject_inst_id: str | None) -> M:
    """Parse a payload; a malformed or oversized one, or one whose instId is not its subject's
    (`subject_inst_id`, from `Subjects.parse`), is a PermanentError naming what is wrong."""
    check_size(data)
    try:
        event = model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise PermanentError(f"invalid {model.__name__}: {where}: {first['msg']}") from None
    inst_id = getattr(event, "inst_id", None)
    if inst_id is not None and inst_id != subject_inst_id:
        raise PermanentError(f"subject {subject} does not match instId {inst_id}")
    return event


@dataclass
class Consumer:
    """One durable pull consumer and the handler of its messages."""

    js: JetStreamContext
    pool: asyncpg.Pool
    stream: str
    durable: str
    filters: list[str]
    handle: Handle
    letters: DeadLetters
    log: Any
    max_deliver: int = 10
    batch: int = 100
    progress: Progress = field(default_factory=lambda: Progress("consumer"))

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
        async with asyncio.TaskGroup() as group:
            group.create_task(watch_consumer(self.js, SERVICE, self.stream, self.durable))
            await self._consume(sub)

    async def _consume(self, sub: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await sub.fetch(self.batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                # nats-py raises either, depending on where the wait expired.
                self.progress.beat()  # idle, and able to ask
                continue
            except nats.errors.Error as exc:  # NATS restarting (no responders, reconnecting)
                self.log.warning("fetch_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(FETCH_RETRY_S)
                continue
            observe_fetch(SERVICE, self.durable, messages)
            for msg in messages:
                await self.process(msg)
            self.progress.beat()

    async def process(self, msg: Msg) -> None:
        """Handle one message and settle it according to the outcome."""
        delivered = msg.metadata.num_delivered
        log = self.log.bind(subject=msg.subject, delivered=delivered)
        fate: Fate = ACK
        try:
            outcome = await self.handle(msg.subject, msg.data)
        except Exception as exc:  # the boundary: fate_of decides, no message stops the stream
            fate = fate_of(exc, delivered=delivered, give_up_after=self.max_deliver)
            if isinstance(fate, Nak) and not fate.unknown:
                log.warning("message_retry", error=f"{type(exc).__name__}: {exc}")
            elif isinstance(fate, Nak) or fate.kind == UNKNOWN:
                log.exception("message_failed")
        else:
            log.debug("message_handled", outcome=outcome)
        await settle((msg,), {0: fate}, self.letters, record_on=self.pool)
