"""GET /api/v1/events against real NATS and PostgreSQL: the console served by uvicorn (`serve`),
events published on the streams as ingest and the positions service publish them."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest_asyncio
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from services.console.config import ConsoleSettings
from shared.bus import publish_event
from shared.messages import OrderUpdate, PositionEvent, PositionState
from shared.settings import Settings
from shared.subjects import Subjects
from shared.tokens import PREFIX_LEN
from tests.console.conftest import Seeded
from tests.console.seed import console_token
from tests.console.sse import a_fill, served_console, sse_stream
from tests.factories import wait_for

QUEUE = 16


@pytest_asyncio.fixture(loop_scope="session")
async def base(settings: Settings, seeded: Seeded) -> AsyncIterator[str]:
    config = ConsoleSettings(
        **settings.model_dump(),
        console_token_cache_s=0,
        console_events_queue_size=QUEUE,
        console_events_heartbeat_s=0.3,
        console_events_retry_ms=1500,
        console_events_send_timeout_s=1.0,
    )
    async with served_console(config) as url:
        yield url


async def test_a_fill_an_order_and_a_position_event_reach_the_client_within_a_second(
    base: str, seeded: Seeded, js: JetStreamContext, subjects: Subjects
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get("/readyz")).json()["nats"] == "ok"
        async with sse_stream(http, seeded.token_a) as stream:
            assert "retry: 1500" in stream.lines
            fill = a_fill(seeded.a, "t1")
            sent = time.perf_counter()
            await publish_event(js, subjects.for_event(fill), fill)
            got = await stream.next()
            assert got.at - sent < 1.0
            assert got.event == "fill"
            assert got.data["account"] == "A" and got.data["symbol"] == "BTC-USDT-SWAP"
            assert got.data["kind"] == "fill" and got.data["trade_id"] == "t1"
            assert (got.data["fill_px"], got.data["fill_fee"]) == ("50000.5", "-0.00000001")
            assert got.data["ts_event"].endswith("Z")
            assert "account_id" not in got.data and "raw" not in got.data

            order = OrderUpdate(
                account_id=seeded.a,
                mode="simulated",
                inst_id="ETH-USDT-SWAP",
                ord_id="o9",
                side="sell",
                pos_side="net",
                ord_type="market",
                state="filled",
                sz=Decimal("2"),
                ts_event=datetime.now(UTC),
            )
            await publish_event(js, subjects.for_event(order), order)
            got = await stream.next()
            assert (got.event, got.data["symbol"], got.data["state"], got.data["sz"]) == (
                "order",
                "ETH-USDT-SWAP",
                "filled",
                "2",
            )

            opened = _opened(seeded.a, "t1")
            await publish_event(js, subjects.for_event(opened), opened)
            got = await stream.next()
            assert (got.event, got.data["kind"], got.data["position"]["avg_entry_price"]) == (
                "position",
                "opened",
                "50000.5",
            )
            await asyncio.sleep(0.7)  # idle: heartbeat comments
            assert ": heartbeat" in stream.lines


def _opened(account: UUID, trade_id: str, plan: dict[str, Any] | None = None) -> PositionEvent:
    state = PositionState(
        side="long",
        quantity=Decimal("0.01"),
        avg_entry_price=Decimal("50000.5"),
        opened_at=datetime.now(UTC),
        exit_plan=plan,
    )
    return PositionEvent(
        account_id=account,
        mode="simulated",
        kind="opened",
        inst_id="BTC-USDT-SWAP",
        pos_side="net",
        trade_id=trade_id,
        position=state,
        ts_event=datetime.now(UTC),
    )


async def test_a_client_of_account_a_never_sees_b(
    base: str, seeded: Seeded, db_pool: asyncpg.Pool, js: JetStreamContext, subjects: Subjects
) -> None:
    token_b = await console_token(db_pool, [seeded.b])
    token_ab = await console_token(db_pool, [seeded.a, seeded.b])
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        denied = await http.get("/api/v1/events", params={"account": "B"}, headers=seeded.auth)
        assert denied.status_code == 404
        async with (
            sse_stream(http, seeded.token_a) as a,
            sse_stream(http, token_b) as b,
            sse_stream(http, token_ab, account="B") as only_b,
            sse_stream(http, token_ab) as both,
        ):
            for event in (a_fill(seeded.b, "b1"), a_fill(seeded.a, "a1"), a_fill(seeded.b, "b2")):
                await publish_event(js, subjects.for_event(event), event)
            assert (await a.next()).data["trade_id"] == "a1"  # b1 was published first
            assert [(await b.next()).data["trade_id"] for _ in range(2)] == ["b1", "b2"]
            assert [(await only_b.next()).data["trade_id"] for _ in range(2)] == ["b1", "b2"]
            assert [(await both.next()).data["account"] for _ in range(3)] == ["B", "A", "B"]
            await asyncio.sleep(0.3)
            assert a.events.empty() and b.events.empty() and only_b.events.empty()


async def test_a_slow_client_is_dropped_while_a_fast_one_keeps_receiving(
    base: str, seeded: Seeded, js: JetStreamContext, subjects: Subjects
) -> None:
    port = int(base.rsplit(":", 1)[1])
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # a reader that never reads
    slow.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(slow, ("127.0.0.1", port))
    request = f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {seeded.token_a}\r\n\r\n"
    await loop.sock_sendall(slow, request.encode())
    # big events (a 20 KB exit plan), so that the kernel's buffers (up to 4 MB) fill quickly
    n, plan = 400, {"note": "x" * 20_000}
    try:
        with capture_logs() as logs:
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as http,
                sse_stream(http, seeded.token_a) as fast,
            ):
                await asyncio.sleep(0.2)
                for i in range(n):
                    event = _opened(seeded.a, f"s{i}", plan)
                    await publish_event(js, subjects.for_event(event), event)
                got = [(await fast.next(10)).data["trade_id"] for _ in range(n)]
                assert got == [f"s{i}" for i in range(n)]
        assert any(e["event"] == "console_sse_client_dropped" for e in logs)
        # the server ends the slow stream (its blocked write times out): EOF after what was buffered
        received = bytearray()
        async with asyncio.timeout(15):
            while chunk := await loop.sock_recv(slow, 1 << 20):
                received += chunk
        assert 0 < received.count(b"event: position") < n
    finally:
        slow.close()


async def _clients(http: httpx.AsyncClient) -> float:
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("console_sse_clients "):
            return float(line.split()[1])
    raise AssertionError("no console_sse_clients gauge")


async def test_a_disconnect_frees_the_client_and_a_revoked_token_ends_its_stream(
    base: str, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        before = await _clients(http)
        async with sse_stream(http, seeded.token_a):
            assert await _clients(http) == before + 1
        await wait_for(lambda: _is(http, before), timeout=5, message="the client freed")

        token = await console_token(db_pool, [seeded.a])
        async with sse_stream(http, token) as stream:
            await db_pool.execute(
                "UPDATE aitrader.api_tokens SET revoked_at = now() WHERE token_prefix = $1",
                token[:PREFIX_LEN],
            )
            await asyncio.wait_for(stream.ended.wait(), 5)
        await wait_for(lambda: _is(http, before), timeout=5, message="the revoked client freed")


async def _is(http: httpx.AsyncClient, value: float) -> bool:
    return await _clients(http) == value


async def test_no_token_or_a_bad_one_is_401(base: str, db_pool: asyncpg.Pool, seeded: Seeded) -> None:
    read_only = await console_token(db_pool, [seeded.a], scopes=("read",))
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get("/api/v1/events")).status_code == 401
        for token in ("garbage", read_only):
            answer = await http.get("/api/v1/events", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, token


async def test_every_event_has_an_id_and_a_reconnect_resumes_after_it(
    base: str, seeded: Seeded, db_pool: asyncpg.Pool, js: JetStreamContext, subjects: Subjects
) -> None:
    """Last-Event-ID: the events the client missed while away (its accounts' only, in order),
    then the live ones; an id the console cannot resume from gets a `reset` event."""
    token_ab = await console_token(db_pool, [seeded.a, seeded.b])
    async with httpx.AsyncClient(base_url=base, timeout=10) as http, sse_stream(http, token_ab) as witness:
        async with sse_stream(http, seeded.token_a) as first:
            await publish_event(js, subjects.for_event(fill := a_fill(seeded.a, "a1")), fill)
            seen = await first.next()
        assert seen.id is not None and seen.id == (await witness.next()).id
        for event in (a_fill(seeded.a, "a2"), a_fill(seeded.b, "b1"), a_fill(seeded.a, "a3")):
            await publish_event(js, subjects.for_event(event), event)  # while A's client is away
        missed = [await witness.next() for _ in range(3)]  # the console has them all
        async with sse_stream(http, seeded.token_a, last_event_id=seen.id) as back:
            await publish_event(js, subjects.for_event(fill := a_fill(seeded.a, "a4")), fill)
            got = [await back.next() for _ in range(3)]
        assert [g.data["trade_id"] for g in got] == ["a2", "a3", "a4"]
        assert [g.id for g in got[:2]] == [missed[0].id, missed[2].id]
        for stale in ("0-1", "nonsense"):
            async with sse_stream(http, seeded.token_a, last_event_id=stale) as lost:
                reset = await lost.next()
                assert reset.event == "reset" and "read the lists again" in reset.data["reason"]
