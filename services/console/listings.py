"""The lists of the console API: their tables, columns, sort and filters (docs/console.md)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from services.console.figures import return_join, since
from services.console.repository import Listing
from shared.money import average_confidence

# Accounts sort by creation; open positions by opening (a row without one sorts as 1970).
ACCOUNTS = Listing(
    name="accounts",
    source="aitrader.accounts a JOIN aitrader.account_equity_now e ON e.account_id = a.id "
    + return_join("a.id", since("all_time")),
    columns="a.external_id, a.mode, a.status, a.created_at, a.last_reconciled_at, e.equity_usdt, "
    "e.unrealized_pnl_usdt, e.open_positions, e.balance_as_of, r.return_pct",
    owner="a.id",
    time="a.created_at",
    row_id="a.id",
    filters={"status": "a.status", "mode": "a.mode"},
)


def _open_position(row: asyncpg.Record) -> dict[str, Any]:
    shaped = dict(row)
    weights, quantity = row["confidence_weight_sum"], row["confidence_quantity"]
    shaped["average_confidence"] = average_confidence(weights, quantity)
    return shaped


OPEN_POSITIONS = Listing(
    name="positions_open",
    source="aitrader.positions_valued p",
    columns="p.id, p.symbol, p.side, p.pos_side, p.quantity, p.avg_entry_price, p.mark_price, "
    "p.unrealized_pnl_usdt, p.notional_usdt, p.leverage, p.margin_usdt, p.liquidation_price, "
    "p.confidence_weight_sum, p.confidence_quantity, p.exit_plan, p.opened_at, p.updated_at, "
    "aitrader.stop_loss_resting(p.account_id, p.symbol, p.pos_side, p.side, p.opened_at) "
    "AS stop_loss_resting",
    owner="p.account_id",
    time="COALESCE(p.opened_at, 'epoch'::timestamptz)",
    row_id="p.id",
    filters={"symbol": "p.symbol", "side": "p.side"},
    shape=_open_position,
)

CLOSED_POSITIONS = Listing(
    name="positions_closed",
    source="aitrader.positions_closed c",
    columns="c.id, c.symbol, c.side, c.pos_side, c.quantity, c.entry_price, c.exit_price, "
    "c.realized_pnl_usdt, c.gross_pnl_usdt, c.fee_usdt, c.funding_usdt, c.holding_minutes, "
    "c.average_confidence, c.leverage, c.fill_count, c.exit_reason, c.exit_plan, "
    "c.entry_time, c.exit_time",
    owner="c.account_id",
    time="c.exit_time",
    row_id="c.id",
    filters={"symbol": "c.symbol", "side": "c.side", "exit_reason": "c.exit_reason"},
)

ORDERS = Listing(
    name="orders",
    source="aitrader.orders o",
    columns="o.id, o.symbol, o.side, o.pos_side, o.order_type, o.price, o.size, o.filled_size, "
    "o.avg_fill_price, o.status, o.leverage, o.confidence, o.reduce_only, o.source, o.category, "
    "o.exchange_order_id, o.client_order_id, o.algo_id, o.reject_code, o.reject_reason, "
    "o.exit_plan, o.tool_call_id, o.created_at, o.updated_at",
    owner="o.account_id",
    time="o.created_at",
    row_id="o.id",
    filters={"symbol": "o.symbol", "side": "o.side", "status": "o.status"},
)

FILLS = Listing(
    name="fills",
    source="aitrader.fills f",
    columns="f.id, f.order_id, f.symbol, f.side, f.pos_side, f.price, f.size, f.fee_usdt, f.fee_ccy, "
    "f.pnl_usdt, f.confidence, f.leverage, f.exec_type, f.category, f.exchange_trade_id, "
    'f.exchange_order_id, f."timestamp" AS time',
    owner="f.account_id",
    time='f."timestamp"',
    row_id="f.id",
    filters={"symbol": "f.symbol", "side": "f.side"},
)

TOOL_CALLS = Listing(
    name="mcp_tool_calls",
    source="aitrader.mcp_tool_calls t",
    columns="t.id, t.tool_name AS tool, t.status, t.latency_ms, t.error, t.transport, "
    "t.request_payload AS request, t.response_payload AS response, t.created_at",
    owner="t.account_id",
    time="t.created_at",
    row_id="t.id",
    filters={"tool": "t.tool_name", "status": "t.status"},
)


def _plan_price(value: object) -> Decimal | None:
    """A price of a stored plan (jsonb: a string or a number), None when absent or not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    return price if price.is_finite() else None


def _plan_version(row: asyncpg.Record) -> dict[str, Any]:
    shaped = dict(row)
    plan = shaped.pop("exit_plan")
    plan = plan if isinstance(plan, dict) else {}
    version, condition = plan.get("version"), plan.get("invalidation_condition")
    shaped["version"] = version if isinstance(version, int) and not isinstance(version, bool) else None
    shaped["take_profit"] = _plan_price(plan.get("take_profit"))
    shaped["stop_loss"] = _plan_price(plan.get("stop_loss"))
    shaped["invalidation_condition"] = condition if isinstance(condition, str) else None
    return shaped


EXIT_PLANS = Listing(
    name="exit_plan_history",
    source="aitrader.exit_plan_history h",
    columns="h.id, h.symbol, h.pos_side, h.position_id, h.exit_plan, h.algo_id, h.s_code, h.s_msg, "
    "h.created_at",
    owner="h.account_id",
    time="h.created_at",
    row_id="h.id",
    filters={"symbol": "h.symbol"},
    shape=_plan_version,
)

# The rate: the newest funding-rate observation of the symbol at or before the payment.
FUNDING = Listing(
    name="funding_payments",
    source="aitrader.funding_payments f LEFT JOIN LATERAL (SELECT fr.funding_rate FROM "
    'aitrader.funding_rates fr WHERE fr.symbol = f.symbol AND fr.as_of <= f."timestamp" '
    "ORDER BY fr.as_of DESC LIMIT 1) fr ON true",
    columns="f.id, f.symbol, f.pos_side, f.amount_usdt AS amount, fr.funding_rate AS rate, "
    'f.exchange_bill_id AS bill_id, f."timestamp" AS time',
    owner="f.account_id",
    time='f."timestamp"',
    row_id="f.id",
    filters={"symbol": "f.symbol"},
)

# The messages a consumer gave up, of the accounts they name (shared.consumer.account_named).
DEAD_LETTERS = Listing(
    name="dead_letters",
    source="aitrader.dead_letters d",
    columns="d.id, d.service, d.subject, d.reason, d.error_type, d.payload, d.headers, d.stream, "
    "d.stream_seq, d.created_at",
    owner="d.account_id",
    time="d.created_at",
    row_id="d.id",
    filters={"service": "d.service", "error_type": "d.error_type"},
)
