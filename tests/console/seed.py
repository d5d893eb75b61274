"""Rows of every table the console reads, for two accounts, and console tokens."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg

from shared.tokens import PREFIX_LEN, TOKEN_PREFIX, hash_token
from tests.factories import create_account, create_instruments

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CLOSED_COLUMNS = (
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


async def console_token(
    conn: asyncpg.Pool, accounts: list[UUID], scopes: tuple[str, ...] = ("console",), revoked: bool = False
) -> str:
    """A token bound to accounts[0] (api_tokens.account_id) and the others (token_accounts)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = await conn.fetchval(
        """INSERT INTO aitrader.api_tokens (account_id, token_hash, token_prefix, scopes, revoked_at)
           VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END) RETURNING id""",
        accounts[0],
        hash_token(token),
        token[:PREFIX_LEN],
        list(scopes),
        revoked,
    )
    await conn.executemany(
        "INSERT INTO aitrader.token_accounts (token_id, account_id) VALUES ($1, $2)",
        [(token_id, a) for a in accounts[1:]],
    )
    return token


def closed_record(
    account_id: UUID,
    exit_time: datetime,
    *,
    symbol: str = "BTC-USDT-SWAP",
    side: str = "long",
    exit_reason: str = "agent",
) -> tuple[object, ...]:
    return (
        uuid.uuid4(),
        account_id,
        symbol,
        side,
        "net",
        Decimal("1.5"),
        Decimal("50000"),
        Decimal("50100.1"),
        Decimal("0.12345678"),
        Decimal("1.5015"),
        Decimal("-0.00000001"),
        exit_reason,
        exit_time - timedelta(minutes=5),
        exit_time,
        secrets.token_hex(8),
    )


async def insert_closed(conn: asyncpg.Pool, records: list[tuple[object, ...]]) -> None:
    async with conn.acquire() as c:
        await c.copy_records_to_table(
            "positions_closed", schema_name="aitrader", records=records, columns=CLOSED_COLUMNS
        )


async def seed_account(pool: asyncpg.Pool, external_id: str) -> UUID:
    """An account with one row in every account-keyed table the console reads."""
    await create_instruments(pool)
    account = await create_account(pool, external_id)
    call = uuid.uuid4()
    await pool.execute(
        """INSERT INTO aitrader.mcp_tool_calls (id, account_id, tool_name, request_payload,
               response_payload, status, latency_ms, transport, created_at)
           VALUES ($1, $2, 'execute_trade', $3, $4, 'success', 12, 'http', $5)""",
        call,
        account,
        {"symbol": "BTC-USDT-SWAP"},
        {"ok": True},
        T0,
    )
    await pool.execute(
        """INSERT INTO aitrader.balance_snapshots (account_id, available_usdt, cash_usdt, as_of)
           VALUES ($1, 1000, 1000, $2)""",
        account,
        T0,
    )
    order = await pool.fetchval(
        """INSERT INTO aitrader.orders (account_id, symbol, side, order_type, size, status,
               tool_call_id, created_at, pos_side)
           VALUES ($1, 'BTC-USDT-SWAP', 'buy', 'market', 1, 'filled', $2, $3, 'net') RETURNING id""",
        account,
        call,
        T0,
    )
    await pool.execute(
        """INSERT INTO aitrader.fills (account_id, order_id, symbol, side, price, size, fee_usdt,
               "timestamp", exchange_trade_id)
           VALUES ($1, $2, 'BTC-USDT-SWAP', 'buy', 50000, 1, -0.25, $3, $4)""",
        account,
        order,
        T0,
        secrets.token_hex(4),
    )
    await pool.execute(
        """INSERT INTO aitrader.positions_open (account_id, symbol, side, quantity, avg_entry_price,
               opened_at, confidence_weight_sum, confidence_quantity)
           VALUES ($1, 'BTC-USDT-SWAP', 'long', 1, 50000, $2, 70, 1)""",
        account,
        T0,
    )
    await pool.execute(  # its stop-loss resting on the exchange (aitrader.stop_loss_resting)
        """INSERT INTO aitrader.algo_orders (account_id, symbol, pos_side, algo_id, ord_type, side, state,
               sz, sl_trigger_px, created_at, exchange_updated_at)
           VALUES ($1, 'BTC-USDT-SWAP', 'net', $2, 'conditional', 'sell', 'live', 0, 49000, $3, $3)""",
        account,
        secrets.token_hex(4),
        T0 + timedelta(minutes=1),
    )
    await insert_closed(pool, [closed_record(account, T0)])
    await pool.execute(
        """INSERT INTO aitrader.dead_letters (service, subject, reason, error_type, payload, account_id,
               created_at) VALUES ('positions', $1, 'bad fill', 'permanent', '{}', $2, $3)""",
        f"aitrader.account.{account}.fill.BTC-USDT-SWAP",
        account,
        T0,
    )
    await seed_views(pool, account)
    return account


async def seed_views(pool: asyncpg.Pool, account: UUID) -> None:
    """One row of each metrics table, an equity point (1000 at T0), an exit plan and a funding
    payment of the account."""
    await pool.execute(
        """INSERT INTO aitrader.equity_snapshots (account_id, equity, cash, net_position_value,
               unrealized_pnl, as_of) VALUES ($1, 1000, 1000, 0, 0, $2)""",
        account,
        T0,
    )
    await pool.execute(
        """INSERT INTO aitrader.performance_snapshots (account_id, "window", closed_positions,
               window_start, window_end) VALUES ($1, 'weekly', 0, $2, $2)""",
        account,
        T0,
    )
    await pool.execute(
        """INSERT INTO aitrader.confidence_calibration (account_id, "window", bucket, closed_positions)
           VALUES ($1, 'weekly', '0-50', 0)""",
        account,
    )
    await pool.execute(
        """INSERT INTO aitrader.exit_attribution (account_id, "window", exit_reason, closed_positions)
           VALUES ($1, 'weekly', 'agent', 0)""",
        account,
    )
    await pool.execute(
        """INSERT INTO aitrader.exit_plan_history (account_id, symbol, pos_side, exit_plan, created_at)
           VALUES ($1, 'BTC-USDT-SWAP', 'net', $2, $3)""",
        account,
        {"version": 1, "stop_loss": "49000"},
        T0,
    )
    await pool.execute(
        """INSERT INTO aitrader.funding_payments (account_id, symbol, amount_usdt, exchange_bill_id,
               "timestamp") VALUES ($1, 'BTC-USDT-SWAP', -0.05, $2, $3)""",
        account,
        secrets.token_hex(4),
        T0,
    )


async def seed_dashboard(pool: asyncpg.Pool, a: UUID, b: UUID) -> None:
    """What the dashboard's pages read beyond seed_account's rows: hourly equity points (A:
    12 points ending at -0.2 %, B: +5.23 %, so B ranks first), A's all_time performance with its
    exit attribution and calibration, and 80 three-minute BTC candles with indicators."""
    hours = [(a, T0 + timedelta(hours=h), Decimal(1000 + h * 7 - (h % 3) * 9)) for h in range(1, 12)]
    hours[-1] = (a, T0 + timedelta(hours=11), Decimal("998"))
    await pool.executemany(
        """INSERT INTO aitrader.equity_snapshots (account_id, equity, cash, net_position_value,
               unrealized_pnl, as_of) VALUES ($1, $3, $3, 0, 0, $2)""",
        [*hours, (b, T0 + timedelta(hours=1), Decimal("1052.3"))],
    )
    await pool.execute(
        """INSERT INTO aitrader.performance_snapshots (account_id, "window", sharpe_ratio, win_rate,
               average_leverage, average_confidence, biggest_win_usdt, biggest_loss_usdt,
               hold_ratio_long, hold_ratio_short, hold_ratio_flat, window_start, window_end,
               definitions_version, closed_positions, realized_pnl_usdt, max_drawdown_pct)
           VALUES ($1, 'all_time', 1.42, 0.55, 5, 70, 30.1, -12.4, 0.5, 0.2, 0.3, $2, $3, '3', 12, 52.3,
                   6.1147)""",  # the metrics service's figure for A's points (1063 -> 998)
        a,
        T0,
        T0 + timedelta(hours=12),
    )
    await pool.executemany(
        """INSERT INTO aitrader.exit_attribution (account_id, "window", exit_reason, closed_positions,
               realized_pnl_usdt) VALUES ($1, 'all_time', $2, $3, $4)""",
        [(a, "take_profit", 5, Decimal("70.2")), (a, "stop_loss", 4, Decimal("-30.5"))],
    )
    await pool.executemany(
        """INSERT INTO aitrader.confidence_calibration (account_id, "window", bucket, closed_positions,
               win_rate, mean_pnl_usdt) VALUES ($1, 'all_time', $2, $3, $4, $5)""",
        [(a, "50-70", 4, Decimal("0.5"), Decimal("1.2")), (a, "85-100", 8, Decimal("0.625"), Decimal("5.9"))],
    )
    await pool.executemany(
        """INSERT INTO aitrader.market_snapshots (symbol, timeframe, as_of, open, high, low, price,
               volume, ema20, ema50, macd, rsi7, rsi14)
           VALUES ('BTC-USDT-SWAP', '3m', $1, $2, $3, $4, $5, 12.5, $6, $7, 1.5, $8, $9)""",
        list(_candles(80)),
    )


def _candles(n: int) -> list[tuple[object, ...]]:
    """A deterministic wave of candles, oldest first (as_of, open, high, low, close, ema20, ema50,
    rsi7, rsi14)."""
    out, close = [], Decimal("50000")
    for i in range(n):
        open_, close = close, close + Decimal((i * 37) % 11 - 5) * 12
        high, low = max(open_, close) + 20, min(open_, close) - 20
        rsi7, rsi14 = Decimal(30 + (i * 7) % 40), Decimal(35 + (i * 3) % 30)
        out.append(
            (T0 + timedelta(minutes=3 * i), open_, high, low, close, close - 15, close - 40, rsi7, rsi14)
        )
    return out
