"""Run a simulator in-process on a free port: `async with run_sim(SimConfig()) as sim: ...`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from decimal import Decimal

import uvicorn

from .config import SimConfig
from .core import SimCore
from .exchange import Exchange
from .server import create_app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # in-process: leave the host program's signal handlers alone


@dataclass
class SimHandle:
    """A running simulator: its URLs, its engine and its test controls."""

    core: SimCore
    host: str
    port: int
    tls: bool

    @property
    def rest_url(self) -> str:
        """Base URL for REST (no trailing slash), e.g. http://127.0.0.1:PORT."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def _ws(self, kind: str, live: bool = False) -> str:
        prefix = "/live" if live else ""
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}{prefix}/ws/v5/{kind}"

    def ws_live_url(self, kind: str) -> str:
        """The production-environment websocket `kind` (public|business|private): live keys
        log in here; the ws_*_url properties are demo trading's."""
        return self._ws(kind, live=True)

    @property
    def ws_public_url(self) -> str:
        return self._ws("public")

    @property
    def ws_private_url(self) -> str:
        return self._ws("private")

    @property
    def ws_business_url(self) -> str:
        return self._ws("business")

    @property
    def exchange(self) -> Exchange:
        return self.core.exchange

    def now(self) -> int:
        """Simulated time (ms)."""
        return self.core.now()

    def set_price(self, inst_id: str, px: Decimal | str) -> Decimal:
        """Move the market price now (limit orders, liquidations and pushes follow)."""
        return self.core.set_price(inst_id, Decimal(px))

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward: bars close, funding settles."""
        self.core.advance(seconds)

    def tick(self) -> None:
        """Run one market step now."""
        self.core.tick()

    def drop_private(self, api_key: str | None = None, code: int = 1011) -> int:
        return self.core.drop_private(api_key, code)

    def drop_business(self, api_key: str | None = None, code: int = 1011) -> int:
        return self.core.drop_business(api_key, code)

    def repeat_last_push(self, api_key: str) -> bool:
        return self.core.repeat_last_push(api_key)

    def send_malformed(self, api_key: str | None = None) -> int:
        return self.core.send_malformed(api_key)

    def transfer(self, api_key: str, amount: Decimal | str) -> Decimal:
        return self.core.transfer(api_key, Decimal(str(amount)))

    def pause_pushes(self, api_key: str) -> None:
        self.core.pause_pushes(api_key)

    def resume_pushes(self, api_key: str) -> None:
        self.core.resume_pushes(api_key)


async def _close_connections(server: uvicorn.Server, core: SimCore) -> None:
    """Close websockets politely (1001), then drop what is left (idle keep-alive TLS clients
    never answer a TLS close and would hold the shutdown for its full timeout)."""
    core.hub.close_all()
    for _ in range(100):
        if not core.hub.conns:
            break
        await asyncio.sleep(0.01)
    for protocol in list(server.server_state.connections):
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.abort()


@contextlib.asynccontextmanager
async def run_sim(config: SimConfig | None = None) -> AsyncIterator[SimHandle]:
    """Start a simulator on config.host:config.port (0 = a free port); stop it on exit."""
    config = config or SimConfig()
    core = SimCore(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit TCP_NODELAY from the listener. Without it a response written as
    # headers + body waits ~40 ms for the client's delayed ACK on every kept-alive request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError:
        sock.close()
        await core.close()  # writes the state back and releases its lock
        raise
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(
        # log_config=None: uvicorn's records reach the host program's handlers (one format).
        create_app(core), log_level="warning", log_config=None, access_log=False,
        ssl_certfile=config.tls_cert,
        ssl_keyfile=config.tls_key, ws_ping_interval=None, timeout_graceful_shutdown=2,
    ))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            await task  # raises the startup error
            raise RuntimeError("okx-sim did not start")
        yield SimHandle(core, config.host, port, config.tls_cert is not None)
    finally:
        await _close_connections(server, core)
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()
        await core.close()
