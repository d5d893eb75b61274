"""The okx_sim that `aitrader up --market sim` starts: its key travels in the environment, so
its command line (what `ps` shows) holds no secret, and ingest's key is the one it serves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from aitrader.embedded import free_port
from aitrader.sim import sim_environment
from aitrader.supervise import Stack

from .test_rest_errors import headers


def test_the_sim_started_by_up_has_no_secret_on_its_command_line() -> None:
    stack = Stack()
    port = free_port()
    argv = sim_environment(stack, port)
    env = stack.env
    key, secret, phrase = (env[f"AITRADER_OKX_{n}"] for n in ("API_KEY", "SECRET_KEY", "PASSPHRASE"))
    proc = subprocess.Popen(argv, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        shown = [proc.stdout.readline() for _ in range(3)]
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        for value in (key, secret, phrase):
            assert value not in cmdline and value not in " ".join(argv)
            assert value not in "".join(shown)
        assert shown[0].startswith(f"okx-sim listening: REST http://127.0.0.1:{port}")
        path = "/api/v5/account/balance"
        signed = headers("GET", path, key=key, secret=secret, passphrase=phrase)
        answer = httpx.get(f"{env['AITRADER_OKX_REST_URL']}{path}", headers=signed, timeout=5)
        assert answer.json()["code"] == "0", answer.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
