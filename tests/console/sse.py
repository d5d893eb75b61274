"""Helpers of the SSE tests and benchmark: the console served by `serve` on a free port with
NATS, and a client that reads an event stream into a queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx

from aitrader.embedded import free_port
from services.console.config import ConsoleSettings
from services.console.main import serve
from shared.messages import Fill
from tests.factories import wait_for


@contextlib.asynccontextmanager
async def served_console(config: ConsoleSettings) -> AsyncIterator[str]:
    """`serve(config)` as a task on a free port until its /readyz (database and NATS) is 200;
    yields its base URL."""
    port = free_port()
    config = config.model_copy(update={"console_port": port})
    base = f"http://127.0.0.1:{port}"
    task = asyncio.create_task(serve(config))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5.0) as http:

            async def ready() -> bool:
                if task.done():
                    task.result()
                with contextlib.suppress(httpx.TransportError):
                    return (await http.get("/readyz")).status_code == 200
                return False

            await wait_for(ready, timeout=15, message="the console's /readyz")
        yield base
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True)
class Received:
    event: str
    data: dict[str, Any]
    at: float  # time.perf_counter() when its blank line was read
    id: str | None = None


@dataclass
class SseReader:
    """One stream read by a task: the events in `events`, the other fields in `lines`."""

    response: httpx.Response
    events: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    lines: list[str] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        name, data, event_id = "message", "", None
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data:
                        received = Received(name, json.loads(data), time.perf_counter(), event_id)
                        await self.events.put(received)
                    name, data, event_id = "message", "", None
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                else:
                    self.lines.append(line)
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    async def next(self, timeout: float = 5.0) -> Received:
        return await asyncio.wait_for(self.events.get(), timeout)


@contextlib.asynccontextmanager
async def sse_stream(
    http: httpx.AsyncClient, token: str, *, last_event_id: str | None = None, **params: str
) -> AsyncIterator[SseReader]:
    """An open stream, once the console has sent its first line (the client is registered)."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with http.stream("GET", "/api/v1/events", headers=headers, params=params) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        task = asyncio.create_task(reader.run())
        try:
            await wait_for(lambda: _has_lines(reader), timeout=5, message="the stream's first line")
            yield reader
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _has_lines(reader: SseReader) -> bool:
    return bool(reader.lines)


def a_fill(account: UUID, trade_id: str, px: str = "50000.5") -> Fill:
    return Fill(
        account_id=account,
        mode="simulated",
        inst_id="BTC-USDT-SWAP",
        trade_id=trade_id,
        ord_id=f"o{trade_id}",
        side="buy",
        pos_side="net",
        fill_px=Decimal(px),
        fill_sz=Decimal("0.01"),
        fill_fee=Decimal("-0.00000001"),
        ts_event=datetime.now(UTC),
    )
