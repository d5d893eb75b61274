"""Fixtures for ingest tests: a frozen-clock okx_sim on loopback, ingest settings pointing at
it, a running ingest, a trader (signed REST on the sim) and readers of the JetStream streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest_asyncio
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import SecretStr

from services.ingest.config import IngestSettings
from services.ingest.main import Ingest
from services.ingest.okx_rest import OkxRest
from services.ingest.okx_ws import OkxWebSocket
from services.ingest.signing import Credentials
from services.okx_sim import AccountSpec, SimConfig, SimHandle, run_sim
from services.positions.main import serve as serve_positions
from shared.settings import Settings
from shared.subjects import STREAM_ACCOUNT, STREAM_MARKET, STREAM_RECONCILE, Subjects

KEY, SECRET, PASSPHRASE = "ingest-key-5c1d", "ingest-secret-9f3b2c77", "Ingest-Pass-7d1e"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a pinned market
SYMBOLS = ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
ACCOUNT = "okx-sim-main"


def sim_config(**overrides: Any) -> SimConfig:
    values: dict[str, Any] = {
        "seed": 7, "accounts": (AccountSpec(KEY, SECRET, PASSPHRASE, Decimal("100000")),),
        "speed": Decimal(0), "start_ms": START_MS, "test_controls": True,
        "tick_interval_s": 0.05, "symbols": tuple(SYMBOLS),
    }
    return SimConfig(**(values | overrides))


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[SimHandle]:
    async with run_sim(sim_config()) as handle:
        yield handle


def ingest_settings(settings: Settings, sim: SimHandle, **overrides: Any) -> IngestSettings:
    """Ingest pointed at the sim with its keys; small backoffs so reconnects are quick."""
    values: dict[str, Any] = settings.model_dump() | {
        "okx_rest_url": sim.rest_url, "okx_ws_public_url": sim.ws_public_url,
        "okx_ws_business_url": sim.ws_business_url, "okx_ws_private_url": sim.ws_private_url,
        "okx_api_key": SecretStr(KEY), "okx_secret_key": SecretStr(SECRET),
        "okx_passphrase": SecretStr(PASSPHRASE), "account": ACCOUNT,
        "account_mode": "simulated", "symbols": SYMBOLS, "timeframes": ["1m"],
        "ingest_backoff_initial_s": 0.05, "ingest_backoff_max_s": 0.5,
        "ingest_backfill_candles": 60,
    }
    return IngestSettings(**(values | overrides))


@asynccontextmanager
async def running(cfg: IngestSettings, timeout: float = 20.0) -> AsyncIterator[Ingest]:
    """Ingest running as a task; ready (every socket subscribed and caught up) on entry."""
    app = Ingest(cfg)
    task = asyncio.create_task(app.run())
    ready = asyncio.create_task(app.ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise AssertionError("ingest stopped during start")
        if ready not in done:
            raise AssertionError(f"ingest not ready within {timeout}s")
        yield app
    finally:
        ready.cancel()
        task.cancel()
        await asyncio.gather(task, ready, return_exceptions=True)


def socket(app: Ingest, name: str) -> OkxWebSocket:
    """One of a running ingest's websockets, by endpoint name."""
    return next(s for s in app.sockets if s.name == name)


@pytest_asyncio.fixture(loop_scope="session")
async def trader(sim: SimHandle) -> AsyncIterator[OkxRest]:
    """Someone trading on the sim account directly (as in the OKX app)."""
    rest = OkxRest(sim.rest_url, creds=Credentials(SecretStr(KEY), SecretStr(SECRET),
                                                   SecretStr(PASSPHRASE)), simulated=True)
    yield rest
    await rest.aclose()


async def place(trader: OkxRest, inst: str, side: str, sz: str, **extra: Any) -> str:
    """A market order on the sim; returns its ordId."""
    item = await trader.place_order({"instId": inst, "tdMode": "cross", "side": side,
                                     "ordType": "market", "sz": sz, **extra})
    assert item["sCode"] == "0", item
    return str(item["ordId"])


async def stream_messages(js: JetStreamContext, subjects: Subjects, kind: str,
                          subject: str) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """Every message stored under `subject` (wildcards allowed): (subject, body, headers)."""
    stream = subjects.stream({"account": STREAM_ACCOUNT, "market": STREAM_MARKET,
                              "reconcile": STREAM_RECONCILE}[kind])
    # ACCOUNT stores its subjects with a partition token: filter and report the published form.
    partitioned = kind == "account"
    stored = subjects.stored_filter(subject) if partitioned else subject
    out: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=stored, next=True)
        except NotFoundError:
            return out
        assert msg.seq is not None and msg.data is not None and msg.subject is not None
        published = subjects.published(msg.subject) if partitioned else msg.subject
        out.append((published, json.loads(msg.data), dict(msg.headers or {})))
        seq = msg.seq + 1


async def fills_on_stream(js: JetStreamContext, subjects: Subjects, account_id: Any
                          ) -> list[dict[str, Any]]:
    msgs = await stream_messages(js, subjects, "account", subjects.fill(account_id, "*"))
    return [body for _, body, _ in msgs]


@pytest_asyncio.fixture(loop_scope="session")
async def positions(settings: Settings) -> AsyncIterator[None]:
    """The positions service folding what ingest publishes (in this test's database)."""
    task = asyncio.create_task(serve_positions(settings))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest_asyncio.fixture(loop_scope="session")
async def black_hole() -> AsyncIterator[str]:
    """A server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()
