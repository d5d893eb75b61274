"""SQL for what surrounds the ledger: orders (and linking fills to them), balance snapshots,
and the exchange's view of open positions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from shared.messages import Balance, ExchangePosition, Fill, OrderUpdate
from shared.money import Q2, quantize_opt

# OKX order state -> orders.status; a later state never goes back to an earlier one.
STATUS = {"live": "open", "mmp_canceled": "canceled"}
RANK = {"open": 1, "partially_filled": 2, "filled": 3, "canceled": 3}
_RANK_SQL = (
    "(CASE o.status WHEN 'open' THEN 1 WHEN 'partially_filled' THEN 2"
    " WHEN 'filled' THEN 3 WHEN 'canceled' THEN 3 ELSE 0 END)"
)
_LINK_COLUMNS = (
    "o.id, o.account_id, o.exchange_order_id, o.confidence, o.leverage,"
    " o.tool_call_id IS NOT NULL AS by_agent, o.exit_plan"
)


@dataclass(frozen=True, slots=True)
class OrderLink:
    """What a fill inherits from its order."""

    order_id: UUID
    confidence: Decimal | None
    leverage: Decimal | None
    by_agent: bool
    exit_plan: dict[str, Any] | None


def own_order_id(cl_ord_id: str | None) -> UUID | None:
    """Our orders.id when an OKX clOrdId is one (32 hex chars), else None."""
    if cl_ord_id is None or len(cl_ord_id) != 32:
        return None
    try:
        return UUID(hex=cl_ord_id)
    except ValueError:
        return None


def _link(row: asyncpg.Record) -> OrderLink:
    return OrderLink(row["id"], row["confidence"], row["leverage"], row["by_agent"], row["exit_plan"])


async def link_fills(conn: asyncpg.Connection, fills: Sequence[Fill]) -> dict[tuple[UUID, str], OrderLink]:
    """The order of every fill, keyed by (account, OKX ordId); unknown orders get a row."""
    links: dict[tuple[UUID, str], OrderLink] = {}
    own_ids = [own_order_id(f.cl_ord_id) for f in fills]  # parsed once per fill
    own = {oid for oid in own_ids if oid is not None}
    learned: dict[UUID, str] = {}
    if own:
        # A join on unnest (not `= ANY`): index lookups however many orders the table holds.
        rows = await conn.fetch(
            f"""SELECT {_LINK_COLUMNS} FROM unnest($1::uuid[]) AS k(id)
                JOIN aitrader.orders o ON o.id = k.id""",
            list(own),
        )
        by_id = {r["id"]: r for r in rows}
        for fill, oid in zip(fills, own_ids, strict=True):
            row = by_id.get(oid)
            if row is not None and row["account_id"] == fill.account_id:
                links[(fill.account_id, fill.ord_id)] = _link(row)
                if row["exchange_order_id"] is None:
                    learned[row["id"]] = fill.ord_id
    if learned:
        await conn.executemany(
            """UPDATE aitrader.orders SET exchange_order_id = $2, updated_at = now()
               WHERE id = $1 AND exchange_order_id IS NULL""",
            list(learned.items()),
        )
    rest = {(f.account_id, f.ord_id): f for f in fills if (f.account_id, f.ord_id) not in links}
    if rest:
        links.update(await _by_exchange_id(conn, list(rest)))
        missing = [f for key, f in rest.items() if key not in links]
        if missing:
            links.update(await _create_external(conn, missing))
    return links


async def _by_exchange_id(
    conn: asyncpg.Connection, keys: list[tuple[UUID, str]]
) -> dict[tuple[UUID, str], OrderLink]:
    rows = await conn.fetch(
        f"""SELECT {_LINK_COLUMNS} FROM aitrader.orders o
            JOIN unnest($1::uuid[], $2::text[]) AS k(a, x)
              ON o.account_id = k.a AND o.exchange_order_id = k.x""",
        [a for a, _ in keys], [x for _, x in keys],
    )
    return {(r["account_id"], r["exchange_order_id"]): _link(r) for r in rows}


async def _create_external(conn: asyncpg.Connection, fills: list[Fill]) -> dict[tuple[UUID, str], OrderLink]:
    # Placed outside the product (OKX app, liquidation engine): no tool call, no confidence.
    # Size and status are provisional until the order's own update arrives.
    rows = await conn.fetch(
        f"""INSERT INTO aitrader.orders AS o
                (account_id, symbol, side, order_type, size, filled_size, status, leverage,
                 exchange_order_id, pos_side, reduce_only, category, source, raw_payload)
            SELECT a, s, sd, ot, sz, sz, 'partially_filled', lev, x, ps, ro, cat, 'external',
                   jsonb_build_object('cl_ord_id', cl, 'created_from', 'fill')
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                        $6::numeric[], $7::text[], $8::text[], $9::bool[], $10::text[], $11::text[])
                 AS u(a, s, sd, ot, sz, lev, x, ps, ro, cat, cl)
            ON CONFLICT (account_id, exchange_order_id) DO UPDATE SET updated_at = o.updated_at
            RETURNING {_LINK_COLUMNS}""",
        [f.account_id for f in fills], [f.inst_id for f in fills], [f.side for f in fills],
        [f.ord_type or "unknown" for f in fills], [f.fill_sz for f in fills],
        [quantize_opt(f.lever, Q2) for f in fills], [f.ord_id for f in fills],
        [f.pos_side for f in fills], [bool(f.reduce_only) for f in fills],
        [f.category for f in fills], [f.cl_ord_id for f in fills],
    )
    return {(r["account_id"], r["exchange_order_id"]): _link(r) for r in rows}


_ORDER_UPSERT = f"""
WITH ours AS (
    UPDATE aitrader.orders o SET
        exchange_order_id = COALESCE(o.exchange_order_id, $3::text),
        status = CASE WHEN $12::int >= {_RANK_SQL} THEN $11::text ELSE o.status END,
        filled_size = GREATEST(o.filled_size, $9::numeric),
        avg_fill_price = CASE WHEN $9::numeric >= o.filled_size
                              THEN COALESCE($10::numeric, o.avg_fill_price) ELSE o.avg_fill_price END,
        category = $14::text, pos_side = COALESCE(o.pos_side, $6::text), updated_at = now()
    WHERE o.id = $1::uuid AND o.account_id = $2::uuid
    RETURNING o.id
)
INSERT INTO aitrader.orders AS o
    (account_id, symbol, side, order_type, price, size, filled_size, avg_fill_price, status,
     leverage, exchange_order_id, pos_side, reduce_only, category, source, raw_payload, created_at)
SELECT $2::uuid, $4::text, $5::text, $7::text, $8::numeric, $15::numeric, $9::numeric,
       $10::numeric, $11::text, $13::numeric, $3::text, $6::text, $16::bool, $14::text,
       'external', $17::text::jsonb, COALESCE($18::timestamptz, now())
WHERE NOT EXISTS (SELECT 1 FROM ours)
ON CONFLICT (account_id, exchange_order_id) DO UPDATE SET
    status = CASE WHEN $12::int >= {_RANK_SQL} THEN EXCLUDED.status ELSE o.status END,
    filled_size = GREATEST(o.filled_size, EXCLUDED.filled_size),
    avg_fill_price = CASE WHEN EXCLUDED.filled_size >= o.filled_size
                          THEN COALESCE(EXCLUDED.avg_fill_price, o.avg_fill_price)
                          ELSE o.avg_fill_price END,
    size = EXCLUDED.size, price = EXCLUDED.price, order_type = EXCLUDED.order_type,
    category = EXCLUDED.category, updated_at = now()
"""


async def upsert_orders(conn: asyncpg.Connection, updates: Sequence[tuple[OrderUpdate, str]]) -> None:
    """Apply order state changes (with their raw bodies); ours are found by clOrdId."""
    if not updates:
        return
    args = []
    for u, body in updates:
        status = STATUS.get(u.state, u.state)
        avg = u.avg_px if u.acc_fill_sz > 0 and u.avg_px else None
        args.append((
            own_order_id(u.cl_ord_id), u.account_id, u.ord_id, u.inst_id, u.side, u.pos_side,
            u.ord_type, u.px or None, u.acc_fill_sz, avg, status, RANK.get(status, 0),
            quantize_opt(u.lever, Q2), u.category, u.sz, u.reduce_only, body, u.created_time,
        ))
    await conn.executemany(_ORDER_UPSERT, args)


async def insert_balances(conn: asyncpg.Connection, balances: Sequence[tuple[Balance, str]]) -> None:
    """One snapshot per (account, exchange time); a repeated push changes nothing."""
    if balances:
        await conn.executemany(
            """INSERT INTO aitrader.balance_snapshots
                   (account_id, available_usdt, locked_usdt, cash_usdt, equity_usdt, source,
                    raw_payload, as_of)
               VALUES ($1, $2, $3, $4, $5, 'exchange', $6::text::jsonb, $7)
               ON CONFLICT (account_id, as_of) DO NOTHING""",
            [(b.account_id, b.avail_bal, b.frozen_bal, b.cash_bal, b.eq, body, b.ts_event)
             for b, body in balances],
        )


async def update_exchange_view(conn: asyncpg.Connection, positions: Sequence[ExchangePosition]) -> None:
    """Margin, liquidation and mark price, unrealized PnL: never the fold state."""
    if positions:
        await conn.executemany(
            """UPDATE aitrader.positions_open
               SET margin_usdt = $4, liquidation_price = $5, mark_price = $6,
                   unrealized_pnl_usdt = $7, updated_at = now()
               WHERE account_id = $1 AND symbol = $2 AND pos_side = $3""",
            [(p.account_id, p.inst_id, p.pos_side, p.margin, p.liq_px or None, p.mark_px, p.upl)
             for p in positions],
        )
