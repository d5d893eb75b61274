"""Benchmark: the console's pages and its event stream, each against a raw reference measured in
the same run.

    .venv/bin/python -m benchmarks.console_pages              # embedded PostgreSQL and nats-server
    AITRADER_DATABASE_URL=postgresql://admin@host/db AITRADER_NATS_URL=nats://host:4222 \\
        .venv/bin/python -m benchmarks.console_pages          # a fresh database on that server

1. `positions/closed`, pages of 100 walked with cursors over 1,000,000 closed positions (10
   accounts of 100,000, written with COPY): through the API in process (httpx ASGI transport,
   token cached), the console's read alone (its role, RLS, one transaction), and the plain SQL
   of the same pages as the owner (the reference).
2. `GET /accounts?limit=100` for a token of 100 accounts against the same SQL as the owner
   (no /leaderboard on this branch yet).
3. SSE fan-out: the console served in its own process (`python -m services.console`), 100
   streams open; a fill published on the ACCOUNT stream; the time until the 100th stream has it,
   against 100 core NATS subscriptions of this process receiving the same publish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aitrader.embedded import free_port
from benchmarks.console_sse import fan_out
from benchmarks.fills_throughput import fresh_database, servers
from services.console import listings
from services.console.api import AccountsQuery, ClosedQuery
from services.console.config import ConsoleSettings
from services.console.main import create_app
from services.console.repository import ConsoleDb, page_sql
from shared.db import create_pool
from shared.tokens import PREFIX_LEN, TOKEN_PREFIX, hash_token

REPO = str(Path(__file__).resolve().parent.parent)
ACCOUNTS, BIG, PER = 100, 10, 100_000  # 100 accounts, the first 10 with 100,000 closed each
T0 = datetime(2026, 1, 1, tzinfo=UTC)
COLUMNS = (
    "id",
    "account_id",
    "symbol",
    "side",
    "pos_side",
    "quantity",
    "entry_price",
    "exit_price",
    "realized_pnl_usdt",
    "gross_pnl_usdt",
    "fee_usdt",
    "exit_reason",
    "entry_time",
    "exit_time",
    "closing_trade_id",
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figures(name: str, seconds: list[float]) -> float:
    ms = [s * 1000 for s in seconds]
    p50 = statistics.median(ms)
    print(f"  {name:<44} p50 {p50:7.2f} ms   p99 {pct(ms, 0.99):7.2f} ms   (n={len(ms)})")
    return p50


async def load(conn: asyncpg.Connection) -> tuple[list[UUID], str]:
    """100 accounts, 1,000,000 closed positions by COPY, and a console token for every account."""
    await conn.execute(
        """INSERT INTO aitrader.instruments (symbol, base_asset, quote_asset, settle_ccy, ct_val, ct_mult,
               ct_val_ccy, lot_sz, min_sz, tick_sz, max_leverage)
           VALUES ('BTC-USDT-SWAP', 'BTC', 'USDT', 'USDT', 0.01, 1, 'BTC', 0.01, 0.01, 0.1, 100)"""
    )
    accounts = [uuid4() for _ in range(ACCOUNTS)]
    await conn.copy_records_to_table(
        "accounts",
        schema_name="aitrader",
        columns=["id", "external_id", "mode", "created_at"],
        records=[(a, f"bench-{i}", "simulated", T0 + timedelta(minutes=i)) for i, a in enumerate(accounts)],
    )
    started = time.perf_counter()
    # COPY as text: asyncpg's binary encoding of NUMERIC per value is most of a record COPY's
    # time; the ids are the column's default (gen_random_uuid)
    # the secondary indexes built once after the load, not maintained row by row
    indexes = await conn.fetch(
        """SELECT i.indexname, i.indexdef FROM pg_indexes i
           WHERE i.schemaname = 'aitrader' AND i.tablename = 'positions_closed'
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"""
    )
    for index in indexes:
        await conn.execute(f'DROP INDEX aitrader."{index["indexname"]}"')
    stamps = [(T0 + timedelta(seconds=k)).isoformat() for k in range(-60, PER)]
    for a in accounts[:BIG]:
        body = "".join(
            f"{a}\tBTC-USDT-SWAP\t{'long' if k % 2 else 'short'}\tnet\t1.5\t50000\t50100.1\t0.12345678\t"
            f"1.5015\t-0.00000001\tagent\t{stamps[k]}\t{stamps[k + 60]}\tt{k}\n"
            for k in range(PER)
        )
        await conn.copy_to_table(
            "positions_closed", schema_name="aitrader", columns=COLUMNS[1:], source=io.BytesIO(body.encode())
        )
    for index in indexes:
        await conn.execute(index["indexdef"])
    await conn.execute("ANALYZE aitrader.positions_closed; ANALYZE aitrader.accounts")
    print(f"loaded {BIG * PER:,} closed positions in {time.perf_counter() - started:.1f} s")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = await conn.fetchval(
        """INSERT INTO aitrader.api_tokens (account_id, token_hash, token_prefix, scopes)
           VALUES ($1, $2, $3, ARRAY['console']) RETURNING id""",
        accounts[0],
        hash_token(token),
        token[:PREFIX_LEN],
    )
    await conn.executemany(
        "INSERT INTO aitrader.token_accounts (token_id, account_id) VALUES ($1, $2)",
        [(token_id, a) for a in accounts[1:]],
    )
    return accounts, token


async def timed(n: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - started)
    return out


async def pages(dsn: str, accounts: list[UUID], token: str, n: int) -> None:
    owner = await create_pool(dsn, min_size=1, max_size=2)
    console = await create_pool(ConsoleSettings(database_url=dsn).console_dsn(), min_size=1, max_size=4)
    try:
        app = create_app(console, token_cache_s=3600)
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http:
            cursors: list[str | None] = [None]

            async def api_page(i: int) -> None:
                params = {"limit": "100"} | ({"cursor": cursors[i]} if cursors[i] else {})
                answer = await http.get(
                    "/api/v1/accounts/bench-0/positions/closed", params=params, headers=auth
                )
                assert answer.status_code == 200 and len(answer.json()["items"]) == 100, answer.text
                cursors.append(answer.json()["next_cursor"])

            await api_page(0)  # warm: the token cached, the plan prepared
            cursors[:] = [None]
            api = await timed(n, api_page)
            sqls = [
                page_sql(listings.CLOSED_POSITIONS, [accounts[0]], q, {})
                for q in (ClosedQuery.model_validate({"limit": 100, "cursor": c}) for c in cursors[:n])
            ]
            digest = hash_token(token)
            db = ConsoleDb(console)
            rls = await timed(n, lambda i: db.page(digest, listings.CLOSED_POSITIONS, sqls[i]))
            async with owner.acquire() as conn:
                raw = await timed(n, lambda i: conn.fetch(sqls[i].text, *sqls[i].args))
            print(f"positions/closed, page of 100 over {BIG * PER:,} closed positions ({n} pages walked):")
            ref = figures("plain SQL as the owner (reference)", raw)
            figures("the console's read (its role, RLS, one tx)", rls)
            through = figures("through the API in process", api)
            print(f"  ratio API / plain SQL (p50): {through / ref:.1f}x")

            async def accounts_page(_: int) -> None:
                answer = await http.get("/api/v1/accounts", params={"limit": "100"}, headers=auth)
                assert answer.status_code == 200 and len(answer.json()["items"]) == 100, answer.text

            await accounts_page(0)
            api = await timed(n // 2, accounts_page)
            sql = page_sql(
                listings.ACCOUNTS,
                accounts,
                AccountsQuery.model_validate({"limit": 100}),
                {"status": None, "mode": None},
            )
            async with owner.acquire() as conn:
                raw = await timed(n // 2, lambda _: conn.fetch(sql.text, *sql.args))
            print("GET /accounts?limit=100 for a token of 100 accounts (no /leaderboard on this branch):")
            ref = figures("plain SQL as the owner (reference)", raw)
            through = figures("through the API in process", api)
            print(f"  ratio API / plain SQL (p50): {through / ref:.1f}x")
    finally:
        await console.close()
        await owner.close()


@contextlib.asynccontextmanager
async def console_process(dsn: str, nats_url: str, root: str) -> AsyncIterator[str]:
    port = free_port()
    env = os.environ | {
        "AITRADER_DATABASE_URL": dsn,
        "AITRADER_NATS_URL": nats_url,
        "AITRADER_NATS_SUBJECT_ROOT": root,
        "AITRADER_NATS_STREAM_PREFIX": root.upper() + "_",
        "AITRADER_CONSOLE_PORT": str(port),
        "AITRADER_LOG_LEVEL": "warning",
        "PYTHONPATH": REPO,
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.console", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                if process.returncode is not None:
                    raise RuntimeError("the console exited")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the console never became ready")
        yield base
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)


async def measure(admin_dsn: str, nats_url: str, args: argparse.Namespace) -> None:
    dsn = await fresh_database(admin_dsn)
    conn = await asyncpg.connect(dsn)
    try:
        accounts, token = await load(conn)
    finally:
        await conn.close()
    await pages(dsn, accounts, token, args.pages)
    root = f"bench{secrets.token_hex(3)}"
    async with console_process(dsn, nats_url, root) as base:
        await fan_out(base, nats_url, root, accounts[0], token, args.clients, args.publishes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=400, help="pages walked per variant")
    parser.add_argument("--clients", type=int, default=100, help="SSE streams open")
    parser.add_argument("--publishes", type=int, default=200, help="fills published one at a time")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    with servers() as (admin_dsn, nats_url):
        asyncio.run(measure(admin_dsn, nats_url, args))


if __name__ == "__main__":
    main()
