"""`aitrader demo`: the whole product on this machine plus a scripted agent, in under a minute.

Embedded PostgreSQL + NATS in a fresh temporary directory, okx_sim, every service as its own
process, then an agent that talks to the gateway over streamable HTTP with the official MCP
client: it reads market data, opens, adjusts and closes positions on two symbols, sets exit
plans, and prints a summary (closed trades, open positions, return, drawdown, fees and funding,
performance, an equity curve, tool-call latencies; see `aitrader.summary`).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import click
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aitrader.cli_common import cli_settings, friendly_errors
from aitrader.embedded import free_port
from aitrader.summary import (
    PERFORMANCE_FIELDS,
    EquityPoint,
    OpenPosition,
    Performance,
    Summary,
    plan_text,
    render,
    shown,
)
from aitrader.summary_db import read_stored
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("demo")
SYMBOLS = ("BTC-USDT-SWAP", "ETH-USDT-SWAP")
ACCOUNT = "demo-agent"
HOLD_SECONDS = 12.0
TIMEFRAMES = ["1m", "3m"]


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 40.0) -> Any:
    """Wait for a condition of the running product (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise click.ClickException(f"demo: timed out waiting for {what}")
        await asyncio.sleep(0.2)


class Agent:
    """A scripted agent: calls tools, records client-side latencies."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.latencies: dict[str, list[float]] = defaultdict(list)

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        started = time.perf_counter()
        result = await self.client.call_tool(tool, arguments)
        self.latencies[tool].append((time.perf_counter() - started) * 1000)
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise click.ClickException(f"demo: {tool} failed: {text}")
        content: dict[str, Any] = result.structured_content or {}
        return content

    async def trade(self, symbol: str, side: str, size: str, key: str, **extra: Any) -> dict[str, Any]:
        result = await self.call(
            "execute_trade", symbol=symbol, side=side, size=size, idempotency_key=key, **extra
        )
        order = result["order"]
        click.echo(
            f"  {side:4} {size:>5} {symbol:<14} -> {order['status']:<10} "
            f"filled {order['filled_size']} @ {order['avg_fill_price']}"
        )
        return result


async def run_script(agent: Agent, pool: asyncpg.Pool) -> EquityPoint | None:
    """Open, adjust and close positions on two symbols; return the equity before the first trade."""
    for symbol in SYMBOLS:
        data = await agent.call("get_market_data", symbol=symbol, timeframes=TIMEFRAMES, limit=5)
        last = data["series"][0]["candles"][-1] if data["series"][0]["candles"] else {}
        click.echo(
            f"  {symbol}: close {shown(last.get('price'))} EMA20 {shown(last.get('ema20'))} "
            f"RSI14 {shown(last.get('rsi14'))}"
        )
    start = equity_point(await agent.call("get_account_state"))
    plan = {"invalidation_condition": "1m close below EMA50"}
    await agent.trade(
        "BTC-USDT-SWAP", "buy", "2", "demo-btc-open", leverage="5", confidence="72", exit_plan=plan
    )
    await agent.trade("ETH-USDT-SWAP", "sell", "3", "demo-eth-open", leverage="3", confidence="64")
    await agent.trade("BTC-USDT-SWAP", "buy", "1", "demo-btc-add", leverage="5", confidence="80")
    state = await agent.call("get_account_state")
    for position in state["positions"]:
        entry = float(position["entry_price"])
        up, down = (1.02, 0.98) if position["side"] == "long" else (0.98, 1.02)
        await agent.call(
            "update_exit_plan",
            symbol=position["symbol"],
            take_profit=f"{entry * up:.1f}",
            stop_loss=f"{entry * down:.1f}",
        )
    state = await agent.call("get_account_state")
    for position in state["positions"]:
        click.echo(
            f"  open {position['side']:5} {position['contracts']:>5} {position['symbol']:<14} "
            f"entry {position['entry_price']} confidence {shown(position['confidence'])} "
            f"plan {plan_text(position['exit_plan'])}"
        )
    await hold(agent, seconds=HOLD_SECONDS)
    await agent.trade(
        "BTC-USDT-SWAP", "sell", "1", "demo-btc-trim", leverage="5", confidence="60", reduce_only=True
    )
    for position in (await agent.call("get_account_state"))["positions"]:
        side = "sell" if position["side"] == "long" else "buy"
        await agent.trade(
            position["symbol"],
            side,
            str(position["contracts"]),
            f"demo-close-{position['symbol']}",
            leverage=str(position["leverage"] or "5"),
            confidence="50",
            reduce_only=True,
        )
    await until(
        lambda: pool.fetchval("SELECT count(*) = 0 FROM aitrader.positions_open"), "positions to close"
    )
    return start


async def hold(agent: Agent, seconds: float) -> None:
    """Let the market move (okx_sim steps every 5 s) and watch unrealized PnL."""
    click.echo(f"  holding for {seconds:.0f} s ...")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(min(4.0, max(0.0, deadline - time.monotonic())))
        state = await agent.call("get_account_state")
        upnl = ", ".join(
            f"{p['symbol']} {shown(p['mark_price'])} uPnL {shown(p['unrealized_pnl_usdt'])}"
            for p in state["positions"]
        )
        click.echo(f"    equity {shown(state['equity_usdt'])}  {upnl}")


async def print_summary(agent: Agent, pool: asyncpg.Pool, start: EquityPoint | None) -> None:
    """The trader's summary (read from the database and the tools), then the tool latencies."""
    summary = await collect_summary(agent, pool, start)
    click.echo("\n" + render(summary))
    click.echo("\nTool-call latency (client side, ms)")
    for tool, values in sorted(agent.latencies.items()):
        click.echo(
            f"  {tool:<24} calls {len(values):>2}  p50 {statistics.median(values):7.1f}  "
            f"max {max(values):7.1f}"
        )
    calls = sum(len(values) for values in agent.latencies.values())

    async def all_audited() -> int | None:
        # The gateway writes audit rows in short background bursts (see docs/mcp.md).
        rows: int = await pool.fetchval(
            "SELECT count(*) FROM aitrader.mcp_tool_calls WHERE status <> 'pending'"
        )
        return rows if rows >= calls else None

    audited = await until(all_audited, "every tool call to be audited", timeout=5)
    click.echo(f"  every call audited: {audited} rows in mcp_tool_calls")


async def collect_summary(agent: Agent, pool: asyncpg.Pool, start: EquityPoint | None) -> Summary:
    """The summary's figures: trades, costs and equity history from the database; the open
    positions, the equity now and the performance figures from the agent's tools."""
    stored = await read_stored(pool, ACCOUNT)
    closed = stored.closed
    state = await agent.call("get_account_state")
    metrics = await until(
        lambda: _performance(agent, len(closed)), "the performance snapshot to include the trades"
    )
    now = equity_point(state)
    points = sorted([p for p in (start, *stored.equity, now) if p is not None], key=lambda p: p.as_of)
    return Summary(
        closed=closed,
        open=[_open_position(p) for p in state["positions"]],
        equity=points,
        fee_usdt=stored.fee_usdt,
        funding_usdt=stored.funding_usdt,
        performance=Performance(**{f: _dec(metrics.get(f)) for f in PERFORMANCE_FIELDS}),
    )


def equity_point(state: dict[str, Any]) -> EquityPoint | None:
    """The account's live equity from a get_account_state result (None while unknown)."""
    equity = state.get("equity_usdt")
    return EquityPoint(datetime.fromisoformat(state["as_of"]), Decimal(equity)) if equity else None


def _open_position(p: dict[str, Any]) -> OpenPosition:
    return OpenPosition(
        p["symbol"],
        p["side"],
        Decimal(p["contracts"]),
        _dec(p["entry_price"]),
        _dec(p["mark_price"]),
        _dec(p["unrealized_pnl_usdt"]),
    )


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


async def _performance(agent: Agent, closed: int) -> dict[str, Any] | None:
    metrics = await agent.call("get_performance_metrics", window="all_time")
    return metrics if metrics.get("available") and metrics.get("closed_positions") == closed else None


@asynccontextmanager
async def agent_client(url: str, token: str) -> AsyncIterator[Agent]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield Agent(client)


async def run_demo(settings: Settings, data_dir: Path) -> None:
    from aitrader.up import running_stack
    from services.mcp_gateway.auth import create_token

    started = time.monotonic()
    async with running_stack(
        settings, data_dir, "sim", ["ingest", "positions", "metrics", "mcp_gateway"]
    ) as stack:
        pool = await asyncpg.create_pool(stack.env["AITRADER_DATABASE_URL"], min_size=1, max_size=2)
        try:
            await until(
                lambda: pool.fetchval(
                    "SELECT count(*) FROM aitrader.accounts WHERE external_id = $1", ACCOUNT
                ),
                "ingest to register the account",
            )
            await until(
                lambda: pool.fetchval(
                    """SELECT count(DISTINCT (symbol, timeframe)) = $1 FROM aitrader.market_snapshots
                       WHERE ema50 IS NOT NULL AND as_of > now() - interval '3 minutes'""",
                    len(SYMBOLS) * len(TIMEFRAMES),
                ),
                "fresh indicators for both symbols",
            )
            token, _row = await create_token(pool, ACCOUNT, "trade", label="demo")
            url = f"http://{settings.mcp_host}:{settings.mcp_port}/mcp"
            await until(lambda: _healthy(settings), "the MCP gateway")
            click.echo(f"AiTrader demo: product up in {time.monotonic() - started:.1f} s; agent on {url}\n")
            async with agent_client(url, token) as agent:
                start = await run_script(agent, pool)
                await print_summary(agent, pool, start)
        finally:
            await pool.close()
    click.echo(f"\nDone in {time.monotonic() - started:.1f} s.")


async def _healthy(settings: Settings) -> bool:
    try:
        async with httpx2.AsyncClient(timeout=1) as http:
            response = await http.get(f"http://{settings.mcp_host}:{settings.mcp_port}/healthz")
            return response.status_code == 200
    except httpx2.HTTPError:
        return False


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the temporary data directory afterwards.")
@friendly_errors
def demo_command(keep: bool) -> None:
    """Run the whole product against okx_sim with a scripted agent, and print a summary."""
    base = cli_settings()
    settings = base.model_copy(
        update={
            "database_url": None,
            "nats_url": None,
            "account": ACCOUNT,
            "account_mode": "simulated",
            "embedded_pg_port": free_port(),
            "embedded_nats_port": free_port(),
            "mcp_port": free_port(),
            "mcp_host": "127.0.0.1",
            "timeframes": ["1m", "3m"],
        }
    )
    data_dir = Path(tempfile.mkdtemp(prefix="aitrader-demo-"))
    data_dir.chmod(0o755)
    try:
        asyncio.run(run_demo(settings, data_dir))
    finally:
        if keep:
            click.echo(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
