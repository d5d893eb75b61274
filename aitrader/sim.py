"""The okx_sim that `aitrader up --market sim` runs: its key, its state file, its environment."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from aitrader.supervise import Stack
from shared.errors import ConfigError


def sim_environment(stack: Stack, port: int, data_dir: Path | None = None) -> list[str]:
    """okx_sim on loopback with a demo key; ingest is pointed at it. The key reaches the
    simulator through the environment: its command line (which `ps` shows) holds no secret.
    With a data directory the exchange remembers: its key is made once and kept there (0600),
    and its state file (accounts, orders, fills, positions) is reloaded on the next start."""
    key, secret, passphrase = sim_key(data_dir)
    base = f"127.0.0.1:{port}"
    stack.env.update(
        AITRADER_OKX_REST_URL=f"http://{base}",
        AITRADER_OKX_WS_PUBLIC_URL=f"ws://{base}/ws/v5/public",
        AITRADER_OKX_WS_PRIVATE_URL=f"ws://{base}/ws/v5/private",
        AITRADER_OKX_WS_BUSINESS_URL=f"ws://{base}/ws/v5/business",
        AITRADER_OKX_API_KEY=key,
        AITRADER_OKX_SECRET_KEY=secret,
        AITRADER_OKX_PASSPHRASE=passphrase,
        AITRADER_OKX_SIM_ACCOUNTS=f"{key}:{secret}:{passphrase}:demo",
        AITRADER_ACCOUNT_MODE="simulated",
    )
    stack.env.setdefault("AITRADER_ACCOUNT", "sim-demo")
    argv = [sys.executable, "-m", "aitrader.cli", "okx-sim", "--port", str(port)]
    if data_dir is not None:
        argv += ["--state-file", str(data_dir / "okx-sim" / "state.json")]
    return argv


def sim_key(data_dir: Path | None) -> tuple[str, str, str]:
    """The sim's demo key: kept in `<data dir>/okx-sim/key` (mode 0600) once made, so the
    restarted exchange serves the same account; a fresh one without a data directory."""
    fresh = secrets.token_hex(8), secrets.token_hex(16), secrets.token_hex(6)
    if data_dir is None:
        return fresh
    path = data_dir / "okx-sim" / "key"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        parts = path.read_text(encoding="utf-8").split()
        if len(parts) != 3:
            raise ConfigError("okx-sim", f"{path}: not a key (remove it to make a new one; "
                              "the simulated account starts afresh)") from None
        return parts[0], parts[1], parts[2]
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(" ".join(fresh) + "\n")
    return fresh
