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
import itertools
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
from tests.faults.processes import PositionsProcess, feeding, report, size
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
    acked_at: list[float] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.done = True

    async def _run(self) -> None:
        for n, event in enumerate(self.fills):
            if self.stop.is_set():
                return
            await publish_event(self.js, self.subjects.for_event(event), event, timeout=2.0)
            self.acked = n + 1
            self.acked_at.append(time.monotonic())
            if n % 20 == 19:
                await asyncio.sleep(20 / PER_SECOND)  # the pace, not a wait on a condition

    async def more(self, count: int, timeout: float = 30.0) -> None:
        """Wait until `count` more fills are acknowledged."""
        start = self.acked

        async def done() -> bool:
            return self.acked >= start + count

        await wait_for(done, timeout=timeout, interval=0.01, message=f"{count} more fills acknowledged")

    def stalled(self, since: float) -> float:
        """The longest wait between two acknowledgements after `since`: the failover."""
        times = [since, *(t for t in self.acked_at if t > since)]
        return max(b - a for a, b in itertools.pairwise(times))


async def stopped(publisher: Publisher) -> bool:
    return publisher.done


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


@dataclass
class Run:
    """The cluster, the positions service on it, the publisher, and the ledger's database."""

    cluster: EmbeddedNatsCluster
    client: Client
    subjects: Subjects
    service: PositionsProcess
    publisher: Publisher
    pool: asyncpg.Pool
    killed: list[EmbeddedNats] = field(default_factory=list)

    async def fail_over(self, victim: EmbeddedNats) -> None:
        """Make `victim` the ACCOUNT leader, kill it -9 while fills flow, and check that
        publishing, the service (on a survivor) and its durable consumer go on, degraded."""
        stream = self.subjects.stream(STREAM_ACCOUNT)
        assert victim.name is not None and victim.process is not None
        await make_leader(self.client, stream, victim.name)
        await self.publisher.more(FLOWING)
        in_stream = self.publisher.acked
        victim.process.kill()
        killed_at = time.monotonic()
        await asyncio.to_thread(victim.process.wait, 5)
        victim.process = None
        self.killed.append(victim)
        await self.publisher.more(FLOWING, timeout=60)
        leader = (await self.client.jetstream().stream_info(stream)).cluster.leader
        report(f"node {victim.name} (ACCOUNT leader) killed -9 with {in_stream:,} fills in the "
               f"stream: publishing stalled {self.publisher.stalled(killed_at):.1f} s (the "
               f"failover; new leader {leader})")
        assert leader != victim.name
        assert await node_of(self.cluster, SERVICE) is not victim  # reconnected to a survivor
        await caught_up(self.pool, self.publisher.acked)  # its durable consumer goes on
        await wait_for(lambda: self.degraded_without(victim), timeout=20, interval=0.2,
                       message=f"/readyz 200 with nats degraded, naming {victim.name}")

    async def degraded_without(self, victim: EmbeddedNats) -> bool:
        code, body = await readyz(self.service)
        return code == 200 and body["nats"].startswith("degraded: ") and f"@{victim.name}" in body["nats"]

    async def restart_last(self) -> None:
        """The last victim back, and every replica current again."""
        await asyncio.to_thread(self.killed[-1].start)
        streams = list(self.subjects.stream_subjects())
        await wait_for(lambda: all_current(self.client, streams), timeout=60, interval=0.1,
                       message="every replica current after the restart")

    def next_victim(self) -> EmbeddedNats:
        return next(node for node in self.cluster.nodes if node not in self.killed)


@pytest_asyncio.fixture(loop_scope="session")
async def run(cluster: EmbeddedNatsCluster, client: Client, settings: Settings, db_pool: asyncpg.Pool,
              tmp_path: Path) -> AsyncIterator[Run]:
    subjects = namespace(settings.nats_subject_root[1:])
    await ensure_streams(client.jetstream(), subjects, 3)
    await create_instruments(db_pool)
    accounts = [await create_account(db_pool, f"cluster-{n}") for n in range(4)]
    config = Settings(**{**settings.model_dump(), "nats_url": cluster.url, "nats_stream_replicas": 3,
                         "nats_subject_root": subjects.root, "nats_stream_prefix": subjects.stream_prefix})
    service = PositionsProcess(config, tmp_path / "positions.log", {"AITRADER_NATS_STREAM_REPLICAS": "3"})
    publisher = Publisher(client.jetstream(), subjects, ledger(accounts, seed=18))
    async with feeding(service, publisher) as publishing:
        yield Run(cluster, client, subjects, service, publisher, db_pool)
        publisher.stop.set()
        await asyncio.wait_for(publishing, 30)
        assert service.starts == 1  # it reconnected by itself: nobody restarted it


@pytest.mark.timeout(size(60, 240))
async def test_killing_the_leader_node_loses_no_acknowledged_fill_and_the_service_moves_on(
    run: Run,
) -> None:
    await run.fail_over(await node_of(run.cluster, SERVICE))  # the service's node
    for _ in range(KILLS - 1):  # the full run: each other node in turn
        await run.restart_last()
        await run.fail_over(run.next_victim())
    run.publisher.stop.set()
    await wait_for(lambda: stopped(run.publisher), timeout=10, message="the publisher stopped")
    total = run.publisher.acked
    await caught_up(run.pool, total)
    state = (await run.client.jetstream().stream_info(run.subjects.stream(STREAM_ACCOUNT))).state
    assert (state.messages, state.last_seq) == (total, total)  # every acked fill stored once
    ids = await run.pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
    assert [r[0] for r in ids] == [f.trade_id for f in run.publisher.fills[:total]]
    assert isinstance(await nats_ok(run.client, list(run.subjects.stream_subjects())), Degraded)
