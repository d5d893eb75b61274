"""`aitrader okx-sim` starts a real server and prints where it listens."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx


def test_cli_serves_okx_rest() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = "from aitrader.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "okx-sim", "--port", "0", "--seed", "9",
         "--symbols", "BTC-USDT-SWAP,SOL-USDT-SWAP", "--pos-mode", "long_short",
         "--account", "k1:s1:p1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("okx-sim listening: REST http://127.0.0.1:"), first
        url = first.split("REST ")[1].strip()
        resp = httpx.get(f"{url}/api/v5/public/instruments?instType=SWAP", timeout=5)
        assert [r["instId"] for r in resp.json()["data"]] == ["BTC-USDT-SWAP", "SOL-USDT-SWAP"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_rejects_bad_account() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from aitrader.cli import main; main()", "okx-sim",
         "--account", "only-a-key"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "KEY:SECRET:PASSPHRASE" in result.stderr
