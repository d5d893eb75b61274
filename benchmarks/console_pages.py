"""Benchmark: the console's pages and its event stream, each against a raw reference measured in
the same run.

    .venv/bin/python -m benchmarks.console_pages              # embedded PostgreSQL and nats-server
    AITRADER_DATABASE_URL=postgresql://admin@host/db AITRADER_NATS_URL=nats://host:4222 \\
        .venv/bin/python -m benchmarks.console_pages          # a fresh database on that server

1. `positions/closed`, pages of 100 walked with cursors over 1,000,000 closed positions (10
   accounts of 100,000, written with COPY): through the API (the console in its own process,
   `python -m services.console`, one keep-alive HTTP connection, token cached), the console's
   read alone (its role, RLS, one transaction, PostgreSQL writing the JSON), and the reference:
   the plain SQL of the same pages as the owner — the page's SELECT (`page_sql`, the rows as
   asyncpg records) on a connection held for the whole run. The variants take turns page by
   page, so that a load coming and going on the machine falls on each alike.
2. `GET /accounts?limit=100` for a token of 100 accounts against the same SQL as the owner.
3. `GET /leaderboard` (all_time and daily) for a token of 100 accounts of 10,000 equity points
   each (1,000,000, a minute apart ending now) with their stored performance rows, against its
   SQL (`leaderboard_sql`) as the owner.
4. SSE fan-out: the console served in its own process (`python -m services.console`), 100
   streams open; a fill published on the ACCOUNT stream; the time until the 100th stream has it,
   against 100 core NATS subscriptions of this process receiving the same publish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from uuid import UUID, uuid4

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aitrader.embedded import free_port
from benchmarks.console_sse import fan_out
from benchmarks.fills_throughput import fresh_database, servers
from benchmarks.http_floor import static_server
from services.console import figures as console_figures
from services.console import listings
from services.console.api import AccountsQuery, ClosedQuery
from services.console.config import ConsoleSettings
from services.console.models import ClosedPosition
from services.console.repository import ConsoleDb, page_json, page_sql
from shared.db import create_pool
from shared.tokens import PREFIX_LEN, TOKEN_PREFIX, hash_token

REPO = str(Path(__file__).resolve().parent.parent)
ACCOUNTS, BIG, PER = 100, 10, 100_000  # 100 accounts, the first 10 with 100,000 closed each
POINTS = 10_000  # equity points per account
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


def figures(name: str, seconds: list[float]) -> tuple[float, float]:
    ms = [s * 1000 for s in seconds]
    p50, p99 = statistics.median(ms), pct(ms, 0.99)
    print(f"  {name:<44} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   (n={len(ms)})")
    return p50, p99


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


class Http:
    """A minimal HTTP/1.1 keep-alive client: the request's bytes out, the status and body in.
    httpx costs ~0.5 ms a request of its own here (its ASGI transport even tries `import trio`
    on every request), which would be most of what is measured."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str) -> None:
        self.reader, self.writer, self.token = reader, writer, token

    @classmethod
    async def connect(cls, base: str, token: str) -> Http:
        url = httpx.URL(base)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        return cls(reader, writer, token)

    async def get(self, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        target = f"{path}?{urlencode(params)}" if params else path
        request = f"GET {target} HTTP/1.1\r\nHost: console\r\nAuthorization: Bearer {self.token}\r\n\r\n"
        self.writer.write(request.encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        return int(lines[0].split(" ")[1]), await self.reader.readexactly(int(fields["content-length"]))

    def close(self) -> None:
        self.writer.close()


async def interleaved(n: int, calls: dict[str, Callable[[int], Awaitable[object]]]) -> dict[str, list[float]]:
    """Each variant in turn, page by page: a load that comes and goes on this shared machine
    falls on all of them alike."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(n):
        for name, call in calls.items():
            started = time.perf_counter()
            await call(i)
            out[name].append(time.perf_counter() - started)
    return out


def report(runs: dict[str, list[float]]) -> None:
    """Each variant's figures; the ratio of the last (the API) to the first (the plain SQL)."""
    shown = [figures(name, seconds) for name, seconds in runs.items()]
    ref, through = shown[0], shown[-1]
    print(f"  ratio API / plain SQL: p50 {through[0] / ref[0]:.2f}x   p99 {through[1] / ref[1]:.2f}x")


PLAIN, API = "plain SQL as the owner (reference)", "through the API (HTTP, the console's process)"


async def pages(dsn: str, base: str, accounts: list[UUID], token: str, n: int) -> None:
    owner = await create_pool(dsn, min_size=1, max_size=2)
    console = await create_pool(ConsoleSettings(database_url=dsn).console_dsn(), min_size=1, max_size=4)
    http = await Http.connect(base, token)
    path = "/api/v1/accounts/bench-0/positions/closed"
    try:
        params: list[dict[str, str]] = [{"limit": "100"}]
        for _ in range(n):  # the walk, untimed: the cursors of the pages measured
            status, body = await http.get(path, params[-1])
            page = json.loads(body)
            assert status == 200 and len(page["items"]) == 100, body[:200]
            params.append({"limit": "100", "cursor": page["next_cursor"]})
        queries = [ClosedQuery.model_validate(p) for p in params[:n]]
        sqls = [page_sql(listings.CLOSED_POSITIONS, [accounts[0]], q, {}) for q in queries]
        bodies = [page_json(ClosedPosition, sql, 100) for sql in sqls]
        digest, db = hash_token(token), ConsoleDb(console)

        async def api(i: int) -> None:
            status, _ = await http.get(path, params[i])
            assert status == 200

        async with owner.acquire() as conn:
            runs = await interleaved(
                n,
                {
                    PLAIN: lambda i: conn.fetch(sqls[i].text, *sqls[i].args),
                    "the same rows as JSON (page_json), as the owner": lambda i: conn.fetchrow(
                        bodies[i].text, *bodies[i].args
                    ),
                    "the console's read (its role, RLS, the JSON)": lambda i: db.page_body(
                        digest, listings.CLOSED_POSITIONS, bodies[i]
                    ),
                    API: api,
                },
            )
        print(f"positions/closed, page of 100 over {BIG * PER:,} closed positions ({n} pages walked):")
        report(runs)
        await client_floor(path, params, len(body), token, n)

        sql = page_sql(
            listings.ACCOUNTS, accounts, AccountsQuery.model_validate({}), {"status": None, "mode": None}
        )
        async with owner.acquire() as conn:
            runs = await interleaved(
                n // 2,
                {
                    PLAIN: lambda _: conn.fetch(sql.text, *sql.args),
                    API: lambda _: http.get("/api/v1/accounts", {"limit": "100"}),
                },
            )
        print("GET /accounts?limit=100 for a token of 100 accounts:")
        report(runs)
        for window in ("all_time", "daily"):
            await leaderboard(http, owner, accounts, window, max(n // 8, 20))
    finally:
        http.close()
        await console.close()
        await owner.close()


async def client_floor(path: str, params: list[dict[str, str]], size: int, token: str, n: int) -> None:
    """What the client and the loopback hop cost alone: the same requests, answered by a static
    server in its own process (benchmarks/http_floor.py) with a body of the page's size; this
    client against httpx (the figure a benchmark written with httpx would carry)."""
    async with static_server(size) as base:
        http = await Http.connect(base, token)
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:

            async def raw(i: int) -> None:
                await http.get(path, params[i])

            async def via_httpx(i: int) -> None:
                (await client.get(path, params=params[i])).raise_for_status()

            runs = await interleaved(n, {"this client": raw, "httpx.AsyncClient": via_httpx})
        http.close()
    print(f"the client alone: a static server of {size:,} bytes in its own process (no API, no SQL):")
    for name, seconds in runs.items():
        figures(name, seconds)


async def leaderboard(http: Http, owner: asyncpg.Pool, accounts: list[UUID], window: str, n: int) -> None:
    status, body = await http.get("/api/v1/leaderboard", {"window": window})
    assert status == 200 and len(json.loads(body)["items"]) == ACCOUNTS, body[:200]
    sql = console_figures.leaderboard_sql(window)  # type: ignore[arg-type]
    async with owner.acquire() as conn:
        runs = await interleaved(
            n,
            {
                PLAIN: lambda _: conn.fetch(sql, accounts, window),
                API: lambda _: http.get("/api/v1/leaderboard", {"window": window}),
            },
        )
    print(f"GET /leaderboard?window={window}, 100 accounts of {POINTS:,} equity points:")
    report(runs)


async def load_equity(conn: asyncpg.Connection, accounts: list[UUID]) -> None:
    """POINTS equity points per account a minute apart ending now (COPY as text), and each
    account's stored performance rows, as the metrics service leaves them."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    stamps = [(now - timedelta(minutes=POINTS - k)).isoformat() for k in range(POINTS)]
    for i, a in enumerate(accounts):
        body = "".join(
            f"{a}\t{1000 + (k * 37 + i) % 101}.25\t1000\t0\t0\t{stamps[k]}\n" for k in range(POINTS)
        )
        await conn.copy_to_table(
            "equity_snapshots",
            schema_name="aitrader",
            columns=["account_id", "equity", "cash", "net_position_value", "unrealized_pnl", "as_of"],
            source=io.BytesIO(body.encode()),
        )
    await conn.execute(
        """INSERT INTO aitrader.performance_snapshots (account_id, "window", sharpe_ratio, win_rate,
               average_leverage, average_confidence, closed_positions, realized_pnl_usdt, max_drawdown_pct,
               window_start, window_end)
           SELECT a, w, 1.234567, 0.55, 5, 70, 12, 52.3, 9.1234, now() - interval '1 day', now()
           FROM unnest($1::uuid[]) a, unnest(ARRAY['daily', 'weekly', 'all_time']) w""",
        accounts,
    )
    await conn.execute("ANALYZE aitrader.equity_snapshots; ANALYZE aitrader.performance_snapshots")
    print(f"loaded {len(accounts) * POINTS:,} equity points in {time.perf_counter() - started:.1f} s")


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
        "AITRADER_CONSOLE_TOKEN_CACHE_S": "3600",
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
        await load_equity(conn, accounts)
    finally:
        await conn.close()
    root = f"bench{secrets.token_hex(3)}"
    async with console_process(dsn, nats_url, root) as base:
        await pages(dsn, base, accounts, token, args.pages)
        if not args.no_sse:
            await fan_out(base, nats_url, root, accounts[0], token, args.clients, args.publishes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=400, help="pages walked per variant")
    parser.add_argument("--clients", type=int, default=100, help="SSE streams open")
    parser.add_argument("--publishes", type=int, default=200, help="fills published one at a time")
    parser.add_argument("--no-sse", action="store_true", help="the pages and the leaderboard only")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    with servers() as (admin_dsn, nats_url):
        asyncio.run(measure(admin_dsn, nats_url, args))


if __name__ == "__main__":
    main()
