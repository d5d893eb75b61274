"""SQL of the gateway, and row -> view mapping. Reads are one indexed query each."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from services.mcp_gateway import exit_view, views
from services.mcp_gateway.projection import Projection
from services.mcp_gateway.rules import confidence_text
from shared.db import Executor, fetch_now
from shared.exchange_ids import id_order_sql
from shared.instruments import SPEC_COLUMNS, InstrumentSpec
from shared.types import PosMode

Conn: TypeAlias = Executor


async def fetch_instruments(db: Conn) -> list[InstrumentSpec]:
    rows = await db.fetch(f"SELECT {SPEC_COLUMNS} FROM aitrader.instruments")
    return [InstrumentSpec(**dict(r)) for r in rows]


# ------------------------------------------------------------------------------ account state
# The hot read tools get their values computed and formatted by PostgreSQL, as exact decimal
# text: `trim_scale(x)::text` is numeric_out (never rounds, never writes an exponent) without the
# trailing zeros of the column's scale, "0.01000000" -> "0.01": the text `shared.money.plain_decimal`
# writes. A value that is only shown is never decoded into a Decimal and formatted back in Python
# (asyncpg's numeric decoding and the per-value formatter were about a fifth of the gateway's CPU
# for get_account_state). The valuation itself (coin quantity, mark, unrealized PnL, notional,
# live equity) is the schema's: views `positions_valued` and `account_equity_now`.
def _text(sql: str) -> str:
    return f"trim_scale({sql})::text"


_POSITION = Projection(
    views.Position,
    {
        "symbol": "v.symbol",
        "side": "v.side",
        "pos_side": "v.pos_side",
        "contracts": _text("v.quantity"),
        "coin_quantity": _text("v.coin_quantity"),
        "base_asset": "v.base_asset",
        "entry_price": _text("v.avg_entry_price"),
        "mark_price": _text("v.mark_price"),
        "leverage": _text("v.leverage"),
        "margin_usdt": _text("v.margin_usdt"),
        "liquidation_price": _text("v.liquidation_price"),
        "unrealized_pnl_usdt": _text("v.unrealized_pnl_usdt"),
        "notional_usdt": _text("v.notional_usdt"),
        "opened_at": "v.opened_at",
        "updated_at": "v.updated_at",
    },
    filled=("exit_plan", "exit_orders", "confidence"),
    extra={
        "id": "v.id",
        "stored_exit_plan": "v.exit_plan::text",
        "confidence_weight_sum": "v.confidence_weight_sum::text",
        "confidence_quantity": "v.confidence_quantity::text",
        **exit_view.COLUMNS,
    },
)
# A position whose instrument is unknown has no coin quantity to show: it is not listed (its
# PnL, the exchange's figure if any, still counts in the account's equity). Each comes with what
# of its exit plan rests on the exchange (`exit_orders`).
_POSITION_SELECT = f"""
SELECT {_POSITION.select()}
FROM aitrader.positions_valued v
{exit_view.JOINS}
WHERE v.base_asset IS NOT NULL
"""

_ACCOUNT = Projection(
    views.AccountState,
    {
        "account": "e.external_id",
        "account_id": "e.account_id",
        "mode": "e.mode",
        "available_usdt": _text("e.available_usdt"),
        "locked_usdt": _text("e.locked_usdt"),
        "cash_usdt": _text("e.cash_usdt"),
        "equity_usdt": _text("e.equity_usdt"),
        "exchange_equity_usdt": _text("e.exchange_equity_usdt"),
        "balance_as_of": "e.balance_as_of",
    },
    filled=("positions", "performance", "reconciliation", "as_of"),
    extra={
        "last_reconciled_at": "(SELECT last_reconciled_at FROM aitrader.accounts WHERE id = e.account_id)",
        "open_discrepancies": """(SELECT json_agg(json_build_object(
            'kind', i.kind, 'subject', i.subject, 'exchange', i.expected, 'ledger', i.found,
            'since', i.first_seen_at) ORDER BY i.first_seen_at)
            FROM aitrader.reconciliation_issues i
            WHERE i.account_id = e.account_id AND i.resolved_at IS NULL)""",
    },
)
_PERFORMANCE = Projection(
    views.HeadlinePerformance,
    {
        "window": 'ps."window"',
        "realized_pnl_usdt": _text("ps.realized_pnl_usdt"),
        "closed_positions": "ps.closed_positions",
        "win_rate": _text("ps.win_rate"),
        "sharpe_ratio": _text("ps.sharpe_ratio"),
        "updated_at": "ps.updated_at",
    },
    prefix="perf_",
)

# One round trip: the account, its latest balance and live equity and its all-time figures
# (looked up once), repeated on every row of its open positions (one row with null position
# columns when there are none).
_ACCOUNT_STATE = f"""
WITH acct AS MATERIALIZED (
    SELECT {_ACCOUNT.select()},
           {_PERFORMANCE.select()}
    FROM aitrader.account_equity_now e
    LEFT JOIN aitrader.performance_snapshots ps
        ON ps.account_id = e.account_id AND ps."window" = 'all_time'
    WHERE e.account_id = $1
)
SELECT acct.*, pos.*
FROM acct
LEFT JOIN LATERAL ({_POSITION_SELECT} AND v.account_id = acct.account_id) pos ON true
ORDER BY pos.symbol, pos.pos_side
"""


def _plan(value: Any) -> views.ExitPlan | None:
    return views.ExitPlan.model_validate(value) if value else None


def _plan_doc(text: str | None) -> dict[str, Any] | None:
    """A stored exit plan (jsonb text) as `views.ExitPlan`'s JSON form, or None for no plan.
    Validated like any input: the column is plain jsonb, and a plan not in tidy form (numbers,
    extra keys) must not reach a client, nor a key the audit would have to mask."""
    if text is None or text in ("{}", "null"):
        return None
    return dict(_validated_plan(text))  # a copy: the cached one is shared


@functools.lru_cache(maxsize=4096)
def _validated_plan(text: str) -> dict[str, Any]:
    # Plans change rarely and repeat in every account-state call: validated once per text.
    return views.ExitPlan.model_validate_json(text).model_dump(mode="json")


# The same two sums repeat in every account-state call until the position trades again.
_confidence = functools.lru_cache(maxsize=4096)(confidence_text)


def position_doc(r: asyncpg.Record) -> views.Doc:
    """A position as `views.Position`'s JSON form, from a `_POSITION_SELECT` row."""
    doc = _POSITION.doc(r)
    doc["exit_plan"] = _plan_doc(r["stored_exit_plan"])
    doc["exit_orders"] = exit_view.exit_orders_doc(doc["exit_plan"], r)
    doc["confidence"] = _confidence(r["confidence_weight_sum"], r["confidence_quantity"])
    return doc


def account_doc(rows: list[asyncpg.Record], as_of: datetime) -> views.Doc:
    """The account as `views.AccountState`'s JSON form, from its `_ACCOUNT_STATE` rows."""
    row = rows[0]
    doc = _ACCOUNT.doc(row)
    doc["positions"] = [position_doc(r) for r in rows if r["id"] is not None]
    doc["performance"] = _PERFORMANCE.doc(row) if row[_PERFORMANCE.column("updated_at")] else None
    doc["reconciliation"] = reconciliation_doc(row["last_reconciled_at"],
                                               row["open_discrepancies"], as_of)
    doc["as_of"] = as_of
    return doc


# A book last compared longer ago than this is in doubt: three periods of ingest's
# reconciliation (AITRADER_INGEST_RECONCILE_S, 300 s by default) missed.
RECONCILED_WITHIN = timedelta(minutes=15)


def reconciliation_doc(last: datetime | None, open_issues: list[dict[str, Any]] | None,
                       now: datetime) -> dict[str, Any]:
    """`views.Reconciliation`'s JSON form: when last compared, and what is still open (the
    issues as the pool's json codec decoded them)."""
    found = open_issues or []
    for item in found:  # PostgreSQL's JSON text of a timestamptz: a datetime, like every other
        item["since"] = datetime.fromisoformat(item["since"])
    stale = last is None or now - last > RECONCILED_WITHIN
    return {"last_reconciled_at": last, "in_doubt": stale or bool(found), "open": found}


async def fetch_account_state(pool: asyncpg.Pool, account_id: UUID) -> list[asyncpg.Record]:
    """The account's rows (`_ACCOUNT_STATE`), one per open position; [] if it is unknown."""
    return await fetch_now(pool, _ACCOUNT_STATE, account_id)


async def fetch_position(db: Conn, position_id: UUID, account_id: UUID) -> views.Doc | None:
    sql = _POSITION_SELECT + "AND v.account_id = $1 AND v.id = $2"
    row = await db.fetchrow(sql, account_id, position_id)
    return position_doc(row) if row is not None else None


# ------------------------------------------------------------------------------ market data
_CANDLE = Projection(
    views.Candle,
    {
        "as_of": "s.as_of",
        "price": _text("s.price"),
        "ema20": _text("s.ema20"),
        "ema50": _text("s.ema50"),
        "macd": _text("s.macd"),
        "rsi7": _text("s.rsi7"),
        "rsi14": _text("s.rsi14"),
    },
    extra={
        "timeframe": "t.tf",
        "funding_rate": _text("s.funding_rate"),
        "open_interest": _text("s.open_interest"),
    },
)
_SNAPSHOTS = f"""
SELECT {_CANDLE.select()}
FROM unnest($2::text[]) AS t(tf)
CROSS JOIN LATERAL (
    SELECT as_of, price, ema20, ema50, macd, rsi7, rsi14, funding_rate, open_interest
    FROM aitrader.market_snapshots
    WHERE symbol = $1 AND timeframe = t.tf
    ORDER BY as_of DESC LIMIT $3
) s
"""


def candle_doc(r: asyncpg.Record) -> views.Doc:
    """A candle as `views.Candle`'s JSON form, from a `_SNAPSHOTS` row."""
    return _CANDLE.doc(r)


async def fetch_snapshots(
    pool: asyncpg.Pool, symbol: str, timeframes: list[str], limit: int
) -> list[asyncpg.Record]:
    """Newest first, per timeframe."""
    return await fetch_now(pool, _SNAPSHOTS, symbol, timeframes, limit)


async def fetch_trade_context(
    db: Conn, account_id: UUID, symbol: str
) -> tuple[PosMode | None, Decimal | None]:
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
        f"""SELECT exchange_trade_id AS trade_id, price, size, fee_usdt, "timestamp" AS time
           FROM aitrader.fills WHERE order_id = $1
           ORDER BY "timestamp", {id_order_sql("exchange_trade_id")}""",
        order_id,
    )
    return [views.Fill(**dict(r)) for r in rows]


# Exit plans: `exit_store`.


# ------------------------------------------------------------------------------ performance
async def fetch_performance(db: Conn, account_id: UUID, window: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT sharpe_ratio, win_rate, average_leverage, average_confidence, biggest_win_usdt,
                  biggest_loss_usdt, hold_ratio_long, hold_ratio_short, hold_ratio_flat,
                  closed_positions, realized_pnl_usdt, stop_loss_resting_ratio, max_drawdown_pct,
                  window_start, window_end, updated_at, definitions_version
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


async def fetch_exit_attribution(db: Conn, account_id: UUID, window: str) -> list[views.ExitAttribution]:
    """The window's exit reasons that closed a position, most positions first."""
    rows = await db.fetch(
        """SELECT exit_reason, closed_positions, realized_pnl_usdt
           FROM aitrader.exit_attribution
           WHERE account_id = $1 AND "window" = $2 AND closed_positions > 0
           ORDER BY closed_positions DESC, exit_reason""",
        account_id,
        window,
    )
    return [views.ExitAttribution(**dict(r)) for r in rows]


def newest(times: list[datetime | None]) -> datetime | None:
    present = [t for t in times if t is not None]
    return max(present) if present else None
