"""Bad input over a real socket, secrets, configuration modes and the refresh request."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
import pytest_asyncio
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from websockets.asyncio.server import ServerConnection, serve

from services.ingest import signing
from services.ingest.backfill import Backfiller
from services.ingest.okx_ws import FrameStats, OkxWebSocket, WsOptions
from services.ingest.publisher import Publisher
from services.ingest.refresh import RefreshHandler
from services.ingest.streams import PublicSink
from services.okx_sim import SimHandle
from shared.logging import configure_logging
from shared.messages import MarketDataRefresh, MarketDataRefreshReply, PlaceOrder
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.ingest.conftest import (
    KEY,
    PASSPHRASE,
    SECRET,
    fills_on_stream,
    ingest_settings,
    place,
    running,
    socket,
    stream_messages,
)
from tests.shared.cases import BAR_CASES

JUNK_FRAMES = 2000


def _ticker(n: int) -> str:
    return json.dumps({"arg": {"channel": "tickers", "instId": "BTC-USDT-SWAP"}, "data": [
        {"instId": "BTC-USDT-SWAP", "last": f"{60000 + n}", "ts": str(1767225600000 + n)}]})


def _junk(rng: random.Random) -> str:
    """One frame that must be refused: truncated, garbage, wrong-typed, unknown channel."""
    valid = _ticker(rng.randrange(10**6))
    kind = rng.randrange(5)
    if kind == 0:
        return valid[:rng.randrange(1, len(valid) - 1)]
    if kind == 1:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
    if kind == 2:
        wrong = rng.choice([True, [1], {"x": "1"}, "", None, "a.b >", "-1e999"])
        field = rng.choice(["last", "ts", "instId"])
        body = json.loads(valid)
        body["data"][0][field] = wrong
        return json.dumps(body)
    if kind == 3:
        return json.dumps({"arg": {"channel": rng.choice(["fills", "books", "x" * 50])},
                           "data": [{}]})
    return json.dumps(rng.choice([[], 1, "s", {"data": []}, {"arg": {}, "data": []}]))


async def test_thousands_of_bad_frames_over_a_socket(js: JetStreamContext, subjects: Subjects,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(20260101)
    frames = [f for n in range(JUNK_FRAMES) for f in (_junk(rng), _ticker(n))]

    async def okx(ws: ServerConnection) -> None:
        request = json.loads(await ws.recv())
        for arg in request["args"]:
            await ws.send(json.dumps({"id": request["id"], "event": "subscribe", "arg": arg}))
        for frame in frames:
            await ws.send(frame)
        await ws.wait_closed()

    stats = FrameStats()
    publisher = Publisher(js, subjects)
    sink = PublicSink(publisher, Backfiller(None, None, publisher, stats), stats)  # type: ignore[arg-type]
    async with serve(okx, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = OkxWebSocket("public", f"ws://127.0.0.1:{port}", [
            {"channel": "tickers", "instId": "BTC-USDT-SWAP"}], sink, stats=stats,
            options=WsOptions(backoff_initial_s=0.05))
        task = asyncio.create_task(client.run())

        async def tickers() -> bool:
            msgs = await stream_messages(js, subjects, "market", subjects.ticker("*"))
            return len(msgs) >= JUNK_FRAMES

        try:
            await wait_for(tickers, timeout=30, message="every valid ticker")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    msgs = await stream_messages(js, subjects, "market", subjects.ticker("*"))
    assert sorted(int(b["last"]) for _, b, _ in msgs) == [60000 + n for n in range(JUNK_FRAMES)]
    assert stats.bad.total() == JUNK_FRAMES  # each refused frame counted once, with a reason
    assert set(stats.bad) <= {"not_json", "not_object", "bad_arg", "data_not_list",
                              "bad_field", "missing_field", "invalid_value", "bad_number",
                              "unknown_channel", "bad_element", "bad_event"}
    assert client.sessions == 1  # bad input never cost the connection


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line (structlog and stdlib) as the production JSON renderer writes it."""
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer)
    yield buffer
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest_asyncio.fixture(loop_scope="session")
async def bus_tap(nc: Client, subjects: Subjects) -> AsyncIterator[list[bytes]]:
    """Every message published under the namespace, headers included."""
    seen: list[bytes] = []

    async def keep(msg: Msg) -> None:
        seen.append(msg.data + json.dumps(msg.headers or {}).encode())

    sub = await nc.subscribe(subjects.everything, cb=keep)
    yield seen
    await sub.unsubscribe()


async def test_no_secret_in_logs_or_messages(
        settings: Settings, sim: SimHandle, nc: Client, js: JetStreamContext,
        subjects: Subjects, trader: Any, captured_logs: io.StringIO, bus_tap: list[bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    signatures: list[str] = []
    real = signing.hmac_b64

    def recording(secret: str, message: bytes) -> str:
        signatures.append(real(secret, message))
        return signatures[-1]

    monkeypatch.setattr(signing, "hmac_b64", recording)
    async with running(ingest_settings(settings, sim, symbols=["BTC-USDT-SWAP"])) as app:
        assert app.account is not None
        cmd = PlaceOrder(order_id=uuid4(), account_id=app.account.account_id,
                         inst_id="BTC-USDT-SWAP", side="buy", sz=Decimal("0.1"),
                         lever=Decimal("3"))
        reply = await nc.request(subjects.place_order(app.account.account_id),
                                 cmd.model_dump_json().encode(), timeout=8)
        await place(trader, "BTC-USDT-SWAP", "sell", "0.1")
        sim.drop_private(KEY)  # a second login: one more signature
        sim.send_malformed()
        sim.advance(60)

        async def settled() -> bool:
            fills = await fills_on_stream(js, subjects, app.account.account_id)  # type: ignore[union-attr]
            return len(fills) >= 2 and socket(app, "private").sessions >= 2

        await wait_for(settled, timeout=10, message="fills and a reconnect")
    logs = captured_logs.getvalue()
    published = b"\n".join(bus_tap).decode() + reply.data.decode()
    assert "okx_rest" in logs and "okx_ws_logged_in" in logs and len(signatures) >= 4
    for secret in [KEY, SECRET, PASSPHRASE, *signatures]:
        assert secret not in logs, f"secret in the logs: {secret[:4]}..."
        assert secret not in published, f"secret on the bus: {secret[:4]}..."


@pytest.mark.parametrize(("overrides", "sockets", "has_account"), [
    pytest.param({}, ["public", "business", "private"], True, id="keys-and-market-data"),
    pytest.param({"okx_api_key": None, "okx_secret_key": None, "okx_passphrase": None,
                  "account": None}, ["public", "business"], False, id="no-keys-market-only"),
    # A second account's ingest still opens the business socket: its algo orders (orders-algo).
    pytest.param({"ingest_market_data": False}, ["business", "private"], True,
                 id="second-account"),
])
async def test_configuration_modes(settings: Settings, sim: SimHandle,
                                   overrides: dict[str, Any], sockets: list[str],
                                   has_account: bool) -> None:
    async with running(ingest_settings(settings, sim, **overrides)) as app:
        assert [s.name for s in app.sockets] == sockets
        assert (app.account is not None) == has_account


async def test_market_data_refresh(settings: Settings, sim: SimHandle, nc: Client,
                                   js: JetStreamContext, subjects: Subjects) -> None:
    cfg = ingest_settings(settings, sim, okx_api_key=None, okx_secret_key=None,
                          okx_passphrase=None, account=None, symbols=["ETH-USDT-SWAP"])
    async with running(cfg):
        ask = MarketDataRefresh(inst_id="BTC-USDT-SWAP", bars=["3m", "1H"], limit=5)
        msg = await nc.request(subjects.market_data_refresh(), ask.model_dump_json().encode(),
                               timeout=8)
        bad = await nc.request(subjects.market_data_refresh(),
                               b'{"inst_id":"BTC-USDT-SWAP","bars":["1M"]}', timeout=8)
    reply = MarketDataRefreshReply.model_validate_json(msg.data)
    assert (reply.ok, reply.published) == (True, 10)
    for bar in ("3m", "1H"):
        stored = await stream_messages(js, subjects, "market", subjects.candle(bar,
                                                                              "BTC-USDT-SWAP"))
        assert len(stored) == 5 and all(b["confirmed"] for _, b, _ in stored)
    assert not MarketDataRefreshReply.model_validate_json(bad.data).ok


@pytest.mark.parametrize(("bar", "length", "closes"), BAR_CASES)
async def test_a_refresh_serves_bars_of_a_fixed_length(
        bar: str, length: int | None, closes: datetime | None) -> None:
    asked: list[str] = []

    class Candles:  # the backfiller's one method the refresh uses
        async def latest_candles(self, inst_id: str, name: str, limit: int) -> int:
            asked.append(name)
            return 1

    handler = RefreshHandler(Candles(), timeout_s=1)  # type: ignore[arg-type]
    ask = MarketDataRefresh(inst_id="BTC-USDT-SWAP", bars=[bar])
    reply = await handler.handle(ask.model_dump_json().encode())
    if length is None:  # months have no length to page back by; non-bars are refused
        assert (reply.ok, reply.error, asked) == (False, f"unsupported bars: {[bar]}", [])
    else:
        assert (reply.ok, reply.published, asked) == (True, 1, [bar])
