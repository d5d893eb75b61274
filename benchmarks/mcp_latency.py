"""MCP gateway latency over real streamable HTTP, against a reference in the same run.

The gateway runs in its own process (`benchmarks/mcp_server.py`: the production HTTP app plus
`ping`, a tool returning a constant, so the reference pays for the same HTTP stack, bearer-token
check and audit row as the real tools). This process drives it with a lean MCP client: one
keep-alive HTTP/1.1 connection per client, a JSON-RPC `tools/call` POST with the headers the SDK
client sends, the reply parsed with `json.loads`; the same client for ping and the tools.
Printed: p50 / p99 for one client, calls/s with 32 concurrent clients and the server's CPU time
per call, for ping, get_account_state (10 open positions) and get_market_data (2 timeframes x
10 candles); then the same p50 / p99 through the SDK `Client` (it validates every structured
result against the tool's output schema, in the caller); then execute_trade from call to fill
folded, against okx_sim behind the real ingest and positions (in this process).

    python -m benchmarks.mcp_latency [--calls 500] [--trades 100]

Uses AITRADER_DATABASE_URL / AITRADER_NATS_URL when set (the database must be migrated and
disposable), else embedded servers in a temp directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import LATEST_MODERN_VERSION
from pydantic import SecretStr

from aitrader.embedded import EmbeddedNats, EmbeddedPostgres
from aitrader.migrate import migrate
from services.ingest.main import Ingest
from services.mcp_gateway.auth import create_token
from services.okx_sim import AccountSpec, SimConfig, run_sim
from services.positions.main import serve as serve_positions
from shared.bus import connect_nats, ensure_streams
from shared.db import create_pool
from shared.logging import configure_logging
from shared.settings import Settings
from shared.subjects import Subjects

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = [f"{c}-USDT-SWAP" for c in ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "LTC", "BNB", "DOT", "AVAX")]
READS: list[tuple[str, dict[str, Any]]] = [
    ("ping", {}),
    ("get_account_state", {}),
    ("get_market_data", {"symbol": "BTC-USDT-SWAP", "timeframes": ["3m", "4H"], "limit": 10}),
]


@asynccontextmanager
async def infrastructure() -> AsyncIterator[Settings]:
    if os.environ.get("AITRADER_DATABASE_URL") and os.environ.get("AITRADER_NATS_URL"):
        yield Settings()
        return
    root = Path(tempfile.mkdtemp(prefix="aitrader-bench-"))
    os.chmod(root, 0o755)
    pg, nats = EmbeddedPostgres(root / "pg"), EmbeddedNats(root / "nats")
    try:
        pg.start()
        nats.start()
        await migrate(pg.dsn)
        nc = await connect_nats(nats.url)
        await ensure_streams(nc.jetstream(), Subjects())
        await nc.close()
        yield Settings(database_url=pg.dsn, nats_url=nats.url)
    finally:
        nats.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def gateway_process(settings: Settings) -> Iterator[tuple[str, int]]:
    """Start benchmarks/mcp_server.py; yield its /mcp URL and pid."""
    env = os.environ | {
        "AITRADER_DATABASE_URL": settings.require_database_url(),
        "AITRADER_NATS_URL": settings.require_nats_url(),
        "AITRADER_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.mcp_server"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"gateway process did not start (exit {proc.wait(10)})")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def seed(pool: asyncpg.Pool) -> None:
    """An account with 10 open positions, prices, and 2 fresh timeframes of BTC candles."""
    account = await pool.fetchval(
        "INSERT INTO aitrader.accounts (external_id, mode) VALUES ('bench', 'simulated') RETURNING id"
    )
    for symbol in SYMBOLS:
        await pool.execute(
            """INSERT INTO aitrader.instruments (symbol, base_asset, quote_asset, settle_ccy, ct_val,
                   ct_mult, lot_sz, min_sz, tick_sz, max_leverage)
               VALUES ($1, split_part($1, '-', 1), 'USDT', 'USDT', 0.01, 1, 0.01, 0.01, 0.1, 100)
               ON CONFLICT (symbol) DO NOTHING""",
            symbol,
        )
        await pool.execute(
            """INSERT INTO aitrader.market_prices (symbol, mark_price, last_price, as_of)
               VALUES ($1, 100.5, 100.5, now()) ON CONFLICT (symbol) DO NOTHING""",
            symbol,
        )
        await pool.execute(
            """INSERT INTO aitrader.positions_open (account_id, symbol, side, quantity,
                   avg_entry_price, leverage, exit_plan, opened_at, confidence_weight_sum,
                   confidence_quantity)
               VALUES ($1, $2, 'long', 3, 100, 5, '{"stop_loss": "90"}', now(), 210, 3)""",
            account,
            symbol,
        )
    await pool.execute(
        """INSERT INTO aitrader.balance_snapshots (account_id, available_usdt, locked_usdt, as_of)
           VALUES ($1, 1000, 10, now())""",
        account,
    )
    for tf, minutes in (("3m", 3), ("4H", 240)):
        await pool.execute(
            """INSERT INTO aitrader.market_snapshots (symbol, timeframe, as_of, price, ema20, ema50,
                   macd, rsi7, rsi14, funding_rate, open_interest)
               SELECT 'BTC-USDT-SWAP', $1, now() - make_interval(mins => $2 * g), 60000 + g, 60000,
                      59990, 1.5, 55, 52, 0.0001, 12345
               FROM generate_series(0, 59) g""",
            tf,
            minutes,
        )


class LeanClient:
    """MCP over streamable HTTP, minimal: one keep-alive HTTP/1.1 connection, `tools/call` with the
    headers and `_meta` the SDK client sends (stateless protocol, no handshake), JSON replies."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self._host, self._port, self._path = parts.hostname or "", parts.port or 80, parts.path
        self._token = token
        self._id = 0
        self._meta = {
            "io.modelcontextprotocol/protocolVersion": LATEST_MODERN_VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }

    async def __aenter__(self) -> LeanClient:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._writer.close()
        await self._writer.wait_closed()

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The JSON-RPC result of the call; raises on an HTTP, JSON-RPC or tool error."""
        self._id += 1
        params = {"name": tool, "arguments": arguments, "_meta": self._meta}
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": "tools/call", "params": params})
        head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Authorization: Bearer {self._token}\r\nAccept: application/json, text/event-stream\r\n"
            f"Content-Type: application/json\r\nMCP-Protocol-Version: {LATEST_MODERN_VERSION}\r\n"
            f"Mcp-Method: tools/call\r\nMcp-Name: {tool}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body.encode())
        status, _, rest = (await self._reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
        headers = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (h.partition(b":") for h in rest.split(b"\r\n") if h)
        )
        reply = json.loads(await self._reader.readexactly(int(headers[b"content-length"])))
        if b" 200 " not in status or "result" not in reply or reply["result"].get("isError"):
            raise RuntimeError(f"{tool}: {status.decode()} {reply}")
        result: dict[str, Any] = reply["result"]
        return result


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


async def latency(calls: dict[str, Call], n: int) -> dict[str, list[float]]:
    """One client per tool, called in turn (ping, tool, tool, ping, ...): background load on the
    machine hits every tool alike."""
    samples: dict[str, list[float]] = {tool: [] for tool, _ in READS}
    for i in range(n + 20):
        for tool, args in READS:
            t0 = time.perf_counter()
            await calls[tool](tool, args)
            if i >= 20:  # warm-up
                samples[tool].append(time.perf_counter() - t0)
    return samples


async def throughput(
    url: str, token: str, pid: int, tool: str, args: dict[str, Any], n: int
) -> tuple[float, float]:
    """calls/s with 32 concurrent lean clients, and the server's CPU ms per call."""
    clients = [LeanClient(url, token) for _ in range(32)]
    for c in clients:
        await c.__aenter__()
        await c.call_tool(tool, args)

    async def run(c: LeanClient) -> None:
        for _ in range(n):
            await c.call_tool(tool, args)

    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(run(c) for c in clients))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    for c in clients:
        await c.__aexit__()
    return 32 * n / elapsed, cpu * 1000 / (32 * n)


async def read_tools(url: str, pid: int, token: str, calls: int, rounds: int) -> None:
    async with AsyncExitStack() as stack:
        clients = {tool: await stack.enter_async_context(LeanClient(url, token)) for tool, _ in READS}
        samples = await latency({tool: c.call_tool for tool, c in clients.items()}, calls)
    # Throughput in rounds (each tool in turn per round), the median round per tool.
    runs: dict[str, list[tuple[float, float]]] = {tool: [] for tool, _ in READS}
    for _ in range(rounds):
        for tool, args in READS:
            runs[tool].append(await throughput(url, token, pid, tool, args, max(10, calls // 8)))
    print(f"{'lean client':20} {'p50 ms':>8} {'p99 ms':>8} {'calls/s @32':>12} {'srv CPU ms':>11}")
    base: tuple[float, float] | None = None
    for tool, _ in READS:
        rate, cpu = sorted(runs[tool])[rounds // 2]
        p50 = pct(samples[tool], 0.5)
        base = base or (p50, rate)
        print(
            f"{tool:20} {p50:8.2f} {pct(samples[tool], 0.99):8.2f} {rate:12.0f} {cpu:11.2f}"
            f"   ({p50 / base[0]:.2f}x ping p50, {rate / base[1]:.0%} of ping calls/s)"
        )


async def sdk_reads(url: str, token: str, calls: int) -> None:
    """The same reads through the SDK `Client` (output-schema validation in the caller)."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as hc:
        async with Client(streamable_http_client(url, http_client=hc)) as c:

            async def call(tool: str, args: dict[str, Any]) -> None:
                result = await c.call_tool(tool, args)
                assert not result.is_error, result.content

            samples = await latency(dict.fromkeys(dict(READS), call), calls)
    print(f"{'SDK Client':20} {'p50 ms':>8} {'p99 ms':>8}")
    for tool, _ in READS:
        print(f"{tool:20} {pct(samples[tool], 0.5):8.2f} {pct(samples[tool], 0.99):8.2f}")


async def trades(settings: Settings, url: str, pool: asyncpg.Pool, n: int) -> None:
    key, secret, phrase = "bench-key", "bench-secret", "Bench-Pass-1"
    sim_cfg = SimConfig(
        seed=3,
        accounts=(AccountSpec(key, secret, phrase, Decimal(1_000_000)),),
        speed=Decimal(0),
        symbols=("BTC-USDT-SWAP",),
        tick_interval_s=0.05,
    )
    async with run_sim(sim_cfg) as sim:
        base = settings.model_dump() | {
            "okx_rest_url": sim.rest_url,
            "okx_ws_public_url": sim.ws_public_url,
            "okx_ws_business_url": sim.ws_business_url,
            "okx_ws_private_url": sim.ws_private_url,
            "okx_api_key": SecretStr(key),
            "okx_secret_key": SecretStr(secret),
            "okx_passphrase": SecretStr(phrase),
            "account": "bench-sim",
            "symbols": ["BTC-USDT-SWAP"],
            "timeframes": ["1m"],
        }
        ingest = Ingest(Settings(**base))
        tasks = [asyncio.create_task(ingest.run()), asyncio.create_task(serve_positions(Settings(**base)))]
        try:
            await asyncio.wait_for(ingest.ready(), 30)
            await _trade_loop(url, pool, n)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _trade_loop(url: str, pool: asyncpg.Pool, n: int) -> None:
    await pool.execute(
        """INSERT INTO aitrader.market_prices (symbol, mark_price, as_of)
           VALUES ('BTC-USDT-SWAP', 60000, now()) ON CONFLICT (symbol) DO NOTHING"""
    )
    token, _ = await create_token(pool, "bench-sim", "trade")
    samples, unfilled = [], 0
    async with LeanClient(url, token) as c:
        for i in range(n + 5):
            args = {
                "symbol": "BTC-USDT-SWAP",
                "side": "buy" if i % 2 == 0 else "sell",
                "size": "0.01",
                "leverage": 5,
                "confidence": 60,
            }
            t0 = time.perf_counter()
            result = await c.call_tool("execute_trade", args)
            elapsed = time.perf_counter() - t0
            if i >= 5:  # warm-up
                samples.append(elapsed)
                unfilled += not result["structuredContent"]["fills"]
    print(
        f"{'execute_trade->fill':20} {pct(samples, 0.5):8.2f} {pct(samples, 0.99):8.2f}"
        f"   ({n} trades, max {max(samples) * 1000:.0f} ms, {unfilled} returned before their fill was folded)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--trades", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds per tool (median)")
    args = parser.parse_args()
    configure_logging("warning", "console")
    async with infrastructure() as settings:
        pool = await create_pool(settings.require_database_url(), application_name="bench")
        try:
            await seed(pool)
            token, _ = await create_token(pool, "bench", "trade")
            with gateway_process(settings) as (url, pid):
                await read_tools(url, pid, token, args.calls, args.rounds)
                await sdk_reads(url, token, args.calls)
                if args.trades:
                    await trades(settings, url, pool, args.trades)
        finally:
            await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
