"""Rows the gateway reads, written the way the other services write them."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from shared.clock import utcnow

BAR = {"3m": timedelta(minutes=3), "4H": timedelta(hours=4), "1H": timedelta(hours=1)}


async def market_price(db: asyncpg.Pool, symbol: str, mark: str) -> None:
    await db.execute(
        """INSERT INTO aitrader.market_prices (symbol, mark_price, last_price, as_of)
           VALUES ($1, $2, $2, now())
           ON CONFLICT (symbol) DO UPDATE SET mark_price = $2, last_price = $2, as_of = now()""",
        symbol,
        Decimal(mark),
    )


async def snapshots(
    db: asyncpg.Pool,
    symbol: str,
    timeframe: str,
    count: int,
    newest: datetime | None = None,
    start_price: Decimal = Decimal("60000"),
) -> list[datetime]:
    """`count` closed candles ending at `newest` (default: the last bar boundary before now)."""
    bar = BAR[timeframe]
    end = newest or utcnow().replace(second=0, microsecond=0) - timedelta(minutes=1)
    times = [end - bar * i for i in reversed(range(count))]
    await db.executemany(
        """INSERT INTO aitrader.market_snapshots
               (symbol, timeframe, as_of, price, ema20, ema50, macd, rsi7, rsi14, funding_rate,
                open_interest)
           VALUES ($1, $2, $3, $4::numeric, $4::numeric - 10, $4::numeric - 20, 1.5, 55.5, 52.25, 0.0001,
                   12345.5)""",
        [(symbol, timeframe, t, start_price + i) for i, t in enumerate(times)],
    )
    return times


async def position(
    db: asyncpg.Pool,
    account_id: UUID,
    symbol: str,
    *,
    side: str = "long",
    qty: str = "1",
    entry: str = "60000",
    confidence: str | None = "70",
    exit_plan: dict[str, Any] | None = None,
    pos_side: str = "net",
    leverage: str = "5",
) -> UUID:
    q = Decimal(qty)
    conf_sum = Decimal(confidence) * q if confidence else Decimal(0)
    pid: UUID = await db.fetchval(
        """INSERT INTO aitrader.positions_open
               (account_id, symbol, side, quantity, avg_entry_price, leverage, margin_usdt,
                liquidation_price, exit_plan, opened_at, pos_side, opened_quantity,
                confidence_weight_sum, confidence_quantity)
           VALUES ($1, $2, $3, $4, $5, $6, 120, 50000, $7, now(), $8, $4, $9, $10)
           RETURNING id""",
        account_id,
        symbol,
        side,
        q,
        Decimal(entry),
        Decimal(leverage),
        exit_plan or {},
        pos_side,
        conf_sum,
        q if confidence else Decimal(0),
    )
    return pid


async def balance(db: asyncpg.Pool, account_id: UUID, available: str = "9000.5") -> None:
    await db.execute(
        """INSERT INTO aitrader.balance_snapshots
               (account_id, available_usdt, locked_usdt, cash_usdt, equity_usdt, as_of)
           VALUES ($1, $2, 1000, 10000, 10012.25, now())""",
        account_id,
        Decimal(available),
    )


async def performance(db: asyncpg.Pool, account_id: UUID, window: str = "all_time") -> None:
    await db.execute(
        """INSERT INTO aitrader.performance_snapshots
               (account_id, "window", sharpe_ratio, win_rate, average_leverage, average_confidence,
                biggest_win_usdt, biggest_loss_usdt, hold_ratio_long, hold_ratio_short,
                hold_ratio_flat, closed_positions, realized_pnl_usdt, stop_loss_resting_ratio,
                max_drawdown_pct, window_start, window_end)
           VALUES ($1, $2, 1.25, 0.6, 5, 72.5, 150.5, -80.25, 0.5, 0.2, 0.3, 5, 123.45, 0.8, 4.25,
                   now() - interval '1 day', now())""",
        account_id,
        window,
    )
    await db.executemany(
        """INSERT INTO aitrader.exit_attribution
               (account_id, "window", exit_reason, closed_positions, realized_pnl_usdt)
           VALUES ($1, $2, $3, $4, $5)""",
        [
            (account_id, window, "stop_loss", 2, Decimal("-60.5")),
            (account_id, window, "agent", 3, Decimal("183.95")),
            (account_id, window, "liquidation", 0, None),
        ],
    )
    await db.executemany(
        """INSERT INTO aitrader.confidence_calibration
               (account_id, "window", bucket, closed_positions, win_rate, mean_pnl_usdt)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [
            (account_id, window, "70-85", 3, Decimal("0.6667"), Decimal("40.1")),
            (account_id, window, "0-50", 2, Decimal("0.5"), Decimal("-5")),
        ],
    )


async def tool_calls(db: asyncpg.Pool, **where: Any) -> list[asyncpg.Record]:
    clauses = " AND ".join(f"{k} = ${i}" for i, k in enumerate(where, start=1)) or "true"
    return list(
        await db.fetch(
            f"SELECT * FROM aitrader.mcp_tool_calls WHERE {clauses} ORDER BY created_at",
            *where.values(),
        )
    )


async def algo_order(
    db: asyncpg.Pool,
    account_id: UUID,
    symbol: str,
    algo_id: str,
    *,
    pos_side: str,
    side: str,
    state: str = "live",
    tp: str | None = None,
    sl: str | None = None,
    actual_side: str | None = None,
    fail_code: str | None = None,
    updated_s: float = 0,
    sized: str | None = None,
) -> None:
    """An `algo_orders` row as positions writes it, last updated `updated_s` seconds from now;
    a close-position algo, or one of `sized` contracts."""
    await db.execute(
        """INSERT INTO aitrader.algo_orders
               (account_id, symbol, pos_side, algo_id, ord_type, side, state, sz, close_fraction,
                reduce_only, tp_trigger_px, tp_trigger_px_type, sl_trigger_px, sl_trigger_px_type,
                actual_side, fail_code, created_at, exchange_updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($13::numeric, 0),
                   CASE WHEN $13 IS NULL THEN 1 END, true, $8::numeric,
                   CASE WHEN $8 IS NOT NULL THEN 'mark' END, $9::numeric,
                   CASE WHEN $9 IS NOT NULL THEN 'mark' END, $10, $11,
                   now() + make_interval(secs => $12) - interval '1 second',
                   now() + make_interval(secs => $12))""",
        account_id,
        symbol,
        pos_side,
        algo_id,
        "oco" if tp and sl else "conditional",
        side,
        state,
        None if tp is None else Decimal(tp),
        None if sl is None else Decimal(sl),
        actual_side,
        fail_code,
        updated_s,
        None if sized is None else Decimal(sized),
    )


async def plan_outcome(db: asyncpg.Pool, position_id: UUID, s_code: str, s_msg: str = "") -> None:
    """An `exit_plan_history` row of the position with the exchange's answer (migration 0010)."""
    await db.execute(
        """INSERT INTO aitrader.exit_plan_history
               (account_id, symbol, pos_side, position_id, exit_plan, s_code, s_msg)
           SELECT account_id, symbol, pos_side, id, exit_plan, $2, $3
           FROM aitrader.positions_open WHERE id = $1""",
        position_id,
        s_code,
        s_msg,
    )
