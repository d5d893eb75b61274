"""SQL of the fill ledger: fills, funding payments and positions, row <-> domain mapping.

Every function takes a connection that the caller holds inside a transaction. Trade and bill
ids are compared with COLLATE "C" so that PostgreSQL sorts them exactly as Python does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from services.positions.domain import (
    ClosedPosition,
    Entry,
    EntryKey,
    FundingEntry,
    LedgerFill,
    Position,
)
from shared.instruments import SPEC_COLUMNS, InstrumentSpec

Slot = tuple[UUID, str, str]  # (account_id, symbol, pos_side)

# Fold columns and their types (for unnest: one statement per batch, not one per row).
OPEN_TYPES = {
    "side": "text", "quantity": "numeric", "avg_entry_price": "numeric", "leverage": "numeric",
    "opened_at": "timestamptz", "opened_quantity": "numeric", "opened_value": "numeric",
    "closed_quantity": "numeric", "closed_value": "numeric", "realized_gross_usdt": "numeric",
    "fees_usdt": "numeric", "funding_usdt": "numeric", "confidence_weight_sum": "numeric",
    "confidence_quantity": "numeric", "fill_count": "int", "last_fill_time": "timestamptz",
    "last_trade_id": "text",
}
CLOSED_TYPES = {
    "side": "text", "quantity": "numeric", "entry_price": "numeric", "exit_price": "numeric",
    "realized_pnl_usdt": "numeric", "gross_pnl_usdt": "numeric", "fee_usdt": "numeric",
    "funding_usdt": "numeric", "holding_minutes": "numeric", "average_confidence": "numeric",
    "entry_time": "timestamptz", "exit_time": "timestamptz", "exit_reason": "text",
    "leverage": "numeric", "fill_count": "int", "closing_trade_id": "text",
}
OPEN_COLUMNS = tuple(OPEN_TYPES)
_OPEN_SELECT = ", ".join(f"p.{c}" for c in OPEN_COLUMNS)  # only what the fold needs: less to decode
CLOSED_COLUMNS = tuple(CLOSED_TYPES)


def _slot_arrays(slots: Iterable[Slot]) -> tuple[list[UUID], list[str], list[str]]:
    accounts, symbols, pos_sides = [], [], []
    for account_id, symbol, pos_side in slots:
        accounts.append(account_id)
        symbols.append(symbol)
        pos_sides.append(pos_side)
    return accounts, symbols, pos_sides


async def load_instruments(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, InstrumentSpec]:
    """Contract values of every instrument the ingest service has loaded."""
    rows = await conn.fetch(f"SELECT {SPEC_COLUMNS} FROM aitrader.instruments")
    return {r["symbol"]: InstrumentSpec(**dict(r)) for r in rows}


async def lock_accounts(conn: asyncpg.Connection, ids: Iterable[UUID]) -> dict[UUID, str]:
    """Lock these accounts' ledgers until commit (another instance, a repair) and return the
    mode of each one that exists. Locks are taken in id order everywhere: no deadlock."""
    rows = await conn.fetch(
        """SELECT id, mode, pg_advisory_xact_lock(hashtextextended('positions:' || id::text, 0))
           FROM (SELECT id, mode FROM aitrader.accounts WHERE id = ANY($1::uuid[]) ORDER BY id
                 OFFSET 0) AS a""",  # OFFSET 0: sorted before the locks are taken
        list(set(ids)),
    )
    return {r["id"]: r["mode"] for r in rows}


async def slot_state(
    conn: asyncpg.Connection, slots: Sequence[Slot]
) -> tuple[dict[Slot, EntryKey], dict[Slot, Position]]:
    """For each slot: the fold key of its last stored entry (fill or funding), and its open
    position — read in one round trip, before this batch's entries are stored."""
    rows = await conn.fetch(
        f"""SELECT k.a, k.s, k.p, f.ts AS fill_ts, f.tid, g.ts AS fund_ts, g.bid,
                   o.exit_plan, {", ".join(f"o.{c}" for c in OPEN_COLUMNS)}
            FROM unnest($1::uuid[], $2::text[], $3::text[]) AS k(a, s, p)
            LEFT JOIN LATERAL (
                SELECT "timestamp" AS ts, exchange_trade_id AS tid FROM aitrader.fills
                WHERE account_id = k.a AND symbol = k.s AND pos_side = k.p
                ORDER BY "timestamp" DESC, exchange_trade_id COLLATE "C" DESC LIMIT 1) f ON true
            LEFT JOIN LATERAL (
                SELECT "timestamp" AS ts, exchange_bill_id AS bid FROM aitrader.funding_payments
                WHERE account_id = k.a AND symbol = k.s AND pos_side = k.p
                ORDER BY "timestamp" DESC, exchange_bill_id COLLATE "C" DESC LIMIT 1) g ON true
            LEFT JOIN aitrader.positions_open o
              ON o.account_id = k.a AND o.symbol = k.s AND o.pos_side = k.p""",
        *_slot_arrays(slots),
    )
    keys: dict[Slot, EntryKey] = {}
    opens: dict[Slot, Position] = {}
    for r in rows:
        slot = (r["a"], r["s"], r["p"])
        found = [(r["fill_ts"], 1, r["tid"])] if r["tid"] is not None else []
        if r["bid"] is not None:
            found.append((r["fund_ts"], 0, r["bid"]))
        if found:
            keys[slot] = max(found)
        if r["side"] is not None:
            opens[slot] = Position(pos_side=r["p"], exit_plan=r["exit_plan"],
                                   **{name: r[name] for name in OPEN_COLUMNS})
    return keys, opens


# Many fills are staged with binary COPY and inserted with one INSERT ... SELECT: encoding 19
# array parameters for `unnest` costs more client CPU than the insert itself. The staging
# table lives in the session (created on first use) and is emptied at every commit. A few
# fills go in with one INSERT over `unnest` arrays (one round trip instead of three).
_FILL_TYPES = {
    "id": "uuid", "account_id": "uuid", "order_id": "uuid", "symbol": "text", "side": "text",
    "price": "numeric", "size": "numeric", "fee_usdt": "numeric", "pnl_usdt": "numeric",
    "confidence": "numeric", "timestamp": "timestamptz", "exchange_trade_id": "text",
    "exchange_order_id": "text", "pos_side": "text", "exec_type": "text", "category": "text",
    "fee_ccy": "text", "leverage": "numeric", "raw_payload": "text",  # cast to jsonb on insert
}
FILL_COLUMNS = tuple(_FILL_TYPES)
_FILL_NAMES = ", ".join(f'"{c}"' for c in FILL_COLUMNS)
_STAGE_FILLS = f"""CREATE TEMP TABLE IF NOT EXISTS positions_fills_in (
    {", ".join(f'"{c}" {t}' for c, t in _FILL_TYPES.items())}
) ON COMMIT DELETE ROWS"""


def _insert_fills_from(source: str) -> str:
    return f"""INSERT INTO aitrader.fills ({_FILL_NAMES})
    SELECT {_FILL_NAMES.replace('"raw_payload"', '"raw_payload"::jsonb')}
    FROM {source}
    ON CONFLICT (account_id, symbol, exchange_trade_id) DO NOTHING
    RETURNING account_id, symbol, exchange_trade_id"""


_INSERT_STAGED_FILLS = _insert_fills_from("pg_temp.positions_fills_in")
_INSERT_FILL_ARRAYS = _insert_fills_from(
    f"unnest({', '.join(f'${i}::{t}[]' for i, t in enumerate(_FILL_TYPES.values(), start=1))})"
    f" AS u({_FILL_NAMES})"
)
# Below this many fills, one INSERT with array parameters: one round trip instead of three
# (create-if-missing, COPY, INSERT), which is what a steady trickle of small batches pays for.
STAGE_MIN_ROWS = 64


async def insert_fills(
    conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]
) -> set[tuple[UUID, str, str]]:
    """Insert fill rows (in FILL_COLUMNS order); returns the (account, symbol, trade id) of
    those that were new."""
    if not rows:
        return set()
    if len(rows) < STAGE_MIN_ROWS:
        inserted = await conn.fetch(_INSERT_FILL_ARRAYS, *[list(c) for c in zip(*rows, strict=True)])
    else:
        await conn.execute(_STAGE_FILLS)
        await conn.copy_records_to_table(
            "positions_fills_in", schema_name="pg_temp", columns=FILL_COLUMNS, records=rows
        )
        inserted = await conn.fetch(_INSERT_STAGED_FILLS)
    return {(r[0], r[1], r[2]) for r in inserted}


async def insert_funding(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> set[tuple[UUID, str]]:
    """Insert funding payments; returns the (account, bill id) of those that were new."""
    if not rows:
        return set()
    columns = list(zip(*rows, strict=True))
    inserted = await conn.fetch(
        """INSERT INTO aitrader.funding_payments
               (account_id, symbol, pos_side, amount_usdt, exchange_bill_id, "timestamp", raw_payload)
           SELECT a, s, p, amt, bid, ts, raw::jsonb
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::text[],
                       $6::timestamptz[], $7::text[]) AS u(a, s, p, amt, bid, ts, raw)
           ON CONFLICT (account_id, exchange_bill_id) DO NOTHING
           RETURNING account_id, exchange_bill_id""",
        *[list(c) for c in columns],
    )
    return {(r["account_id"], r["exchange_bill_id"]) for r in inserted}


async def load_open(conn: asyncpg.Connection, slots: Sequence[Slot]) -> dict[Slot, Position]:
    """The open positions of these slots (the account lock keeps other ledger writers out)."""
    if not slots:
        return {}
    rows = await conn.fetch(
        f"""SELECT p.account_id, p.symbol, p.pos_side, p.exit_plan, {_OPEN_SELECT}
            FROM aitrader.positions_open p
            JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS k(a, s, ps)
              ON p.account_id = k.a AND p.symbol = k.s AND p.pos_side = k.ps""",
        *_slot_arrays(slots),
    )
    return {(r["account_id"], r["symbol"], r["pos_side"]): position_from_row(r) for r in rows}


def position_from_row(row: asyncpg.Record) -> Position:
    exit_plan = row["exit_plan"]
    return Position(pos_side=row["pos_side"], exit_plan=exit_plan,
                    **{name: row[name] for name in OPEN_COLUMNS})


def closed_from_row(row: asyncpg.Record) -> ClosedPosition:
    return ClosedPosition(pos_side=row["pos_side"], exit_plan=row["exit_plan"],
                          **{name: row[name] for name in CLOSED_COLUMNS})


async def load_closed(conn: asyncpg.Connection, slot: Slot) -> list[ClosedPosition]:
    rows = await conn.fetch(
        """SELECT * FROM aitrader.positions_closed
           WHERE account_id = $1 AND symbol = $2 AND pos_side = $3""",
        *slot,
    )
    return [closed_from_row(r) for r in rows]


async def load_entries(conn: asyncpg.Connection | asyncpg.Pool, slot: Slot) -> list[Entry]:
    """Every stored fill (with what it inherits from its order) and funding payment of a slot."""
    fills = await conn.fetch(
        """SELECT f.exchange_trade_id, f."timestamp", f.side, f.pos_side, f.price, f.size,
                  f.fee_usdt, f.confidence, f.leverage, f.category,
                  o.tool_call_id IS NOT NULL AS by_agent, o.exit_plan
           FROM aitrader.fills f JOIN aitrader.orders o ON o.id = f.order_id
           WHERE f.account_id = $1 AND f.symbol = $2 AND f.pos_side = $3""",
        *slot,
    )
    funding = await conn.fetch(
        """SELECT exchange_bill_id, "timestamp", pos_side, amount_usdt
           FROM aitrader.funding_payments
           WHERE account_id = $1 AND symbol = $2 AND pos_side = $3""",
        *slot,
    )
    entries: list[Entry] = [
        LedgerFill(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])
        for r in fills
    ]
    entries.extend(FundingEntry(r[0], r[1], r[2], r[3]) for r in funding)
    return entries


async def delete_open(conn: asyncpg.Connection, slots: Sequence[Slot]) -> dict[Slot, Any]:
    """Delete open rows; returns each deleted row's exit plan as it was at that instant
    (`update_exit_plan` may have changed it since the row was read)."""
    if not slots:
        return {}
    rows = await conn.fetch(
        """DELETE FROM aitrader.positions_open p
           USING unnest($1::uuid[], $2::text[], $3::text[]) AS k(a, s, ps)
           WHERE p.account_id = k.a AND p.symbol = k.s AND p.pos_side = k.ps
           RETURNING p.account_id, p.symbol, p.pos_side, p.exit_plan""",
        *_slot_arrays(slots),
    )
    return {(r[0], r[1], r[2]): r[3] for r in rows}


def _unnest(types: dict[str, str], first: int) -> str:
    return ", ".join(f"${i}::{t}[]" for i, t in enumerate(types.values(), start=first))


async def upsert_open(conn: asyncpg.Connection, rows: Sequence[tuple[Slot, Position]]) -> None:
    """Write open positions; a row that already exists keeps its id and its exit_plan."""
    if not rows:
        return
    names = ", ".join(OPEN_COLUMNS)
    updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in OPEN_COLUMNS)
    plan = len(OPEN_COLUMNS) + 4
    await conn.execute(
        f"""INSERT INTO aitrader.positions_open (account_id, symbol, pos_side, {names}, exit_plan)
            SELECT account_id, symbol, pos_side, {names}, COALESCE(p::jsonb, '{{}}'::jsonb)
            FROM unnest($1::uuid[], $2::text[], $3::text[], {_unnest(OPEN_TYPES, 4)},
                        ${plan}::text[]) AS u(account_id, symbol, pos_side, {names}, p)
            ON CONFLICT (account_id, symbol, pos_side)
            DO UPDATE SET {updates}, updated_at = now()""",
        *_slot_arrays(slot for slot, _ in rows),
        *([getattr(p, n) for _, p in rows] for n in OPEN_COLUMNS),
        [_json(p.exit_plan) for _, p in rows],
    )


async def upsert_closed(conn: asyncpg.Connection, rows: Sequence[tuple[Slot, ClosedPosition]]) -> None:
    """Write closed positions, keyed by their closing trade (a refold rewrites them in place)."""
    if not rows:
        return
    names = ", ".join(CLOSED_COLUMNS)
    updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in (*CLOSED_COLUMNS, "exit_plan"))
    plan = len(CLOSED_COLUMNS) + 4
    await conn.execute(
        f"""INSERT INTO aitrader.positions_closed
                (account_id, symbol, pos_side, {names}, exit_plan)
            SELECT account_id, symbol, pos_side, {names}, p::jsonb
            FROM unnest($1::uuid[], $2::text[], $3::text[], {_unnest(CLOSED_TYPES, 4)},
                        ${plan}::text[]) AS u(account_id, symbol, pos_side, {names}, p)
            ON CONFLICT (account_id, symbol, pos_side, closing_trade_id)
            DO UPDATE SET {updates}""",
        *_slot_arrays(slot for slot, _ in rows),
        *([getattr(c, n) for _, c in rows] for n in CLOSED_COLUMNS),
        [_json(c.exit_plan) for _, c in rows],
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), default=str)


async def delete_closed_except(conn: asyncpg.Connection, slot: Slot, keep: Sequence[str]) -> None:
    """Remove closed rows of a slot that a refold no longer produces."""
    await conn.execute(
        """DELETE FROM aitrader.positions_closed
           WHERE account_id = $1 AND symbol = $2 AND pos_side = $3
             AND NOT (closing_trade_id = ANY($4::text[]))""",
        *slot, list(keep),
    )


async def slots_of(conn: asyncpg.Connection | asyncpg.Pool, account_ids: Sequence[UUID]) -> list[Slot]:
    """Every slot with a fill, a funding payment or a position row, for these accounts."""
    rows = await conn.fetch(
        """SELECT DISTINCT account_id, symbol, pos_side FROM (
               SELECT account_id, symbol, pos_side FROM aitrader.fills
               UNION SELECT account_id, symbol, pos_side FROM aitrader.funding_payments
               UNION SELECT account_id, symbol, pos_side FROM aitrader.positions_open
               UNION SELECT account_id, symbol, pos_side FROM aitrader.positions_closed) s
           WHERE account_id = ANY($1::uuid[])
           ORDER BY account_id, symbol, pos_side""",
        list(account_ids),
    )
    return [(r[0], r[1], r[2]) for r in rows]

