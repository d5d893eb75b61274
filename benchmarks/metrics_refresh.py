"""Benchmark: refresh all three windows for 100 accounts with 100,000 closed positions and
1,000,000 equity points (plus 100,000 filled orders / fills and one open position each).

    .venv/bin/python benchmarks/metrics_refresh.py            # embedded PostgreSQL in a temp dir
    AITRADER_DATABASE_URL=postgresql://... benchmarks/metrics_refresh.py   # an empty database

The data set is written with COPY. Printed: the raw reference (the same five reads straight
into polars, nothing computed), a plain asyncpg fetch of the same rows, the full refresh
(read + compute + upsert of 300 performance and 1,200 calibration rows), each part, and the
ratios.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aitrader.embedded import EmbeddedPostgres
from aitrader.migrate import migrate
from services.metrics import store
from services.metrics.performance import metric_frames
from services.metrics.refresh import refresh_performance
from services.metrics.rows import stored_rows
from shared.clock import ManualClock
from shared.db import create_pool

ACCOUNTS, CLOSED, EQUITY = 100, 100_000, 1_000_000
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SYMBOLS = {"BTC-USDT-SWAP": Decimal("0.01"), "ETH-USDT-SWAP": Decimal("0.1")}


async def load(conn: asyncpg.Connection) -> None:
    """Generate the data set (seeded) and COPY it in."""
    rng = np.random.default_rng(42)
    await conn.copy_records_to_table(
        "instruments", schema_name="aitrader",
        columns=["symbol", "base_asset", "quote_asset", "settle_ccy", "ct_val", "ct_mult",
                 "lot_sz", "min_sz", "tick_sz", "max_leverage"],
        records=[(s, s[:3], "USDT", "USDT", v, Decimal(1), Decimal("0.01"), Decimal("0.01"),
                  Decimal("0.1"), Decimal(100)) for s, v in SYMBOLS.items()],
    )
    accounts = [uuid4() for _ in range(ACCOUNTS)]
    await conn.copy_records_to_table(
        "accounts", schema_name="aitrader", columns=["id", "external_id", "mode", "created_at"],
        records=[(a, f"bench-{i}", "simulated", NOW - timedelta(days=30))
                 for i, a in enumerate(accounts)],
    )
    await _equity(conn, accounts, rng)
    await _positions(conn, accounts, rng)


async def _equity(conn: asyncpg.Connection, accounts: list[UUID], rng: np.random.Generator) -> None:
    per = EQUITY // ACCOUNTS  # one point a minute: ~6.9 days per account
    records = []
    for a in accounts:
        curve = 10_000 * np.exp(np.cumsum(rng.normal(0, 0.0005, per)))
        for k, value in enumerate(curve):
            records.append((a, Decimal(f"{value:.8f}"), Decimal(10_000), Decimal(0),
                            Decimal(f"{value - 10_000:.8f}"), NOW - timedelta(minutes=per - k)))
    await conn.copy_records_to_table(
        "equity_snapshots", schema_name="aitrader",
        columns=["account_id", "equity", "cash", "net_position_value", "unrealized_pnl", "as_of"],
        records=records,
    )


async def _positions(
    conn: asyncpg.Connection, accounts: list[UUID], rng: np.random.Generator
) -> None:
    per = CLOSED // ACCOUNTS  # spread over 30 days
    closed, orders, fills, opened = [], [], [], []
    symbols = list(SYMBOLS)
    for a in accounts:
        exits = np.sort(rng.uniform(0, 30 * 24 * 60, per))
        for k, minutes_ago in enumerate(exits):
            exit_time = NOW - timedelta(minutes=float(minutes_ago))
            entry_time = exit_time - timedelta(minutes=float(rng.uniform(1, 600)))
            symbol = symbols[k % 2]
            pnl = Decimal(f"{rng.normal(0, 25):.8f}")
            order_id = uuid4()
            closed.append((a, symbol, "long" if k % 3 else "short", Decimal(k % 7 + 1),
                           Decimal(30_000), Decimal(30_010), pnl, Decimal(int(rng.uniform(0, 100))),
                           entry_time, exit_time, f"t{k}"))
            orders.append((order_id, a, symbol, "buy", "market", Decimal(1), Decimal(1), "filled",
                           Decimal(int(rng.integers(1, 21))), Decimal(int(rng.uniform(0, 100)))))
            fills.append((a, order_id, symbol, "buy", Decimal(30_000), Decimal(1), entry_time, f"t{k}"))
        opened.append((a, symbols[0], "long", Decimal(2), Decimal(30_000), NOW - timedelta(hours=3)))
    await conn.copy_records_to_table(
        "positions_closed", schema_name="aitrader",
        columns=["account_id", "symbol", "side", "quantity", "entry_price", "exit_price",
                 "realized_pnl_usdt", "average_confidence", "entry_time", "exit_time",
                 "closing_trade_id"], records=closed)
    await conn.copy_records_to_table(
        "orders", schema_name="aitrader",
        columns=["id", "account_id", "symbol", "side", "order_type", "size", "filled_size",
                 "status", "leverage", "confidence"], records=orders)
    await conn.copy_records_to_table(
        "fills", schema_name="aitrader",
        columns=["account_id", "order_id", "symbol", "side", "price", "size", "timestamp",
                 "exchange_trade_id"], records=fills)
    await conn.copy_records_to_table(
        "positions_open", schema_name="aitrader",
        columns=["account_id", "symbol", "side", "quantity", "avg_entry_price", "opened_at"],
        records=opened)


async def measure(dsn: str, runs: int = 5) -> None:
    await migrate(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=2, application_name="bench")
    try:
        started = time.perf_counter()
        async with pool.acquire() as conn:
            await load(conn)
            await conn.execute("ANALYZE")
        print(f"data set written with COPY in {time.perf_counter() - started:.1f} s")
        clock = ManualClock(NOW)
        raw, parts, totals = [], [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            inputs = await store.load_inputs(pool, None, NOW)
            t1 = time.perf_counter()
            stored = stored_rows(metric_frames(inputs, NOW))
            t2 = time.perf_counter()
            async with pool.acquire() as conn:
                await store.save(conn, stored)
            t3 = time.perf_counter()
            raw.append(t1 - t0)
            parts.append((t2 - t1, t3 - t2))
            t4 = time.perf_counter()
            rows = await refresh_performance(pool, clock, None)
            totals.append(time.perf_counter() - t4)
        assert rows == 3 * ACCOUNTS
        async with pool.acquire() as conn:
            t0 = time.perf_counter()
            plain = [len(await conn.fetch(f"SELECT * FROM ({query}) q", None, NOW))
                     for query, _ in store.QUERIES.values()]
            plain_s = time.perf_counter() - t0
        rows_read = sum(f.height for f in vars(inputs).values())
        median = statistics.median
        print(f"raw reference: read {rows_read:,} rows into polars (COPY CSV): "
              f"median {median(raw):.3f} s")
        print(f"compute (polars + Decimal rounding): median {median(p[0] for p in parts):.3f} s; "
              f"upsert {len(stored.performance)} + {len(stored.calibration)} + {len(stored.exits)} rows: "
              f"median {median(p[1] for p in parts):.3f} s")
        print(f"full refresh, 3 windows x {ACCOUNTS} accounts: median {median(totals):.3f} s, "
              f"min {min(totals):.3f} s over {runs} runs (target < 3 s)")
        print(f"plain asyncpg fetch of the same {sum(plain):,} rows, one connection: {plain_s:.3f} s")
        print(f"ratio full refresh / raw read: {median(totals) / median(raw):.2f}; "
              f"full refresh / plain fetch: {median(totals) / plain_s:.2f}")
    finally:
        await pool.close()


def main() -> None:
    print(f"cpus: {os.cpu_count()}, accounts {ACCOUNTS}, closed positions {CLOSED:,}, "
          f"equity points {EQUITY:,}")
    dsn = os.environ.get("AITRADER_DATABASE_URL")
    if dsn:
        asyncio.run(measure(dsn))
        return
    with tempfile.TemporaryDirectory(prefix="aitrader-bench-pg-") as root:
        Path(root).chmod(0o755)
        server = EmbeddedPostgres(Path(root))
        server.start()
        try:
            asyncio.run(measure(server.dsn))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
