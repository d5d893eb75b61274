"""An ASGI app served by uvicorn inside a service process, on a socket the caller bound: the
health endpoints (`shared.health`) and the MCP gateway's HTTP app.

The process's own signal handlers (`shared.runner.run_until_signalled`) stay in charge: uvicorn
does not take SIGINT / SIGTERM; leaving the block stops the server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import uvicorn


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (0: any free port), ready for `serving_app`; OSError when
    the port is taken. IPPROTO_TCP, or asyncio does not set TCP_NODELAY on the connections it
    accepts (then Nagle + delayed ACK add ~40 ms to every response)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving_app(
    app: Any, sock: socket.socket, name: str, *, lifespan: Literal["on", "off"] = "off"
) -> AsyncIterator[None]:
    """Serve `app` on the bound `sock` until the block exits (the socket is closed then)."""
    # log_config=None: uvicorn's records go through the process's own logging (shared.logging),
    # one format per stream, not uvicorn's
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan,
                            log_config=None)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=name)
    try:
        while not server.started:
            if task.done():
                task.result()
                raise OSError(f"{name}: the HTTP server did not start")
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
