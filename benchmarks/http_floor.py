"""The benchmark client's own cost: the same request against a static HTTP/1.1 server in its own
process (a fixed body, no framework, no database), so that what a client and one loopback hop
cost is printed beside the API's figures (console_pages.py).

    python -m benchmarks.http_floor SIZE    # serves SIZE bytes on a free port, prints the port
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator


async def _serve(size: int) -> None:
    body = b"x" * size
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % size + body

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


@contextlib.asynccontextmanager
async def static_server(size: int) -> AsyncIterator[str]:
    """The base URL of a static server answering `size` bytes, in its own process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.http_floor", str(size), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), 10))
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
