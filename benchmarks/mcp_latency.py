"""MCP gateway latency over real streamable HTTP, against a reference in the same run.

The reference is `ping`: a tool returning a constant, registered on the same server, so it
pays for the same HTTP stack, bearer-token check and audit row as the real tools. Printed:
p50 / p99 for one client, and calls/s with 32 concurrent clients, for ping,
get_account_state (10 open positions) and get_market_data (2 timeframes x 10 candles); then
execute_trade from call to fill folded, against okx_sim behind the real ingest and positions.

    python benchmarks/mcp_latency.py [--calls 500] [--trades 100]

Uses AITRADER_DATABASE_URL / AITRADER_NATS_URL when set (the database must be migrated and
disposable), else embedded servers in a temp directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer
from pydantic import BaseModel, SecretStr

from services.ingest.main import Ingest
from services.mcp_gateway.auth import create_token
from services.mcp_gateway.config import GatewaySettings
from services.mcp_gateway.gateway import open_gateway
from services.mcp_gateway.main import quiet_sdk_logs, serve_http
from services.okx_sim import AccountSpec, SimConfig, run_sim
from services.positions.main import serve as serve_positions
from shared.bus import connect_nats, ensure_streams
from shared.embedded import EmbeddedNats, EmbeddedPostgres
from shared.logging import configure_logging
from shared.migrate import migrate
from shared.settings import Settings
from shared.subjects import Subjects

SYMBOLS = [f"{c}-USDT-SWAP" for c in ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "LTC", "BNB", "DOT", "AVAX")]


class Pong(BaseModel):
    ok: bool = True


def add_ping(server: MCPServer) -> None:
    @server.tool()
    async def ping() -> Pong:
        """Reference tool: returns a constant."""
        return Pong()


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


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@asynccontextmanager
async def client(url: str, token: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as hc:
        async with Client(streamable_http_client(url, http_client=hc)) as c:
            yield c


async def latency(c: Client, tool: str, args: dict[str, Any], n: int) -> list[float]:
    for _ in range(20):
        await c.call_tool(tool, args)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = await c.call_tool(tool, args)
        samples.append(time.perf_counter() - t0)
        assert not result.is_error, result.content
    return samples


async def throughput(url: str, token: str, tool: str, args: dict[str, Any], n: int) -> float:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client(url, token)) for _ in range(32)]

        async def run(c: Client) -> None:
            for _ in range(n):
                await c.call_tool(tool, args)

        t0 = time.perf_counter()
        await asyncio.gather(*(run(c) for c in clients))
        return 32 * n / (time.perf_counter() - t0)


async def read_tools(settings: Settings, calls: int) -> None:
    config = GatewaySettings(**settings.model_dump(), mcp_token_cache_s=5)
    async with open_gateway(config) as gw, serve_http(gw, "127.0.0.1", 0, add_ping) as url:
        await seed(gw.pool)
        token, _ = await create_token(gw.pool, "bench", "trade")
        cases: list[tuple[str, dict[str, Any]]] = [
            ("ping", {}),
            ("get_account_state", {}),
            ("get_market_data", {"symbol": "BTC-USDT-SWAP", "timeframes": ["3m", "4H"], "limit": 10}),
        ]
        print(f"{'tool':20} {'p50 ms':>8} {'p99 ms':>8} {'calls/s @32':>12}")
        base: tuple[float, float] | None = None
        for tool, args in cases:
            async with client(url, token) as c:
                samples = await latency(c, tool, args, calls)
            rate = await throughput(url, token, tool, args, max(10, calls // 16))
            p50 = pct(samples, 0.5)
            base = base or (p50, rate)
            print(
                f"{tool:20} {p50:8.2f} {pct(samples, 0.99):8.2f} {rate:12.0f}"
                f"   ({p50 / base[0]:.2f}x ping p50, {rate / base[1]:.0%} of ping calls/s)"
            )
        await gw.audit.flush()


async def trades(settings: Settings, n: int) -> None:
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
            await _trade_loop(GatewaySettings(**base), n)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _trade_loop(config: GatewaySettings, n: int) -> None:
    async with open_gateway(config) as gw, serve_http(gw, "127.0.0.1", 0) as url:
        await gw.pool.execute(
            """INSERT INTO aitrader.market_prices (symbol, mark_price, as_of)
               VALUES ('BTC-USDT-SWAP', 60000, now()) ON CONFLICT (symbol) DO NOTHING"""
        )
        token, _ = await create_token(gw.pool, "bench-sim", "trade")
        samples, unfilled = [], 0
        async with client(url, token) as c:
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
                assert not result.is_error, result.content
                if i >= 5:  # warm-up
                    samples.append(elapsed)
                    unfilled += not (result.structured_content or {}).get("fills")
        print(
            f"{'execute_trade->fill':20} {pct(samples, 0.5):8.2f} {pct(samples, 0.99):8.2f}"
            f"   ({n} trades, {unfilled} returned before their fill was folded)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--trades", type=int, default=100)
    args = parser.parse_args()
    configure_logging("warning", "console")
    quiet_sdk_logs()
    async with infrastructure() as settings:
        await read_tools(settings, args.calls)
        await trades(settings, args.trades)


if __name__ == "__main__":
    asyncio.run(main())
