"""Benchmark: the positions service (a separate process) folding fills from JetStream.

    .venv/bin/python benchmarks/fills_throughput.py [--fills 100000] [--steady-seconds 10]
    AITRADER_DATABASE_URL=postgresql://admin@host/db AITRADER_NATS_URL=nats://host:4222 \
        .venv/bin/python benchmarks/fills_throughput.py      # servers you run (needs CREATEDB)

Without the two variables it starts an embedded PostgreSQL and nats-server in a temp dir.
Fills go over 20 symbols and 50 accounts (1,000 position slots), each linked by clOrdId to an
order written beforehand (as the MCP gateway does), in net mode with frequent flips.

Printed, from one run:
1. steady 500 fills/s: p50 / p99 publish -> commit latency (measured to the position event,
   which is published right after the commit: an upper bound);
2. flood of N fills published while the service runs: fills/s, first publish -> last commit,
   and latency under saturation — for the record: the publisher (this process) competes with
   the service for the same 2 cores;
3. drain of a backlog of N more fills, published while the service is stopped (SIGSTOP):
   fills/s from SIGCONT to the last commit — the product's throughput;
4. the plumbing reference: the drained messages pulled again with plain nats-py and written
   with COPY into an unindexed copy of `fills`, nothing folded — fills/s; and the ratio
   product (drain) / plumbing: both read the same backlog from JetStream with nothing else
   running. 3 and 4 alternate in rounds (--rounds, each on a part of the backlog) so that both
   sides see the same machine: this VM's speed drifts by tens of percent within a minute;
5. CPU seconds of the service, PostgreSQL and nats-server during the flood and the drain (from
   /proc, when the servers run on this host): where the time goes; per drain round the CPU per
   fill of each, and at the end the service's median over the rounds (µs per drained fill).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aitrader.embedded import EmbeddedNats, EmbeddedPostgres
from aitrader.migrate import migrate
from services.positions.partitions import backlog
from shared.bus import connect_nats, ensure_streams, headers_for
from shared.messages import Fill
from shared.subjects import DEFAULT_PARTITIONS, STREAM_ACCOUNT, Subjects

SYMBOLS = [f"B{i:02d}-USDT-SWAP" for i in range(20)]
ACCOUNTS = 50
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """(admin DSN, NATS URL): from the environment, or embedded in a temp dir."""
    dsn, url = os.environ.get("AITRADER_DATABASE_URL"), os.environ.get("AITRADER_NATS_URL")
    root = Path(tempfile.mkdtemp(prefix="aitrader-bench-"))
    root.chmod(0o755)  # an unprivileged PostgreSQL must reach it when we are root
    pg, nats_server = EmbeddedPostgres(root / "pg"), EmbeddedNats(root / "nats")
    try:
        if dsn is None:
            (root / "pg").mkdir()
            (root / "pg").chmod(0o755)
            pg.start()
            dsn = pg.dsn
        if url is None:
            nats_server.start()
            url = nats_server.url
        yield dsn, url
    finally:
        if os.environ.get("AITRADER_NATS_URL") is None:
            nats_server.stop()
        if os.environ.get("AITRADER_DATABASE_URL") is None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


async def fresh_database(admin_dsn: str) -> str:
    name = f"aitrader_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(admin_dsn)
    dsn = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    await migrate(dsn)
    return dsn


class Ledger:
    """Seeded fills: per slot a random walk of buys and sells, times strictly increasing."""

    def __init__(self, accounts: list[UUID], seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.accounts = accounts
        self.orders: list[tuple[UUID, UUID, str, str]] = []  # (order id, account, symbol, side)
        self.count = 0

    def fills(self, n: int) -> list[Fill]:
        out = []
        for _ in range(n):
            account, symbol = self.rng.choice(self.accounts), self.rng.choice(SYMBOLS)
            side = self.rng.choice(["buy", "sell"])
            order_id = uuid4()
            self.orders.append((order_id, account, symbol, side))
            out.append(Fill(
                account_id=account, mode="simulated", inst_id=symbol, trade_id=f"{self.count:09d}",
                ord_id=f"X{self.count}", cl_ord_id=order_id.hex, side=side, pos_side="net",  # type: ignore[arg-type]
                fill_px=Decimal(self.rng.randint(9_000, 11_000)) / 100,
                fill_sz=Decimal(self.rng.choice(["1", "2", "3"])), fill_fee=Decimal("-0.0105"),
                ts_event=T0 + timedelta(milliseconds=self.count),
            ))
            self.count += 1
        return out


async def setup(conn: asyncpg.Pool) -> list[UUID]:
    await conn.copy_records_to_table(
        "instruments", schema_name="aitrader",
        columns=["symbol", "base_asset", "quote_asset", "settle_ccy", "ct_val", "ct_mult",
                 "lot_sz", "min_sz", "tick_sz", "max_leverage"],
        records=[(s, s[:3], "USDT", "USDT", Decimal("0.01"), Decimal(1), Decimal("0.01"),
                  Decimal("0.01"), Decimal("0.1"), Decimal(100)) for s in SYMBOLS],
    )
    accounts = [uuid4() for _ in range(ACCOUNTS)]
    await conn.copy_records_to_table(
        "accounts", schema_name="aitrader", columns=["id", "external_id", "mode"],
        records=[(a, f"bench-{i}", "simulated") for i, a in enumerate(accounts)],
    )
    return accounts


async def write_orders(conn: asyncpg.Pool, ledger: Ledger, start: int) -> None:
    """The orders the gateway would have written before sending them (one per fill here)."""
    await conn.copy_records_to_table(
        "orders", schema_name="aitrader",
        columns=["id", "account_id", "symbol", "side", "order_type", "size", "status", "leverage",
                 "confidence", "client_order_id", "exchange_order_id", "source"],
        records=[(oid, acc, sym, side, "market", Decimal(3), "submitted", Decimal(5), Decimal(70),
                  oid.hex, f"X{start + i}", "agent")
                 for i, (oid, acc, sym, side) in enumerate(ledger.orders[start:])],
    )


async def start_service(
    dsn: str, url: str, subjects: Subjects, log_level: str, profile: str | None
) -> asyncio.subprocess.Process:
    env = {**os.environ, "AITRADER_DATABASE_URL": dsn, "AITRADER_NATS_URL": url,
           "AITRADER_NATS_SUBJECT_ROOT": subjects.root,
           "AITRADER_NATS_STREAM_PREFIX": subjects.stream_prefix, "AITRADER_LOG_LEVEL": log_level}
    wrap = ["-m", "cProfile", "-o", profile] if profile else []
    return await asyncio.create_subprocess_exec(sys.executable, *wrap, "-m", "services.positions", env=env)


class Latency:
    """Publish time per trade id; position events tell when its batch committed."""

    def __init__(self) -> None:
        self.published: dict[str, float] = {}
        self.committed: dict[str, float] = {}

    async def on_event(self, msg: object) -> None:
        now = time.time()
        trade_id = json.loads(msg.data)["trade_id"]  # type: ignore[attr-defined]
        self.committed.setdefault(trade_id, now)

    def percentiles(self, trade_ids: list[str]) -> tuple[float, float, int]:
        ms = sorted((self.committed[t] - self.published[t]) * 1000 for t in trade_ids if t in self.committed)
        if len(ms) < 2:
            return float("nan"), float("nan"), len(ms)
        q = statistics.quantiles(ms, n=100)
        return q[49], q[98], len(ms)


async def wait_consumed(js: JetStreamContext, subjects: Subjects, require_delivery: bool = True) -> None:
    """Until the service's partition consumers have nothing left (after a first delivery)."""
    while True:
        left = await backlog(js, subjects, "positions", DEFAULT_PARTITIONS)
        if left.settled and (left.delivered_stream_seq > 0 or not require_delivery):
            return
        await asyncio.sleep(0.01)


async def steady(js: JetStreamContext, subjects: Subjects, fills: list[Fill], rate: float,
                 latency: Latency) -> None:
    start = time.monotonic()
    for i, f in enumerate(fills):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        latency.published[f.trade_id] = time.time()
        await js.publish_async(subjects.fill(f.account_id, f.inst_id), f.to_bytes(), headers=headers_for(f))
    await js.publish_async_completed()
    await wait_consumed(js, subjects)


class CpuMeter:
    """CPU seconds of the service, PostgreSQL (every process of the server on the DSN's port)
    and nats-server between two snapshots, read from /proc (Linux, servers on this host)."""

    def __init__(self, service_pids: set[int], dsn: str, nats_url: str) -> None:
        self.service_pids = service_pids
        self.pg_port, self.nats_port = urlsplit(dsn).port or 5432, urlsplit(nats_url).port or 4222
        self.start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _groups(self) -> dict[str, float]:
        procs: dict[int, tuple[int, float, str]] = {}  # pid -> (ppid, cpu s, cmdline)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
                procs[int(entry.name)] = (int(stat[1]), cpu, cmd)
        postmasters = {pid for pid, (_, _, cmd) in procs.items()
                       if "postgres" in cmd and f"-p {self.pg_port}" in cmd}
        totals = {"service": 0.0, "postgres": 0.0, "nats": 0.0}
        for pid, (ppid, cpu, cmd) in procs.items():
            if pid in self.service_pids:
                totals["service"] += cpu
            elif pid in postmasters or ppid in postmasters:
                totals["postgres"] += cpu
            elif "nats-server" in cmd and f"-p {self.nats_port}" in cmd:
                totals["nats"] += cpu
        return totals

    def __enter__(self) -> CpuMeter:
        self.start = self._groups()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end, elapsed = self._groups(), time.monotonic() - self.t0
        self.used = {name: end[name] - self.start[name] for name in end}
        parts = [f"{name} {used:.1f} s" for name, used in self.used.items()]
        print(f"  cpu over {elapsed:.1f} s ({os.cpu_count()} cores): " + ", ".join(parts))

    def per_fill(self, fills: int) -> str:
        """CPU per fill of each group, in µs (after the meter has been exited)."""
        return ", ".join(f"{name} {used / fills * 1e6:.0f} µs" for name, used in self.used.items())


async def flood(js: JetStreamContext, subjects: Subjects, fills: list[Fill], latency: Latency) -> float:
    payloads = [(subjects.fill(f.account_id, f.inst_id), f.to_bytes(), headers_for(f), f.trade_id)
                for f in fills]
    started = time.monotonic()
    for subject, body, headers, trade_id in payloads:
        latency.published[trade_id] = time.time()
        await js.publish_async(subject, body, headers=headers)
    await js.publish_async_completed()
    published = time.monotonic() - started
    await wait_consumed(js, subjects)
    elapsed = time.monotonic() - started
    print(f"  published {len(fills):,} in {published:.1f} s ({len(fills) / published:,.0f}/s)")
    return len(fills) / elapsed


def chunks(items: list[Fill], n: int) -> list[list[Fill]]:
    """`items` in `n` consecutive parts of (nearly) equal size."""
    size, extra = divmod(len(items), n)
    bounds = [i * size + min(i, extra) for i in range(n + 1)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


async def drain(js: JetStreamContext, subjects: Subjects, fills: list[Fill],
                services: list[asyncio.subprocess.Process], meter: CpuMeter) -> float:
    """Publish a backlog while the service is frozen, then time it from resuming to the last commit."""
    for service in services:
        os.kill(service.pid, signal.SIGSTOP)
    try:
        for f in fills:
            subject = subjects.fill(f.account_id, f.inst_id)
            await js.publish_async(subject, f.to_bytes(), headers=headers_for(f))
        await js.publish_async_completed()
    finally:
        meter.__enter__()
        started = time.monotonic()
        for service in services:
            os.kill(service.pid, signal.SIGCONT)
    await wait_consumed(js, subjects)
    elapsed = time.monotonic() - started
    meter.__exit__()
    return len(fills) / elapsed


async def plumbing(nc: Client, pool: asyncpg.Pool, subjects: Subjects, first_seq: int, n: int,
                   name: str) -> float:
    """Plain nats-py pull + json + COPY into an unindexed copy of fills: the ceiling."""
    await pool.execute("CREATE TABLE IF NOT EXISTS aitrader.plumbing_fills (LIKE aitrader.fills)")
    js, stream = nc.jetstream(), subjects.stream(STREAM_ACCOUNT)
    await js.add_consumer(stream, ConsumerConfig(
        durable_name=name, name=name, ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first_seq,
        filter_subject=subjects.account_all, max_ack_pending=50_000))
    sub = await js.pull_subscribe_bind(durable=name, stream=stream)
    columns = ["id", "account_id", "order_id", "symbol", "side", "price", "size", "fee_usdt",
               "timestamp", "exchange_trade_id", "exchange_order_id", "pos_side", "category",
               "created_at", "raw_payload"]
    done, started = 0, time.monotonic()
    async with pool.acquire() as conn:
        while done < n:
            msgs = await sub.fetch(1000, timeout=5)
            records, now = [], datetime.now(UTC)
            for msg in msgs:
                body = json.loads(msg.data)
                records.append((uuid4(), UUID(body["account_id"]), uuid4(), body["inst_id"], body["side"],
                                Decimal(body["fill_px"]), Decimal(body["fill_sz"]), Decimal(body["fill_fee"]),
                                datetime.fromisoformat(body["ts_event"]), body["trade_id"],
                                body["ord_id"], body["pos_side"], body["category"], now,
                                msg.data.decode()))
            await conn.copy_records_to_table("plumbing_fills", schema_name="aitrader",
                                             columns=columns, records=records)
            for msg in msgs:
                await msg.ack()
            done += len(msgs)
    rate = done / (time.monotonic() - started)
    await sub.unsubscribe()
    await js.delete_consumer(stream, name)
    return rate


async def run(args: argparse.Namespace) -> None:
    with servers() as (admin_dsn, url):
        dsn = await fresh_database(admin_dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        nc = await connect_nats(url, name="bench")
        js = nc.jetstream()
        tag = secrets.token_hex(3)
        subjects = Subjects(root=f"bench{tag}", stream_prefix=f"BENCH{tag.upper()}_")
        await ensure_streams(js, subjects)
        ledger = Ledger(await setup(pool))
        warmup = ledger.fills(500)
        steady_fills = ledger.fills(int(args.rate * args.steady_seconds))
        flood_fills = ledger.fills(args.fills)
        drain_fills = ledger.fills(args.fills)
        await write_orders(pool, ledger, 0)
        latency = Latency()
        await nc.subscribe(subjects.positions_all, cb=latency.on_event)
        services = [
            await start_service(dsn, url, subjects, args.service_log_level, args.profile)
            for _ in range(args.instances)
        ]
        try:
            await wait_consumed(js, subjects, require_delivery=False)  # the consumer exists
            await steady(js, subjects, warmup, 1000, Latency())  # connections, caches, plans
            print(f"steady {args.rate:g} fills/s for {args.steady_seconds:g} s ...")
            await steady(js, subjects, steady_fills, args.rate, latency)
            p50, p99, seen = latency.percentiles([f.trade_id for f in steady_fills])
            print(f"  publish -> commit: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({seen:,} fills measured)")
            print(f"flood of {args.fills:,} fills, published while the service runs ...")
            with CpuMeter({s.pid for s in services}, dsn, url):
                flood_rate = await flood(js, subjects, flood_fills, latency)
            p50, p99, seen = latency.percentiles([f.trade_id for f in flood_fills])
            print(f"  {flood_rate:,.0f} fills/s (saturated: p50 {p50:.0f} ms, p99 {p99:.0f} ms)")
            print(f"drain of a backlog of {args.fills:,} fills (published while the service is stopped),"
                  f" in {args.rounds} rounds, each followed by the plumbing reference on its messages ...")
            rounds, service_us = [], []
            for r, chunk in enumerate(chunks(drain_fills, args.rounds)):
                first_seq = (await js.stream_info(subjects.stream(STREAM_ACCOUNT))).state.last_seq + 1
                meter = CpuMeter({s.pid for s in services}, dsn, url)
                product = await drain(js, subjects, chunk, services, meter)
                reference = await plumbing(nc, pool, subjects, first_seq, len(chunk), f"plumbing{r}")
                rounds.append((len(chunk), product, reference))
                service_us.append(meter.used["service"] / len(chunk) * 1e6)
                print(f"  round {r + 1}: product {product:,.0f} fills/s, plumbing {reference:,.0f} fills/s,"
                      f" ratio {product / reference:.2f}; cpu per fill: {meter.per_fill(len(chunk))}")
        finally:
            for service in services:
                service.terminate()
                await service.wait()
        stored = await pool.fetchval("SELECT count(*) FROM aitrader.fills")
        assert stored == len(warmup) + len(steady_fills) + 2 * args.fills, f"stored {stored}"
        total = sum(n for n, _, _ in rounds)
        product = total / sum(n / rate for n, rate, _ in rounds)
        reference = total / sum(n / rate for n, _, rate in rounds)
        print(f"  product: {product:,.0f} fills/s")
        print(f"  plumbing (nats-py pull + COPY, no fold): {reference:,.0f} fills/s")
        print(f"ratio product / plumbing: {product / reference:.2f}"
              f" (rounds: {', '.join(f'{p / r:.2f}' for _, p, r in rounds)})")
        print(f"service cpu per drained fill: {statistics.median(service_us):.0f} µs (median of rounds:"
              f" {', '.join(f'{u:.0f}' for u in service_us)})")
        await nc.close()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fills", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500.0, help="steady-phase fills per second")
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="drain / plumbing pairs, each on 1/rounds of the backlog")
    parser.add_argument("--instances", type=int, default=1,
                        help="positions service processes sharing the durable consumer")
    parser.add_argument("--profile", metavar="PATH", help="run the service under cProfile, stats to PATH")
    parser.add_argument("--service-log-level", default="warning", help="e.g. debug: one line per batch")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
