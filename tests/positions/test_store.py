"""The ledger store on a real, migrated PostgreSQL: its rows are the tables' columns, and a small
batch costs the statements it always did."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal as D
from uuid import UUID, uuid4

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery

from services.positions.algo_rows import AlgoOrderRow
from services.positions.catalog import InstrumentCatalog
from services.positions.domain import ClosedPosition, Position
from services.positions.handlers import handle_batch
from services.positions.inbound import Inbound
from services.positions.rows import (
    CLOSED_FIELDS,
    POSITION_FIELDS,
    BalanceRow,
    ClosedRow,
    ExchangeViewRow,
    ExternalOrderRow,
    FillRow,
    FundingRow,
    JsonText,
    OpenRow,
    OrderUpdateRow,
    column_types,
    json_columns,
    own_order_id,
)
from services.positions.store import STAGE_MIN_ROWS, LedgerStore, _arrays, _selected, _unnest
from shared.clock import SystemClock
from shared.messages import AccountEvent, Balance, ExchangePosition, OrderUpdate
from tests.positions.conftest import at, fill, funding

# Table -> the row types the store writes it with, the fields of those rows that are not
# columns, and the columns the store leaves to their default or to another writer (and why).
WRITTEN: dict[str, tuple[tuple[type, ...], set[str], set[str]]] = {
    "fills": ((FillRow,), set(), {"created_at"}),
    "funding_payments": ((FundingRow,), set(), {"id", "created_at"}),
    "positions_open": ((OpenRow, ExchangeViewRow), set(), {"id", "updated_at"}),  # now()
    "positions_closed": ((ClosedRow,), set(), {"id", "created_at"}),
    "balance_snapshots": ((BalanceRow,), set(), {"id", "source", "created_at"}),  # 'exchange'
    "algo_orders": ((AlgoOrderRow,), set(), {"id", "updated_at"}),  # now()
    "orders": (
        (OrderUpdateRow, ExternalOrderRow),
        {"status_rank", "cl_ord_id"},  # a comparison operand; kept inside raw_payload
        # written by the MCP gateway when it places an order; `source` is a constant here
        {"confidence", "tool_call_id", "client_order_id", "idempotency_key", "exit_plan",
         "reject_code", "reject_reason", "source", "updated_at"},
    ),
}
# information_schema's udt_name -> the type a row field of that column is sent as
SENT_AS = {"uuid": "uuid", "text": "text", "numeric": "numeric", "timestamptz": "timestamptz",
           "int4": "int", "bool": "bool", "jsonb": "text"}


async def table_columns(pool: asyncpg.Pool, table: str) -> dict[str, str]:
    rows = await pool.fetch(
        """SELECT column_name, udt_name FROM information_schema.columns
           WHERE table_schema = 'aitrader' AND table_name = $1""",
        table,
    )
    return {r["column_name"]: r["udt_name"] for r in rows}


@pytest.mark.parametrize("table", list(WRITTEN))
async def test_the_row_fields_are_the_columns_of_the_migrated_table(
    db_pool: asyncpg.Pool, table: str
) -> None:
    row_types, not_columns, unwritten = WRITTEN[table]
    columns = await table_columns(db_pool, table)
    assert columns, f"no table aitrader.{table}"
    fields: dict[str, str] = {}
    jsonb: set[str] = set()
    for row in row_types:
        fields |= column_types(row)
        jsonb |= json_columns(row)
    written = fields.keys() - not_columns
    assert written - columns.keys() == set(), "row fields that are not columns"
    assert columns.keys() - written == unwritten, "columns that no row writes"
    assert {c: SENT_AS[columns[c]] for c in written} == {c: fields[c] for c in written}
    assert jsonb == {c for c in written if columns[c] == "jsonb"}


def test_the_fold_values_map_onto_their_rows_by_name() -> None:
    assert set(POSITION_FIELDS) <= set(OpenRow._fields)
    assert set(CLOSED_FIELDS) <= set(ClosedRow._fields)
    assert [f for f in OpenRow._fields if f not in POSITION_FIELDS] == ["account_id", "symbol"]
    assert [f for f in ClosedRow._fields if f not in CLOSED_FIELDS] == ["account_id", "symbol"]
    assert {f.name for f in Position.__dataclass_fields__.values()} == set(POSITION_FIELDS)
    assert {f.name for f in ClosedPosition.__dataclass_fields__.values()} == set(CLOSED_FIELDS)


def inbound(events: Sequence[AccountEvent]) -> list[Inbound]:
    return [Inbound(i, "subject", e, e.to_bytes().decode(), lambda: at(0)) for i, e in enumerate(events)]


async def test_a_small_batch_costs_the_statements_it_always_did(db_pool: asyncpg.Pool, account: UUID) -> None:
    """The round trips of the steady state (one statement each, once prepared): the lock, the
    slot state, the order link, one INSERT of the fills over `unnest`, one per position table."""
    order_id = uuid4()
    await db_pool.execute(
        """INSERT INTO aitrader.orders (id, account_id, symbol, side, order_type, size, status)
           VALUES ($1, $2, 'BTC-USDT-SWAP', 'buy', 'market', 1, 'submitted')""", order_id, account)
    position = ExchangePosition(account_id=account, mode="simulated", inst_id="BTC-USDT-SWAP",
                                pos_side="net", pos=D(3), margin=D(1), mark_px=D(100), upl=D(0),
                                ts_event=at(4))
    batches: list[tuple[list[AccountEvent], int]] = [
        # lock, slot state, our order by clOrdId, learn its exchange id, fills, open
        ([fill(account, "1", "buy", "1", "100", 1, cl_ord_id=order_id.hex)], 6),
        # lock, slot state, order by exchange id, create it (external), fills, open
        ([fill(account, "2", "buy", "1", "101", 2)], 6),
        # lock, order upsert, slot state, order by exchange id, fills, funding, open, balance,
        # exchange view
        ([OrderUpdate(account_id=account, mode="simulated", inst_id="BTC-USDT-SWAP", ord_id="o3",
                      side="buy", pos_side="net", ord_type="market", sz=D(1), acc_fill_sz=D(1),
                      avg_px=D(102), state="filled", ts_event=at(3)),
          fill(account, "3", "buy", "1", "102", 3), funding(account, "b1", "0.5", 4),
          Balance(account_id=account, mode="simulated", cash_bal=D(1), avail_bal=D(1), eq=D(1),
                  ts_event=at(4)), position], 9),
        # lock, slot state, order by exchange id, create it, fills, delete open, closed, the
        # live algos the close left (the no-orphans safety net)
        ([fill(account, "5", "sell", "3", "110", 5)], 8),
        # lock, slot state, order by exchange id, create it, fills, the slot's fills, funding
        # and closed rows (refold), open, delete closed rows the refold no longer produces
        ([fill(account, "0", "buy", "1", "99", 0)], 10),
        # a duplicate: lock, slot state, order by exchange id, fills (nothing new)
        ([fill(account, "0", "buy", "1", "99", 0)], 4),
    ]
    catalog = InstrumentCatalog(SystemClock(), 0.0)
    async with db_pool.acquire() as conn:
        store = LedgerStore(conn)
        await catalog.resolve(store, {"BTC-USDT-SWAP"})  # loaded once per process, not per batch
        for events, statements in batches:
            logged: list[str] = []

            def log(query: LoggedQuery) -> None:
                logged.append(query.query)  # noqa: B023

            conn.add_query_logger(log)
            async with conn.transaction():
                outcome = await handle_batch(store, inbound(events), catalog)
            await asyncio.sleep(0)  # the logger is called soon after each statement
            conn.remove_query_logger(log)
            assert not outcome.dead and not outcome.retry
            ours = [q for q in logged if "aitrader." in q]  # not asyncpg's type introspection
            assert len(ours) == statements, ours
            assert [logged[0], logged[-1]] == ["BEGIN;", "COMMIT;"]


ODD_DECIMALS = [D("0E-8"), D("1E+2"), D("-0.00000001"), D("123456789012.12345678"), D("1.10"), D("-0"),
                D("1E-8"), D("0.000000000001"), None]


async def test_numerics_sent_as_text_arrive_as_the_binary_encoding_would_send_them(
    db_pool: asyncpg.Pool,
) -> None:
    # The store sends numeric values as text (cheaper than asyncpg's binary encoder): the
    # same digits and scale arrive, exponent forms included.
    rows = [FundingRow(uuid4(), "X", "net", value, str(n), at(0), JsonText("{}"))  # type: ignore[arg-type]
            for n, value in enumerate(ODD_DECIMALS)]
    sent = await db_pool.fetch(f"SELECT {_selected(FundingRow)} FROM {_unnest(FundingRow)}", *_arrays(rows))
    binary = await db_pool.fetch("SELECT unnest($1::numeric[]) AS amount_usdt", ODD_DECIMALS)
    assert [str(r["amount_usdt"]) for r in sent] == [str(r["amount_usdt"]) for r in binary]
    assert [r["amount_usdt"] for r in sent] == ODD_DECIMALS


async def test_a_large_batch_is_staged_with_copy_and_stored_exactly(
    db_pool: asyncpg.Pool, account: UUID
) -> None:
    # STAGE_MIN_ROWS fills or more go through the staging table (numerics as text there too).
    fills = [fill(account, str(n), "buy", "0.00000001", f"{100 + n}.12345678", n, fee="-1E-8", lever="5")
             for n in range(STAGE_MIN_ROWS + 1)]
    catalog = InstrumentCatalog(SystemClock(), 0.0)
    async with db_pool.acquire() as conn, conn.transaction():
        outcome = await handle_batch(LedgerStore(conn), inbound(fills), catalog)
    assert outcome.stored == len(fills)
    stored = await db_pool.fetch(
        "SELECT price, size, fee_usdt, leverage FROM aitrader.fills ORDER BY exchange_trade_id::int")
    assert [tuple(r) for r in stored] == [
        (f.fill_px, D("0.00000001"), D("-0.00000001"), D("5.00")) for f in fills]
    [position] = await db_pool.fetch("SELECT quantity, opened_value FROM aitrader.positions_open")
    assert position["quantity"] == D("0.00000001") * len(fills)
    assert position["opened_value"] == sum(f.fill_px * f.fill_sz for f in fills)


HEX = "0123456789abcdef" * 2


@pytest.mark.parametrize(("cl_ord_id", "expected"), [
    pytest.param(HEX, UUID(hex=HEX), id="ours"),
    pytest.param(HEX.upper(), UUID(hex=HEX), id="upper-case"),
    pytest.param("0x" + HEX[:30], UUID(hex="0x" + HEX[:30]), id="what-uuid-reads-too"),
    pytest.param(HEX[:31] + "g", None, id="not-hex"),
    pytest.param(HEX[:31], None, id="short"),
    pytest.param(None, None, id="none"),
])
def test_own_order_id_reads_a_clordid_as_uuid_hex_does(cl_ord_id: str | None, expected: UUID | None) -> None:
    assert own_order_id(cl_ord_id) == expected
