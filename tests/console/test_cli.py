"""`aitrader status | trades | performance | calls` on real PostgreSQL (click's CliRunner): the
tables show the seeded rows within 80 columns, `--json` gives exact values, filters filter, a
bad filter is one line and exit 2, an unknown account one line and exit 1."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from click.testing import CliRunner, Result

from aitrader.cli import cli
from tests.console.conftest import Seeded
from tests.console.seed import T0, closed_record, insert_closed


@pytest_asyncio.fixture(loop_scope="session")
async def stocked(seeded: Seeded, db_pool: asyncpg.Pool) -> Seeded:
    """A's second trade (a stop-loss, ETH), its metrics and an equity curve."""
    stop = list(closed_record(seeded.a, T0 + timedelta(hours=1), symbol="ETH-USDT-SWAP", side="short"))
    stop[11] = "stop_loss"
    stop[8] = Decimal("-3.00000001")
    await insert_closed(db_pool, [tuple(stop)])
    await db_pool.execute(
        """INSERT INTO aitrader.performance_snapshots (account_id, "window", sharpe_ratio, win_rate,
               average_leverage, average_confidence, biggest_win_usdt, biggest_loss_usdt,
               hold_ratio_long, hold_ratio_short, hold_ratio_flat, window_start, window_end,
               closed_positions, realized_pnl_usdt, max_drawdown_pct)
           VALUES ($1, 'all_time', 1.234567, 0.5, 3, 70, 0.12345678, -3.00000001, 0.25, 0.25, 0.5,
                   $2, $3, 2, -2.87654323, 12.3456)""",
        seeded.a,
        T0 - timedelta(hours=1),
        T0 + timedelta(hours=2),
    )
    await db_pool.execute(
        """INSERT INTO aitrader.exit_attribution (account_id, "window", exit_reason, closed_positions,
               realized_pnl_usdt)
           VALUES ($1, 'all_time', 'agent', 1, 0.12345678), ($1, 'all_time', 'stop_loss', 1, -3.00000001)""",
        seeded.a,
    )
    await db_pool.execute(
        """INSERT INTO aitrader.confidence_calibration (account_id, "window", bucket, closed_positions,
               win_rate, mean_pnl_usdt) VALUES ($1, 'all_time', '50-70', 2, 0.5, -1.438271615)""",
        seeded.a,
    )
    await db_pool.executemany(
        """INSERT INTO aitrader.equity_snapshots (account_id, equity, cash, net_position_value,
               unrealized_pnl, as_of) VALUES ($1, $2, $2, 0, 0, $3)""",
        [(seeded.a, Decimal(1000) + i, T0 + timedelta(minutes=i)) for i in range(30)],
    )
    await db_pool.execute(
        """UPDATE aitrader.positions_open SET exit_plan = $2 WHERE account_id = $1""",
        seeded.a,
        {"version": 2, "stop_loss": "49000.5", "take_profit": "52000"},
    )
    return seeded


def run(db_dsn: str, *args: str) -> Result:
    runner = CliRunner(env={"AITRADER_DATABASE_URL": db_dsn, "COLUMNS": "80"})
    return runner.invoke(cli, list(args), catch_exceptions=False)


def as_json(db_dsn: str, *args: str) -> Any:
    result = run(db_dsn, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fits(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout


def test_status_lists_the_accounts_and_one_account_its_positions(db_dsn: str, stocked: Seeded) -> None:
    everyone = run(db_dsn, "status")
    fits(everyone)
    assert "Accounts" in everyone.stdout and "simulated" in everyone.stdout
    names = [a["external_id"] for a in as_json(db_dsn, "status")["items"]]
    assert sorted(names) == ["A", "B"]
    one = run(db_dsn, "status", "--account", "A")
    fits(one)
    assert "BTC-USDT-SWAP" in one.stdout and "50000" in one.stdout and "▁" in one.stdout
    assert "49000.5" in one.stdout  # the stop of the exit plan
    wide = CliRunner(env={"AITRADER_DATABASE_URL": db_dsn, "COLUMNS": "140"}).invoke(
        cli, ["status", "--account", "A"], catch_exceptions=False
    )
    assert "SL rests" in wide.stdout and " yes " in wide.stdout  # resting on the exchange
    answer = as_json(db_dsn, "status", "--account", "A")
    assert answer["account"]["external_id"] == "A"
    (position,) = answer["open_positions"]["items"]
    assert position["quantity"] == "1" and position["avg_entry_price"] == "50000"
    assert position["average_confidence"] == "70"
    assert position["stop_loss_resting"] is True  # seed_account's live stop (aitrader.stop_loss_resting)
    points = answer["equity"]["points"]
    assert answer["equity"]["step"] == "1m" and len(points) == 30
    assert points[0] == {"time": "2026-11-01T00:00:00Z", "equity_usdt": "1000"}
    assert (
        as_json(db_dsn, "status", "--account", "A", "--symbol", "ETH-USDT-SWAP")["open_positions"]["items"]
        == []
    )


def test_trades_shows_the_closed_positions_exactly_and_filters(db_dsn: str, stocked: Seeded) -> None:
    table = run(db_dsn, "trades", "--account", "A")
    fits(table)
    assert "BTC-USDT-SWAP" in table.stdout and "ETH-USDT-SWAP" in table.stdout
    assert "stop_loss" in table.stdout and "-3.00" in table.stdout
    items = as_json(db_dsn, "trades", "--account", "A")["items"]
    assert [t["exit_reason"] for t in items] == ["stop_loss", "agent"]  # newest exit first
    assert items[0]["realized_pnl_usdt"] == "-3.00000001" and items[1]["fee_usdt"] == "-0.00000001"
    assert items[1]["exit_price"] == "50100.1" and items[1]["exit_time"] == "2026-11-01T00:00:00Z"
    for flags, reasons in (
        (["--exit-reason", "agent"], ["agent"]),
        (["--symbol", "ETH-USDT-SWAP"], ["stop_loss"]),
        (["--side", "long"], ["agent"]),
        (["--from", "2026-11-01T00:30:00Z"], ["stop_loss"]),
        (["--to", "2026-11-01T00:30:00+00:00"], ["agent"]),
    ):
        got = as_json(db_dsn, "trades", "--account", "A", *flags)["items"]
        assert [t["exit_reason"] for t in got] == reasons, flags
    first = as_json(db_dsn, "trades", "--account", "A", "--limit", "1")
    assert len(first["items"]) == 1 and first["next_cursor"]
    rest = as_json(db_dsn, "trades", "--account", "A", "--cursor", first["next_cursor"])
    assert [t["exit_reason"] for t in rest["items"]] == ["agent"] and rest["next_cursor"] is None
    assert "more: --cursor" in run(db_dsn, "trades", "--account", "A", "--limit", "1").stdout


def test_calls_shows_the_audit_and_filters(db_dsn: str, stocked: Seeded) -> None:
    table = run(db_dsn, "calls", "--account", "A")
    fits(table)
    assert "execute_trade" in table.stdout and "success" in table.stdout
    (call,) = as_json(db_dsn, "calls", "--account", "A", "--tool", "execute_trade")["items"]
    assert call["request"] == {"symbol": "BTC-USDT-SWAP"} and call["latency_ms"] == 12
    assert as_json(db_dsn, "calls", "--account", "A", "--status", "failed")["items"] == []


def test_performance_shows_the_window_and_the_equity_curve(db_dsn: str, stocked: Seeded) -> None:
    table = run(db_dsn, "performance", "--account", "A")
    fits(table)
    shown = ("Performance (all_time)", "50.0 %", "12.35", "stop_loss", "50-70", "Equity (USDT, 30 points")
    for text in shown:
        assert text in table.stdout, text
    answer = as_json(db_dsn, "performance", "--account", "A")
    perf = answer["performance"]
    assert perf["available"] is True and perf["sharpe_ratio"] == "1.234567"
    assert perf["max_drawdown_pct"] == "12.3456"  # the API's model: nothing the metrics row holds is dropped
    assert perf["realized_pnl_usdt"] == "-2.87654323" and perf["biggest_loss_usdt"] == "-3.00000001"
    assert [e["exit_reason"] for e in perf["exit_attribution"]] == ["agent", "stop_loss"]
    assert answer["calibration"]["buckets"][0]["mean_pnl_usdt"] == "-1.43827162"
    assert len(answer["equity"]["points"]) == 30
    daily = as_json(db_dsn, "performance", "--account", "A", "--window", "daily")["performance"]
    assert daily == {**daily, "available": False, "window": "daily", "sharpe_ratio": None}
    assert "not computed yet" in run(db_dsn, "performance", "--account", "A", "--window", "daily").stdout


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["trades", "--account", "A", "--exit-reason", "bored"], "--exit-reason"),
        (["trades", "--account", "A", "--from", "yesterday"], "--from"),
        (["trades", "--account", "A", "--from", "2026-11-01T00:00:00"], "--from"),  # no zone
        (["trades", "--account", "A", "--limit", "0"], "--limit"),
        (["calls", "--account", "A", "--limit", "many"], "--limit"),
        (["trades", "--account", "A", "--cursor", "garbage"], "--cursor"),
        (["calls", "--account", "A", "--status", "maybe"], "--status"),
        (["status", "--mode", "paper"], "--mode"),
        (["status", "--account", "A", "--symbol", "BTC"], "--symbol"),
        (["status", "--side", "long"], "--side"),  # open positions: of which account?
        (["trades"], "--account"),  # two accounts: which one?
    ],
)
def test_a_bad_filter_is_one_line_and_exit_2(
    db_dsn: str, stocked: Seeded, args: list[str], option: str
) -> None:
    result = run(db_dsn, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"aitrader: {option}:"), result.stderr


@pytest.mark.parametrize("command", ["status", "trades", "performance", "calls"])
def test_an_unknown_account_is_one_line_and_exit_1(db_dsn: str, stocked: Seeded, command: str) -> None:
    result = run(db_dsn, command, "--account", "nobody")
    assert result.exit_code == 1, result.output
    assert result.stderr == "aitrader: no account 'nobody'\n" and result.stdout == ""
