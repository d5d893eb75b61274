"""The ledger's store: every SQL statement of the positions service, run on one connection
that the caller holds inside a transaction.

Statements are built from the row types of `rows.py` (column lists, `unnest` parameters and
their types, `:field` placeholders numbered in field order), so a table's columns are named
once. Trade and bill ids are ordered by `shared.exchange_ids` (as integers), in SQL exactly as
the fold orders them in Python.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, get_type_hints
from uuid import UUID

import asyncpg

from services.positions.algo_rows import (
    ALGO_LEGS,
    FILL_ALGO_ID,
    ORPHAN_ALGOS,
    PATCH_EXIT_REASONS,
    UPSERT_ALGO,
    OrphanAlgo,
    algo_row,
    leg_sql,
)
from services.positions.domain import (
    ClosedPosition,
    Entry,
    EntryKey,
    FundingEntry,
    LedgerFill,
    Position,
)
from services.positions.events import Slot, SlotChange
from services.positions.inbound import Inbound
from services.positions.rows import (
    POSITION_FIELDS,
    RANK,
    BalanceRow,
    ClosedRow,
    ExchangeViewRow,
    ExternalOrderRow,
    FillRow,
    FundingRow,
    OpenRow,
    OrderLink,
    OrderUpdateRow,
    balance_row,
    closed_from_row,
    closed_row,
    column_types,
    exchange_view_row,
    external_order_row,
    fill_row,
    funding_entry,
    funding_row,
    json_columns,
    ledger_fill,
    open_row,
    order_link,
    order_update_row,
    own_order_id,
    position_from_row,
)
from shared.db import Connection
from shared.exchange_ids import id_key, id_order_sql
from shared.instruments import SPEC_COLUMNS, InstrumentSpec
from shared.messages import (
    AlgoOrderUpdate,
    Balance,
    ExchangePosition,
    FundingPayment,
    OrderUpdate,
)
from shared.types import AlgoLeg
from shared.wire import AnyFill

_PLACEHOLDER = re.compile(r"(?<![:\w]):(\w+)")


def _numbered(sql: str, row: type) -> str:
    """`:field` placeholders -> `$n`, n being the field's place in the row type."""
    place = {name: f"${n}" for n, name in enumerate(get_type_hints(row), start=1)}
    return _PLACEHOLDER.sub(lambda m: place[m.group(1)], sql)


def _names(row: type) -> str:
    return ", ".join(f'"{c}"' for c in column_types(row))


# Numeric values travel as text and PostgreSQL casts them: asyncpg's binary numeric encoder
# costs ~1.5 µs a value here, `str()` and a text parameter ~0.5 µs (a fill's row and its open
# position's row carry 5 + 12 of them). Exact both ways: `str(Decimal)` is its digits and
# exponent, which PostgreSQL's numeric input reads as written.
_TEXT_SENT = "numeric"


def _sent_type(pg_type: str) -> str:
    """How a column's values are sent (parameters, staging columns): numeric as text."""
    return "text" if pg_type == _TEXT_SENT else pg_type


def _selected(row: type) -> str:
    """The row's columns as read from `unnest` or the staging table, cast to their types."""
    json = json_columns(row)
    return ", ".join(f'"{c}"::jsonb' if c in json else f'"{c}"::{t}' if _sent_type(t) != t else f'"{c}"'
                     for c, t in column_types(row).items())


def _unnest(row: type) -> str:
    params = ", ".join(f"${n}::{_sent_type(t)}[]" for n, t in enumerate(column_types(row).values(), start=1))
    return f"unnest({params}) AS u({_names(row)})"


@functools.cache
def _text_sent(row: type) -> frozenset[int]:
    """The places of a row type's fields that are sent as text (its numeric columns)."""
    types = list(column_types(row).values())
    return frozenset(n for n, t in enumerate(types) if _sent_type(t) != t)


def _as_text(column: Iterable[Any]) -> list[Any]:
    return [None if value is None else str(value) for value in column]


def _arrays(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """The rows (of one row type) as one array per column, for `unnest`."""
    text = _text_sent(type(rows[0]))
    return [_as_text(column) if n in text else list(column)
            for n, column in enumerate(zip(*rows, strict=True))]


def _records(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows (of one row type) as COPY records into a staging table (`_sent_type` columns)."""
    columns = _arrays(rows)
    return list(zip(*columns, strict=True))


def _upsert(table: str, row: type, key: tuple[str, ...], keep: tuple[str, ...] = ()) -> str:
    """INSERT the rows of `unnest` arrays; on the key, update every other column but `keep`."""
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in column_types(row) if c not in key + keep)
    return f"""INSERT INTO aitrader.{table} ({_names(row)})
        SELECT {_selected(row)} FROM {_unnest(row)}
        ON CONFLICT ({", ".join(key)}) DO UPDATE SET {updates}"""


# Many fills are staged with binary COPY and inserted with one INSERT ... SELECT: encoding 19
# array parameters for `unnest` costs more client CPU than the insert itself. The staging
# table lives in the session (created on first use) and is emptied at every commit. Below
# STAGE_MIN_ROWS fills, one INSERT over `unnest` arrays: one round trip instead of three
# (create-if-missing, COPY, INSERT), which is what a steady trickle of small batches pays for.
STAGE_MIN_ROWS = 64
_STAGE_FILLS = f"""CREATE TEMP TABLE IF NOT EXISTS positions_fills_in (
    {", ".join(f'"{c}" {_sent_type(t)}' for c, t in column_types(FillRow).items())}
) ON COMMIT DELETE ROWS"""
# A trade already in the ledger is skipped, as ON CONFLICT DO NOTHING did before fills were
# partitioned (0018): its key lives in aitrader.fill_keys, whose trigger refuses a repeat. Two
# writers of one account never race here: they hold the account's lock (lock_accounts).
_INSERT_FILLS = """INSERT INTO aitrader.fills ({names}) SELECT {selected} FROM {source}
    WHERE NOT EXISTS (SELECT FROM aitrader.fill_keys k WHERE k.account_id = u.account_id
                      AND k.symbol = u.symbol AND k.exchange_trade_id = u.exchange_trade_id)
    RETURNING account_id, symbol, exchange_trade_id"""
_INSERT_STAGED_FILLS = _INSERT_FILLS.format(
    names=_names(FillRow), selected=_selected(FillRow), source="pg_temp.positions_fills_in AS u")
_INSERT_FILL_ARRAYS = _INSERT_FILLS.format(
    names=_names(FillRow), selected=_selected(FillRow), source=_unnest(FillRow))
_INSERT_FUNDING = f"""INSERT INTO aitrader.funding_payments ({_names(FundingRow)})
    SELECT {_selected(FundingRow)} FROM {_unnest(FundingRow)}
    ON CONFLICT (account_id, exchange_bill_id) DO NOTHING
    RETURNING account_id, exchange_bill_id"""
_UPSERT_OPEN = _upsert("positions_open", OpenRow, ("account_id", "symbol", "pos_side"),
                       keep=("exit_plan",)) + ", updated_at = now()"
_UPSERT_CLOSED = _upsert("positions_closed", ClosedRow,
                         ("account_id", "symbol", "pos_side", "closing_trade_id"))
_SLOT_STATE = f"""SELECT k.a, k.s, k.p, f.ts AS fill_ts, f.tid, g.ts AS fund_ts, g.bid,
           {", ".join(f"o.{c}" for c in POSITION_FIELDS)}
    FROM unnest($1::uuid[], $2::text[], $3::text[]) AS k(a, s, p)
    LEFT JOIN LATERAL (
        SELECT "timestamp" AS ts, exchange_trade_id AS tid FROM aitrader.fills
        WHERE account_id = k.a AND symbol = k.s AND pos_side = k.p
        ORDER BY "timestamp" DESC, {id_order_sql("exchange_trade_id", "DESC")} LIMIT 1) f ON true
    LEFT JOIN LATERAL (
        SELECT "timestamp" AS ts, exchange_bill_id AS bid FROM aitrader.funding_payments
        WHERE account_id = k.a AND symbol = k.s AND pos_side = k.p
        ORDER BY "timestamp" DESC, {id_order_sql("exchange_bill_id", "DESC")} LIMIT 1) g ON true
    LEFT JOIN aitrader.positions_open o
      ON o.account_id = k.a AND o.symbol = k.s AND o.pos_side = k.p"""
# The fields of LedgerFill and FundingEntry, by name: a refold sees what the batch folded (the
# algo leg as the algo's row says now: a leg learned since is what the patch wrote).
_LEDGER_FILLS = f"""SELECT f.exchange_trade_id AS trade_id, f."timestamp" AS time, f.side,
           f.pos_side, f.price, f.size, f.fee_usdt AS fee, f.confidence, f.leverage, f.category,
           o.tool_call_id IS NOT NULL AS by_agent, o.exit_plan, {leg_sql("a")} AS algo_leg
    FROM aitrader.fills f JOIN aitrader.orders o ON o.id = f.order_id
    LEFT JOIN aitrader.algo_orders a ON a.account_id = f.account_id AND a.algo_id = {FILL_ALGO_ID}
    WHERE f.account_id = $1 AND f.symbol = $2 AND f.pos_side = $3"""
_LEDGER_FUNDING = """SELECT exchange_bill_id AS bill_id, "timestamp" AS time, pos_side,
           amount_usdt AS amount
    FROM aitrader.funding_payments WHERE account_id = $1 AND symbol = $2 AND pos_side = $3"""

# orders.status never goes back to an earlier state: the rank of the stored one, in SQL.
_RANK_SQL = "(CASE o.status " + " ".join(f"WHEN '{s}' THEN {r}" for s, r in RANK.items()) + " ELSE 0 END)"
_LINK_COLUMNS = (
    "o.id, o.account_id, o.exchange_order_id, o.confidence, o.leverage,"
    " o.tool_call_id IS NOT NULL AS by_agent, o.exit_plan"
)
_UPSERT_ORDER = _numbered(f"""
WITH ours AS (
    UPDATE aitrader.orders o SET
        exchange_order_id = COALESCE(o.exchange_order_id, :exchange_order_id::text),
        status = CASE WHEN :status_rank::int >= {_RANK_SQL} THEN :status::text ELSE o.status END,
        filled_size = GREATEST(o.filled_size, :filled_size::numeric),
        avg_fill_price = CASE WHEN :filled_size::numeric >= o.filled_size
                              THEN COALESCE(:avg_fill_price::numeric, o.avg_fill_price)
                              ELSE o.avg_fill_price END,
        category = :category::text, pos_side = COALESCE(o.pos_side, :pos_side::text),
        algo_id = COALESCE(o.algo_id, :algo_id::text), updated_at = now()
    WHERE o.id = :id::uuid AND o.account_id = :account_id::uuid
    RETURNING o.id
)
INSERT INTO aitrader.orders AS o
    (account_id, symbol, side, order_type, price, size, filled_size, avg_fill_price, status,
     leverage, exchange_order_id, pos_side, reduce_only, category, source, raw_payload, created_at,
     algo_id)
SELECT :account_id::uuid, :symbol::text, :side::text, :order_type::text, :price::numeric,
       :size::numeric, :filled_size::numeric, :avg_fill_price::numeric, :status::text,
       :leverage::numeric, :exchange_order_id::text, :pos_side::text, :reduce_only::bool,
       :category::text, 'external', :raw_payload::text::jsonb,
       COALESCE(:created_at::timestamptz, now()), :algo_id::text
WHERE NOT EXISTS (SELECT 1 FROM ours)
ON CONFLICT (account_id, exchange_order_id) DO UPDATE SET
    status = CASE WHEN :status_rank::int >= {_RANK_SQL} THEN EXCLUDED.status ELSE o.status END,
    filled_size = GREATEST(o.filled_size, EXCLUDED.filled_size),
    avg_fill_price = CASE WHEN EXCLUDED.filled_size >= o.filled_size
                          THEN COALESCE(EXCLUDED.avg_fill_price, o.avg_fill_price)
                          ELSE o.avg_fill_price END,
    size = EXCLUDED.size, price = EXCLUDED.price, order_type = EXCLUDED.order_type,
    category = EXCLUDED.category, algo_id = COALESCE(o.algo_id, EXCLUDED.algo_id), updated_at = now()
""", OrderUpdateRow)
# Placed outside the product (OKX app, liquidation engine): no tool call, no confidence.
# Size and status are provisional until the order's own update arrives.
_INSERT_EXTERNAL_ORDERS = f"""INSERT INTO aitrader.orders AS o
        (account_id, symbol, side, order_type, size, filled_size, status, leverage,
         exchange_order_id, pos_side, reduce_only, category, source, raw_payload, algo_id)
    SELECT u.account_id, u.symbol, u.side, u.order_type, u.size::numeric, u.size::numeric,
           'partially_filled', u.leverage::numeric, u.exchange_order_id, u.pos_side, u.reduce_only,
           u.category, 'external',
           jsonb_build_object('cl_ord_id', u.cl_ord_id, 'created_from', 'fill'), u.algo_id
    FROM {_unnest(ExternalOrderRow)}
    ON CONFLICT (account_id, exchange_order_id) DO UPDATE SET updated_at = o.updated_at
    RETURNING {_LINK_COLUMNS}"""
_INSERT_BALANCE = _numbered("""INSERT INTO aitrader.balance_snapshots
        (account_id, available_usdt, locked_usdt, cash_usdt, equity_usdt, source, raw_payload,
         as_of)
    VALUES (:account_id, :available_usdt, :locked_usdt, :cash_usdt, :equity_usdt, 'exchange',
            :raw_payload::text::jsonb, :as_of)
    ON CONFLICT (account_id, as_of) DO NOTHING""", BalanceRow)
_UPDATE_EXCHANGE_VIEW = _numbered("""UPDATE aitrader.positions_open
    SET margin_usdt = :margin_usdt, liquidation_price = :liquidation_price,
        mark_price = :mark_price, unrealized_pnl_usdt = :unrealized_pnl_usdt, updated_at = now()
    WHERE account_id = :account_id AND symbol = :symbol AND pos_side = :pos_side""",
    ExchangeViewRow)


@dataclass(frozen=True, slots=True)
class StoredSlots:
    """What the ledger holds for some slots before a batch's entries are stored."""

    last_keys: dict[Slot, EntryKey]  # the fold key of each slot's last entry (fill or funding)
    open: dict[Slot, Position]


def _slot(row: asyncpg.Record) -> Slot:
    return Slot(row["account_id"], row["symbol"], row["pos_side"])


def _slot_arrays(slots: Iterable[Slot]) -> tuple[list[UUID], list[str], list[str]]:
    accounts, symbols, pos_sides = [], [], []
    for account_id, symbol, pos_side in slots:
        accounts.append(account_id)
        symbols.append(symbol)
        pos_sides.append(pos_side)
    return accounts, symbols, pos_sides


@dataclass(frozen=True, slots=True)
class LedgerStore:
    """The ledger's tables on one connection, which the caller holds inside a transaction."""

    conn: Connection

    async def lock_accounts(self, ids: Iterable[UUID]) -> dict[UUID, str]:
        """Lock these accounts' ledgers until commit (another instance, a repair) and return
        the mode of each one that exists. Locks are taken in id order everywhere: no deadlock."""
        rows = await self.conn.fetch(
            """SELECT id, mode, pg_advisory_xact_lock(hashtextextended('positions:' || id::text, 0))
               FROM (SELECT id, mode FROM aitrader.accounts WHERE id = ANY($1::uuid[]) ORDER BY id
                     OFFSET 0) AS a""",  # OFFSET 0: sorted before the locks are taken
            list(set(ids)),
        )
        return {r["id"]: r["mode"] for r in rows}

    async def instruments(self) -> dict[str, InstrumentSpec]:
        """Contract values of every instrument the ingest service has loaded."""
        rows = await self.conn.fetch(f"SELECT {SPEC_COLUMNS} FROM aitrader.instruments")
        return {r["symbol"]: InstrumentSpec(**dict(r)) for r in rows}

    async def slot_state(self, slots: Sequence[Slot]) -> StoredSlots:
        """The last stored entry's key and the open position of each slot, in one round trip."""
        rows = await self.conn.fetch(_SLOT_STATE, *_slot_arrays(slots))
        keys: dict[Slot, EntryKey] = {}
        opens: dict[Slot, Position] = {}
        for r in rows:
            slot = Slot(r["a"], r["s"], r["p"])
            found = [(r["fill_ts"], 1, id_key(r["tid"]))] if r["tid"] is not None else []
            if r["bid"] is not None:
                found.append((r["fund_ts"], 0, id_key(r["bid"])))
            if found:
                keys[slot] = max(found)
            if r["side"] is not None:
                opens[slot] = position_from_row(r)
        return StoredSlots(keys, opens)

    async def add_entries(self, items: Sequence[Inbound]) -> list[tuple[Entry, Inbound]]:
        """Store fills (linked to their orders) and funding payments; return the entries that
        were new, in batch order (a repeated trade or bill id is a no-op)."""
        fills: list[AnyFill] = [i.event for i in items if isinstance(i.event, AnyFill)]
        links = await self._link_fills(fills) if fills else {}
        legs = await self._algo_legs(fills)
        pending: dict[tuple[Any, ...], tuple[Entry, Inbound]] = {}
        fill_rows, funding_rows = [], []
        for item in items:
            event = item.event
            if isinstance(event, AnyFill):
                key: tuple[Any, ...] = (event.account_id, event.inst_id, event.trade_id)
                if key not in pending:  # the same trade twice in one batch
                    link = links[(event.account_id, event.ord_id)]
                    fill = ledger_fill(event, link, legs.get((event.account_id, event.algo_id)))
                    fill_rows.append(fill_row(event, fill, link.order_id, item.body))
                    pending[key] = (fill, item)
            elif isinstance(event, FundingPayment) and (event.account_id, event.bill_id) not in pending:
                funding = funding_entry(event)
                funding_rows.append(funding_row(event, funding, item.body))
                pending[(event.account_id, event.bill_id)] = (funding, item)
        inserted = await self._insert_fills(fill_rows) | await self._insert_funding(funding_rows)
        return [pair for key, pair in pending.items() if key in inserted]

    async def _insert_fills(self, rows: Sequence[FillRow]) -> set[tuple[Any, ...]]:
        if not rows:
            return set()
        if len(rows) < STAGE_MIN_ROWS:
            inserted = await self.conn.fetch(_INSERT_FILL_ARRAYS, *_arrays(rows))
        else:
            await self.conn.execute(_STAGE_FILLS)
            await self.conn.copy_records_to_table(
                "positions_fills_in", schema_name="pg_temp", columns=FillRow._fields,
                records=_records(rows),
            )
            inserted = await self.conn.fetch(_INSERT_STAGED_FILLS)
        return {(r[0], r[1], r[2]) for r in inserted}

    async def _insert_funding(self, rows: Sequence[FundingRow]) -> set[tuple[Any, ...]]:
        if not rows:
            return set()
        inserted = await self.conn.fetch(_INSERT_FUNDING, *_arrays(rows))
        return {(r[0], r[1]) for r in inserted}

    async def _link_fills(self, fills: Sequence[AnyFill]) -> dict[tuple[UUID, str], OrderLink]:
        """The order of every fill, keyed by (account, OKX ordId); unknown orders get a row."""
        links: dict[tuple[UUID, str], OrderLink] = {}
        own_ids = [own_order_id(f.cl_ord_id) for f in fills]  # parsed once per fill
        own = {oid for oid in own_ids if oid is not None}
        learned: dict[UUID, str] = {}
        if own:
            # A join on unnest (not `= ANY`): index lookups however many orders the table holds.
            rows = await self.conn.fetch(
                f"""SELECT {_LINK_COLUMNS} FROM unnest($1::uuid[]) AS k(id)
                    JOIN aitrader.orders o ON o.id = k.id""",
                list(own),
            )
            by_id = {r["id"]: r for r in rows}
            for fill, oid in zip(fills, own_ids, strict=True):
                row = by_id.get(oid)
                if row is not None and row["account_id"] == fill.account_id:
                    links[(fill.account_id, fill.ord_id)] = order_link(row)
                    if row["exchange_order_id"] is None:
                        learned[row["id"]] = fill.ord_id
        if learned:
            await self.conn.executemany(
                """UPDATE aitrader.orders SET exchange_order_id = $2, updated_at = now()
                   WHERE id = $1 AND exchange_order_id IS NULL""",
                list(learned.items()),
            )
        rest = {(f.account_id, f.ord_id): f for f in fills if (f.account_id, f.ord_id) not in links}
        if rest:
            links.update(await self._by_exchange_id(list(rest)))
            missing = [external_order_row(f) for key, f in rest.items() if key not in links]
            if missing:
                rows = await self.conn.fetch(_INSERT_EXTERNAL_ORDERS, *_arrays(missing))
                links.update({(r["account_id"], r["exchange_order_id"]): order_link(r) for r in rows})
        return links

    async def _algo_legs(self, fills: Sequence[AnyFill]) -> dict[tuple[UUID, str | None], AlgoLeg]:
        """The leg of each algo the fills came from (`leg_sql`); a query only when one did."""
        keys = {(f.account_id, f.algo_id) for f in fills if f.algo_id is not None}
        if not keys:
            return {}
        rows = await self.conn.fetch(ALGO_LEGS, [a for a, _ in keys], [x for _, x in keys])
        return {(r["account_id"], r["algo_id"]): r["leg"] for r in rows if r["leg"] is not None}

    async def _by_exchange_id(self, keys: list[tuple[UUID, str]]) -> dict[tuple[UUID, str], OrderLink]:
        rows = await self.conn.fetch(
            f"""SELECT {_LINK_COLUMNS} FROM aitrader.orders o
                JOIN unnest($1::uuid[], $2::text[]) AS k(a, x)
                  ON o.account_id = k.a AND o.exchange_order_id = k.x""",
            [a for a, _ in keys], [x for _, x in keys],
        )
        return {(r["account_id"], r["exchange_order_id"]): order_link(r) for r in rows}

    async def load_slot(self, slot: Slot) -> tuple[list[Entry], list[ClosedPosition]]:
        """Every stored entry of a slot and its closed rows: what a refold starts from."""
        return await self.load_entries(slot), await self.load_closed(slot)

    async def load_entries(self, slot: Slot) -> list[Entry]:
        """Every stored fill (with what it inherits from its order) and funding payment."""
        entries: list[Entry] = [LedgerFill(**r) for r in await self.conn.fetch(_LEDGER_FILLS, *slot)]
        entries.extend(FundingEntry(**r) for r in await self.conn.fetch(_LEDGER_FUNDING, *slot))
        return entries

    async def load_closed(self, slot: Slot) -> list[ClosedPosition]:
        """The closed positions of a slot."""
        rows = await self.conn.fetch(
            """SELECT * FROM aitrader.positions_closed
               WHERE account_id = $1 AND symbol = $2 AND pos_side = $3""",
            *slot,
        )
        return [closed_from_row(r) for r in rows]

    async def load_open(self, slots: Sequence[Slot]) -> dict[Slot, Position]:
        """The open positions of these slots."""
        if not slots:
            return {}
        rows = await self.conn.fetch(
            f"""SELECT p.account_id, p.symbol, {", ".join(f"p.{c}" for c in POSITION_FIELDS)}
                FROM aitrader.positions_open p
                JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS k(a, s, ps)
                  ON p.account_id = k.a AND p.symbol = k.s AND p.pos_side = k.ps""",
            *_slot_arrays(slots),
        )
        return {_slot(r): position_from_row(r) for r in rows}

    async def write_changes(self, changes: Sequence[SlotChange]) -> list[SlotChange]:
        """Write every slot's rows: a new position replaces the stored row, a continuing one
        updates it in place (keeping its id and exit plan). Returns the changes as written
        (a closed row keeps the exit plan its open row had when it was deleted)."""
        plans = await self._delete_open([c.slot for c in changes if c.replaces_stored])
        written = [c.closing_plan(plans[c.slot]) if c.slot in plans else c for c in changes]
        opened = [open_row(c.slot, c.result.position) for c in written if c.result.position is not None]
        if opened:
            await self.conn.execute(_UPSERT_OPEN, *_arrays(opened))
        closed = [closed_row(c.slot, x) for c in written for x in c.result.closed]
        if closed:
            await self.conn.execute(_UPSERT_CLOSED, *_arrays(closed))
        for change in written:
            if change.refold:  # remove closed rows that the refold no longer produces
                await self.conn.execute(
                    """DELETE FROM aitrader.positions_closed
                       WHERE account_id = $1 AND symbol = $2 AND pos_side = $3
                         AND NOT (closing_trade_id = ANY($4::text[]))""",
                    *change.slot, [c.closing_trade_id for c in change.result.closed],
                )
        return written

    async def _delete_open(self, slots: Sequence[Slot]) -> dict[Slot, Any]:
        # Returns each deleted row's exit plan as it was at that instant (`update_exit_plan`
        # may have changed it since the row was read).
        if not slots:
            return {}
        rows = await self.conn.fetch(
            """DELETE FROM aitrader.positions_open p
               USING unnest($1::uuid[], $2::text[], $3::text[]) AS k(a, s, ps)
               WHERE p.account_id = k.a AND p.symbol = k.s AND p.pos_side = k.ps
               RETURNING p.account_id, p.symbol, p.pos_side, p.exit_plan""",
            *_slot_arrays(slots),
        )
        return {_slot(r): r["exit_plan"] for r in rows}

    async def upsert_orders(self, updates: Sequence[tuple[OrderUpdate, str]]) -> None:
        """Apply order state changes (with their raw bodies), in order; ours are found by
        clOrdId."""
        if updates:
            await self.conn.executemany(_UPSERT_ORDER, [order_update_row(u, body) for u, body in updates])

    async def upsert_algo_orders(self, updates: Sequence[tuple[AlgoOrderUpdate, str]]) -> None:
        """Apply algo order state changes (with their raw bodies), in order; a state never goes
        back and an older update of the same state changes nothing (`algo_rows`)."""
        if updates:
            await self.conn.executemany(UPSERT_ALGO, [algo_row(u, body) for u, body in updates])

    async def patch_exit_reasons(self, updates: Sequence[AlgoOrderUpdate]) -> list[asyncpg.Record]:
        """After these algos' updates are stored: closes their fills made before the leg was
        known get the leg's reason (`PATCH_EXIT_REASONS`); returns the rows changed."""
        if not updates:
            return []
        keys = {(u.account_id, u.algo_id) for u in updates}
        return await self.conn.fetch(PATCH_EXIT_REASONS, [a for a, _ in keys], [x for _, x in keys])

    async def orphan_algos(self, changes: Sequence[SlotChange]) -> list[OrphanAlgo]:
        """The live algos each new close of these changes left in its slot (`ORPHAN_ALGOS`)."""
        closes = [(c.slot, x) for c in changes for x in c.new_closes()]
        if not closes:
            return []
        rows = await self.conn.fetch(
            ORPHAN_ALGOS, *_slot_arrays(slot for slot, _ in closes), [x.exit_time for _, x in closes],
            ["sell" if x.side == "long" else "buy" for _, x in closes],
        )
        return [OrphanAlgo(r["account_id"], r["symbol"], r["algo_id"]) for r in rows]

    async def insert_balances(self, balances: Sequence[tuple[Balance, str]]) -> None:
        """One snapshot per (account, exchange time); a repeated push changes nothing."""
        if balances:
            await self.conn.executemany(_INSERT_BALANCE, [balance_row(b, body) for b, body in balances])

    async def update_exchange_view(self, positions: Sequence[ExchangePosition]) -> None:
        """Margin, liquidation and mark price, unrealized PnL: never the fold state."""
        if positions:
            await self.conn.executemany(_UPDATE_EXCHANGE_VIEW, [exchange_view_row(p) for p in positions])

    async def slots_of(self, account_ids: Sequence[UUID]) -> list[Slot]:
        """Every slot with a fill, a funding payment or a position row, for these accounts."""
        rows = await self.conn.fetch(
            """SELECT DISTINCT account_id, symbol, pos_side FROM (
                   SELECT account_id, symbol, pos_side FROM aitrader.fills
                   UNION SELECT account_id, symbol, pos_side FROM aitrader.funding_payments
                   UNION SELECT account_id, symbol, pos_side FROM aitrader.positions_open
                   UNION SELECT account_id, symbol, pos_side FROM aitrader.positions_closed) s
               WHERE account_id = ANY($1::uuid[])
               ORDER BY account_id, symbol, pos_side""",
            list(account_ids),
        )
        return [_slot(r) for r in rows]

    async def accounts(self, external_id: str | None = None) -> dict[UUID, str]:
        """Account id -> external id, of every account or of the one with this external id."""
        rows = await self.conn.fetch(
            "SELECT id, external_id FROM aitrader.accounts WHERE $1::text IS NULL OR external_id = $1",
            external_id,
        )
        return {r["id"]: r["external_id"] for r in rows}
