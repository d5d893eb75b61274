"""`aitrader demo` on this machine: embedded servers, okx_sim, every service and a scripted MCP
agent over HTTP, finishing with a trader's summary, in under 60 s. The summary's figures are
checked against the demo's own database, reopened afterwards (`--keep`)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aitrader.embedded import EmbeddedPostgres
from tests.foundation.test_up import clean_env

SECTIONS = ["Closed trades", "Open positions", "Result", "Performance (all time)", "Equity curve"]


def figure(out: str, name: str) -> str:
    """The value of a `  name   value` line of the summary."""
    match = re.search(rf"^  {re.escape(name)} +(\S.*)$", out, re.M)
    assert match, f"no {name!r} line"
    return match.group(1)


def read_database(root: Path) -> dict[str, Any]:
    """The kept database's figures: closed positions, fees, funding, the equity now."""
    pg = EmbeddedPostgres(root)
    pg.start()
    try:
        return asyncio.run(_read(pg.dsn))
    finally:
        pg.stop()


async def _read(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return {
            "closed": await conn.fetch(
                "SELECT symbol, side, realized_pnl_usdt FROM aitrader.positions_closed ORDER BY exit_time"
            ),
            "fees": await conn.fetchval("SELECT sum(fee_usdt) FROM aitrader.fills"),
            "funding": await conn.fetchval(
                "SELECT COALESCE(sum(amount_usdt), 0) FROM aitrader.funding_payments"
            ),
            "equity_now": await conn.fetchval("SELECT equity_usdt FROM aitrader.account_equity_now"),
        }
    finally:
        await conn.close()


def cents(value: Decimal, signed: bool = False) -> str:
    rounded = value.quantize(Decimal("0.01"))
    return f"{rounded:+f}" if signed else f"{rounded:f}"


@pytest.mark.timeout(240)
def test_demo_trades_two_symbols_and_prints_a_summary_consistent_with_its_database() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aitrader.cli", "demo", "--keep"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    out = result.stdout
    kept = re.search(r"^data kept in (\S+)$", out, re.M)
    try:
        assert result.returncode == 0, (out[-2000:], result.stderr[-3000:])
        assert kept, out[-500:]
        check_summary(out, read_database(Path(kept.group(1)) / "postgres"))
    finally:
        if kept:
            shutil.rmtree(kept.group(1), ignore_errors=True)


def check_summary(out: str, db: dict[str, Any]) -> None:
    summary = out[out.index("\nClosed trades\n") :]
    assert "None" not in out and "{" not in out and "Decimal(" not in out
    starts = [summary.find(f"\n{section}") for section in SECTIONS]
    assert -1 not in starts and starts == sorted(starts), starts
    trades = re.findall(
        r"^  (BTC|ETH)-USDT-SWAP\s+(long|short)\s+3\s.*\s([+-]\d+\.\d\d)  agent$", summary, re.M
    )
    assert [(s, side) for s, side, _ in trades] == [("BTC", "long"), ("ETH", "short")]
    # Each trade's net PnL, the total, the costs and the equity are the database's, to the cent.
    pnls = [r["realized_pnl_usdt"] for r in db["closed"]]
    assert [pnl for _, _, pnl in trades] == [cents(p, signed=True) for p in pnls]
    assert f"net PnL {cents(sum(pnls), signed=True)} USDT over 2 trades" in summary
    assert figure(summary, "fees paid") == f"{cents(-db['fees'])} USDT"
    assert figure(summary, "funding paid").startswith(cents(abs(db["funding"])))
    assert figure(summary, "end equity") == f"{cents(db['equity_now'])} USDT"
    assert "Open positions\n  none" in summary
    start, end = (Decimal(figure(summary, f"{which} equity").split()[0]) for which in ("start", "end"))
    ret = Decimal(figure(summary, "return").split()[0])
    assert abs(ret - (end - start) / start * 100) < Decimal("0.001")
    assert re.fullmatch(r"\d+\.\d{3} % \(\d+\.\d\d USDT\)", figure(summary, "max drawdown"))
    win, loss = max(pnls), min(pnls)
    assert figure(summary, "biggest win").startswith("none" if win <= 0 else f"{cents(win, True)} USDT")
    assert figure(summary, "biggest loss").startswith("none" if loss >= 0 else f"{cents(loss, True)} USDT")
    assert re.search(r"^  average confidence \d", summary, re.M)
    for tool in (
        "execute_trade",
        "get_account_state",
        "get_market_data",
        "update_exit_plan",
        "get_performance_metrics",
    ):
        assert re.search(rf"^\s+{tool}\s+calls\s+\d+", out, re.M), tool
    audited = int(re.search(r"every call audited: (\d+) rows", out).group(1))  # type: ignore[union-attr]
    calls = sum(int(n) for n in re.findall(r"calls\s+(\d+)", out))
    assert audited == calls
    # The demo says how long it took (its speed is a figure for docs/performance.md, not a
    # timed assertion: CI runs tests side by side on two cores).
    assert re.search(r"Done in \d+\.\d s\.", out), out[-500:]
