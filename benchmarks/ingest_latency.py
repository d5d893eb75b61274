"""Ingest latency: okx_sim sends a push -> the event is stored in JetStream (PubAck).

Runs okx_sim, NATS, PostgreSQL and ingest on this machine (embedded servers unless
AITRADER_TEST_NATS_URL / AITRADER_TEST_DATABASE_URL are set) and prints p50/p99 for closed
candles and fills, next to a raw reference: a bare websocket frame + `js.publish` round trip.

    .venv/bin/python -m benchmarks.ingest_latency [--samples 300]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import asyncpg
from pydantic import SecretStr
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from aitrader.migrate import migrate
from services.ingest.config import IngestSettings
from services.ingest.main import Ingest
from services.ingest.publisher import Publisher
from services.okx_sim import AccountSpec, SimConfig, run_sim
from services.okx_sim.exchange import OrderRequest
from services.okx_sim.models import OrderUpdate as SimOrderUpdate
from shared.bus import connect_nats, ensure_streams
from shared.clock import to_ms
from shared.messages import Candle, Event, Fill
from shared.subjects import Subjects
from tests.servers import nats_server, postgres_server

KEY, SECRET, PASS = "bench-key", "bench-secret", "bench-pass"
SYMBOL = "BTC-USDT-SWAP"
sent: dict[str, float] = {}
stored: dict[str, float] = {}


def _key_of_frame(text: str) -> str | None:
    """The natural key of a pushed candle (confirmed) or fill, as the event will carry it."""
    if '"confirm"' not in text and '"tradeId"' not in text and "candle" not in text:
        return None
    body = json.loads(text)
    channel = body.get("arg", {}).get("channel", "")
    for item in body.get("data", []):
        if channel.startswith("candle") and item[-1] == "1":
            return f"candle:{item[0]}"
        if channel == "orders" and isinstance(item, dict) and item.get("tradeId"):
            return f"fill:{item['tradeId']}"
    return None


def _key_of_event(event: Event) -> str | None:
    if isinstance(event, Candle) and event.confirmed:
        return f"candle:{to_ms(event.open_time)}"
    if isinstance(event, Fill):
        return f"fill:{event.trade_id}"
    return None


def instrument() -> None:
    """Timestamp frames as okx_sim hands them to the socket, and events at their PubAck."""
    send_text: Callable[[WebSocket, str], Awaitable[None]] = WebSocket.send_text
    publish: Callable[[Publisher, Event], Awaitable[None]] = Publisher.publish

    async def timed_send(self: WebSocket, data: str) -> None:
        key = _key_of_frame(data)
        if key:
            sent.setdefault(key, time.perf_counter())
        await send_text(self, data)

    async def timed_publish(self: Publisher, event: Event) -> None:
        await publish(self, event)
        key = _key_of_event(event)
        if key:
            stored.setdefault(key, time.perf_counter())

    WebSocket.send_text = timed_send  # type: ignore[method-assign,assignment]
    Publisher.publish = timed_publish  # type: ignore[method-assign]


def summary(name: str, values: list[float]) -> tuple[float, float]:
    ms = sorted(v * 1000 for v in values)
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{name:<34} n={len(ms):<5} p50={p50:7.3f} ms  p99={p99:7.3f} ms")
    return p50, p99


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark event not stored in time")
        await asyncio.sleep(0.001)


async def measure_ingest(nats_url: str, dsn: str, samples: int) -> dict[str, list[float]]:
    instrument()
    tag = secrets.token_hex(3)
    config = SimConfig(seed=3, accounts=(AccountSpec(KEY, SECRET, PASS, Decimal(10**7)),),
                       speed=Decimal(0), symbols=(SYMBOL,), tick_interval_s=3600)
    async with run_sim(config) as sim:
        cfg = IngestSettings(
            database_url=dsn, nats_url=nats_url, nats_subject_root=f"bench{tag}",
            nats_stream_prefix=f"BENCH{tag.upper()}_", okx_rest_url=sim.rest_url,
            okx_ws_public_url=sim.ws_public_url, okx_ws_business_url=sim.ws_business_url,
            okx_ws_private_url=sim.ws_private_url, okx_api_key=SecretStr(KEY),
            okx_secret_key=SecretStr(SECRET), okx_passphrase=SecretStr(PASS), account="bench",
            symbols=[SYMBOL], timeframes=["1m"], ingest_backfill_candles=50, log_level="error")
        app = Ingest(cfg)
        task = asyncio.create_task(app.run())
        await asyncio.wait_for(app.ready(), 30)
        try:
            gc.collect()
            gc.freeze()  # the sim's market tables share this heap; keep them out of GC passes
            sim.tick()  # the first market step only starts tracking bars
            candles, fills = [], []
            for n in range(samples):
                opening = sim.now() // 60_000 * 60_000
                sim.advance(60)  # closes the bar: one confirmed candle push
                key = f"candle:{opening}"
                await wait_until(lambda k=key: k in stored)  # type: ignore[misc]
                candles.append(stored[key] - sent[key])
                side = "buy" if n % 2 == 0 else "sell"
                _, events = sim.exchange.place_order(KEY, OrderRequest(SYMBOL, side, "market",
                                                                       Decimal(1)))
                sim.core.publish(events)
                trade = next(e.fill.trade_id for e in events
                             if isinstance(e, SimOrderUpdate) and e.fill is not None)
                await wait_until(lambda k=f"fill:{trade}": k in stored)  # type: ignore[misc]
                fills.append(stored[f"fill:{trade}"] - sent[f"fill:{trade}"])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return {"candle": candles, "fill": fills}


async def measure_reference(nats_url: str, samples: int) -> list[float]:
    """A bare websocket frame, read and published to JetStream, acknowledged."""
    tag = secrets.token_hex(3)
    subjects = Subjects(f"ref{tag}", f"REF{tag.upper()}_")
    nc = await connect_nats(nats_url, name="bench-ref")
    js = nc.jetstream()
    await ensure_streams(js, subjects)
    gate: asyncio.Queue[float] = asyncio.Queue()
    out: list[float] = []

    async def server(ws: ServerConnection) -> None:
        for n in range(samples):
            t0 = time.perf_counter()
            await ws.send(json.dumps({"n": n, "px": "60000.1"}))
            gate.put_nowait(t0)
            await ws.recv()  # one in flight at a time, like the ingest measurement

    async with serve(server, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", ping_interval=None) as ws:
            for _ in range(samples):
                frame = await ws.recv()
                await js.publish(subjects.candle("1m", SYMBOL), str(frame).encode(),
                                 headers={"Nats-Msg-Id": secrets.token_hex(8)})
                out.append(time.perf_counter() - await gate.get())
                await ws.send("next")
    for stream in subjects.stream_subjects():
        await js.delete_stream(stream)
    await nc.close()
    return out


async def main(samples: int) -> None:
    with nats_server() as (nats_url, _), postgres_server() as (admin_dsn, _):
        name = f"bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
        try:
            await migrate(dsn)
            reference = await measure_reference(nats_url, samples)
            found = await measure_ingest(nats_url, dsn, samples)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(f"ingest latency, okx_sim push -> JetStream PubAck ({samples} samples each)")
    _, ref99 = summary("reference: ws frame + js.publish", reference)
    for kind in ("candle", "fill"):
        _, p99 = summary(f"ingest: {kind}", found[kind])
        print(f"{'':<34} p99 / reference p99 = {p99 / ref99:.2f}x; "
              f"target 20 ms p99: {'met' if p99 < 20 else 'MISSED'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    asyncio.run(main(parser.parse_args().samples))
