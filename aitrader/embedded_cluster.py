"""A NATS cluster on this machine: `size` embedded nats-server processes (`EmbeddedNats`), each
with JetStream and a store of its own (`root_dir/n1`, `n2`, …), joined by routes on loopback
ports. What `aitrader up --nats-cluster 3` starts, and what the tests kill nodes of.

Client ports are `base_port`, `base_port + 1`, … (0: free ports); route and monitor ports are
free ports. Node names (`n1`, …) are stable, so a cluster restarted on the same directory finds
its streams again (JetStream knows its peers by name, not by port). The streams' replica count
on it, and what `--nats-cluster` refuses, are here too (`stream_replicas`, `check_nats_cluster`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from aitrader.embedded import EmbeddedNats, Routes, free_ports
from shared.errors import ConfigError
from shared.settings import Settings

CLUSTER_NAME = "aitrader"


@dataclass
class EmbeddedNatsCluster:
    """`size` nats-server nodes with JetStream, routed to each other on loopback."""

    root_dir: Path
    size: int = 3
    base_port: int = 0
    nodes: list[EmbeddedNats] = field(default_factory=list, init=False)

    @property
    def url(self) -> str:
        """Every node, as AITRADER_NATS_URL lists them."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> EmbeddedNats:
        """The node a JetStream answer names (a stream's leader, a replica)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in {[n.name for n in self.nodes]}")

    def _plan(self) -> list[EmbeddedNats]:
        ports = free_ports(3 * self.size)  # routes, monitors, clients (unless from base_port)
        routes, monitors, clients = ports[:self.size], ports[self.size:2 * self.size], ports[2 * self.size:]
        if self.base_port:
            clients = [self.base_port + n for n in range(self.size)]
        urls = tuple(f"nats://127.0.0.1:{port}" for port in routes)
        return [
            EmbeddedNats(self.root_dir / f"n{n + 1}", port=clients[n], monitor_port=monitors[n],
                         name=f"n{n + 1}", routes=Routes(CLUSTER_NAME, routes[n], urls))
            for n in range(self.size)
        ]

    def start(self, timeout: float = 20.0) -> None:
        """Start every node, and return once each says the cluster has formed (its /healthz:
        in contact with the meta leader). Measured here: ~1 s for three nodes."""
        self.nodes = self.nodes or self._plan()
        try:
            for node in self.nodes:
                node.start(timeout)
            self.wait_formed(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_formed(self, timeout: float = 20.0) -> None:
        """Until every running node answers its full /healthz."""
        deadline = time.monotonic() + timeout
        while not all(node.healthy() for node in self.nodes if node.process is not None):
            if time.monotonic() > deadline:
                raise ConfigError("--nats-cluster", f"the {self.size} embedded nats-server nodes "
                                  f"did not form a cluster within {timeout:g} s (logs: "
                                  f"{self.root_dir}/n*/nats-server.log)")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def check_nats_cluster(settings: Settings, nats_nodes: int) -> None:
    """`--nats-cluster N` is possible with these settings (before anything starts)."""
    if nats_nodes > 1 and settings.nats_url:
        raise ConfigError("--nats-cluster", "starts an embedded NATS cluster, but AITRADER_NATS_URL "
                          "names servers to use: unset it, or list the cluster's nodes in it")
    stream_replicas(settings, nats_nodes)  # raises on a count the embedded nodes cannot hold


def stream_replicas(settings: Settings, nats_nodes: int) -> int:
    """AITRADER_NATS_STREAM_REPLICAS when set; else 3 copies on an embedded cluster of three or
    more nodes (all of them on a smaller one), 1 on one server."""
    if "nats_stream_replicas" in settings.model_fields_set:
        replicas = settings.nats_stream_replicas
        if not settings.nats_url and replicas > nats_nodes:
            raise ConfigError("AITRADER_NATS_STREAM_REPLICAS", f"{replicas} replicas on {nats_nodes} "
                              f"embedded nats-server node(s): set at most {nats_nodes}, or "
                              f"--nats-cluster {replicas}")
        return replicas
    return 1 if settings.nats_url else min(nats_nodes, 3)
