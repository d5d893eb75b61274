"""A three-node NATS cluster (`aitrader.embedded_cluster`, what `aitrader up --nats-cluster 3`
starts) with the streams at three replicas: the node the positions service is connected to, made
the ACCOUNT stream's leader, is killed (-9) while fills are published through `shared.bus`.
Publishing goes on once a new leader is elected, the service reconnects to a survivor and its
durable consumer goes on, its /readyz says "degraded" (not down), and no acknowledged fill is lost
or doubled. Short: one kill; `AITRADER_FAULTS=full`: each node in turn, restarted in between.
Prints the cluster's start time and each failover's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from aitrader.embedded import EmbeddedNats
from aitrader.embedded_cluster import EmbeddedNatsCluster
from shared.bus import connect_nats, ensure_streams, publish_event
from shared.errors import ConfigError
from shared.health import Degraded, nats_ok
from shared.messages import Fill
from shared.settings import Settings
from shared.subjects import STREAM_ACCOUNT, Subjects
from tests.factories import create_account, create_instruments, wait_for
from tests.faults.processes import PositionsProcess, report, size
from tests.faults.test_positions_kill import caught_up
from tests.positions.test_crash import ledger
from tests.servers import scratch_dir

KILLS = size(1, 3)  # the short run kills one node; the full run each node in turn
PER_SECOND = 400  # fills/s
FLOWING = 200  # fills acknowledged after each failover before the next step
SERVICE = "positions"  # the client name the service connects with


@pytest.fixture
def cluster() -> Iterator[EmbeddedNatsCluster]:
    with scratch_dir("aitrader-cluster-") as root:
        nodes = EmbeddedNatsCluster(root, 3)
        started = time.monotonic()
        nodes.start()
        report(f"3-node NATS cluster formed in {time.monotonic() - started:.2f} s")
        try:
            yield nodes
        finally:
            nodes.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(cluster: EmbeddedNatsCluster) -> AsyncIterator[Client]:
    nc = await connect_nats(cluster.url, name="cluster-test")
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 5)


def namespace(tag: str) -> Subjects:
    return Subjects(root=f"c{tag}", stream_prefix=f"C{tag.upper()}_")


async def test_streams_get_three_replicas_and_a_count_the_servers_cannot_hold_says_what_to_do(
    client: Client, nc: Client,
) -> None:
    """On the cluster an R1 stream becomes R3 in place; on one server (the session's) R3 is a
    one-line configuration error naming the setting."""
    js, subjects = client.jetstream(), namespace("r3")
    await ensure_streams(js, subjects, 1)
    await ensure_streams(js, subjects, 3)
    for stream in subjects.stream_subjects():
        assert (await js.stream_info(stream)).config.num_replicas == 3

        async def copied(stream: str = stream) -> bool:  # JetStream adds the copies online
            info = await js.stream_info(stream)
            return info.cluster.leader is not None and len(info.cluster.replicas or []) == 2

        await wait_for(copied, timeout=15, interval=0.05, message=f"{stream} on three nodes")
    with pytest.raises(ConfigError) as many:
        await ensure_streams(js, subjects, 5)
    assert str(many.value).startswith("AITRADER_NATS_STREAM_REPLICAS: 5 replicas of stream")
    assert "set it to at most the node count" in str(many.value)
    with pytest.raises(ConfigError) as single:
        await ensure_streams(nc.jetstream(), namespace("r1"), 3)
    assert "the NATS server is not a cluster: set it to 1" in str(single.value)


@dataclass
class Publisher:
    """Fills in order through `shared.bus.publish_event`; `acked` of them are in the stream for
    sure (a prefix of `fills`), `acked_at` when the latest was."""

    js: JetStreamContext
    subjects: Subjects
    fills: list[Fill]
    acked: int = 0
    acked_at: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        for n, event in enumerate(self.fills):
            if self.stop.is_set():
                return
            await publish_event(self.js, self.subjects.for_event(event), event, timeout=2.0)
            self.acked, self.acked_at = n + 1, time.monotonic()
            if n % 20 == 19:
                await asyncio.sleep(20 / PER_SECOND)  # the pace, not a wait on a condition

    async def more(self, count: int, timeout: float = 30.0) -> float:
        """Wait until `count` more fills are acknowledged; return when the first of them was."""
        start, first = self.acked, 0.0

        async def done() -> bool:
            nonlocal first
            if not first and self.acked > start:
                first = self.acked_at
            return self.acked >= start + count

        await wait_for(done, timeout=timeout, interval=0.01, message=f"{count} more fills acknowledged")
        return first


async def clients_of(node: EmbeddedNats) -> list[str]:
    """The names of the clients connected to `node` (its /connz)."""
    async with httpx.AsyncClient(timeout=2) as http:
        answer = await http.get(f"http://127.0.0.1:{node.monitor_port}/connz")
    return [c.get("name", "") for c in answer.json().get("connections", [])]


async def node_of(cluster: EmbeddedNatsCluster, name: str) -> EmbeddedNats:
    """The running node the client called `name` is connected to."""
    async def find() -> EmbeddedNats | None:
        for node in cluster.nodes:
            if node.process is not None and name in await clients_of(node):
                return node
        return None

    found = await wait_for(find, timeout=15, interval=0.05, message=f"{name} connected to a node")
    assert found is not None
    return found


async def make_leader(client: Client, stream: str, node: str) -> None:
    """Move `stream`'s leader to `node` (a stepdown with a preferred placement)."""
    js = client.jetstream()
    for _ in range(10):
        if (await js.stream_info(stream)).cluster.leader == node:
            return
        body = json.dumps({"placement": {"preferred": node}}).encode()
        with contextlib.suppress(Exception):
            await client.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", body, timeout=5)

        async def moved() -> bool:
            with contextlib.suppress(Exception):
                return (await js.stream_info(stream)).cluster.leader is not None
            return False

        await wait_for(moved, timeout=15, message=f"a leader of {stream} after a stepdown")
    raise AssertionError(f"{stream}'s leader did not move to {node}")


async def all_current(client: Client, streams: list[str]) -> bool:
    with contextlib.suppress(Exception):
        return await nats_ok(client, streams) is True
    return False


async def readyz(service: PositionsProcess) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient(timeout=3) as http:
        answer = await http.get(f"http://127.0.0.1:{service.health_port}/readyz")
    return answer.status_code, answer.json()


@pytest.mark.timeout(size(60, 240))
async def test_killing_the_leader_node_loses_no_acknowledged_fill_and_the_service_moves_on(
    cluster: EmbeddedNatsCluster, client: Client, settings: Settings, db_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    subjects = namespace(settings.nats_subject_root[1:])
    js = client.jetstream()
    await ensure_streams(js, subjects, 3)
    streams = list(subjects.stream_subjects())
    await create_instruments(db_pool)
    accounts = [await create_account(db_pool, f"cluster-{n}") for n in range(4)]
    fills = ledger(accounts, seed=18)
    config = Settings(**{**settings.model_dump(), "nats_url": cluster.url, "nats_stream_replicas": 3,
                         "nats_subject_root": subjects.root, "nats_stream_prefix": subjects.stream_prefix})
    service = PositionsProcess(config, tmp_path / "positions.log",
                               {"AITRADER_NATS_STREAM_REPLICAS": "3"})
    publisher = Publisher(js, subjects, fills)
    account_stream = subjects.stream(STREAM_ACCOUNT)
    await service.start()
    publishing = None
    try:
        await service.ready()
        publishing = asyncio.create_task(publisher.run())
        killed: list[EmbeddedNats] = []
        for round_ in range(KILLS):
            if killed:  # the full run: the previous victim back, every replica current again
                await asyncio.to_thread(killed[-1].start)
                await wait_for(lambda: all_current(client, streams), timeout=60, interval=0.1,
                               message="every replica current after the restart")
            victim = await node_of(cluster, SERVICE) if round_ == 0 else next(
                n for n in cluster.nodes if n not in killed)
            assert victim.name is not None
            await make_leader(client, account_stream, victim.name)
            await publisher.more(FLOWING)
            in_stream = publisher.acked
            assert victim.process is not None
            victim.process.kill()
            killed_at = time.monotonic()
            await asyncio.to_thread(victim.process.wait, 5)
            victim.process = None
            killed.append(victim)
            first = await publisher.more(FLOWING, timeout=60)
            leader = (await js.stream_info(account_stream)).cluster.leader
            report(f"node {victim.name} (ACCOUNT leader, positions' node) killed -9 with "
                   f"{in_stream:,} fills in the stream: publishing again after "
                   f"{first - killed_at:.1f} s, new leader {leader}")
            assert leader != victim.name
            survivor = await node_of(cluster, SERVICE)
            assert survivor is not victim
            await caught_up(db_pool, publisher.acked)  # its durable consumer goes on

            async def degraded() -> bool:
                code, body = await readyz(service)
                return code == 200 and body["nats"].startswith("degraded: ") and victim.name in body["nats"]

            await wait_for(degraded, timeout=20, interval=0.2, message="/readyz: 200, nats degraded")
        publisher.stop.set()
        await asyncio.wait_for(publishing, 30)
        total = publisher.acked
        await caught_up(db_pool, total)
        assert service.proc is not None and service.proc.returncode is None, service.log_tail()
        assert service.starts == 1  # it reconnected: nobody restarted it
    finally:
        if publishing is not None and not publishing.done():
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        await service.stop()
    state = (await js.stream_info(account_stream)).state
    assert (state.messages, state.last_seq) == (total, total)  # every acked fill stored once
    ids = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
    assert [r[0] for r in ids] == [f.trade_id for f in fills[:total]]
    assert isinstance(await nats_ok(client, streams), Degraded)  # the last victim is still down
