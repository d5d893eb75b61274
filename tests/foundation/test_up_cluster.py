"""`aitrader up --nats-cluster 3`: three embedded nats-server nodes routed on loopback, the
streams at three replicas, the services given every node; its ready line says so. Run
in-process on the session's PostgreSQL (fast)."""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs

from aitrader.embedded import free_port
from aitrader.embedded_cluster import EmbeddedNatsCluster, check_nats_cluster, stream_replicas
from aitrader.ports import choose_health_ports
from aitrader.up import running_stack
from services.positions.partitions import consumer_name
from shared.bus import connect_nats
from shared.errors import ConfigError
from shared.http_server import listening_socket
from shared.settings import Settings, nats_servers
from shared.subjects import STREAM_ACCOUNT, Subjects
from tests.factories import wait_for
from tests.faults.test_nats_cluster import all_current


def free_ports(count: int) -> int:
    """A port with the `count - 1` ports above it free too (the nodes' client ports)."""
    for _ in range(50):
        base = free_port()
        try:
            for n in range(1, count):
                listening_socket("127.0.0.1", base + n).close()
        except OSError:
            continue
        return base
    raise AssertionError("no run of free ports")


async def test_up_starts_a_three_node_cluster_and_the_services_use_every_node(
    settings: Settings, tmp_path: pytest.TempPathFactory,
) -> None:
    base = free_ports(3)
    given = settings.model_dump(exclude={"nats_url", "nats_stream_replicas", "embedded_nats_port"})
    config = Settings(**given, embedded_nats_port=base)
    health = choose_health_ports(None)
    with capture_logs() as logs:
        async with running_stack(config, tmp_path, "okx", ["positions"], health, nats_nodes=3) as stack:
            servers = nats_servers(stack.env["AITRADER_NATS_URL"])
            assert servers == [f"nats://127.0.0.1:{base + n}" for n in range(3)]
            assert isinstance(stack.nats, EmbeddedNatsCluster)
            assert stack.env["AITRADER_NATS_STREAM_REPLICAS"] == "3"
            subjects = Subjects(config.nats_subject_root, config.nats_stream_prefix)
            nc = await connect_nats(stack.env["AITRADER_NATS_URL"], name="test")
            try:
                js = nc.jetstream()
                info = await js.stream_info(subjects.stream(STREAM_ACCOUNT))
                assert info.config.num_replicas == 3 and info.cluster.name == "aitrader"

                async def replicated() -> bool:  # the service's durable consumers: three copies too
                    info = await js.consumer_info(subjects.stream(STREAM_ACCOUNT),
                                                  consumer_name("positions", 0))
                    cluster = info.cluster
                    return cluster is not None and cluster.leader is not None and len(
                        cluster.replicas or []) == 2

                await wait_for(replicated, timeout=20, interval=0.05, message="an R3 consumer")
                assert await all_current(nc, list(subjects.stream_subjects()))
            finally:
                await nc.close()
            async with httpx.AsyncClient(timeout=3) as http:
                ready = (await http.get(f"http://127.0.0.1:{health['positions']}/readyz")).json()
            assert ready["nats"] == "ok", ready
    (line,) = [entry for entry in logs if entry["event"] == "ready"]
    assert (line["nats_nodes"], line["stream_replicas"]) == (3, 3)
    assert line["nats"] == ",".join(servers)
    assert all(node.process is None for node in stack.nats.nodes)  # all three stopped
    assert sorted(p.name for p in (tmp_path / "nats-cluster").iterdir()) == ["n1", "n2", "n3"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({"nats_url": "nats://127.0.0.1:4222"},
                     "--nats-cluster: starts an embedded NATS cluster, but AITRADER_NATS_URL names "
                     "servers to use", id="with-a-configured-server"),
        pytest.param({"nats_stream_replicas": 5},
                     "AITRADER_NATS_STREAM_REPLICAS: 5 replicas on 3 embedded nats-server node(s): "
                     "set at most 3, or --nats-cluster 5", id="more-replicas-than-nodes"),
    ],
)
def test_a_cluster_that_cannot_be_is_one_line_before_anything_starts(
    given: dict[str, object], expected: str,
) -> None:
    """What `up --nats-cluster 3` checks first (its CLI prints the line and exits 2)."""
    with pytest.raises(ConfigError) as caught:
        check_nats_cluster(Settings(**given), 3)  # type: ignore[arg-type]
    assert str(caught.value).startswith(expected)


@pytest.mark.parametrize(("given", "nodes", "replicas"), [
    pytest.param({}, 3, 3, id="cluster-default"), pytest.param({}, 5, 3, id="five-nodes-three-copies"),
    pytest.param({}, 1, 1, id="one-server"), pytest.param({"nats_stream_replicas": 2}, 3, 2, id="set"),
    pytest.param({"nats_url": "nats://a:1,nats://b:2,nats://c:3"}, 1, 1, id="configured-servers"),
])
def test_the_replica_count_follows_the_nodes_unless_set(given: dict[str, object], nodes: int,
                                                        replicas: int) -> None:
    assert stream_replicas(Settings(**given), nodes) == replicas  # type: ignore[arg-type]
