"""The NATS entry: a durable pull consumer on the ACCOUNT stream, one transaction per batch
(or, for a large batch, one per account partition, committed concurrently).

Plain nats-py rather than a FastStream subscriber: one fetched batch must be folded in stream
order inside one transaction per part, and each message then needs its own fate (ack, dead
letter + ack, or nak with a delay) — FastStream's batch handlers ack or nack a batch as a whole.

Ack only after commit (of every part). A failure's fate is `shared.consumer.fate_of`'s: one
that only some message can cause (a value PostgreSQL refuses) is isolated by retrying the part
one message at a time and dead-lettered; any other — transient (database down) or unknown (a
bug: stall rather than drop a fill) — retries the same batch (part) with backoff, never acking
early. Dead letters are recorded in the batch's transaction and announced after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from prometheus_client import Counter, Histogram

from services.positions.catalog import InstrumentCatalog
from services.positions.config import PositionsSettings
from services.positions.handlers import BatchOutcome, handle_batch
from services.positions.inbound import Inbound, parse
from services.positions.orphans import OrphanSweeper
from services.positions.store import LedgerStore
from shared.bus import headers_for
from shared.consumer import (
    DeadLetter,
    DeadLetters,
    Fate,
    Nak,
    fate_of,
    hold,
    observe_fetch,
    release,
    settle,
    watch_consumer,
)
from shared.db import Connection
from shared.errors import PermanentError, TransientError
from shared.health import Progress
from shared.logging import get_logger
from shared.subjects import STREAM_ACCOUNT, Subjects

SERVICE = "positions"
log = get_logger(SERVICE)
# A batch smaller than this is one transaction: splitting a few messages only adds round trips.
PARTITION_MIN_MESSAGES = 100
# How long a batch's position events may wait for their PubAcks (and for a free slot to publish).
PUBLISH_DEADLINE_S = 5.0
# Publishes awaiting their PubAck that nats-py allows at once (main creates the JetStream context
# with it; nats-py's default too).
PUBLISH_ASYNC_MAX_PENDING = 4000
FETCH_RETRY_S = 1.0  # after a fetch NATS failed (not a timeout)
BATCH_SECONDS = Histogram("aitrader_positions_batch_seconds",
                          "A fetched batch from parse to settled (folded, committed, published, acked).")
COMMIT_SECONDS = Histogram("aitrader_positions_commit_seconds",
                           "One committed transaction of the ledger (a batch, or a part of one).")
FILLS = Counter("aitrader_positions_fills", "Fills and funding payments the ledger took, by result: "
                "folded (new), duplicate (stored already, acked without effect).", ["result"])
Rejected = dict[int, DeadLetter]  # message index -> why it can never be processed


def _published(msg: Msg) -> datetime:
    return msg.metadata.timestamp


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched batch, parsed: messages, what parsed, what was rejected."""

    msgs: list[Msg]
    items: list[Inbound]
    rejected: Rejected
    started: float


@dataclass
class LedgerConsumer:
    """Fetch, fold, commit, publish, ack — until cancelled."""

    js: JetStreamContext
    pool: asyncpg.Pool
    subjects: Subjects
    catalog: InstrumentCatalog
    settings: PositionsSettings
    letters: DeadLetters
    progress: Progress = field(default_factory=lambda: Progress("ledger"))
    sweeper: OrphanSweeper | None = None  # cancels the live algos of slots a batch closed
    # Batches fetched and not yet settled (by id): what a stop hands back to JetStream.
    _in_hand: dict[int, Sequence[Msg]] = field(default_factory=dict, init=False, repr=False)

    async def subscribe(self) -> JetStreamContext.PullSubscription:
        """Create (or update) the durable consumer and bind to it."""
        stream = self.subjects.stream(STREAM_ACCOUNT)
        name = self.settings.positions_consumer
        config = ConsumerConfig(
            name=name, durable_name=name, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, filter_subject=self.subjects.account_all,
            ack_wait=self.settings.positions_ack_wait_seconds, max_deliver=-1,
            max_ack_pending=self.settings.positions_max_ack_pending,
        )
        await self.js.add_consumer(stream, config)
        return await self.js.pull_subscribe_bind(durable=name, stream=stream)

    async def run(self) -> None:
        """Three stages, so that parsing and acking overlap the database transaction:
        fetch + parse -> commit (one batch at a time, in order) -> publish + ack. At most one
        batch waits for the commit stage: while it is busy, new messages gather in JetStream
        and make the next batch bigger instead of queueing in small batches here."""
        sub = await self.subscribe()
        log.info("consuming", stream=self.subjects.stream(STREAM_ACCOUNT),
                 consumer=self.settings.positions_consumer)
        fetched: asyncio.Queue[Fetched] = asyncio.Queue(maxsize=1)
        committed: asyncio.Queue[tuple[Sequence[Msg], BatchOutcome, float]] = asyncio.Queue(maxsize=1)
        ready = asyncio.Semaphore(1)  # one fetch ahead of the commit stage
        try:
            async with asyncio.TaskGroup() as stages:
                stages.create_task(self._fetch_stage(sub, fetched, ready))
                stages.create_task(self._commit_stage(fetched, committed, ready))
                stages.create_task(self._finish_stage(committed))
                stages.create_task(watch_consumer(self.js, SERVICE, self.subjects.stream(STREAM_ACCOUNT),
                                                  self.settings.positions_consumer))
        finally:  # stopped (or crashed): the restarted process gets these at once
            await release(sub, [m for msgs in self._in_hand.values() for m in msgs])
            self._in_hand.clear()

    async def _fetch_stage(
        self, sub: JetStreamContext.PullSubscription, out: asyncio.Queue[Fetched], ready: asyncio.Semaphore
    ) -> None:
        while True:
            await ready.acquire()
            msgs: list[Msg] = []
            while not msgs:
                msgs = await self._fetch(sub)
            self._in_hand[id(msgs)] = msgs
            started = time.perf_counter()
            await out.put(Fetched(msgs, *self._parse(msgs), started))

    async def _commit_stage(
        self, inbox: asyncio.Queue[Fetched], out: asyncio.Queue[tuple[Sequence[Msg], BatchOutcome, float]],
        ready: asyncio.Semaphore,
    ) -> None:
        while True:
            batch = await inbox.get()
            ready.release()
            outcome = await self._commit_partitioned(batch.msgs, batch.items, batch.rejected)
            await out.put((batch.msgs, outcome, batch.started))

    async def _finish_stage(self, inbox: asyncio.Queue[tuple[Sequence[Msg], BatchOutcome, float]]) -> None:
        while True:
            msgs, outcome, started = await inbox.get()
            await self._finish(msgs, outcome, started)

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        # Wait long for the first message; its metadata says how many more the consumer holds,
        # so ask for exactly those (up to the batch size): a batch is what is pending, at once,
        # without lingering for messages that do not exist yet (low latency when idle) and
        # without a deadline shorter than the client needs to read a full batch (under load).
        try:
            msgs: list[Msg] = await sub.fetch(1, timeout=5.0)
        except (NatsTimeoutError, TimeoutError):
            self.progress.beat()  # idle, and able to ask
            return []
        except NatsError as exc:  # NATS restarting (no responders, reconnecting): wait, retry
            log.warning("fetch_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(FETCH_RETRY_S)
            return []
        first = msgs[-1].metadata
        wanted = min(self.settings.positions_batch_size - 1, first.num_pending)
        if first.num_delivered > 1:
            # A redelivery (e.g. the batch in flight when a process died): num_pending counts
            # only never-delivered messages, so it would make batches of one — each late fill
            # then refolds its slot alone and recovery crawls. Ask for a full batch; the fetch
            # returns at once with what is there.
            wanted = self.settings.positions_batch_size - 1
        if wanted > 0:
            with contextlib.suppress(NatsTimeoutError, TimeoutError):
                msgs += await sub.fetch(wanted, timeout=self.settings.positions_batch_wait_seconds)
        observe_fetch(SERVICE, self.settings.positions_consumer, msgs)
        return msgs

    async def process(self, msgs: Sequence[Msg]) -> None:
        """Everything that happens to one fetched batch, in one go (tests, tools)."""
        started = time.perf_counter()
        items, rejected = self._parse(msgs)
        outcome = await self._commit_partitioned(msgs, items, rejected)
        await self._finish(msgs, outcome, started)

    async def _finish(self, msgs: Sequence[Msg], outcome: BatchOutcome, started: float) -> None:
        if self.sweeper is not None and outcome.orphans:
            self.sweeper.submit(outcome.orphans)  # committed: the requests run in the background
        await self._publish(outcome)
        fates: dict[int, Fate] = {index: Nak(delay) for index, delay in outcome.retry.items()}
        fates.update(outcome.dead)
        await settle(msgs, fates, self.letters)  # the dead letters' rows committed with the batch
        self._in_hand.pop(id(msgs), None)
        self.progress.beat()
        BATCH_SECONDS.observe(time.perf_counter() - started)
        FILLS.labels("folded").inc(outcome.stored)
        FILLS.labels("duplicate").inc(outcome.duplicates)
        log.debug("batch", messages=len(msgs), stored=outcome.stored, duplicates=outcome.duplicates,
                  dead=len(outcome.dead), retry=len(outcome.retry), refolds=outcome.refolds,
                  ms=round((time.perf_counter() - started) * 1000, 1))

    def _parse(self, msgs: Sequence[Msg]) -> tuple[list[Inbound], Rejected]:
        items: list[Inbound] = []
        rejected: Rejected = {}
        for index, msg in enumerate(msgs):
            try:
                # The JetStream metadata (parsed from the reply subject) is read lazily: only
                # an unknown instrument needs the publication time.
                items.append(parse(index, msg.subject, msg.data, self.subjects.root,
                                   functools.partial(_published, msg)))
            except PermanentError as exc:
                rejected[index] = DeadLetter.of(exc)
        return items, rejected

    async def _commit_partitioned(
        self, msgs: Sequence[Msg], items: list[Inbound], rejected: Rejected
    ) -> BatchOutcome:
        """Split the batch by account into `positions_partitions` parts, each committed in its
        own transaction on its own connection, concurrently: while PostgreSQL works on one
        part, this process folds another. An account always falls in the same part, so its
        messages keep their stream order; parts share no account, so no lock or row. A small
        batch (the steady state) stays whole."""
        count = self.settings.positions_partitions if len(items) >= PARTITION_MIN_MESSAGES else 1
        parts: list[list[Inbound]] = [[] for _ in range(count)]
        for item in items:
            parts[item.event.account_id.int % count].append(item)
        work = [(part, rejected if n == 0 else {}) for n, part in enumerate(parts)]
        work = [(part, rej) for part, rej in work if part or rej]
        if len(work) <= 1:
            return await self._commit_with_retry(msgs, items, rejected)
        async with asyncio.TaskGroup() as group:  # a failing part cancels the others
            tasks = [group.create_task(self._commit_with_retry(msgs, part, rej)) for part, rej in work]
        total = BatchOutcome()
        for task in tasks:
            total.merge(task.result())
        return total

    async def _commit_with_retry(
        self, msgs: Sequence[Msg], items: list[Inbound], rejected: Rejected
    ) -> BatchOutcome:
        """Commit, or retry with backoff. Only a failure that a message causes (a value PostgreSQL
        refuses) is pinned on one message (dead letter); any other — the database down, or a
        bug — is retried without acking, so that no fill is ever dropped because of our own
        fault (fate_of without `give_up_after`: stall rather than drop)."""
        delay = 0.1
        while True:
            try:
                return await self._commit(msgs, items, rejected)
            except Exception as exc:  # the boundary: fate_of decides, no batch stops the loop
                fate = fate_of(exc)
                if isinstance(fate, DeadLetter) and len(items) > 1:
                    return await self._commit_one_by_one(msgs, items, rejected)
                if isinstance(fate, DeadLetter) and items:
                    # Retried like any batch: recording the dead letter can meet the database down.
                    return await self._commit_with_retry(msgs, [], {**rejected, items[0].index: fate})
                if isinstance(fate, Nak) and not fate.unknown:
                    log.warning("transient_failure", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                else:
                    log.exception("batch_failed", messages=len(items) + len(rejected), retry_in=delay)
            # Keep this part's messages ours while we wait: no early redelivery.
            await hold(msgs[index] for index in sorted({i.index for i in items} | rejected.keys()))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.positions_retry_max_seconds)

    async def _commit_one_by_one(
        self, msgs: Sequence[Msg], items: list[Inbound], rejected: Rejected
    ) -> BatchOutcome:
        log.warning("isolating_batch", messages=len(items))
        total = await self._commit_with_retry(msgs, [], rejected) if rejected else BatchOutcome()
        for item in items:
            total.merge(await self._commit_with_retry(msgs, [item], {}))
        return total

    async def _commit(
        self, msgs: Sequence[Msg], items: list[Inbound], rejected: Rejected
    ) -> BatchOutcome:
        try:
            conn = await self.pool.acquire()
        except Exception as exc:  # no message can cause a failure to connect
            raise TransientError(f"database unavailable: {type(exc).__name__}: {exc}") from exc
        try:
            started = time.perf_counter()
            outcome = await self._commit_on(conn, msgs, items, rejected)
            COMMIT_SECONDS.observe(time.perf_counter() - started)
            return outcome
        finally:
            await self.pool.release(conn)

    async def _commit_on(
        self, conn: Connection, msgs: Sequence[Msg], items: list[Inbound],
        rejected: Rejected,
    ) -> BatchOutcome:
        async with conn.transaction():
            outcome = await handle_batch(LedgerStore(conn), items, self.catalog) if items else BatchOutcome()
            outcome.dead.update(rejected)
            for index in sorted(outcome.dead):
                await self.letters.record(conn, msgs[index], outcome.dead[index])
        return outcome

    async def _publish(self, outcome: BatchOutcome) -> None:
        """Position events, after commit. The tables are the truth; an event NATS does not
        acknowledge within `PUBLISH_DEADLINE_S` (the server restarting, its PubAck lost with
        it) is logged and given up, never waited for: an unbounded wait here once stalled the
        whole pipeline for good, the process alive and silent."""
        futures: list[asyncio.Future[PubAck]] = []
        failed: list[BaseException] = []
        for event in outcome.events():
            subject = self.subjects.position(event.account_id, event.inst_id)
            # Only a full window of outstanding publishes can make publish_async wait: bound that
            # wait, and only then (a wait_stall's timer yields to the event loop before every
            # publish, so each event became a write of its own: nats-server's CPU doubled).
            full = self.js.publish_async_pending() >= PUBLISH_ASYNC_MAX_PENDING - 1
            try:
                futures.append(await self.js.publish_async(
                    subject, event.to_bytes(), wait_stall=PUBLISH_DEADLINE_S if full else None,
                    headers=headers_for(event)))
            except NatsError as exc:  # too many PubAcks outstanding, or the connection closed
                failed.append(exc)
        if futures:
            done, pending = await asyncio.wait(futures, timeout=PUBLISH_DEADLINE_S)
            for future in pending:
                future.cancel()  # frees its slot among nats-py's outstanding publishes
            for future in done:
                if future.cancelled():  # nats-py cancels what is outstanding when it closes
                    failed.append(NatsError("publish cancelled"))
                elif (error := future.exception()) is not None:
                    failed.append(error)
            failed += [TimeoutError(f"no PubAck within {PUBLISH_DEADLINE_S} s")] * len(pending)
        if failed:
            log.error("publish_failed", events=len(failed), error=repr(failed[0]))
