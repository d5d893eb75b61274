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


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving_app(
    app: Any, sock: socket.socket, name: str, *, lifespan: Literal["on", "off"] = "off"
) -> AsyncIterator[None]:
    """Serve `app` on the bound `sock` until the block exits (the socket is closed then)."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
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
