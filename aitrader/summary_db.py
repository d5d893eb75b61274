"""The summary's figures the database keeps: closed trades, fees, funding, equity history."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from aitrader.summary import ClosedTrade, EquityPoint

_CLOSED = """
SELECT p.symbol, p.side, p.quantity AS contracts, p.entry_price, p.exit_price,
       p.realized_pnl_usdt AS net_pnl_usdt, p.fee_usdt, p.funding_usdt, p.holding_minutes,
       p.average_confidence AS confidence, p.exit_reason
FROM aitrader.positions_closed p JOIN aitrader.accounts a ON a.id = p.account_id
WHERE a.external_id = $1 ORDER BY p.exit_time
"""
# Every fill's fee and every funding payment of the account, open positions' included.
_COSTS = """
SELECT (SELECT COALESCE(sum(fee_usdt), 0) FROM aitrader.fills WHERE account_id = a.id) AS fees,
       (SELECT COALESCE(sum(amount_usdt), 0) FROM aitrader.funding_payments
        WHERE account_id = a.id) AS funding
FROM aitrader.accounts a WHERE a.external_id = $1
"""
# The metrics service's samples of the schema's live equity (on each position event, each minute).
_EQUITY = """
SELECT e.as_of, e.equity AS equity_usdt
FROM aitrader.equity_snapshots e JOIN aitrader.accounts a ON a.id = e.account_id
WHERE a.external_id = $1 ORDER BY e.as_of
"""


@dataclass(frozen=True)
class Stored:
    closed: list[ClosedTrade]
    fee_usdt: Decimal  # OKX sign: negative = paid
    funding_usdt: Decimal  # positive = received
    equity: list[EquityPoint]


async def read_stored(pool: asyncpg.Pool, external_id: str) -> Stored:
    """The account's stored figures (an unknown account has none)."""
    closed = [ClosedTrade(**r) for r in await pool.fetch(_CLOSED, external_id)]
    costs = await pool.fetchrow(_COSTS, external_id)
    equity = [EquityPoint(**r) for r in await pool.fetch(_EQUITY, external_id)]
    fees, funding = (costs["fees"], costs["funding"]) if costs else (Decimal(0), Decimal(0))
    return Stored(closed, fees, funding, equity)
