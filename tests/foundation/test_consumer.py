"""shared.consumer: the table from failure to fate (pure), and the dead-letter writer and
settle on real PostgreSQL and NATS JetStream. Both services' consumers use these; their own
tests (tests/test_consumers.py) show the same fates through each service."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import nats.errors
import nats.js.errors
import pytest
import pytest_asyncio
from asyncpg import exceptions as pg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared.bus import connect_nats
from shared.consumer import (
    ACK,
    PERMANENT,
    REJECTED,
    UNKNOWN,
    DeadLetter,
    DeadLetters,
    Nak,
    fate_of,
    settle,
)
from shared.db import create_pool
from shared.errors import PermanentError, TransientError
from shared.subjects import STREAM_ACCOUNT, Subjects
from tests.factories import wait_for


class Anomaly(PermanentError):
    kind = "fold_anomaly"


def rejected(exc: Exception) -> DeadLetter:
    return DeadLetter(f"rejected by PostgreSQL: {type(exc).__name__}: {exc}", REJECTED)


TRANSIENT = [
    pytest.param(pg.SerializationError("could not serialize access"), id="40001-serialization"),
    pytest.param(pg.DeadlockDetectedError("deadlock detected"), id="40P01-deadlock"),
    pytest.param(pg.ConnectionFailureError("connection failure"), id="08006-connection"),
    pytest.param(pg.ProtocolViolationError("protocol violation"), id="08P01-connection"),
    pytest.param(pg.TooManyConnectionsError("too many clients"), id="53300-resources"),
    pytest.param(pg.DiskFullError("disk full"), id="53100-resources"),
    pytest.param(pg.AdminShutdownError("terminating connection"), id="57P01-shutdown"),
    pytest.param(pg.CannotConnectNowError("the database system is starting up"), id="57P03-starting"),
    pytest.param(pg.QueryCanceledError("canceling statement"), id="57014-canceled"),
    pytest.param(pg.PostgresIOError("could not read block"), id="58030-io"),
    pytest.param(pg.ConnectionDoesNotExistError("connection was closed"), id="connection-closed"),
    pytest.param(pg.InterfaceError("pool is closed"), id="client-interface"),
    pytest.param(pg.OutdatedSchemaCacheError("cached statement plan is invalid"), id="client-internal"),
    pytest.param(TimeoutError(), id="timeout"),
    pytest.param(ConnectionRefusedError(111, "refused"), id="os-error"),
    pytest.param(TransientError("database unavailable"), id="ours-transient"),
    pytest.param(nats.errors.TimeoutError(), id="nats-timeout"),
    pytest.param(nats.errors.ConnectionClosedError(), id="nats-closed"),
    pytest.param(nats.errors.OutboundBufferLimitError(), id="nats-buffer-full"),
    pytest.param(nats.js.errors.ServiceUnavailableError(), id="jetstream-unavailable"),
]
DEAD = [
    pytest.param(pg.NumericValueOutOfRangeError("numeric field overflow"), id="22003-overflow"),
    pytest.param(pg.InvalidTextRepresentationError("invalid input syntax"), id="22P02-text"),
    pytest.param(pg.UntranslatableCharacterError("unsupported Unicode escape"), id="22P05-character"),
    pytest.param(pg.UniqueViolationError("duplicate key value"), id="23505-unique"),
    pytest.param(pg.ForeignKeyViolationError("violates foreign key"), id="23503-foreign-key"),
    pytest.param(pg.CheckViolationError("violates check constraint"), id="23514-check"),
    pytest.param(pg.NotNullViolationError("null value"), id="23502-not-null"),
]
UNKNOWN_FAILURES = [
    pytest.param(pg.UndefinedTableError("relation does not exist"), id="42P01-our-sql"),
    pytest.param(pg.PostgresSyntaxError("syntax error"), id="42601-our-sql"),
    pytest.param(pg.InFailedSQLTransactionError("transaction is aborted"), id="25P02-our-flow"),
    pytest.param(ZeroDivisionError("division by zero"), id="bug"),
    pytest.param(KeyError("missing"), id="bug-key"),
    pytest.param(nats.errors.BadSubjectError(), id="nats-bad-subject"),
    pytest.param(nats.errors.MaxPayloadError(), id="nats-max-payload"),
    pytest.param(nats.js.errors.BadRequestError(), id="jetstream-bad-request"),
]


@pytest.mark.parametrize("exc", TRANSIENT)
def test_a_failure_a_retry_can_cure_is_nacked(exc: BaseException) -> None:
    assert fate_of(exc) == Nak()
    # ... however often it happens: a transient failure is never given up on
    assert fate_of(exc, delivered=100, give_up_after=2) == Nak()


@pytest.mark.parametrize("exc", DEAD)
def test_a_value_postgresql_refuses_is_a_dead_letter_of_kind_rejected(exc: Exception) -> None:
    assert fate_of(exc) == rejected(exc)
    assert fate_of(exc, delivered=1, give_up_after=1) == rejected(exc)


@pytest.mark.parametrize(
    ("exc", "fate"),
    [
        pytest.param(PermanentError("schema-invalid fill: body: Invalid JSON"),
                     DeadLetter("schema-invalid fill: body: Invalid JSON", PERMANENT), id="permanent"),
        pytest.param(Anomaly("over-close"), DeadLetter("over-close", "fold_anomaly"), id="own-kind"),
        pytest.param(PermanentError(), DeadLetter("PermanentError", PERMANENT), id="no-reason"),
    ],
)
def test_our_permanent_errors_are_dead_letters_of_their_own_kind(
    exc: PermanentError, fate: DeadLetter
) -> None:
    assert fate_of(exc) == fate == DeadLetter.of(exc)
    assert fate_of(exc, delivered=1, give_up_after=1) == fate


@pytest.mark.parametrize("exc", UNKNOWN_FAILURES)
def test_an_unknown_failure_stalls_or_is_given_up_after_the_consumers_deliveries(exc: Exception) -> None:
    assert fate_of(exc) == Nak(unknown=True)  # stall: never dropped
    assert fate_of(exc, delivered=10**6) == Nak(unknown=True)
    assert fate_of(exc, delivered=2, give_up_after=3) == Nak(unknown=True)
    assert fate_of(exc, delivered=3, give_up_after=3) == DeadLetter(
        f"failed 3 deliveries: {type(exc).__name__}: {exc}", UNKNOWN)


# --- the writer and settle, on the real servers --------------------------------------------


async def _delivered(js: JetStreamContext, subjects: Subjects, payloads: list[bytes]) -> list[Msg]:
    """Publish to the ACCOUNT stream and fetch them back as a durable consumer would."""
    subject = subjects.fill("a", "BTC-USDT-SWAP")
    for payload in payloads:
        await js.publish(subject, payload, headers={"schema-version": "1"})
    # The stream keeps them under the subject's stored (partitioned) form.
    sub = await js.pull_subscribe(subjects.stored_filter(subject), durable=f"t{secrets.token_hex(3)}",
                                  stream=subjects.stream(STREAM_ACCOUNT))
    msgs: list[Msg] = await sub.fetch(len(payloads), timeout=5)
    return msgs


class Notices:
    """Everything published on one dead-letter subject (core NATS)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.received: list[Msg] = []

    async def start(self, subject: str) -> None:
        async def keep(msg: Msg) -> None:
            self.received.append(msg)

        await self.nc.subscribe(subject, cb=keep)
        await self.nc.flush()

    async def settled(self) -> list[Msg]:
        """What has arrived once the server has routed all that it had (a PING round trip on a
        connection is answered after every message queued to it)."""
        await self.nc.flush()
        return self.received


@pytest_asyncio.fixture(loop_scope="session")
async def listener(nats_url: str) -> AsyncIterator[Client]:
    client = await connect_nats(nats_url, name="dead-letter-listener")
    try:
        yield client
    finally:
        await client.close()


async def test_a_redelivered_dead_letter_is_recorded_once_per_stream_sequence(
    db_pool: asyncpg.Pool, js: JetStreamContext, nc: Client, subjects: Subjects,
) -> None:
    first, second = await _delivered(js, subjects, [b"x", b"y"])
    letter = DeadLetter("bad", PERMANENT)
    positions = DeadLetters("positions", nc, subjects.dead_letter("positions"))
    for msg in (first, first, second, first):  # the first redelivered twice (its ack was lost)
        await positions.record(db_pool, msg, letter)
    await DeadLetters("metrics", nc, subjects.dead_letter("metrics")).record(db_pool, first, letter)
    rows = await db_pool.fetch("SELECT service, stream_seq FROM aitrader.dead_letters ORDER BY id")
    assert [(r["service"], r["stream_seq"]) for r in rows] == [
        ("positions", 1), ("positions", 2), ("metrics", 1)]


async def test_a_dead_letter_is_one_row_and_one_notice_with_the_exact_bytes_then_acked(
    db_pool: asyncpg.Pool, js: JetStreamContext, nc: Client, listener: Client, subjects: Subjects,
) -> None:
    hostile = b"\xff\x00{not utf-8"
    msgs = await _delivered(js, subjects, [b"ok", hostile])
    notices = Notices(listener)
    await notices.start(subjects.dead_letter("svc"))
    letters = DeadLetters("svc", nc, subjects.dead_letter("svc"))

    await settle(msgs, {0: ACK, 1: DeadLetter("schema-invalid fill: line\nbreak", "permanent")},
                 letters, record_on=db_pool)

    [row] = await db_pool.fetch("SELECT * FROM aitrader.dead_letters")
    assert (bytes(row["payload_bytes"]), row["error_type"], row["stream_seq"]) == (hostile, "permanent", 2)
    assert (row["service"], row["stream"], row["headers"]) == (
        "svc", subjects.stream(STREAM_ACCOUNT), {"schema-version": "1"})
    await nc.flush(timeout=5)  # the notice left nc; then the listener has it
    [notice] = await notices.settled()
    assert notice.data == hostile
    assert notice.headers == {
        "service": "svc", "subject": msgs[1].subject, "stream": subjects.stream(STREAM_ACCOUNT),
        "stream-seq": "2", "error-type": "permanent", "reason": "schema-invalid fill: line break",
    }
    await _all_acked(js, subjects, msgs[0].metadata.consumer)


async def test_a_notice_nats_refuses_blocks_neither_the_row_nor_the_ack(
    db_pool: asyncpg.Pool, js: JetStreamContext, nats_url: str, subjects: Subjects,
) -> None:
    [msg] = await _delivered(js, subjects, [b"poison"])
    refusing = await connect_nats(nats_url, name="closed")
    await refusing.close()  # every publish on it raises ConnectionClosedError
    letters = DeadLetters("svc", refusing, subjects.dead_letter("svc"), timeout=1.0)

    await settle([msg], {0: DeadLetter("bad", PERMANENT)}, letters, record_on=db_pool)

    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.dead_letters") == 1
    await _all_acked(js, subjects, msg.metadata.consumer)


async def test_a_dead_letter_that_cannot_be_recorded_is_nacked_and_comes_back(
    db_dsn: str, js: JetStreamContext, nc: Client, listener: Client, subjects: Subjects,
) -> None:
    [msg] = await _delivered(js, subjects, [b"poison"])
    closed = await create_pool(db_dsn, min_size=0, max_size=1)
    await closed.close()
    notices = Notices(listener)
    await notices.start(subjects.dead_letter("svc"))

    await settle([msg], {0: DeadLetter("bad", PERMANENT)},
                 DeadLetters("svc", nc, subjects.dead_letter("svc")), record_on=closed)

    sub = await js.pull_subscribe_bind(durable=msg.metadata.consumer, stream=subjects.stream(STREAM_ACCOUNT))
    [again] = await sub.fetch(1, timeout=10)  # nacked with a delay, not acked
    assert (again.data, again.metadata.num_delivered) == (b"poison", 2)
    assert await notices.settled() == []  # no notice for a dead letter that is not recorded


async def _all_acked(js: JetStreamContext, subjects: Subjects, consumer: str) -> None:
    async def acked() -> bool:
        info = await js.consumer_info(subjects.stream(STREAM_ACCOUNT), consumer)
        return bool(info.num_ack_pending == 0)

    await wait_for(acked, timeout=5, message="every message acked")
    info = await js.consumer_info(subjects.stream(STREAM_ACCOUNT), consumer)
    assert (info.num_pending, info.num_redelivered) == (0, 0)
