"""`aitrader okx-sim` starts a real server, prints where it listens (and no key), takes its
accounts from the environment or an owner-only file, and logs like every other process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .test_rest_errors import headers

CLI = [sys.executable, "-c", "from aitrader.cli import main; main()", "okx-sim"]
ENV_ACCOUNT = ("env-key-5b1", "env-secret-5b1", "env-phrase-5b1")
FILE_ACCOUNT = ("file-key-9c2", "file-secret-9c2", "file-phrase-9c2")


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    path = tmp_path / "accounts"
    path.write_text(f"# the second account\n{':'.join(FILE_ACCOUNT)}:live\n\n")
    path.chmod(0o600)
    return path


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([*CLI, "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_serves_okx_rest(stopped: list[subprocess.Popen[str]]) -> None:
    proc = start("--seed", "9", "--symbols", "BTC-USDT-SWAP,SOL-USDT-SWAP",
                 "--pos-mode", "long_short", "--account", "k1:s1:p1")
    stopped.append(proc)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("okx-sim listening: REST http://127.0.0.1:"), first
    url = first.split("REST ")[1].strip()
    resp = httpx.get(f"{url}/api/v5/public/instruments?instType=SWAP", timeout=5)
    assert [r["instId"] for r in resp.json()["data"]] == ["BTC-USDT-SWAP", "SOL-USDT-SWAP"]


def test_accounts_from_the_environment_and_a_file_never_shown(
        accounts_file: Path, stopped: list[subprocess.Popen[str]]) -> None:
    proc = start("--accounts-file", str(accounts_file), env={
        "AITRADER_OKX_SIM_ACCOUNTS": ":".join(ENV_ACCOUNT), "AITRADER_LOG_FORMAT": "json"})
    stopped.append(proc)
    assert proc.stdout is not None and proc.stderr is not None
    shown = [proc.stdout.readline() for _ in range(3)]
    started = json.loads(proc.stderr.readline())
    assert "accounts 2 (1 demo, 1 live)" in shown[2]
    assert (started["event"], started["service"], started["accounts"]) == (
        "okx_sim.started", "okx_sim", 2)
    url = shown[0].split("REST ")[1].strip()
    path = "/api/v5/account/balance"
    for (key, secret, phrase), demo in ((ENV_ACCOUNT, "1"), (FILE_ACCOUNT, "0")):
        signed = headers("GET", path, key=key, secret=secret, passphrase=phrase)
        answer = httpx.get(url + path, headers={**signed, "x-simulated-trading": demo}, timeout=5)
        assert answer.json()["code"] == "0", (key, answer.text)
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5) as s:
        s.sendall(b"NOT HTTP\r\n\r\n")  # uvicorn warns, in the same JSON as the rest
        s.recv(1024)
    warned = json.loads(proc.stderr.readline())
    assert (warned["logger"], warned["level"], warned["service"]) == (
        "uvicorn.error", "warning", "okx_sim")
    output = "".join(shown) + json.dumps(started)
    for value in (*ENV_ACCOUNT, *FILE_ACCOUNT):
        assert value not in output


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_an_accounts_file_others_can_read_is_refused(accounts_file: Path, mode: int) -> None:
    accounts_file.chmod(mode)
    result = subprocess.run([*CLI, "--accounts-file", str(accounts_file)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: accounts file {accounts_file} is open to group or others (mode 0{mode:o}): "
        "chmod 600 it"]


@pytest.mark.parametrize(("args", "env"), [
    (["--account", "only-a-key"], {}),
    ([], {"AITRADER_OKX_SIM_ACCOUNTS": "k:s:p k:other-secret:p"}),
    ([], {"AITRADER_OKX_SIM_ACCOUNTS": "k:leaky-secret:p:paper"}),
])
def test_cli_rejects_bad_accounts_without_echoing_them(args: list[str], env: dict[str, str]
                                                       ) -> None:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30,
                            env={**os.environ, **env})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "other-secret" not in result.stderr and "leaky-secret" not in result.stderr
    assert "KEY:SECRET:PASSPHRASE" in result.stderr or "API key of account 1" in result.stderr
