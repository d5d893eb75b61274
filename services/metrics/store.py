"""SQL of the performance side: read the inputs as polars frames (COPY ... CSV, one
repeatable-read snapshot) and upsert `performance_snapshots` / `confidence_calibration`."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime
from uuid import UUID

import asyncpg
import polars as pl

from services.metrics.performance import MONEY, PerformanceInputs
from services.metrics.rows import StoredRows
from shared.db import Connection

TIME = pl.Datetime("us", "UTC")
# Timestamps as PostgreSQL prints them with TimeZone = UTC: 2026-01-01 00:00:00.5+00
TIME_FORMAT = "%Y-%m-%d %H:%M:%S%.f%#z"
FACTOR = pl.Decimal(38, 2)
# Categorical: 100 ids over a million rows group and join several times faster than text.
ACCOUNT = pl.Categorical()

ACCOUNTS = """aitrader.accounts a WHERE a.status = 'active'
    AND ($1::uuid[] IS NULL OR a.id = ANY($1::uuid[]))"""
# A closed position's direction: the schema's rule (an open one's is `positions_valued.direction`).
DIRECTION = "aitrader.direction(c.side)"
QUERIES: dict[str, tuple[str, dict[str, pl.DataType]]] = {
    "accounts": (
        f"SELECT a.id AS account_id, LEAST(a.created_at, $2) AS created_at FROM {ACCOUNTS}",
        {"account_id": ACCOUNT, "created_at": TIME},
    ),
    "equity": (
        f"""SELECT e.account_id, e.id, e.as_of, e.equity
              FROM aitrader.equity_snapshots e
             WHERE e.as_of <= $2 AND e.account_id IN (SELECT a.id FROM {ACCOUNTS})""",
        {"account_id": ACCOUNT, "id": pl.Int64(), "as_of": TIME, "equity": MONEY},
    ),
    "closed": (
        f"""SELECT c.account_id, c.entry_time, c.exit_time, c.realized_pnl_usdt AS pnl,
                   c.average_confidence::float8 AS confidence,
                   round({DIRECTION} * c.quantity * c.entry_price * s.contract_size, 8)
                       AS notional,
                   c.symbol, c.pos_side, aitrader.closing_side(c.side) AS closing_side, c.exit_reason
              FROM aitrader.positions_closed c
              LEFT JOIN aitrader.contract_sizes s ON s.symbol = c.symbol
             WHERE c.realized_pnl_usdt IS NOT NULL AND c.exit_time <= $2
               AND c.account_id IN (SELECT a.id FROM {ACCOUNTS})""",
        {"account_id": ACCOUNT, "entry_time": TIME, "exit_time": TIME, "pnl": MONEY,
         "confidence": pl.Float64(), "notional": MONEY, "symbol": pl.String(),
         "pos_side": pl.String(), "closing_side": pl.String(), "exit_reason": pl.String()},
    ),
    # Algo orders with a stop-loss leg, for whether one rested when a position closed
    # (services.metrics.exits); a state not final (live, partially_*) has not ended.
    "algos": (
        f"""SELECT g.account_id, g.symbol, g.pos_side, g.side, g.created_at,
                   CASE WHEN g.state IN ('effective', 'canceled', 'order_failed')
                        THEN g.exchange_updated_at END AS ended_at,
                   (g.state = 'effective')::int AS fired
              FROM aitrader.algo_orders g
             WHERE g.sl_trigger_px IS NOT NULL AND g.created_at <= $2
               AND g.account_id IN (SELECT a.id FROM {ACCOUNTS})""",
        {"account_id": ACCOUNT, "symbol": pl.String(), "pos_side": pl.String(),
         "side": pl.String(), "created_at": TIME, "ended_at": TIME, "fired": pl.Int8()},
    ),
    "open": (
        f"""SELECT v.account_id, LEAST(COALESCE(v.opened_at, v.updated_at), $2) AS opened_at,
                   round(v.direction * v.coin_quantity * v.avg_entry_price, 8) AS notional
              FROM aitrader.positions_valued v
             WHERE v.account_id IN (SELECT a.id FROM {ACCOUNTS})""",
        {"account_id": ACCOUNT, "opened_at": TIME, "notional": MONEY},
    ),
    # An order is "filled" at its last fill.
    "orders": (
        f"""SELECT o.account_id, COALESCE(f.filled_at, o.updated_at) AS filled_at,
                   o.leverage, o.confidence
              FROM aitrader.orders o
              LEFT JOIN (SELECT order_id, max("timestamp") AS filled_at
                           FROM aitrader.fills GROUP BY order_id) f ON f.order_id = o.id
             WHERE o.filled_size > 0 AND o.account_id IN (SELECT a.id FROM {ACCOUNTS})
               AND COALESCE(f.filled_at, o.updated_at) <= $2""",
        {"account_id": ACCOUNT, "filled_at": TIME, "leverage": FACTOR,
         "confidence": FACTOR},
    ),
}


async def _frame(
    conn: Connection, query: str, schema: dict[str, pl.DataType], *args: object
) -> pl.DataFrame:
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    await conn.copy_from_query(query, *args, output=sink, format="csv", header=True)
    times = [name for name, dtype in schema.items() if dtype == TIME]
    as_text = {name: pl.String() if name in times else dtype for name, dtype in schema.items()}
    frame = pl.read_csv(io.BytesIO(b"".join(chunks)), schema=as_text)
    return frame.with_columns(
        pl.col(name).str.to_datetime(TIME_FORMAT, time_unit="us").dt.convert_time_zone("UTC")
        for name in times
    )


# The reads run on two connections sharing one exported snapshot (PostgreSQL formats COPY
# output on one core per connection); the equity table is split by account id halves.
LANES = (
    ["equity_low", "closed"],
    ["equity_high", "accounts", "open", "orders", "algos"],
)
MID_UUID = "80000000-0000-0000-0000-000000000000"


def _query(name: str) -> tuple[str, dict[str, pl.DataType]]:
    if name.startswith("equity_"):
        query, schema = QUERIES["equity"]
        test = "<" if name == "equity_low" else ">="
        return f"{query} AND e.account_id {test} '{MID_UUID}'::uuid", schema
    return QUERIES[name]


async def _read_lane(
    conn: Connection, names: list[str], snapshot: str | None, *args: object
) -> dict[str, pl.DataFrame]:
    if snapshot is not None:
        await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    await conn.execute("SET LOCAL TIME ZONE 'UTC'")
    return {name: await _frame(conn, *_query(name), *args) for name in names}


async def load_inputs(
    pool: asyncpg.Pool, accounts: list[UUID] | None, now: datetime
) -> PerformanceInputs:
    """Everything the metrics of these accounts (None = all active) need, as of `now`."""
    async with pool.acquire() as first, pool.acquire() as second:
        async with first.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await first.fetchval("SELECT pg_export_snapshot()")
            async with second.transaction(isolation="repeatable_read", readonly=True):
                lanes = await asyncio.gather(
                    _read_lane(first, LANES[0], None, accounts, now),
                    _read_lane(second, LANES[1], snapshot, accounts, now),
                )
    frames = {**lanes[0], **lanes[1]}
    frames["equity"] = pl.concat([frames.pop("equity_low"), frames.pop("equity_high")])
    return PerformanceInputs(**frames)


UPSERT_PERFORMANCE = """
INSERT INTO aitrader.performance_snapshots AS p
    (account_id, "window", window_start, window_end, sharpe_ratio, win_rate, average_leverage,
     average_confidence, biggest_win_usdt, biggest_loss_usdt, hold_ratio_long, hold_ratio_short,
     hold_ratio_flat, closed_positions, realized_pnl_usdt, stop_loss_resting_ratio,
     max_drawdown_pct, definitions_version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, now())
ON CONFLICT (account_id, "window") DO UPDATE SET
    window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,
    sharpe_ratio = EXCLUDED.sharpe_ratio, win_rate = EXCLUDED.win_rate,
    average_leverage = EXCLUDED.average_leverage, average_confidence = EXCLUDED.average_confidence,
    biggest_win_usdt = EXCLUDED.biggest_win_usdt, biggest_loss_usdt = EXCLUDED.biggest_loss_usdt,
    hold_ratio_long = EXCLUDED.hold_ratio_long, hold_ratio_short = EXCLUDED.hold_ratio_short,
    hold_ratio_flat = EXCLUDED.hold_ratio_flat, closed_positions = EXCLUDED.closed_positions,
    realized_pnl_usdt = EXCLUDED.realized_pnl_usdt,
    stop_loss_resting_ratio = EXCLUDED.stop_loss_resting_ratio,
    max_drawdown_pct = EXCLUDED.max_drawdown_pct,
    definitions_version = EXCLUDED.definitions_version, updated_at = now()
WHERE p.window_end <= EXCLUDED.window_end OR p.window_end IS NULL
"""

UPSERT_CALIBRATION = """
INSERT INTO aitrader.confidence_calibration AS c
    (account_id, "window", bucket, closed_positions, win_rate, mean_pnl_usdt, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (account_id, "window", bucket) DO UPDATE SET
    closed_positions = EXCLUDED.closed_positions, win_rate = EXCLUDED.win_rate,
    mean_pnl_usdt = EXCLUDED.mean_pnl_usdt, updated_at = now()
"""


UPSERT_EXITS = """
INSERT INTO aitrader.exit_attribution AS x
    (account_id, "window", exit_reason, closed_positions, realized_pnl_usdt, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (account_id, "window", exit_reason) DO UPDATE SET
    closed_positions = EXCLUDED.closed_positions, realized_pnl_usdt = EXCLUDED.realized_pnl_usdt,
    updated_at = now()
"""


async def save(conn: Connection, rows: StoredRows) -> None:
    """Upsert one row per (account, window), per (account, window, bucket) and per
    (account, window, exit reason), atomically."""
    async with conn.transaction():
        await conn.executemany(
            UPSERT_PERFORMANCE,
            [
                (r.account_id, r.window, r.window_start, r.window_end, r.sharpe_ratio,
                 r.win_rate, r.average_leverage, r.average_confidence, r.biggest_win_usdt,
                 r.biggest_loss_usdt, r.hold_ratio_long, r.hold_ratio_short, r.hold_ratio_flat,
                 r.closed_positions, r.realized_pnl_usdt, r.stop_loss_resting_ratio,
                 r.max_drawdown_pct, r.definitions_version)
                for r in rows.performance
            ],
        )
        await conn.executemany(
            UPSERT_CALIBRATION,
            [
                (r.account_id, r.window, r.bucket, r.closed_positions, r.win_rate,
                 r.mean_pnl_usdt)
                for r in rows.calibration
            ],
        )
        await conn.executemany(
            UPSERT_EXITS,
            [
                (r.account_id, r.window, r.exit_reason, r.closed_positions, r.realized_pnl_usdt)
                for r in rows.exits
            ],
        )
