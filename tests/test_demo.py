"""`aitrader demo` on this machine: embedded servers, okx_sim, every service and a scripted MCP
agent over HTTP, finishing with a summary, in under 60 s."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.foundation.test_up import clean_env


def test_demo_trades_two_symbols_and_prints_a_summary_in_under_a_minute() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aitrader.cli", "demo"],
        env=clean_env(), capture_output=True, text=True, timeout=150, check=False,
    )
    out = result.stdout
    assert result.returncode == 0, (out[-2000:], result.stderr[-3000:])
    closed = re.findall(r"^\s+(BTC|ETH)-USDT-SWAP\s+(long|short)\s+3\.0+ contracts.*\[agent\]$", out, re.M)
    assert sorted(closed) == [("BTC", "long"), ("ETH", "short")]
    assert re.search(r"realized PnL, net of fees: -?\d+\.\d+ USDT over 2 positions", out)
    assert re.search(r"^\s+average_confidence\s+\d", out, re.M)
    for tool in ("execute_trade", "get_account_state", "get_market_data", "update_exit_plan",
                 "get_performance_metrics"):
        assert re.search(rf"^\s+{tool}\s+calls\s+\d+", out, re.M), tool
    audited = int(re.search(r"every call audited: (\d+) rows", out).group(1))  # type: ignore[union-attr]
    calls = sum(int(n) for n in re.findall(r"calls\s+(\d+)", out))
    assert audited == calls
    seconds = float(re.search(r"Done in (\d+\.\d) s\.", out).group(1))  # type: ignore[union-attr]
    assert seconds < 60
