"""SQL of the fill ledger: fills, funding payments and positions, row <-> domain mapping.

Every function takes a connection that the caller holds inside a transaction. Trade and bill
ids are compared with COLLATE "C" so that PostgreSQL sorts them exactly as Python does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from services.positions.domain import (
    ClosedPosition,
    Entry,
    EntryKey,
    FundingEntry,
    Instrument,
    LedgerFill,
    Position,
)

Slot = tuple[UUID, str, str]  # (account_id, symbol, pos_side)

OPEN_COLUMNS = (
    "side", "quantity", "avg_entry_price", "leverage", "opened_at", "opened_quantity",
    "opened_value", "closed_quantity", "closed_value", "realized_gross_usdt", "fees_usdt",
    "funding_usdt", "confidence_weight_sum", "confidence_quantity", "fill_count",
    "last_fill_time", "last_trade_id",
)
CLOSED_COLUMNS = (
    "side", "quantity", "entry_price", "exit_price", "realized_pnl_usdt", "gross_pnl_usdt",
    "fee_usdt", "funding_usdt", "holding_minutes", "average_confidence", "entry_time",
    "exit_time", "exit_reason", "leverage", "fill_count", "closing_trade_id",
)


def _slot_arrays(slots: Iterable[Slot]) -> tuple[list[UUID], list[str], list[str]]:
    accounts, symbols, pos_sides = [], [], []
    for account_id, symbol, pos_side in slots:
        accounts.append(account_id)
        symbols.append(symbol)
        pos_sides.append(pos_side)
    return accounts, symbols, pos_sides


async def load_instruments(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, Instrument]:
    """Contract values of every instrument the ingest service has loaded."""
    rows = await conn.fetch("SELECT symbol, ct_val, ct_mult FROM aitrader.instruments")
    return {r["symbol"]: Instrument(r["symbol"], r["ct_val"], r["ct_mult"]) for r in rows}


async def account_modes(conn: asyncpg.Connection, ids: Iterable[UUID]) -> dict[UUID, str]:
    rows = await conn.fetch(
        "SELECT id, mode FROM aitrader.accounts WHERE id = ANY($1::uuid[])", list(set(ids))
    )
    return {r["id"]: r["mode"] for r in rows}


async def lock_accounts(conn: asyncpg.Connection, accounts: Iterable[UUID]) -> None:
    """Serialize ledger writers per account (a second instance, a repair) until commit."""
    keys = sorted({_lock_key(str(a)) for a in accounts})  # one order everywhere: no deadlock
    await conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", keys)


def _lock_key(text: str) -> int:
    digest = hashlib.blake2b(f"positions:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def last_keys(conn: asyncpg.Connection, slots: Sequence[Slot]) -> dict[Slot, EntryKey]:
    """The fold key of the last stored entry (fill or funding) of each slot that has one."""
    rows = await conn.fetch(
        """SELECT k.a, k.s, k.p, f.ts AS fill_ts, f.tid, g.ts AS fund_ts, g.bid
           FROM unnest($1::uuid[], $2::text[], $3::text[]) AS k(a, s, p)
           LEFT JOIN LATERAL (
               SELECT "timestamp" AS ts, exchange_trade_id AS tid FROM aitrader.fills
               WHERE account_id = k.a AND symbol = k.s AND pos_side = k.p
               ORDER BY "timestamp" DESC, exchange_trade_id COLLATE "C" DESC LIMIT 1) f ON true
           LEFT JOIN LATERAL (
               SELECT "timestamp" AS ts, exchange_bill_id AS bid FROM aitrader.funding_payments
               WHERE account_id = k.a AND symbol = k.s AND pos_side = k.p
               ORDER BY "timestamp" DESC, exchange_bill_id COLLATE "C" DESC LIMIT 1) g ON true""",
        *_slot_arrays(slots),
    )
    keys: dict[Slot, EntryKey] = {}
    for r in rows:
        found = [(r["fill_ts"], 1, r["tid"])] if r["tid"] is not None else []
        if r["bid"] is not None:
            found.append((r["fund_ts"], 0, r["bid"]))
        if found:
            keys[(r["a"], r["s"], r["p"])] = max(found)
    return keys


async def insert_fills(
    conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]
) -> set[tuple[UUID, str, str]]:
    """Insert fill rows; returns the (account, symbol, trade id) of those that were new."""
    if not rows:
        return set()
    columns = list(zip(*rows, strict=True))
    inserted = await conn.fetch(
        """INSERT INTO aitrader.fills
               (account_id, order_id, symbol, side, price, size, fee_usdt, pnl_usdt, confidence,
                "timestamp", exchange_trade_id, exchange_order_id, pos_side, exec_type, category,
                fee_ccy, leverage, raw_payload)
           SELECT a, o, s, sd, px, sz, fee, pnl, conf, ts, tid, oid, ps, et, cat, ccy, lev, raw::jsonb
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::numeric[],
                       $6::numeric[], $7::numeric[], $8::numeric[], $9::numeric[],
                       $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::text[],
                       $15::text[], $16::text[], $17::numeric[], $18::text[])
                AS u(a, o, s, sd, px, sz, fee, pnl, conf, ts, tid, oid, ps, et, cat, ccy, lev, raw)
           ON CONFLICT (account_id, symbol, exchange_trade_id) DO NOTHING
           RETURNING account_id, symbol, exchange_trade_id""",
        *[list(c) for c in columns],
    )
    return {(r["account_id"], r["symbol"], r["exchange_trade_id"]) for r in inserted}


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


async def load_open(
    conn: asyncpg.Connection, slots: Sequence[Slot], *, lock: bool = True
) -> dict[Slot, Position]:
    """The open positions of these slots, locked against `update_exit_plan` until commit."""
    if not slots:
        return {}
    rows = await conn.fetch(
        """SELECT p.* FROM aitrader.positions_open p
           JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS k(a, s, ps)
             ON p.account_id = k.a AND p.symbol = k.s AND p.pos_side = k.ps"""
        + (" FOR UPDATE OF p" if lock else ""),
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


async def delete_open(conn: asyncpg.Connection, slots: Sequence[Slot]) -> None:
    if slots:
        await conn.executemany(
            """DELETE FROM aitrader.positions_open
               WHERE account_id = $1 AND symbol = $2 AND pos_side = $3""",
            slots,
        )


async def upsert_open(conn: asyncpg.Connection, rows: Sequence[tuple[Slot, Position]]) -> None:
    """Write open positions; a row that already exists keeps its id and its exit_plan."""
    if not rows:
        return
    names = ", ".join(OPEN_COLUMNS)
    values = ", ".join(f"${i}" for i in range(4, 4 + len(OPEN_COLUMNS)))
    updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in OPEN_COLUMNS)
    plan = len(OPEN_COLUMNS) + 4
    await conn.executemany(
        f"""INSERT INTO aitrader.positions_open (account_id, symbol, pos_side, {names}, exit_plan)
            VALUES ($1, $2, $3, {values}, COALESCE(${plan}::jsonb, '{{}}'::jsonb))
            ON CONFLICT (account_id, symbol, pos_side)
            DO UPDATE SET {updates}, updated_at = now()""",
        [(*slot, *(getattr(p, n) for n in OPEN_COLUMNS), p.exit_plan) for slot, p in rows],
    )


async def upsert_closed(conn: asyncpg.Connection, rows: Sequence[tuple[Slot, ClosedPosition]]) -> None:
    """Write closed positions, keyed by their closing trade (a refold rewrites them in place)."""
    if not rows:
        return
    names = ", ".join(CLOSED_COLUMNS)
    values = ", ".join(f"${i}" for i in range(4, 4 + len(CLOSED_COLUMNS)))
    updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in (*CLOSED_COLUMNS, "exit_plan"))
    plan = len(CLOSED_COLUMNS) + 4
    await conn.executemany(
        f"""INSERT INTO aitrader.positions_closed
                (account_id, symbol, pos_side, {names}, exit_plan)
            VALUES ($1, $2, $3, {values}, ${plan}::jsonb)
            ON CONFLICT (account_id, symbol, pos_side, closing_trade_id)
            DO UPDATE SET {updates}""",
        [(*slot, *(getattr(c, n) for n in CLOSED_COLUMNS), c.exit_plan) for slot, c in rows],
    )


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

