"""The console API on real PostgreSQL: auth, 404 outside the token's accounts, every list and
filter, and bad parameters refused with a 422 before any data query runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.console.repository import QUERIES
from tests.console.conftest import Seeded
from tests.console.seed import T0, closed_record, console_token, insert_closed

LISTS = ["positions/open", "positions/closed", "orders", "fills", "tool-calls"]


def _queries_run() -> float:
    return sum(s.value for m in QUERIES.collect() for s in m.samples if s.name.endswith("_total"))


async def test_a_request_without_a_good_console_token_is_401(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    read_only = await console_token(db_pool, [seeded.a], scopes=("read",))
    revoked = await console_token(db_pool, [seeded.a], revoked=True)
    for headers in (
        {},
        {"Authorization": "Bearer atk_nonsense"},
        {"Authorization": f"Bearer {read_only}"},
        {"Authorization": f"Bearer {revoked}"},
        {"Authorization": f"Basic {seeded.token_a}"},
    ):
        answer = await client.get("/api/v1/accounts", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_accounts_are_the_tokens_set_only(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    answer = (await client.get("/api/v1/accounts", headers=seeded.auth)).json()
    assert [a["external_id"] for a in answer["items"]] == ["A"] and answer["next_cursor"] is None
    both = await console_token(db_pool, [seeded.b, seeded.a])  # B its own, A through token_accounts
    names = [
        a["external_id"]
        for a in (await client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {both}"})).json()[
            "items"
        ]
    ]
    assert sorted(names) == ["A", "B"]


@pytest.mark.parametrize("path", LISTS)
async def test_an_account_outside_the_token_is_404_like_an_unknown_one(
    client: httpx.AsyncClient, seeded: Seeded, path: str
) -> None:
    other = await client.get(f"/api/v1/accounts/B/{path}", headers=seeded.auth)
    unknown = await client.get(f"/api/v1/accounts/nobody/{path}", headers=seeded.auth)
    assert other.status_code == unknown.status_code == 404
    assert other.json() == {"detail": "no account 'B'"} and unknown.json() == {
        "detail": "no account 'nobody'"
    }


@pytest.mark.parametrize("path", LISTS)
async def test_each_list_shows_the_accounts_row_with_decimals_as_strings_and_utc_times(
    client: httpx.AsyncClient, seeded: Seeded, path: str
) -> None:
    answer = await client.get(f"/api/v1/accounts/A/{path}", headers=seeded.auth)
    assert answer.status_code == 200, answer.text
    [row] = answer.json()["items"]
    times = [v for k, v in row.items() if k.endswith(("_at", "_time")) or k == "time"]
    assert times and all(t is None or t.endswith("Z") for t in times)
    for name in ("quantity", "price", "fee_usdt", "size"):
        if row.get(name) is not None:
            assert isinstance(row[name], str), name
    assert not any(isinstance(v, float) for v in row.values())


async def test_closed_positions_filters_map_to_their_columns(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    await insert_closed(
        db_pool,
        [
            closed_record(seeded.a, T0 + timedelta(hours=1), symbol="ETH-USDT-SWAP", side="short"),
            closed_record(seeded.a, T0 + timedelta(hours=2), exit_reason="stop_loss"),
            closed_record(seeded.a, T0 + timedelta(hours=3), side="short", exit_reason="take_profit"),
        ],
    )

    async def hours(**params: Any) -> list[int]:
        answer = await client.get("/api/v1/accounts/A/positions/closed", params=params, headers=seeded.auth)
        assert answer.status_code == 200, answer.text
        return [int((_time(r["exit_time"]) - T0).total_seconds() // 3600) for r in answer.json()["items"]]

    assert await hours() == [3, 2, 1, 0]  # newest exit first
    assert await hours(symbol="ETH-USDT-SWAP") == [1]
    assert await hours(side="short") == [3, 1]
    assert await hours(exit_reason="stop_loss") == [2]
    assert await hours(**{"from": "2026-11-01T01:00:00Z", "to": "2026-11-01T03:00:00Z"}) == [2, 1]
    assert await hours(**{"from": "2026-11-01T03:00:00+01:00"}) == [3, 2]  # 02:00 UTC, inclusive
    assert await hours(side="long", exit_reason="agent") == [0]


@pytest.mark.parametrize(
    ("path", "params", "count"),
    [
        pytest.param("positions/open", {"symbol": "BTC-USDT-SWAP", "side": "long"}, 1, id="open-match"),
        pytest.param("positions/open", {"side": "short"}, 0, id="open-side"),
        pytest.param(
            "orders", {"symbol": "BTC-USDT-SWAP", "side": "buy", "status": "filled"}, 1, id="orders-match"
        ),
        pytest.param("orders", {"status": "canceled"}, 0, id="orders-status"),
        pytest.param("orders", {"side": "sell"}, 0, id="orders-side"),
        pytest.param("orders", {"to": "2026-11-01T00:00:00Z"}, 0, id="orders-to-exclusive"),
        pytest.param("fills", {"symbol": "ETH-USDT-SWAP"}, 0, id="fills-symbol"),
        pytest.param("fills", {"side": "buy", "from": "2026-11-01T00:00:00Z"}, 1, id="fills-from-inclusive"),
        pytest.param("tool-calls", {"tool": "execute_trade", "status": "success"}, 1, id="calls-match"),
        pytest.param("tool-calls", {"tool": "get_account_state"}, 0, id="calls-tool"),
        pytest.param("tool-calls", {"status": "failed"}, 0, id="calls-status"),
    ],
)
async def test_each_filter_of_the_other_lists(
    client: httpx.AsyncClient, seeded: Seeded, path: str, params: dict[str, str], count: int
) -> None:
    answer = await client.get(f"/api/v1/accounts/A/{path}", params=params, headers=seeded.auth)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["items"]) == count


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        pytest.param({"limit": "0"}, "limit", "greater than or equal to 1", id="limit-0"),
        pytest.param({"limit": "1000000"}, "limit", "less than or equal to 500", id="limit-huge"),
        pytest.param({"limit": "ten"}, "limit", "valid integer", id="limit-text"),
        pytest.param({"cursor": "not-a-cursor!"}, "cursor", "malformed cursor", id="cursor-garbage"),
        pytest.param(
            {"cursor": "MjAyNi0xMS0wMVQwMDowMDowMHxub3QtYS11dWlk"},
            "cursor",
            "malformed cursor",
            id="cursor-bad-id",
        ),
        pytest.param(
            {"cursor": "MjAyNi0xMS0wMVQwMDowMDowMHwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA"},
            "cursor",
            "no time zone",
            id="cursor-naive-time",
        ),
        pytest.param({"colour": "red"}, "colour", "Extra inputs are not permitted", id="unknown-filter"),
        pytest.param(
            {"status": "filled"}, "status", "Extra inputs are not permitted", id="filter-of-another-list"
        ),
        pytest.param({"from": "yesterday"}, "from", "valid datetime", id="bad-time"),
        pytest.param({"to": "2026-11-01T00:00:00"}, "to", "timezone", id="naive-time"),
        pytest.param(
            {"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
            None,
            "before `to`",
            id="from-after-to",
        ),
        pytest.param({"side": "buy"}, "side", "'long' or 'short'", id="bad-side"),
        pytest.param({"exit_reason": "luck"}, "exit_reason", "'agent'", id="bad-exit-reason"),
        pytest.param({"symbol": "BTC"}, "symbol", "pattern", id="bad-symbol"),
    ],
)
async def test_bad_parameters_are_422_with_the_reason_and_no_query_runs(
    client: httpx.AsyncClient, seeded: Seeded, params: dict[str, str], field: str | None, reason: str
) -> None:
    before = _queries_run()
    answer = await client.get("/api/v1/accounts/A/positions/closed", params=params, headers=seeded.auth)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert reason in error["msg"]
    if field is not None:
        assert error["loc"][-1] == field
    assert _queries_run() == before
    assert (await client.get("/api/v1/accounts/A/positions/closed", headers=seeded.auth)).status_code == 200
    assert _queries_run() == before + 1  # the counter does count a query that runs


def _time(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)
