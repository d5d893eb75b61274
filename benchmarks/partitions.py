"""Benchmark: positions instances (separate processes) on the partitioned ACCOUNT stream.

    .venv/bin/python benchmarks/partitions.py [--fills 30000] [--partitions 4] [--rate 500]

Same servers, data and plumbing reference as `benchmarks/fills_throughput.py` (imported from it):
20 symbols, 50 accounts, net mode with frequent flips; embedded PostgreSQL and nats-server unless
AITRADER_DATABASE_URL / AITRADER_NATS_URL are set. Printed, from one run:

1. one instance owning every partition: the drain of a backlog of N fills (published while it is
   stopped, SIGSTOP), fills/s from SIGCONT to the last commit; then the plumbing reference (plain
   nats-py pull + COPY, no fold) on the same messages, and the ratio;
2. a second instance started: the time until the two hold half the partitions each (the
   server's pins, read from the consumers' info), then the same drain with both, its plumbing
   reference, and the ratio two instances / one;
3. failover: fills at --rate fills/s while both run; one instance killed (SIGKILL); the longest
   time any partition went without a committed fill (its position events) around the kill —
   what an account on a killed instance's partition waits — and the time until the server
   pinned the survivor on every partition. Every fill stored once is checked at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import UUID

import asyncpg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fills_throughput import (
    CpuMeter,
    Ledger,
    fresh_database,
    plumbing,
    servers,
    setup,
    start_service,
    write_orders,
)

from services.positions.config import PositionsSettings
from services.positions.partitions import backlog
from shared.bus import connect_nats, ensure_streams, headers_for
from shared.messages import Fill
from shared.subjects import STREAM_ACCOUNT, Subjects, partition_of

TTL = PositionsSettings.model_fields["positions_pinned_ttl_seconds"].default  # the failover bound


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Callable[[], Awaitable[bool]], interval: float = 0.02) -> None:
    """Poll `check` until it is true (the benchmark's own deadline is the caller's patience)."""
    while True:
        if await check():
            return
        await asyncio.sleep(interval)


async def settled(js: JetStreamContext, subjects: Subjects, partitions: int) -> None:
    async def done() -> bool:
        return (await backlog(js, subjects, "positions", partitions)).settled

    await until(done, 0.01)


async def owned(port: int) -> int:
    """The partitions an instance holds, from its /metrics (aitrader_positions_partitions_owned)."""
    def read() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
        except OSError:  # not serving yet (starting) or any more (killed)
            return 0
        for line in text.splitlines():
            if line.startswith("aitrader_positions_partitions_owned "):
                return int(float(line.split()[1]))
        return 0

    return await asyncio.to_thread(read)


async def start(dsn: str, url: str, subjects: Subjects, port: int, level: str) -> asyncio.subprocess.Process:
    os.environ["AITRADER_HEALTH_PORT"] = str(port)  # start_service passes the environment on
    return await start_service(dsn, url, subjects, level, None)


async def publish(
    js: JetStreamContext, subjects: Subjects, fills: list[Fill], rate: float | None = None
) -> None:
    started = time.monotonic()
    for i, f in enumerate(fills):
        if rate is not None:
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        await js.publish_async(subjects.fill(f.account_id, f.inst_id), f.to_bytes(), headers=headers_for(f))
    await js.publish_async_completed()


async def drain(js: JetStreamContext, subjects: Subjects, fills: list[Fill],
                procs: list[asyncio.subprocess.Process], meter: CpuMeter, partitions: int) -> float:
    for proc in procs:
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        await publish(js, subjects, fills)
    finally:
        meter.__enter__()
        started = time.monotonic()
        for proc in procs:
            os.kill(proc.pid, signal.SIGCONT)
    await settled(js, subjects, partitions)
    elapsed = time.monotonic() - started
    meter.__exit__()
    return len(fills) / elapsed


async def measured_drain(nc: Client, js: JetStreamContext, pool: asyncpg.Pool, subjects: Subjects,
                         fills: list[Fill], procs: list[asyncio.subprocess.Process], dsn: str, url: str,
                         partitions: int, name: str) -> tuple[float, float]:
    first_seq = (await js.stream_info(subjects.stream(STREAM_ACCOUNT))).state.last_seq + 1
    meter = CpuMeter({p.pid for p in procs}, dsn, url)
    product = await drain(js, subjects, fills, procs, meter, partitions)
    reference = await plumbing(nc, pool, subjects, first_seq, len(fills), name)
    print(f"  product {product:,.0f} fills/s, plumbing {reference:,.0f} fills/s,"
          f" ratio {product / reference:.2f}")
    return product, reference


class Commits:
    """Per partition, the times its position events (published right after each commit) arrived."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.times: dict[int, list[float]] = {p: [] for p in range(partitions)}

    async def on_event(self, msg: Msg) -> None:
        account = json.loads(msg.data)["account_id"]
        self.times[partition_of(str(UUID(account)), self.partitions)].append(time.monotonic())

    def longest_gap(self, start: float, end: float) -> float:
        gaps = []
        for times in self.times.values():
            inside = [start] + [t for t in times if start <= t <= end]
            inside.append(end)
            gaps.append(max(b - a for a, b in itertools.pairwise(inside)))
        return max(gaps)


async def run(args: argparse.Namespace) -> None:
    os.environ.update({"AITRADER_NATS_ACCOUNT_PARTITIONS": str(args.partitions),
                       "AITRADER_POSITIONS_REBALANCE_SECONDS": "0.5"})
    n = args.partitions
    with servers() as (admin_dsn, url):
        dsn = await fresh_database(admin_dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        nc = await connect_nats(url, name="bench")
        js = nc.jetstream()
        tag = os.urandom(3).hex()
        subjects = Subjects(root=f"bench{tag}", stream_prefix=f"BENCH{tag.upper()}_")
        await ensure_streams(js, subjects, partitions=n)
        ledger = Ledger(await setup(pool))
        warmup, one, two = ledger.fills(500), ledger.fills(args.fills), ledger.fills(args.fills)
        feed = ledger.fills(int(args.rate * 8))
        await write_orders(pool, ledger, 0)
        commits = Commits(n)
        await nc.subscribe(subjects.positions_all, cb=commits.on_event)
        ports = [free_port(), free_port()]
        procs = [await start(dsn, url, subjects, ports[0], args.service_log_level)]
        try:
            await publish(js, subjects, warmup)
            await settled(js, subjects, n)
            print(f"one instance, {n} partitions: drain of {args.fills:,} fills ...")
            rate1, ref1 = await measured_drain(nc, js, pool, subjects, one, procs, dsn, url, n, "plumbing1")
            procs.append(await start(dsn, url, subjects, ports[1], args.service_log_level))
            started = time.monotonic()
            trickle = asyncio.create_task(publish(js, subjects, feed[: int(args.rate * 2)], args.rate / 4))
            async def shared() -> bool:
                return sorted([await owned(ports[0]), await owned(ports[1])]) == [n // 2, n - n // 2]

            await until(shared, 0.05)
            print(f"second instance: the partitions shared {n // 2} + {n - n // 2} after "
                  f"{time.monotonic() - started:.1f} s")
            await trickle
            await settled(js, subjects, n)
            print(f"two instances: drain of {args.fills:,} fills ...")
            rate2, ref2 = await measured_drain(nc, js, pool, subjects, two, procs, dsn, url, n, "plumbing2")
            print(f"two / one instance: {rate2 / rate1:.2f} (plumbing two / one: {ref2 / ref1:.2f})")
            print(f"failover: {args.rate:g} fills/s, one instance killed (SIGKILL), pinned TTL {TTL:g} s ...")
            rest = feed[int(args.rate * 2):]
            feeding = asyncio.create_task(publish(js, subjects, rest, args.rate))
            await asyncio.sleep(2.0)
            killed_at = time.monotonic()
            procs[0].kill()
            await procs[0].wait()
            async def survivor_owns_all() -> bool:
                return await owned(ports[1]) == n

            await until(survivor_owns_all, 0.05)
            takeover = time.monotonic() - killed_at
            await feeding
            await settled(js, subjects, n)
            gap = commits.longest_gap(killed_at - 1.0, time.monotonic())
            print(f"  the survivor owns every partition {takeover:.2f} s after the kill (its gauge, "
                  f"sampled every 0.5 s); the longest a partition went without a commit: {gap:.2f} s")
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
        stored = await pool.fetchval("SELECT count(*) FROM aitrader.fills")
        expected = len(warmup) + len(one) + len(two) + len(feed)
        assert stored == expected, f"stored {stored}, published {expected}"
        print(f"fills stored {stored:,} / {expected:,} published, each once")
        await nc.close()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fills", type=int, default=30_000, help="fills per drain")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=500.0, help="fills/s while one instance is killed")
    parser.add_argument("--service-log-level", default="warning", help="info: pins, handovers, catch-ups")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
