"""Fixtures for okx_sim tests: a TLS simulator on loopback, OKX SDK clients, push collectors."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trustme

from services.okx_sim import AccountSpec, SimConfig, SimHandle, run_sim

KEY, SECRET, PASSPHRASE = "test-key", "test-secret", "Test-Pass1"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: pins the market for exact assertions


@dataclass(frozen=True)
class Tls:
    cert: str
    key: str
    ca: str

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.load_verify_locations(self.ca)
        return ctx


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    """A throwaway CA and a 127.0.0.1 certificate; SSL_CERT_FILE trusts it (python-okx, httpx)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d: Path = tmp_path_factory.mktemp("tls")
    paths = Tls(str(d / "cert.pem"), str(d / "key.pem"), str(d / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(paths.cert)
    cert.private_key_pem.write_to_path(paths.key)
    ca.cert_pem.write_to_path(paths.ca)
    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = paths.ca
    yield paths
    if old is None:
        os.environ.pop("SSL_CERT_FILE", None)
    else:
        os.environ["SSL_CERT_FILE"] = old


def base_config(tls: Tls | None = None, **overrides: Any) -> SimConfig:
    """A frozen-clock simulator (speed 0): prices move only through the controls."""
    config = SimConfig(
        seed=42, accounts=(AccountSpec(KEY, SECRET, PASSPHRASE, Decimal("10000")),),
        speed=Decimal(0), start_ms=START_MS, test_controls=True, tick_interval_s=0.05,
        tls_cert=tls.cert if tls else None, tls_key=tls.key if tls else None,
    )
    return replace(config, **overrides)


@pytest.fixture
async def sim(tls: Tls) -> AsyncIterator[SimHandle]:
    """A TLS simulator with one account (net mode, 10 000 USDT)."""
    async with run_sim(base_config(tls)) as handle:
        yield handle


@dataclass
class Inbox:
    """Messages received on a websocket (raw text), with a bounded wait for a condition."""

    frames: list[str] = field(default_factory=list)
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, message: str) -> None:
        self.frames.append(message)
        self._event.set()

    def json(self) -> list[dict[str, Any]]:
        out = []
        for frame in self.frames:
            try:
                parsed = json.loads(frame)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                out.append(parsed)
        return out

    def pushes(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.json()
                if "data" in m and m.get("arg", {}).get("channel") == channel]

    async def wait(self, predicate: Callable[[Inbox], Any], within: float = 10.0) -> Any:
        """Wait (at most `within` seconds) until predicate(self) is truthy; return its value."""
        async with asyncio.timeout(within):
            while True:
                result = predicate(self)
                if result:
                    return result
                self._event.clear()
                await self._event.wait()
