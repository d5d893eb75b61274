"""The consumer metrics move when their event happens, on the real servers: fills folded and
duplicate, batch sizes and commit latency, a dead letter by kind, a redelivered message, and a
durable consumer's unacknowledged count as JetStream reports it."""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import REGISTRY

from services.positions.partitions import PinnedPull
from shared.consumer import watch_consumer
from shared.settings import Settings
from shared.subjects import STREAM_ACCOUNT, Subjects
from tests.factories import wait_for
from tests.positions.conftest import (
    consumed,
    fill,
    ledger_consumer,
    positions_config,
    publish,
    publish_raw,
    running,
)


def labels(account: UUID) -> dict[str, str]:
    """The consumer metrics' labels for the account's partition consumer."""
    return {"service": "positions", "consumer": ledger_consumer(account)}


def sample(name: str, **labels: str) -> float:
    """The metric's current value in the registry /metrics serves (0 before its first event)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_fills_folded_duplicates_batches_commits_and_dead_letters_are_counted(
    settings: Settings, account: UUID, js: JetStreamContext, subjects: Subjects,
) -> None:
    ours = labels(account)
    before = {
        "folded": sample("aitrader_positions_fills_total", result="folded"),
        "duplicate": sample("aitrader_positions_fills_total", result="duplicate"),
        "batches": sample("aitrader_consumer_batch_size_count", **ours),
        "messages": sample("aitrader_consumer_batch_size_sum", **ours),
        "commits": sample("aitrader_positions_commit_seconds_count"),
        "dead": sample("aitrader_messages_settled_total", service="positions", fate="dead_letter",
                       kind="permanent"),
    }
    fills = [fill(account, f"m{n}", "buy", "1", "100", n) for n in range(3)]
    async with running(positions_config(settings), js):
        await publish(js, subjects, fills)
        await consumed(js, subjects)
        # The same fill again without its Nats-Msg-Id: JetStream keeps it, the ledger knows it.
        await publish_raw(js, subjects.for_event(fills[0]), fills[0].to_bytes())
        await publish_raw(js, subjects.for_event(fills[0]), b"{not json")
        await consumed(js, subjects)
    assert sample("aitrader_positions_fills_total", result="folded") - before["folded"] == 3
    assert sample("aitrader_positions_fills_total", result="duplicate") - before["duplicate"] == 1
    assert sample("aitrader_consumer_batch_size_count", **ours) > before["batches"]
    assert sample("aitrader_consumer_batch_size_sum", **ours) - before["messages"] == 5
    assert sample("aitrader_positions_commit_seconds_count") > before["commits"]
    assert sample("aitrader_messages_settled_total", service="positions", fate="dead_letter",
                  kind="permanent") - before["dead"] == 1


async def test_a_redelivered_message_is_counted(
    settings: Settings, account: UUID, js: JetStreamContext, subjects: Subjects, nc: Client,
) -> None:
    # Short pinned TTL and ack wait: the stopped service's last pull requests may still be
    # waiting on the server, and be pinned and given the message (a dead client's in-flight).
    config = positions_config(settings, positions_pinned_ttl_seconds=1.0, positions_ack_wait_seconds=2.0)
    async with running(config, js):  # creates the durable consumer
        pass
    await publish(js, subjects, [fill(account, "r1", "buy", "1", "100", 1)])
    # Someone else took the message once and gave it back: the service gets a redelivery.
    ours = labels(account)
    other = PinnedPull(nc, subjects.stream(STREAM_ACCOUNT), ours["consumer"], expires=2.0)
    await other.start()
    [taken] = await other.fetch(1, wait=10)
    await taken.nak()
    await other.unpin()  # the service's pulls get it at once
    await other.close()
    before = sample("aitrader_messages_redelivered_total", **ours)
    folded = sample("aitrader_positions_fills_total", result="folded")
    async with running(config, js):
        await consumed(js, subjects)
    assert sample("aitrader_messages_redelivered_total", **ours) - before == 1
    assert sample("aitrader_positions_fills_total", result="folded") - folded == 1


async def test_the_consumer_check_reports_unacknowledged_and_lag(
    account: UUID, js: JetStreamContext, subjects: Subjects,
) -> None:
    stream = subjects.stream(STREAM_ACCOUNT)
    durable = "ack-pending-probe"
    await js.add_consumer(stream, ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                                 ack_wait=60))
    await publish(js, subjects, [fill(account, f"a{n}", "buy", "1", "100", n) for n in range(3)])
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
    taken = await sub.fetch(2, timeout=5)
    labels = {"service": "probe", "consumer": durable}
    watcher = asyncio.create_task(watch_consumer(js, "probe", stream, durable, every=0.05))
    try:
        async def counted() -> bool:
            return (sample("aitrader_consumer_ack_pending", **labels) == 2
                    and sample("aitrader_consumer_pending", **labels) == 1)

        await wait_for(counted, timeout=10, message="2 unacknowledged, 1 pending")
        for msg in taken:
            await msg.ack_sync()

        async def acked() -> bool:
            return sample("aitrader_consumer_ack_pending", **labels) == 0

        await wait_for(acked, timeout=10, message="nothing unacknowledged")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await sub.unsubscribe()
