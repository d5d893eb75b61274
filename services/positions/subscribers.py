"""The NATS entry: the pipeline of one ACCOUNT partition's durable consumer, one transaction
per fetched batch, one ack per batch (the consumer acks all: `services.positions.partitions`).

Plain nats-py rather than a FastStream subscriber: one fetched batch must be folded in stream
order inside one transaction, the partition's consumer is pulled as a member of a pinned-client
priority group (raw pull requests), and a batch is acknowledged by its last message only.

Ack only after commit. A failure's fate is `shared.consumer.fate_of`'s: one that only some
message can cause (a value PostgreSQL refuses) is isolated by retrying the batch one message at
a time and dead-lettered; any other — transient (database down) or unknown (a bug: stall rather
than drop a fill) — retries the same batch with backoff, never acking early. A message that must
wait (an instrument not known yet) is retried in place before the batch is acknowledged: with
one ack for everything up to it, a nak cannot single it out. Dead letters are recorded in the
batch's transaction and announced after its commit.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from prometheus_client import Counter, Histogram

from services.positions.catalog import InstrumentCatalog
from services.positions.config import PositionsSettings
from services.positions.handlers import BatchOutcome, handle_batch
from services.positions.inbound import Inbound, parse
from services.positions.orphans import OrphanSweeper
from services.positions.partitions import PinnedPull, catch_up, delivered, ensure_consumer, last_of
from services.positions.store import LedgerStore
from shared.bus import headers_for
from shared.consumer import (
    SETTLED,
    DeadLetter,
    DeadLetters,
    Nak,
    fate_of,
    hold,
    observe_fetch,
    watch_consumer,
)
from shared.db import Connection
from shared.errors import PermanentError, TransientError
from shared.health import Progress
from shared.logging import get_logger
from shared.subjects import STREAM_ACCOUNT, Subjects

SERVICE = "positions"
log = get_logger(SERVICE)
IDLE_WAIT_S = 5.0  # a fetch waits this long for a first message (then reports idle progress)
# How long a batch's position events may wait for their PubAcks (and for a free slot to publish).
PUBLISH_DEADLINE_S = 5.0
# Publishes awaiting their PubAck that nats-py allows at once (main creates the JetStream context
# with it; nats-py's default too).
PUBLISH_ASYNC_MAX_PENDING = 4000
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
    """One partition: fetch, fold, commit, publish, ack — until cancelled. Every instance runs
    one per partition; only the pinned one is delivered anything."""

    nc: Client
    js: JetStreamContext
    pool: asyncpg.Pool
    subjects: Subjects
    catalog: InstrumentCatalog
    settings: PositionsSettings
    letters: DeadLetters
    partition: int = 0
    progress: Progress = field(default_factory=lambda: Progress("ledger"))
    sweeper: OrphanSweeper | None = None  # cancels the live algos of slots a batch closed
    source: PinnedPull | None = None  # set by `subscribe`
    consumer: str = ""
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # no batch between fetch and ack
    _in_flight: int = 0  # batches fetched and not yet acked
    _fetching: bool = False  # inside `PinnedPull.fetch` (which pulls by itself)
    _next_delivery: int | None = None  # consumer sequence that follows the last one we received

    async def subscribe(self) -> PinnedPull:
        """Create (or update) the partition's durable consumer and join its priority group."""
        self.consumer = await ensure_consumer(self.nc, self.settings, self.subjects, self.partition)
        expires = self.settings.positions_pinned_ttl_seconds / 2
        self.source = PinnedPull(self.nc, self.subjects.stream(STREAM_ACCOUNT), self.consumer, expires)
        await self.source.start()
        return self.source

    async def run(self) -> None:
        """Three stages, so that parsing and acking overlap the database transaction:
        fetch + parse -> commit (one batch at a time, in order) -> publish + ack. At most one
        batch waits for the commit stage: while it is busy, new messages gather in JetStream
        and make the next batch bigger instead of queueing in small batches here."""
        source = await self._subscribed()
        log.debug("partition_joined", stream=source.stream, consumer=self.consumer)
        fetched: asyncio.Queue[Fetched] = asyncio.Queue(maxsize=1)
        committed: asyncio.Queue[tuple[Sequence[Msg], BatchOutcome, float]] = asyncio.Queue(maxsize=1)
        ready = asyncio.Semaphore(1)  # one fetch ahead of the commit stage
        self.idle.set()
        try:
            async with asyncio.TaskGroup() as stages:
                stages.create_task(self._keep_pin(source))
                stages.create_task(self._fetch_stage(source, fetched, ready))
                stages.create_task(self._commit_stage(fetched, committed, ready))
                stages.create_task(self._finish_stage(committed))
                stages.create_task(watch_consumer(self.js, SERVICE, source.stream, self.consumer))
        finally:
            await self._leave(source)

    async def _leave(self, source: PinnedPull) -> None:
        """On the way out (stopped, not killed): unpin what we own, so that a standby takes
        it at once instead of after the pinned TTL. What this instance held unacknowledged
        comes back with the next owner's catch-up once a new message is delivered, else after
        the ack wait (docs/positions.md)."""
        if source.owner:
            try:
                await source.unpin()
            except (TransientError, NatsError) as exc:
                log.debug("unpin_failed", consumer=self.consumer, error=str(exc))
        await source.close()

    async def _subscribed(self) -> PinnedPull:
        delay = 0.1
        while True:
            try:
                return await self.subscribe()
            except (TransientError, NatsError) as exc:  # NATS (re)starting: wait for it
                log.warning("partition_join_failed", partition=self.partition, error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.positions_retry_max_seconds)

    async def _keep_pin(self, source: PinnedPull) -> None:
        """While a batch commits (or is caught up), keep pulling often enough to stay pinned."""
        while True:
            await asyncio.sleep(self.settings.positions_pinned_ttl_seconds / 4)
            if not self._fetching:
                await source.keep_pin()

    async def _fetch_stage(
        self, source: PinnedPull, out: asyncio.Queue[Fetched], ready: asyncio.Semaphore
    ) -> None:
        while True:
            await ready.acquire()
            msgs: list[Msg] = []
            while not msgs:
                msgs = await self._fetch(source)
            started = time.perf_counter()
            await out.put(Fetched(msgs, *self._parse(msgs), started))

    async def _commit_stage(
        self, inbox: asyncio.Queue[Fetched], out: asyncio.Queue[tuple[Sequence[Msg], BatchOutcome, float]],
        ready: asyncio.Semaphore,
    ) -> None:
        while True:
            batch = await inbox.get()
            ready.release()
            outcome = await self._commit_waiting(batch.msgs, batch.items, batch.rejected)
            await out.put((batch.msgs, outcome, batch.started))

    async def _finish_stage(self, inbox: asyncio.Queue[tuple[Sequence[Msg], BatchOutcome, float]]) -> None:
        while True:
            msgs, outcome, started = await inbox.get()
            await self._finish(msgs, outcome, started)
            self._in_flight -= 1
            if not self._in_flight:
                self.idle.set()

    async def _fetch(self, source: PinnedPull) -> list[Msg]:
        """What the partition's consumer delivers to us (nothing unless we hold its pin), up
        to a batch; preceded by the messages a previous owner left unacknowledged when the
        deliveries do not follow the last ones we received (a takeover, or our first batch)."""
        self._fetching = True
        try:
            msgs = await source.fetch(self.settings.positions_batch_size, IDLE_WAIT_S)
        finally:
            self._fetching = False
        if not msgs:
            self.progress.beat()  # idle, and able to ask
            return []
        self._in_flight += 1  # at once: a handover waits for this batch to be acked
        self.idle.clear()
        first = msgs[0].metadata.sequence
        if first.consumer != self._next_delivery:
            msgs = await self._caught_up(source, msgs, first.stream)
        self._next_delivery = msgs[-1].metadata.sequence.consumer + 1
        observe_fetch(SERVICE, self.consumer, msgs)
        return msgs

    async def _caught_up(self, source: PinnedPull, msgs: list[Msg], before: int) -> list[Msg]:
        delay, partition = 0.1, self.subjects.partition_filter(STREAM_ACCOUNT, self.partition)
        while True:
            try:
                earlier = await catch_up(self.js, self.nc, source.stream, self.consumer, partition, before)
                break
            except TransientError as exc:  # nothing may be acked before this is known
                log.warning("catch_up_failed", consumer=self.consumer, error=str(exc), retry_in=delay)
                await hold(msgs)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.positions_retry_max_seconds)
        if earlier:
            log.info("partition_caught_up", consumer=self.consumer, messages=len(earlier))
        return earlier + msgs

    async def process(self, msgs: Sequence[Msg]) -> None:
        """Everything that happens to one fetched batch, in one go (tests, tools)."""
        started = time.perf_counter()
        items, rejected = self._parse(msgs)
        outcome = await self._commit_waiting(msgs, items, rejected)
        await self._finish(msgs, outcome, started)

    async def _finish(self, msgs: Sequence[Msg], outcome: BatchOutcome, started: float) -> None:
        if self.sweeper is not None and outcome.orphans:
            self.sweeper.submit(outcome.orphans)  # committed: the requests run in the background
        await self._publish(outcome)
        await self._settle(msgs, outcome.dead)  # the dead letters' rows committed with the batch
        self.progress.beat()
        BATCH_SECONDS.observe(time.perf_counter() - started)
        FILLS.labels("folded").inc(outcome.stored)
        FILLS.labels("duplicate").inc(outcome.duplicates)
        log.debug("batch", consumer=self.consumer, messages=len(msgs), stored=outcome.stored,
                  duplicates=outcome.duplicates, dead=len(outcome.dead), refolds=outcome.refolds,
                  ms=round((time.perf_counter() - started) * 1000, 1))

    async def _settle(self, msgs: Sequence[Msg], dead: dict[int, DeadLetter]) -> None:
        """Announce the dead letters, then one ack (AckAll) for the whole batch. A lost ack
        is redelivered after the ack wait and collapses to duplicates."""
        for index in sorted(dead):
            await self.letters.announce(msgs[index], dead[index])
            SETTLED.labels(SERVICE, "dead_letter", dead[index].kind).inc()
        SETTLED.labels(SERVICE, "ack", "").inc(len(msgs) - len(dead))
        try:
            async with asyncio.timeout(self.letters.timeout):
                await last_of(msgs).ack()
        except (TimeoutError, NatsError) as exc:
            log.warning("settle_failed", consumer=self.consumer, messages=len(msgs),
                        error=f"{type(exc).__name__}: {exc}")

    def _parse(self, msgs: Sequence[Msg]) -> tuple[list[Inbound], Rejected]:
        items: list[Inbound] = []
        rejected: Rejected = {}
        published = self.subjects.published
        for index, msg in enumerate(msgs):
            try:
                # The JetStream metadata (parsed from the reply subject) is read lazily: only
                # an unknown instrument needs the publication time.
                items.append(parse(index, published(msg.subject), msg.data, self.subjects.root,
                                   functools.partial(_published, msg)))
            except PermanentError as exc:
                rejected[index] = DeadLetter.of(exc)
        return items, rejected

    async def _commit_waiting(
        self, msgs: Sequence[Msg], items: list[Inbound], rejected: Rejected
    ) -> BatchOutcome:
        """Commit the batch; then the messages it had to leave for later (an instrument not
        loaded yet), again after their delay, until each is stored or dead-lettered (the
        catalog's grace bounds the wait). The partition waits meanwhile: one ack settles it."""
        outcome = await self._commit_with_retry(msgs, items, rejected)
        while outcome.retry:
            waiting, outcome.retry = outcome.retry, {}
            log.info("partition_waiting", consumer=self.consumer, messages=len(waiting),
                     seconds=min(waiting.values()))
            await hold(m for m in msgs if delivered(m))
            await asyncio.sleep(min(waiting.values()))
            outcome.merge(await self._commit_with_retry(msgs, [i for i in items if i.index in waiting], {}))
        return outcome

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
            indexes = sorted({i.index for i in items} | rejected.keys())
            await hold(msgs[index] for index in indexes if delivered(msgs[index]))
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
