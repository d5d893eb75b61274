"""The pages PostgreSQL writes as JSON (json_sql.py) say exactly what the pydantic models wrote
before: the same items, values and next_cursor, for every list not shaped in Python, on rows
with many-digit decimals, trailing zeros, nulls, jsonb and times with and without microseconds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, get_args

import asyncpg
import httpx

from services.console import figures, listings
from services.console.api import AccountsQuery, ClosedQuery, FillsQuery, OrdersQuery, ToolCallsQuery
from services.console.api_views import FundingQuery
from services.console.models import Accounts, ClosedPositions, Fills, Orders, Page, ToolCalls
from services.console.paging import PageQuery
from services.console.repository import Listing, as_page, fetch_page_rows, page_sql
from services.console.view_models import Funding, Leaderboard
from shared.types import Window
from tests.console.conftest import Seeded
from tests.console.seed import T0

LISTS: list[tuple[str, str, type[Page[Any]], Listing, type[PageQuery]]] = [
    ("accounts", "", Accounts, listings.ACCOUNTS, AccountsQuery),
    ("closed", "/A/positions/closed", ClosedPositions, listings.CLOSED_POSITIONS, ClosedQuery),
    ("orders", "/A/orders", Orders, listings.ORDERS, OrdersQuery),
    ("fills", "/A/fills", Fills, listings.FILLS, FillsQuery),
    ("tool-calls", "/A/tool-calls", ToolCalls, listings.TOOL_CALLS, ToolCallsQuery),
    ("funding", "/A/funding", Funding, listings.FUNDING, FundingQuery),
]
MICRO = T0 + timedelta(seconds=1, microseconds=1)


async def _odd_rows(pool: asyncpg.Pool, a: Any) -> None:
    """A second row per list with the values a formatter gets wrong."""
    await pool.execute(
        """INSERT INTO aitrader.positions_closed (account_id, symbol, side, quantity, entry_price,
               exit_price, realized_pnl_usdt, gross_pnl_usdt, fee_usdt, funding_usdt, holding_minutes,
               average_confidence, leverage, fill_count, exit_reason, exit_plan, entry_time, exit_time,
               closing_trade_id)
           VALUES ($1, 'ETH-USDT-SWAP', 'short', 123456789012.12345678, NULL, 0.00000001,
               -0.00000001, 100, 0, 1234567890123456.1, 0.0001, 99.9, 125, 7, 'liquidation',
               $2, NULL, $3, 'odd')""",
        a,
        {"stop_loss": "1.50", "version": 3, "nested": {"x": [1, 2.5, None, 'é"\n']}},
        MICRO,
    )
    order = await pool.fetchval(
        """INSERT INTO aitrader.orders (account_id, symbol, side, order_type, price, size, filled_size,
               avg_fill_price, status, leverage, confidence, reduce_only, pos_side, created_at,
               updated_at, exit_plan, reject_reason)
           VALUES ($1, 'ETH-USDT-SWAP', 'sell', 'limit', 3000.10000000, 0.01000000, 0, NULL,
               'rejected', 20, 85.50, true, NULL, $2, $3, '{}', 'näive "quoted"') RETURNING id""",
        a,
        MICRO,
        MICRO + timedelta(microseconds=999_999),
    )
    await pool.execute(
        """INSERT INTO aitrader.fills (account_id, order_id, symbol, side, price, size, fee_usdt,
               pnl_usdt, confidence, "timestamp", exchange_trade_id, pos_side)
           VALUES ($1, $2, 'ETH-USDT-SWAP', 'sell', 3000.00000001, 0.010, 0.000000000001, -12.30,
               NULL, $3, 'odd', 'short')""",
        a,
        order,
        MICRO,
    )
    await pool.execute(
        """INSERT INTO aitrader.mcp_tool_calls (id, account_id, tool_name, request_payload,
               response_payload, status, latency_ms, transport, error, created_at)
           VALUES (gen_random_uuid(), $1, 'get_market_data', '"just a string"',
               '[1, "two", {"3": null}]', 'failed', NULL, NULL, 'bad', $2)""",
        a,
        MICRO,
    )
    await pool.execute(
        """INSERT INTO aitrader.funding_rates (symbol, as_of, funding_rate) VALUES
               ('BTC-USDT-SWAP', $1, 0.00010000)""",
        T0 - timedelta(hours=1),
    )
    await pool.execute(
        """INSERT INTO aitrader.funding_payments (account_id, symbol, amount_usdt, exchange_bill_id,
               "timestamp") VALUES ($1, 'BTC-USDT-SWAP', 1234.500000, 'odd', $2)""",
        a,
        datetime(2026, 11, 1, 2, 0, 0, 120, tzinfo=timezone(timedelta(hours=2))),
    )


async def _pydantic_page(
    pool: asyncpg.Pool, model: type[Page[Any]], listing: Listing, query: PageQuery, seeded: Seeded
) -> Any:
    """The page as the console rendered it before: rows through the model, model_dump_json."""
    accounts = [seeded.a]
    filters = dict.fromkeys(listing.filters)
    async with pool.acquire() as conn:
        rows = await fetch_page_rows(conn, listing, page_sql(listing, accounts, query, filters))
    return json.loads(model.model_validate(as_page(rows, query.limit)).model_dump_json())


async def test_a_page_written_by_postgresql_equals_the_models_rendering(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    """Every list, page by page (one seeded database for all: a fixture per list cost ~0.6 s)."""
    await _odd_rows(db_pool, seeded.a)
    for name, path, model, listing, query_class in LISTS:
        assert listing.shape is None, f"{name}: a shaped listing is rendered by its model"
        cursor: str | None = None
        pages = 0
        while True:  # pages of one row: each next_cursor is compared too
            params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
            answer = await client.get(f"/api/v1/accounts{path}", params=params, headers=seeded.auth)
            assert answer.status_code == 200, answer.text
            query = query_class.model_validate(params)
            expected = await _pydantic_page(db_pool, model, listing, query, seeded)
            assert answer.json() == expected, f"{name}, page {pages + 1}"
            pages += 1
            cursor = answer.json()["next_cursor"]
            if cursor is None:
                break
        assert pages >= (1 if path == "" else 2), name


async def test_the_decimals_and_times_are_written_as_the_models_write_them(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    """The same values spelled out, so that the comparison above cannot pass on two wrong ones."""
    await _odd_rows(db_pool, seeded.a)
    answer = await client.get("/api/v1/accounts/A/positions/closed", params={"limit": 1}, headers=seeded.auth)
    (row,) = answer.json()["items"]
    assert row["quantity"] == "123456789012.12345678" and row["exit_price"] == "0.00000001"
    assert row["gross_pnl_usdt"] == "100" and row["fee_usdt"] == "0" and row["holding_minutes"] == "0.0001"
    assert row["funding_usdt"] == "1234567890123456.1" and row["average_confidence"] == "99.9"
    assert row["entry_price"] is None and row["entry_time"] is None
    assert row["exit_time"] == "2026-11-01T00:00:01.000001Z" and row["fill_count"] == 7
    assert row["exit_plan"]["nested"] == {"x": [1, 2.5, None, 'é"\n']}
    assert Decimal(row["realized_pnl_usdt"]) == Decimal("-0.00000001")
    funding = await client.get("/api/v1/accounts/A/funding", params={"limit": 1}, headers=seeded.auth)
    first = funding.json()["items"][0]
    assert first["time"] == "2026-11-01T00:00:00.000120Z"
    assert (first["amount"], first["rate"]) == ("1234.5", "0.0001")


def test_every_page_model_names_its_row_model() -> None:
    """serve_page finds the row model from `items`: a page model must keep that shape."""
    for _, _, model, _, _ in LISTS:
        (row,) = get_args(model.model_fields["items"].annotation)
        assert row.model_fields


async def test_the_leaderboard_written_by_postgresql_equals_the_models_rendering(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    """/leaderboard as PostgreSQL writes it (figures.leaderboard_json_sql) against its rows
    (leaderboard_sql) through the Leaderboard model, for every window."""
    await _odd_rows(db_pool, seeded.a)
    await db_pool.execute(
        """INSERT INTO aitrader.equity_snapshots (account_id, equity, cash, net_position_value,
               unrealized_pnl, as_of) VALUES ($1, 1234.50000000, 0, 0, 0, now() - interval '1 minute')""",
        seeded.a,
    )
    for window in get_args(Window):
        answer = await client.get("/api/v1/leaderboard", params={"window": window}, headers=seeded.auth)
        assert answer.status_code == 200, answer.text
        board = answer.json()
        rows = await db_pool.fetch(figures.leaderboard_sql(window), [seeded.a], window)
        value = {"window": window, "as_of": board["as_of"], "items": [dict(r) for r in rows]}
        assert board == json.loads(Leaderboard.model_validate(value).model_dump_json()), window
        assert len(board["items"]) == 1 and board["items"][0]["equity_usdt"] is None, window
