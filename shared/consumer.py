"""What happens to a JetStream message: its fate as a value, the one table from a failure to a
fate, the one dead-letter writer, the one function that settles a fetched batch, and the
consumers' metrics (`observe_fetch` for each batch, `watch_consumer` for JetStream's counts).

`fate_of(exc)`, the table (first match wins):

- `PermanentError` (a subclass may name its own `kind`)      -> DeadLetter(reason, its kind)
- PostgreSQL refused a value: SQLSTATE class 22 (data), 23   -> DeadLetter(reason, "rejected")
  (integrity constraint)
- SQLSTATE class 08 (connection), 40 (serialization failure, -> Nak(delay)
  deadlock), 53 (resources), 57 (shutdown, cancel), 58 (system)
- `TransientError`, OSError (timeouts too), asyncpg's client -> Nak(delay)
  side, NATS connection and server errors
- anything else (our SQL, a bug)                             -> Nak(delay, unknown=True), or
                                                                DeadLetter(reason, "unknown")
                                                                on the `give_up_after`-th delivery

"Stall rather than drop an unknown failure" is the consumer's choice, `give_up_after`: None for
the positions ledger (a fill is never dropped for our own fault), a delivery count for metrics
(a bug must not block a market stream forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge, Histogram

from shared.db import Executor
from shared.errors import PermanentError, TransientError
from shared.logging import get_logger
from shared.subjects import SubjectError, Subjects

# Dead-letter kinds (aitrader.dead_letters.error_type) given here; a service may add its own
# (positions: "fold_anomaly").
PERMANENT = PermanentError.kind
REJECTED = "rejected"  # PostgreSQL refused one of the message's values
UNKNOWN = "unknown"  # an unknown failure, given up after `give_up_after` deliveries

# The ack subject `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` (v1);
# v2 adds the domain and an account hash (nats-py: `Msg.Ack.NumDelivered`).
_V1_TOKENS, _V1_DELIVERED = 9, 4
RETRY_DELAY_S = 2.0
DEADLINE_S = 5.0  # for each network step of settling: a record, a notice, a batch of acks
_RETRY_SQLSTATE = frozenset({"08", "40", "53", "57", "58"})
_REFUSED_SQLSTATE = frozenset({"22", "23"})
# NATS failures a retry can cure: the connection or the server, not the request (a bad subject,
# header or payload, a JetStream API refusal are unknown failures, given up where allowed).
_NATS_TRANSIENT = (
    nats.errors.TimeoutError, nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError, nats.errors.NoServersError, nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError, nats.errors.StaleConnectionError, nats.errors.FlushTimeoutError,
    nats.errors.SlowConsumerError, nats.js.errors.ServiceUnavailableError, nats.js.errors.FetchTimeoutError,
    nats.js.errors.NoStreamResponseError, nats.js.errors.TooManyStalledMsgsError,
)
_TRANSIENT = (TransientError, OSError, asyncpg.InterfaceError, asyncpg.InternalClientError,
              *_NATS_TRANSIENT)
_REASON_CHARS = 2000
CHECK_EVERY_S = 15.0  # how often `watch_consumer` asks JetStream for a consumer's counts
PENDING = Gauge("aitrader_consumer_pending", "Messages in the stream a durable consumer has not been "
                "delivered yet (its lag), as of its latest fetch or check.", ["service", "consumer"])
ACK_PENDING = Gauge("aitrader_consumer_ack_pending", "Messages delivered to a durable consumer and "
                    "not acknowledged yet, as of its latest check.", ["service", "consumer"])
REDELIVERED = Counter("aitrader_messages_redelivered", "Fetched messages that had been delivered "
                      "before (num_delivered > 1).", ["service", "consumer"])
BATCH_SIZE = Histogram("aitrader_consumer_batch_size", "Messages per fetched batch.",
                       ["service", "consumer"],
                       buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000))
SETTLED = Counter("aitrader_messages_settled", "Messages a consumer settled, by fate (ack, nak, "
                  "dead_letter) and dead-letter kind.", ["service", "fate", "kind"])


@dataclass(frozen=True, slots=True)
class Ack:
    """Done: the effects are committed (or there were none to make)."""


ACK = Ack()


@dataclass(frozen=True, slots=True)
class Nak:
    """Redeliver after `delay` seconds: the same message may succeed later."""

    delay: float = RETRY_DELAY_S
    unknown: bool = False  # no rule knows the failure (a bug?): worth a traceback in the log


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Never processable: keep it with its reason (`kind` is the row's error_type), then ack."""

    reason: str
    kind: str

    @classmethod
    def of(cls, exc: PermanentError) -> DeadLetter:
        return cls(str(exc) or type(exc).__name__, exc.kind)


Fate = Ack | Nak | DeadLetter


def fate_of(exc: BaseException, *, delivered: int = 1, give_up_after: int | None = None) -> Nak | DeadLetter:
    """The fate of a message whose handling raised `exc` (the table in the module docstring)."""
    if isinstance(exc, PermanentError):
        return DeadLetter.of(exc)
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate_class = str(exc.sqlstate or "")[:2]
        if sqlstate_class in _REFUSED_SQLSTATE:
            return DeadLetter(f"rejected by PostgreSQL: {type(exc).__name__}: {exc}", REJECTED)
        if sqlstate_class in _RETRY_SQLSTATE:
            return Nak()
    elif isinstance(exc, _TRANSIENT):
        return Nak()
    if give_up_after is not None and delivered >= give_up_after:
        return DeadLetter(f"failed {delivered} deliveries: {type(exc).__name__}: {exc}", UNKNOWN)
    return Nak(unknown=True)


def account_named(msg: Msg, subjects: Subjects | None) -> UUID | None:
    """The account a message names: its subject's `account_id` token, else its JSON body's
    `account_id`; None when neither names one. Never raises: whatever the message carries, its
    dead letter is written (with no account, a person reads it; no console token does)."""
    if subjects is not None:
        with contextlib.suppress(SubjectError):
            subject = msg.subject
            with contextlib.suppress(SubjectError):  # stored with a partition token (ACCOUNT)
                subject = subjects.published(subject)
            named = _uuid(subjects.parse(subject).tokens.get("account_id"))
            if named is not None:
                return named
    try:
        body = json.loads(msg.data)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        return None
    return _uuid(body.get("account_id")) if isinstance(body, dict) else None


def _uuid(value: object) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _storable(text: str) -> str:
    """Text PostgreSQL accepts: NUL (which text and jsonb refuse) shown as U+FFFD."""
    return text.replace("\x00", "\ufffd")


@dataclass(frozen=True)
class DeadLetters:
    """The dead-letter writer of one service: the row is the record, the notice a courtesy.

    Two steps, because the row belongs in the consumer's own transaction when it has one
    (positions: a dead letter commits with its batch, or not at all) and the notice after the
    commit: `record` the row (or let `settle` record it), and `settle` announces and acks."""

    service: str
    nc: Client
    subject: str  # Subjects.dead_letter(service)
    timeout: float = DEADLINE_S
    subjects: Subjects | None = None  # to read the account of a message's subject

    @property
    def log(self) -> Any:
        return get_logger(self.service)

    async def record(self, db: Executor, msg: Msg, letter: DeadLetter) -> None:
        """Keep a message that can never be processed, with its reason, for a person to query.

        Any byte sequence can be kept: the exact bytes go to `payload_bytes`, a readable rendering
        to `payload`; every field that comes from the wire is made storable, so a hostile message
        cannot make its own dead letter fail (which would retry it forever). With its JetStream
        (stream, sequence) a message is recorded once, however often it is redelivered. The
        account the message names (`account_named`) is kept with it: its console tokens see it."""
        meta = msg.metadata
        async with asyncio.timeout(self.timeout):
            await db.execute(
                """INSERT INTO aitrader.dead_letters
                       (service, subject, reason, error_type, payload, payload_bytes, headers,
                        stream, stream_seq, account_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (service, stream, stream_seq) WHERE stream_seq IS NOT NULL
                   DO NOTHING""",
                self.service,
                _storable(msg.subject),
                _storable(letter.reason)[:_REASON_CHARS],
                letter.kind,
                _storable(msg.data.decode("utf-8", errors="replace")),
                msg.data,
                {_storable(k): _storable(v) for k, v in (msg.headers or {}).items()},
                meta.stream,
                meta.sequence.stream,
                account_named(msg, self.subjects),
            )

    async def announce(self, msg: Msg, letter: DeadLetter) -> None:
        """Publish the message's exact bytes on the dead-letter subject, what happened in the
        headers. Bounded; a refusal is logged, never raised: the row is the record."""
        meta = msg.metadata
        headers = {
            "service": self.service, "subject": msg.subject, "stream": meta.stream,
            "stream-seq": str(meta.sequence.stream), "error-type": letter.kind,
            "reason": _storable(letter.reason)[:_REASON_CHARS],
        }
        self.log.warning("dead_letter", subject=msg.subject, reason=letter.reason, error_type=letter.kind)
        try:
            async with asyncio.timeout(self.timeout):
                await self.nc.publish(self.subject, msg.data, headers=headers)
        except (TimeoutError, nats.errors.Error) as exc:
            self.log.warning("dead_letter_publish_failed", subject=msg.subject,
                             error=f"{type(exc).__name__}: {exc}")


async def settle(
    msgs: Sequence[Msg], fates: Mapping[int, Fate], letters: DeadLetters, *,
    record_on: asyncpg.Pool | None = None,
) -> None:
    """Give each message of a batch its fate; an index without one is acked.

    Dead letters first: the row is recorded on `record_on` (None: the caller's committed
    transaction holds it already), the notice published, then the message acked — or, when the
    row could not be recorded, nacked for a retry. Then the acks and naks in order, under one
    deadline for the batch; a message left unsettled is redelivered after the consumer's ack
    wait (an ack after a commit is idempotent in effect)."""
    naks = {index: fate.delay for index, fate in fates.items() if isinstance(fate, Nak)}
    dead = 0
    for index, fate in fates.items():
        if isinstance(fate, DeadLetter):
            if await _dead_letter(msgs[index], fate, letters, record_on):
                SETTLED.labels(letters.service, "dead_letter", fate.kind).inc()
                dead += 1
            else:
                naks[index] = RETRY_DELAY_S
    SETTLED.labels(letters.service, "nak", "").inc(len(naks))
    SETTLED.labels(letters.service, "ack", "").inc(len(msgs) - len(naks) - dead)
    try:
        async with asyncio.timeout(letters.timeout):
            for index, msg in enumerate(msgs):
                if index in naks:
                    await msg.nak(delay=naks[index])
                else:
                    await msg.ack()
    except (TimeoutError, nats.errors.Error) as exc:
        letters.log.warning("settle_failed", messages=len(msgs), error=f"{type(exc).__name__}: {exc}")


async def _dead_letter(
    msg: Msg, letter: DeadLetter, letters: DeadLetters, record_on: asyncpg.Pool | None
) -> bool:
    if record_on is not None:
        try:
            await letters.record(record_on, msg, letter)
        except Exception as exc:  # not recorded: the message must not be acked
            letters.log.warning("dead_letter_failed", subject=msg.subject,
                                error=f"{type(exc).__name__}: {exc}")
            return False
    await letters.announce(msg, letter)
    return True


async def hold(msgs: Iterable[Msg], timeout: float = DEADLINE_S) -> None:
    """Tell JetStream these messages are still being worked on (no redelivery yet). Bounded; a
    failure is logged: at worst they are redelivered early, and collapse to duplicates."""
    try:
        async with asyncio.timeout(timeout):
            for msg in msgs:
                await msg.in_progress()
    except (TimeoutError, nats.errors.Error) as exc:
        get_logger("consumer").warning("hold_failed", error=f"{type(exc).__name__}: {exc}")


def observe_fetch(service: str, consumer: str, msgs: Sequence[Msg]) -> None:
    """A fetched batch's metrics: its size, the consumer's lag, its redeliveries."""
    if not msgs:
        return
    BATCH_SIZE.labels(service, consumer).observe(len(msgs))
    PENDING.labels(service, consumer).set(msgs[-1].metadata.num_pending)
    redelivered = sum(_redelivered(msg.reply) for msg in msgs)
    if redelivered:
        REDELIVERED.labels(service, consumer).inc(redelivered)


def _redelivered(reply: str) -> bool:
    """The message was delivered before: its ack subject's delivery count is not 1. Read from
    the token itself (nats-py's layout of the v1 and v2 ack subjects): the full `metadata`
    (two dataclasses and a datetime) was a few µs per message of every fetched batch."""
    tokens = reply.split(".")
    return tokens[_V1_DELIVERED if len(tokens) == _V1_TOKENS else Msg.Ack.NumDelivered] != "1"


async def watch_consumer(
    js: JetStreamContext, service: str, stream: str, durable: str, every: float = CHECK_EVERY_S
) -> None:
    """Every `every` s, the durable consumer's lag and unacknowledged count as JetStream has
    them (fresh when idle too). Each check is bounded; a failed one is tried at the next."""
    while True:
        try:
            async with asyncio.timeout(DEADLINE_S):
                info = await js.consumer_info(stream, durable)
        except (TimeoutError, nats.errors.Error) as exc:
            get_logger(service).debug("consumer_check_failed", consumer=durable,
                                      error=f"{type(exc).__name__}: {exc}")
        else:
            PENDING.labels(service, durable).set(info.num_pending or 0)
            ACK_PENDING.labels(service, durable).set(info.num_ack_pending or 0)
        await asyncio.sleep(every)
