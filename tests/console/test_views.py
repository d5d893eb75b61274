"""The console's views on real PostgreSQL, each answer worked out by hand from the rows seeded:
the leaderboard and its order, return on /accounts, the equity series and its buckets,
performance, calibration, exit-plan history, funding, candles; bad parameters are 422, another
account's id 404."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from services.console.figures import bucket_count, choose_step
from services.console.paging import encode_cursor
from services.console.repository import QUERIES
from tests.console.conftest import Seeded
from tests.console.seed import T0, console_token, seed_account

M = timedelta(minutes=1)


def _queries_run() -> float:
    return sum(s.value for m in QUERIES.collect() for s in m.samples if s.name.endswith("_total"))


async def _equity(pool: asyncpg.Pool, account: UUID, points: list[tuple[timedelta, str]]) -> None:
    await pool.executemany(
        """INSERT INTO aitrader.equity_snapshots (account_id, equity, cash, net_position_value,
               unrealized_pnl, as_of) VALUES ($1, $2, $2, 0, 0, $3)""",
        [(account, Decimal(e), T0 + at) for at, e in points],
    )


async def _performance(pool: asyncpg.Pool, account: UUID, window: str = "all_time", **values: Any) -> None:
    columns = ["account_id", '"window"', "window_start", "window_end", "updated_at", *values]
    params = [account, window, T0, T0 + timedelta(days=1), T0 + timedelta(days=1), *values.values()]
    marks = ", ".join(f"${i + 1}" for i in range(len(params)))
    await pool.execute(
        f"INSERT INTO aitrader.performance_snapshots ({', '.join(columns)}) VALUES ({marks})", *params
    )


async def _get(client: httpx.AsyncClient, seeded: Seeded, path: str, **params: Any) -> Any:
    answer = await client.get(f"/api/v1{path}", params=params, headers=seeded.auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


# ------------------------------------------------------------------------------ leaderboard
async def test_the_leaderboard_ranks_the_tokens_accounts_by_return_with_the_stored_figures(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    c = await seed_account(db_pool, "C")
    d = await seed_account(db_pool, "D")  # only the seeded point: no return (null, last)
    # A: 1000 (seed, T0) -> 1100 -> 990 -> 1050: +5 %. The drawdown is the metrics' stored
    # figure (12.3456, not the 10 % of these points): the console computes none.
    await _equity(db_pool, seeded.a, [(M, "1100"), (2 * M, "990"), (3 * M, "1050")])
    # C: 1000 -> 1200 -> 1080: +8 % (first); no stored row: no drawdown.
    await _equity(db_pool, c, [(M, "1200"), (2 * M, "1080")])
    await _performance(
        db_pool,
        seeded.a,
        sharpe_ratio=Decimal("1.5"),
        win_rate=Decimal("0.5"),
        closed_positions=2,
        average_leverage=Decimal("3"),
        average_confidence=Decimal("70"),
        realized_pnl_usdt=Decimal("12.5"),
        max_drawdown_pct=Decimal("12.3456"),
    )
    token = await console_token(db_pool, [seeded.a, c, d])  # not B
    answer = await client.get("/api/v1/leaderboard", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    board = answer.json()
    assert board["window"] == "all_time" and board["as_of"].endswith("Z")
    assert [s["external_id"] for s in board["items"]] == ["C", "A", "D"]
    first, second, third = board["items"]
    assert second == {
        "external_id": "A",
        "mode": "simulated",
        # cash 1000 (balance) + the open long's PnL: no mark price, no exchange figure -> unknown
        "equity_usdt": None,
        "return_pct": "5",
        "sharpe_ratio": "1.5",
        "win_rate": "0.5",
        "max_drawdown_pct": "12.3456",
        "trades": 2,
        "fees_usdt": "-0.25",  # the seeded fill's
        "average_leverage": "3",
        "average_confidence": "70",
        "realized_pnl_usdt": "12.5",
    }
    assert (first["return_pct"], first["max_drawdown_pct"], first["trades"]) == ("8", None, None)
    assert (third["return_pct"], third["max_drawdown_pct"], third["sharpe_ratio"]) == (None, None, None)


async def test_the_leaderboard_window_picks_its_stored_row_and_its_own_points(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    now = await db_pool.fetchval("SELECT now()")
    await db_pool.executemany(
        """INSERT INTO aitrader.equity_snapshots (account_id, equity, cash, net_position_value,
               unrealized_pnl, as_of) VALUES ($1, $2, $2, 0, 0, $3)""",
        [(seeded.a, Decimal("800"), now - timedelta(hours=2)), (seeded.a, Decimal("1000"), now - M)],
    )
    await _performance(
        db_pool,
        seeded.a,
        "daily",
        sharpe_ratio=Decimal("-0.25"),
        closed_positions=1,
        max_drawdown_pct=Decimal("0.0000"),
    )
    [daily] = (await _get(client, seeded, "/leaderboard", window="daily"))["items"]
    # the seed's point (T0, a month ago) is outside the day: 800 -> 1000 = +25 %; the daily
    # row's drawdown (0), not the all_time one's
    assert (daily["return_pct"], daily["max_drawdown_pct"]) == ("25", "0")
    assert (daily["sharpe_ratio"], daily["trades"], daily["fees_usdt"]) == ("-0.25", 1, "0")
    [all_time] = (await _get(client, seeded, "/leaderboard"))["items"]
    # all points: 1000 (T0) -> 800 -> 1000: 0 %; no all_time row: no drawdown, no trades
    assert (all_time["return_pct"], all_time["max_drawdown_pct"], all_time["trades"]) == ("0", None, None)


async def test_accounts_show_the_all_time_return(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    [account] = (await _get(client, seeded, "/accounts"))["items"]
    assert account["return_pct"] is None  # one point
    await _equity(db_pool, seeded.a, [(M, "1000.5"), (2 * M, "999.99")])
    [account] = (await _get(client, seeded, "/accounts"))["items"]
    assert account["return_pct"] == "-0.001"  # (999.99 - 1000) / 1000 x 100


# ------------------------------------------------------------------------------ equity
async def test_the_equity_series_keeps_the_last_point_of_each_bucket(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    seconds = timedelta(seconds=1)
    await _equity(
        db_pool,
        seeded.a,
        [
            (30 * seconds, "1001"),
            (4 * M, "1004"),
            (5 * M, "1005"),
            (14 * M + 59 * seconds, "1014"),
            (16 * M, "1016"),
        ],
    )

    async def series(**params: str) -> tuple[str, list[tuple[int, str]]]:
        answer = await _get(client, seeded, "/accounts/A/equity", **params)
        minutes = [(int((_t(p["time"]) - T0) / M), p["equity_usdt"]) for p in answer["points"]]
        return answer["step"], minutes

    # no span: from the first point (T0) to now, over a month: 1h is the finest step that fits
    step, points = await series()
    assert step == "1h" and points == [(0, "1016")]
    day = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}
    assert await series(**day, step="5m") == ("5m", [(0, "1004"), (5, "1005"), (10, "1014"), (15, "1016")])
    assert await series(**day, step="15m") == ("15m", [(0, "1014"), (15, "1016")])
    assert await series(**day, step="1d") == ("1d", [(0, "1016")])
    assert await series(**day) == ("1m", [(0, "1001"), (4, "1004"), (5, "1005"), (14, "1014"), (16, "1016")])
    # `from` inclusive, `to` exclusive, times with any zone
    assert await series(
        **{"from": "2026-11-01T01:05:00+01:00", "to": "2026-11-01T00:16:00Z", "step": "1m"}
    ) == (
        "1m",
        [(5, "1005"), (14, "1014")],
    )
    assert await series(**{"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z"}) == ("1m", [])


def test_buckets_are_utc_aligned_and_the_default_step_fits_2000_points() -> None:
    assert bucket_count(T0, T0 + timedelta(hours=1), timedelta(minutes=5)) == 12
    assert bucket_count(T0 + M, T0 + timedelta(hours=1, minutes=1), timedelta(minutes=5)) == 13
    assert bucket_count(T0, T0, M) == 0
    assert choose_step(T0, T0 + timedelta(minutes=2000), None) == "1m"
    assert choose_step(T0, T0 + timedelta(minutes=2001), None) == "5m"
    assert choose_step(T0, T0 + timedelta(days=2000), None) == "1d"
    with pytest.raises(ValueError, match="2001 points of 1m"):
        choose_step(T0, T0 + timedelta(minutes=2001), "1m")


# ------------------------------------------------------------------------------ metrics rows
async def test_performance_is_the_stored_row_with_its_exit_attribution(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    assert await _get(client, seeded, "/accounts/A/performance") == {
        "window": "all_time",
        "available": False,
        **{k: None for k in _PERFORMANCE_FIELDS},
        "exit_attribution": [],
    }
    await _performance(
        db_pool,
        seeded.a,
        sharpe_ratio=Decimal("2.123456"),
        win_rate=Decimal("0.6667"),
        biggest_win_usdt=Decimal("5.5"),
        biggest_loss_usdt=Decimal("-0.00000001"),
        hold_ratio_long=Decimal("0.25"),
        hold_ratio_short=Decimal("0.25"),
        hold_ratio_flat=Decimal("0.5"),
        closed_positions=3,
        realized_pnl_usdt=Decimal("4"),
        stop_loss_resting_ratio=Decimal("0.3333"),
        max_drawdown_pct=Decimal("7.5"),
        definitions_version="2026-12-2",
    )
    await db_pool.executemany(
        """INSERT INTO aitrader.exit_attribution (account_id, "window", exit_reason, closed_positions,
               realized_pnl_usdt) VALUES ($1, 'all_time', $2, $3, $4)""",
        [
            (seeded.a, "agent", 1, Decimal("-1.5")),
            (seeded.a, "stop_loss", 2, Decimal("5.5")),
            (seeded.a, "liquidation", 0, None),
        ],
    )
    answer = await _get(client, seeded, "/accounts/A/performance", window="all_time")
    assert answer == {
        "window": "all_time",
        "available": True,
        "sharpe_ratio": "2.123456",
        "win_rate": "0.6667",
        "average_leverage": None,
        "average_confidence": None,
        "biggest_win_usdt": "5.5",
        "biggest_loss_usdt": "-0.00000001",
        "hold_ratio_long": "0.25",
        "hold_ratio_short": "0.25",
        "hold_ratio_flat": "0.5",
        "closed_positions": 3,
        "realized_pnl_usdt": "4",
        "stop_loss_resting_ratio": "0.3333",
        "max_drawdown_pct": "7.5",
        "definitions_version": "2026-12-2",
        "window_start": "2026-11-01T00:00:00Z",
        "window_end": "2026-11-02T00:00:00Z",
        "updated_at": "2026-11-02T00:00:00Z",
        "exit_attribution": [
            {"exit_reason": "stop_loss", "closed_positions": 2, "realized_pnl_usdt": "5.5"},
            {"exit_reason": "agent", "closed_positions": 1, "realized_pnl_usdt": "-1.5"},
        ],
    }
    weekly = await _get(client, seeded, "/accounts/A/performance", window="weekly")  # the seed's row
    assert weekly["available"] and weekly["closed_positions"] == 0 and weekly["exit_attribution"] == []


_PERFORMANCE_FIELDS = (
    "sharpe_ratio win_rate average_leverage average_confidence biggest_win_usdt biggest_loss_usdt "
    "hold_ratio_long hold_ratio_short hold_ratio_flat closed_positions realized_pnl_usdt "
    "stop_loss_resting_ratio max_drawdown_pct definitions_version window_start window_end updated_at"
).split()


async def test_calibration_lists_the_windows_buckets_in_order(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    assert await _get(client, seeded, "/accounts/A/calibration") == {"window": "all_time", "buckets": []}
    await db_pool.executemany(
        """INSERT INTO aitrader.confidence_calibration (account_id, "window", bucket, closed_positions,
               win_rate, mean_pnl_usdt) VALUES ($1, 'all_time', $2, $3, $4, $5)""",
        [
            (seeded.a, "85-100", 1, Decimal("1"), Decimal("2.5")),
            (seeded.a, "0-50", 0, None, None),
            (seeded.a, "70-85", 2, Decimal("0.5"), Decimal("-0.125")),
            (seeded.a, "50-70", 0, None, None),
        ],
    )
    answer = await _get(client, seeded, "/accounts/A/calibration")
    assert answer["buckets"] == [
        {"bucket": "0-50", "closed_positions": 0, "win_rate": None, "mean_pnl_usdt": None},
        {"bucket": "50-70", "closed_positions": 0, "win_rate": None, "mean_pnl_usdt": None},
        {"bucket": "70-85", "closed_positions": 2, "win_rate": "0.5", "mean_pnl_usdt": "-0.125"},
        {"bucket": "85-100", "closed_positions": 1, "win_rate": "1", "mean_pnl_usdt": "2.5"},
    ]
    weekly = await _get(client, seeded, "/accounts/A/calibration", window="weekly")
    assert [b["bucket"] for b in weekly["buckets"]] == ["0-50"]


# ------------------------------------------------------------------------------ lists
async def test_exit_plan_history_pages_newest_first_with_its_filters(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    await db_pool.executemany(
        """INSERT INTO aitrader.exit_plan_history (account_id, symbol, pos_side, exit_plan, algo_id,
               s_code, s_msg, created_at) VALUES ($1, $2, 'net', $3, $4, $5, $6, $7)""",
        [
            (seeded.a, "ETH-USDT-SWAP", {"version": 1, "take_profit": 4000.5}, "a1", "0", "", T0 + M),
            (
                seeded.a,
                "BTC-USDT-SWAP",
                {
                    "version": 2,
                    "stop_loss": "49500",
                    "take_profit": "52000",
                    "invalidation_condition": "4H < 48k",
                },
                None,
                "51000",
                "refused",
                T0 + 2 * M,
            ),
        ],
    )
    page = await _get(client, seeded, "/accounts/A/exit-plans", limit="2")
    newest, middle = page["items"]
    assert {k: v for k, v in newest.items() if k not in ("id", "position_id")} == {
        "symbol": "BTC-USDT-SWAP",
        "pos_side": "net",
        "version": 2,
        "take_profit": "52000",
        "stop_loss": "49500",
        "invalidation_condition": "4H < 48k",
        "algo_id": None,
        "s_code": "51000",
        "s_msg": "refused",
        "created_at": "2026-11-01T00:02:00Z",
    }
    assert (middle["take_profit"], middle["stop_loss"], middle["algo_id"]) == ("4000.5", None, "a1")
    rest = await _get(client, seeded, "/accounts/A/exit-plans", limit="2", cursor=page["next_cursor"])
    assert [(r["version"], r["stop_loss"]) for r in rest["items"]] == [(1, "49000")]  # the seed's
    assert rest["next_cursor"] is None
    only_btc = await _get(client, seeded, "/accounts/A/exit-plans", symbol="BTC-USDT-SWAP")
    assert [r["version"] for r in only_btc["items"]] == [2, 1]
    window = {"from": "2026-11-01T00:01:00Z", "to": "2026-11-01T00:02:00Z"}
    assert [
        r["symbol"] for r in (await _get(client, seeded, "/accounts/A/exit-plans", **window))["items"]
    ] == ["ETH-USDT-SWAP"]


async def test_funding_payments_page_with_the_rate_in_force(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    await db_pool.executemany(
        "INSERT INTO aitrader.funding_rates (symbol, as_of, funding_rate) VALUES ($1, $2, $3)",
        [
            ("ETH-USDT-SWAP", T0 + 7 * M, Decimal("0.0001")),
            ("ETH-USDT-SWAP", T0 + 8 * M, Decimal("0.0002")),
            ("ETH-USDT-SWAP", T0 + 9 * M, Decimal("0.0003")),  # after the payment
        ],
    )
    await db_pool.execute(
        """INSERT INTO aitrader.funding_payments (account_id, symbol, amount_usdt, exchange_bill_id,
               "timestamp") VALUES ($1, 'ETH-USDT-SWAP', 0.125, 'bill-eth', $2)""",
        seeded.a,
        T0 + 8 * M,
    )
    items = (await _get(client, seeded, "/accounts/A/funding"))["items"]
    assert [(r["symbol"], r["amount"], r["rate"], r["time"]) for r in items] == [
        ("ETH-USDT-SWAP", "0.125", "0.0002", "2026-11-01T00:08:00Z"),
        ("BTC-USDT-SWAP", "-0.05", None, "2026-11-01T00:00:00Z"),  # the seed's, no rate recorded
    ]
    assert [
        r["bill_id"]
        for r in (await _get(client, seeded, "/accounts/A/funding", symbol="ETH-USDT-SWAP"))["items"]
    ] == ["bill-eth"]
    assert (await _get(client, seeded, "/accounts/A/funding", to="2026-11-01T00:08:00Z"))["items"][0][
        "symbol"
    ] == "BTC-USDT-SWAP"


# ------------------------------------------------------------------------------ market
async def test_market_candles_are_the_newest_oldest_first_for_any_console_token(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    await db_pool.executemany(
        """INSERT INTO aitrader.market_snapshots (symbol, timeframe, as_of, open, high, low, price,
               volume, ema20, rsi14) VALUES ('BTC-USDT-SWAP', $1, $2, $3::numeric, $3 + 10, $3 - 10, $3 + 1,
               100, $3, 55.5)""",
        [("3m", T0 + 3 * i * M, Decimal(50000 + i)) for i in range(5)] + [("1H", T0, Decimal(1))],
    )
    answer = await _get(client, seeded, "/market/BTC-USDT-SWAP", limit="2")
    assert answer == {
        "symbol": "BTC-USDT-SWAP",
        "timeframe": "3m",
        "candles": [
            {
                "time": f"2026-11-01T00:{m:02d}:00Z",
                "open": str(50000 + i),
                "high": str(50010 + i),
                "low": str(49990 + i),
                "close": str(50001 + i),
                "volume": "100",
                "ema20": str(50000 + i),
                "ema50": None,
                "macd": None,
                "rsi7": None,
                "rsi14": "55.5",
            }
            for i, m in ((3, 9), (4, 12))
        ],
    }
    hourly = await _get(client, seeded, "/market/BTC-USDT-SWAP", timeframe="1H")
    assert [c["close"] for c in hourly["candles"]] == ["2"]
    assert (await _get(client, seeded, "/market/ETH-USDT-SWAP"))["candles"] == []
    assert (await client.get("/api/v1/market/BTC-USDT-SWAP")).status_code == 401


# ------------------------------------------------------------------------------ refusals
VIEWS = ["equity", "performance", "calibration", "exit-plans", "funding"]


@pytest.mark.parametrize("path", VIEWS)
async def test_another_accounts_view_is_404_like_an_unknown_one(
    client: httpx.AsyncClient, seeded: Seeded, path: str
) -> None:
    other = await client.get(f"/api/v1/accounts/B/{path}", headers=seeded.auth)
    unknown = await client.get(f"/api/v1/accounts/nobody/{path}", headers=seeded.auth)
    assert other.status_code == unknown.status_code == 404
    assert other.json() == {"detail": "no account 'B'"}


@pytest.mark.parametrize(
    ("path", "params", "field", "reason"),
    [
        pytest.param("accounts/A/equity", {"step": "2m"}, "step", "'1m', '5m'", id="bad-step"),
        pytest.param(
            "accounts/A/equity",
            {"from": "2026-11-01T00:00:00Z", "to": "2026-11-03T00:00:00Z", "step": "1m"},
            None,
            "2880 points of 1m",
            id="too-many-points",
        ),
        pytest.param(
            "accounts/A/equity",
            {"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
            None,
            "before `to`",
            id="empty-span",
        ),
        pytest.param("accounts/A/equity", {"from": "2026-11-01"}, "from", "timezone", id="naive-from"),
        pytest.param("accounts/A/equity", {"limit": "5"}, "limit", "Extra inputs", id="equity-unknown"),
        pytest.param("leaderboard", {"window": "monthly"}, "window", "'daily'", id="bad-window"),
        pytest.param("leaderboard", {"limit": "5"}, "limit", "Extra inputs", id="leaderboard-unknown"),
        pytest.param("accounts/A/performance", {"window": "hour"}, "window", "'daily'", id="perf-window"),
        pytest.param("accounts/A/calibration", {"window": ""}, "window", "'daily'", id="calibration-window"),
        pytest.param(
            "accounts/A/exit-plans", {"limit": "501"}, "limit", "less than or equal to 500", id="plans-limit"
        ),
        pytest.param("accounts/A/exit-plans", {"side": "long"}, "side", "Extra inputs", id="plans-unknown"),
        pytest.param(
            "accounts/A/exit-plans",
            {"cursor": encode_cursor(T0, uuid4())},  # a cursor of a list keyed by UUIDs
            "cursor",
            "malformed cursor",
            id="plans-uuid-cursor",
        ),
        pytest.param(
            "accounts/A/funding", {"limit": "0"}, "limit", "greater than or equal to 1", id="funding-limit"
        ),
        pytest.param("accounts/A/funding", {"symbol": "BTC"}, "symbol", "pattern", id="funding-symbol"),
        pytest.param(
            "market/BTC-USDT-SWAP", {"limit": "1001"}, "limit", "less than or equal to 1000", id="candles"
        ),
        pytest.param(
            "market/BTC-USDT-SWAP", {"limit": "0"}, "limit", "greater than or equal to 1", id="candles-0"
        ),
        pytest.param("market/BTC-USDT-SWAP", {"timeframe": "7m"}, "timeframe", "'1m'", id="timeframe"),
        pytest.param("market/BTC", {}, "symbol", "pattern", id="market-symbol"),
        pytest.param(
            "market/BTC-USDT-SWAP", {"window": "daily"}, "window", "Extra inputs", id="market-unknown"
        ),
    ],
)
async def test_bad_parameters_of_the_views_are_422_and_no_query_runs(
    client: httpx.AsyncClient,
    seeded: Seeded,
    path: str,
    params: dict[str, str],
    field: str | None,
    reason: str,
) -> None:
    before = _queries_run()
    answer = await client.get(f"/api/v1/{path}", params=params, headers=seeded.auth)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert reason in error["msg"]
    if field is not None:
        assert error["loc"][-1] == field
    assert _queries_run() == before


async def test_a_series_too_long_for_its_step_from_the_first_point_is_422(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    """Without `from` the span starts at the account's first point (T0, a month ago): known
    only after a query."""
    answer = await client.get("/api/v1/accounts/A/equity", params={"step": "5m"}, headers=seeded.auth)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert error["loc"] == ["query", "step"] and "points of 5m" in error["msg"]


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)
