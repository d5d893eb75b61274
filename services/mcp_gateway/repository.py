"""SQL of the gateway, and row -> view mapping. Reads are one indexed query each."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from services.mcp_gateway import views
from services.mcp_gateway.rules import Instrument, unrealized_pnl

Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def fetch_instruments(db: Conn) -> list[Instrument]:
    rows = await db.fetch(
        """SELECT symbol, base_asset, ct_val, ct_mult, lot_sz, min_sz, tick_sz, max_leverage, status
           FROM aitrader.instruments"""
    )
    return [Instrument(**dict(r)) for r in rows]


# ------------------------------------------------------------------------------ account state
_POSITION_SELECT = """
SELECT p.id, p.symbol, p.side, p.pos_side, p.quantity, p.avg_entry_price, p.leverage,
       p.margin_usdt, p.liquidation_price, p.unrealized_pnl_usdt, p.exit_plan::text AS exit_plan_json,
       p.opened_at,
       p.updated_at, p.confidence_weight_sum, p.confidence_quantity,
       COALESCE(m.mark_price, m.last_price, p.mark_price) AS mark,
       i.ct_val * i.ct_mult AS contract_size, i.base_asset
FROM aitrader.positions_open p
JOIN aitrader.instruments i ON i.symbol = p.symbol
LEFT JOIN aitrader.market_prices m ON m.symbol = p.symbol
"""

# One round trip: the account, its latest balance and all-time figures repeated on every row of
# its open positions (one row with null position columns when there are none).
_ACCOUNT_STATE = f"""
SELECT a.id AS account_id, a.external_id, a.mode, b.available_usdt, b.locked_usdt, b.cash_usdt,
       b.equity_usdt AS exchange_equity_usdt, b.as_of AS balance_as_of, ps.realized_pnl_usdt,
       ps.closed_positions, ps.win_rate, ps.sharpe_ratio, ps.updated_at AS perf_updated_at, pos.*
FROM aitrader.accounts a
LEFT JOIN LATERAL (
    SELECT available_usdt, locked_usdt, cash_usdt, equity_usdt, as_of
    FROM aitrader.balance_snapshots WHERE account_id = a.id ORDER BY as_of DESC LIMIT 1
) b ON true
LEFT JOIN aitrader.performance_snapshots ps ON ps.account_id = a.id AND ps."window" = 'all_time'
LEFT JOIN LATERAL ({_POSITION_SELECT} WHERE p.account_id = a.id) pos ON true
WHERE a.id = $1
ORDER BY pos.symbol, pos.pos_side
"""


def _plan(value: Any) -> views.ExitPlan | None:
    return views.ExitPlan.model_validate(value) if value else None


def _plan_json(text: str | None) -> views.ExitPlan | None:
    # Parsed and validated in one step from the jsonb text (not decoded to a dict first).
    return views.ExitPlan.model_validate_json(text) if text and text != "{}" else None


def position_view(r: asyncpg.Record) -> views.Position:
    qty, size, mark, entry = r["quantity"], r["contract_size"], r["mark"], r["avg_entry_price"]
    coin = qty * size
    upl = unrealized_pnl(r["side"], qty, size, entry, mark)
    conf_qty: Decimal = r["confidence_quantity"]
    return views.Position(
        symbol=r["symbol"],
        side=r["side"],
        pos_side=r["pos_side"],
        contracts=qty,
        coin_quantity=coin,
        base_asset=r["base_asset"],
        entry_price=entry,
        mark_price=mark,
        leverage=r["leverage"],
        margin_usdt=r["margin_usdt"],
        liquidation_price=r["liquidation_price"],
        unrealized_pnl_usdt=upl if upl is not None else r["unrealized_pnl_usdt"],
        notional_usdt=coin * mark if mark is not None else None,
        exit_plan=_plan_json(r["exit_plan_json"]),
        confidence=(r["confidence_weight_sum"] / conf_qty).quantize(Decimal("0.01")) if conf_qty else None,
        opened_at=r["opened_at"],
        updated_at=r["updated_at"],
    )


async def fetch_account_state(
    db: Conn, account_id: UUID
) -> tuple[asyncpg.Record | None, list[views.Position]]:
    """The account row (balance, all-time figures) and its open positions; (None, []) if unknown."""
    rows = await db.fetch(_ACCOUNT_STATE, account_id)
    if not rows:
        return None, []
    return rows[0], [position_view(r) for r in rows if r["id"] is not None]


async def fetch_position(db: Conn, position_id: UUID, account_id: UUID) -> views.Position | None:
    sql = _POSITION_SELECT + "WHERE p.account_id = $1 AND p.id = $2"
    row = await db.fetchrow(sql, account_id, position_id)
    return position_view(row) if row is not None else None


# ------------------------------------------------------------------------------ market data
_SNAPSHOTS = """
SELECT t.tf AS timeframe, s.as_of, s.price, s.ema20, s.ema50, s.macd, s.rsi7, s.rsi14,
       s.funding_rate, s.open_interest
FROM unnest($2::text[]) AS t(tf)
CROSS JOIN LATERAL (
    SELECT as_of, price, ema20, ema50, macd, rsi7, rsi14, funding_rate, open_interest
    FROM aitrader.market_snapshots
    WHERE symbol = $1 AND timeframe = t.tf
    ORDER BY as_of DESC LIMIT $3
) s
"""


async def fetch_snapshots(db: Conn, symbol: str, timeframes: list[str], limit: int) -> list[asyncpg.Record]:
    """Newest first, per timeframe."""
    return list(await db.fetch(_SNAPSHOTS, symbol, timeframes, limit))


async def fetch_trade_context(db: Conn, account_id: UUID, symbol: str) -> tuple[str | None, Decimal | None]:
    """The account's position mode and the symbol's latest mark (or last) price."""
    row = await db.fetchrow(
        """SELECT (SELECT pos_mode FROM aitrader.accounts WHERE id = $1) AS pos_mode,
                  (SELECT COALESCE(mark_price, last_price) FROM aitrader.market_prices
                   WHERE symbol = $2) AS mark""",
        account_id,
        symbol,
    )
    assert row is not None
    return row["pos_mode"], row["mark"]


# ------------------------------------------------------------------------------ orders
_ORDER_COLUMNS = """id, client_order_id, exchange_order_id, symbol, side, pos_side, order_type,
    size, price, leverage, confidence, reduce_only, status, filled_size, avg_fill_price,
    reject_code, reject_reason, exit_plan, created_at"""


def order_view(r: asyncpg.Record) -> views.Order:
    data = dict(r)
    data["order_id"] = data.pop("id")
    data["exit_plan"] = _plan(data["exit_plan"])
    return views.Order(**data)


async def find_order_by_key(db: Conn, account_id: UUID, key: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"""SELECT {_ORDER_COLUMNS} FROM aitrader.orders
            WHERE account_id = $1 AND idempotency_key = $2""",
        account_id,
        key,
    )


async def insert_order(db: Conn, values: dict[str, Any]) -> asyncpg.Record | None:
    """Insert our order (status pending); None if its idempotency key is already taken."""
    return await db.fetchrow(
        f"""INSERT INTO aitrader.orders
               (id, client_order_id, account_id, symbol, side, order_type, price, size, status,
                leverage, confidence, tool_call_id, pos_side, reduce_only, source,
                idempotency_key, exit_plan)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $12, $13, 'agent',
                    $14, $15)
            ON CONFLICT (account_id, idempotency_key) DO NOTHING
            RETURNING {_ORDER_COLUMNS}""",
        values["id"],
        values["id"].hex,
        values["account_id"],
        values["symbol"],
        values["side"],
        values["order_type"],
        values["price"],
        values["size"],
        values["leverage"],
        values["confidence"],
        values["tool_call_id"],
        values["pos_side"],
        values["reduce_only"],
        values["idempotency_key"],
        values["exit_plan"],
    )


async def mark_submitted(db: Conn, order_id: UUID, exchange_order_id: str | None) -> None:
    # The fill may have been folded already (status filled): only a pending order moves.
    await db.execute(
        """UPDATE aitrader.orders SET
               exchange_order_id = COALESCE(exchange_order_id, $2),
               status = CASE WHEN status = 'pending' THEN 'submitted' ELSE status END,
               updated_at = now()
           WHERE id = $1""",
        order_id,
        exchange_order_id,
    )


async def mark_not_placed(db: Conn, order_id: UUID, status: str, code: str, reason: str) -> None:
    await db.execute(
        """UPDATE aitrader.orders SET status = $2, reject_code = $3, reject_reason = $4,
               updated_at = now()
           WHERE id = $1 AND status = 'pending'""",
        order_id,
        status,
        code,
        reason,
    )


async def fetch_order(db: Conn, order_id: UUID) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {_ORDER_COLUMNS} FROM aitrader.orders WHERE id = $1", order_id)


async def fetch_fills(db: Conn, order_id: UUID) -> list[views.Fill]:
    rows = await db.fetch(
        """SELECT exchange_trade_id AS trade_id, price, size, fee_usdt, "timestamp" AS time
           FROM aitrader.fills WHERE order_id = $1 ORDER BY "timestamp", exchange_trade_id""",
        order_id,
    )
    return [views.Fill(**dict(r)) for r in rows]


# ------------------------------------------------------------------------------ exit plans
async def lock_positions(conn: asyncpg.Connection, account_id: UUID, symbol: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT id, side, pos_side, exit_plan FROM aitrader.positions_open
               WHERE account_id = $1 AND symbol = $2 ORDER BY pos_side FOR UPDATE""",
            account_id,
            symbol,
        )
    )


async def save_exit_plan(
    conn: asyncpg.Connection,
    position: asyncpg.Record,
    account_id: UUID,
    symbol: str,
    plan: dict[str, Any],
    tool_call_id: UUID,
) -> None:
    await conn.execute(
        "UPDATE aitrader.positions_open SET exit_plan = $2, updated_at = now() WHERE id = $1",
        position["id"],
        plan,
    )
    await conn.execute(
        """INSERT INTO aitrader.exit_plan_history
               (account_id, symbol, pos_side, position_id, exit_plan, tool_call_id)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        account_id,
        symbol,
        position["pos_side"],
        position["id"],
        plan,
        tool_call_id,
    )


# ------------------------------------------------------------------------------ performance
async def fetch_performance(db: Conn, account_id: UUID, window: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT sharpe_ratio, win_rate, average_leverage, average_confidence, biggest_win_usdt,
                  biggest_loss_usdt, hold_ratio_long, hold_ratio_short, hold_ratio_flat,
                  closed_positions, realized_pnl_usdt, window_start, window_end, updated_at
           FROM aitrader.performance_snapshots WHERE account_id = $1 AND "window" = $2""",
        account_id,
        window,
    )


async def fetch_calibration(db: Conn, account_id: UUID, window: str) -> list[views.CalibrationBucket]:
    rows = await db.fetch(
        """SELECT bucket, closed_positions, win_rate, mean_pnl_usdt
           FROM aitrader.confidence_calibration WHERE account_id = $1 AND "window" = $2
           ORDER BY split_part(bucket, '-', 1)::int""",
        account_id,
        window,
    )
    return [views.CalibrationBucket(**dict(r)) for r in rows]


def newest(times: list[datetime | None]) -> datetime | None:
    present = [t for t in times if t is not None]
    return max(present) if present else None
