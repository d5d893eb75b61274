"""The SSE fan-out part of benchmarks/console_pages.py: N event streams of a running console,
one fill published at a time on the ACCOUNT stream, the time until the N-th stream has it;
the reference is N core NATS subscriptions of this process receiving the same publish."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import httpx
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared.bus import connect_nats, ensure_streams, publish_event
from shared.messages import Fill
from shared.subjects import Subjects


class Arrivals:
    """When each receiver got each trade id; `wait(trade)` until all `n` have it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.times: dict[str, list[float]] = {}
        self.done: dict[str, asyncio.Event] = {}

    def got(self, trade_id: str) -> None:
        times = self.times.setdefault(trade_id, [])
        times.append(time.perf_counter())
        if len(times) == self.n:
            self.done.setdefault(trade_id, asyncio.Event()).set()

    async def wait(self, trade_id: str, timeout: float = 10.0) -> float:
        await asyncio.wait_for(self.done.setdefault(trade_id, asyncio.Event()).wait(), timeout)
        return max(self.times[trade_id])


async def _read(response: httpx.Response, arrivals: Arrivals, opened: Callable[[], None]) -> None:
    first = True
    async for line in response.aiter_lines():
        if first:
            opened()
            first = False
        if line.startswith("data:"):
            arrivals.got(json.loads(line[5:])["trade_id"])


def _fill(account: UUID, trade_id: str) -> Fill:
    return Fill(
        account_id=account,
        mode="simulated",
        inst_id="BTC-USDT-SWAP",
        trade_id=trade_id,
        ord_id=f"o{trade_id}",
        side="buy",
        pos_side="net",
        fill_px=Decimal("50000.5"),
        fill_sz=Decimal("0.01"),
        fill_fee=Decimal("-0.0105"),
        ts_event=datetime.now(UTC),
    )


def _report(name: str, seconds: list[float]) -> float:
    ms = sorted(s * 1000 for s in seconds)
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    print(f"  {name:<44} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   (n={len(ms)})")
    return p50


async def fan_out(
    base: str, nats_url: str, root: str, account: UUID, token: str, n: int, publishes: int
) -> None:
    subjects = Subjects(root, root.upper() + "_")
    nc = await connect_nats(nats_url, name="bench")
    js = nc.jetstream()
    await ensure_streams(js, subjects)
    subject = subjects.fill(account, "BTC-USDT-SWAP")
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=httpx.Timeout(10, read=None), limits=limits
        ) as http:
            async with contextlib.AsyncExitStack() as stack:
                sse, opened = Arrivals(n), asyncio.Semaphore(0)
                tasks = []
                for _ in range(n):
                    response = await stack.enter_async_context(
                        http.stream("GET", "/api/v1/events", headers=headers)
                    )
                    assert response.status_code == 200, await response.aread()
                    tasks.append(asyncio.create_task(_read(response, sse, opened.release)))
                for _ in range(n):
                    await asyncio.wait_for(opened.acquire(), 10)
                sse_times = await _rounds(js, subject, account, sse, publishes, "sse")
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        raw, subs = Arrivals(n), []
        for _ in range(n):

            async def got(msg: Msg) -> None:
                raw.got(json.loads(msg.data)["trade_id"])

            subs.append(await nc.subscribe(subject, cb=got))
        await nc.flush()
        raw_times = await _rounds(js, subject, account, raw, publishes, "raw")
        print(f"SSE fan-out: one fill published on the stream, {n} receivers, time until the last has it:")
        ref = _report(f"{n} core NATS subscriptions (reference)", raw_times)
        got_sse = _report(f"{n} SSE streams of the console", sse_times)
        print(f"  ratio SSE / NATS (p50): {got_sse / ref:.1f}x")
    finally:
        await nc.close()


async def _rounds(
    js: JetStreamContext, subject: str, account: UUID, arrivals: Arrivals, publishes: int, tag: str
) -> list[float]:
    out = []
    for i in range(publishes + 5):  # 5 warm-up publishes
        fill = _fill(account, f"{tag}{i}")
        started = time.perf_counter()
        await publish_event(js, subject, fill)
        last = await arrivals.wait(fill.trade_id)
        if i >= 5:
            out.append(last - started)
        await asyncio.sleep(0.01)
    return out
