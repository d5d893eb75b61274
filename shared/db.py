"""asyncpg: the pool factory, its connection setup, and a fetch that does not wait for the release."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.errors import ConfigError
from shared.logging import get_logger

SCHEMA = "aitrader"

# What statements run on: a connection of its own or one acquired from a pool (a proxy, in
# asyncpg's types), and anything that runs a statement, the pool included.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
Executor: TypeAlias = Connection | asyncpg.Pool


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, schema="pg_catalog", encoder=json_dumps, decoder=json.loads, format="text"
        )


async def _no_session_reset(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's default reset query.

    asyncpg still rolls back an open transaction before calling this. The default query (unlock
    advisory locks, close cursors, UNLISTEN, RESET ALL) costs a round trip per release; this
    product leaves no session state that a reset would clear (only transaction-scoped advisory
    locks, no LISTEN, no SET, no cursors). The positions service's temporary staging table is
    per connection and emptied at every commit; the default reset would not drop it either.
    """


def json_dumps(value: Any) -> str:
    """Compact JSON, as the json / jsonb codec writes it."""
    return json.dumps(value, default=str, separators=(",", ":"))


def describe_dsn(dsn: str) -> str:
    """host:port/db of a DSN, without credentials (for logs and errors)."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}{parts.path or ''}"


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str = "aitrader",
    setting: str = "AITRADER_DATABASE_URL",
    timeout: float = 10.0,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    """Open a pool; a connection failure becomes a `ConfigError` naming the setting."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_no_session_reset,
            timeout=timeout,
            server_settings={"application_name": application_name, "search_path": SCHEMA,
                             **(server_settings or {})},
        )
    except (TimeoutError, OSError, socket.gaierror) as exc:
        raise ConfigError(setting, f"cannot connect to {describe_dsn(dsn)} ({exc})") from None
    except asyncpg.InvalidCatalogNameError:
        raise ConfigError(setting, f"database does not exist: {describe_dsn(dsn)}") from None
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise ConfigError(setting, f"authentication failed for {describe_dsn(dsn)} ({exc})") from None
    except asyncpg.InvalidPasswordError:
        raise ConfigError(setting, f"wrong password for {describe_dsn(dsn)}") from None
    except (asyncpg.PostgresError, ValueError) as exc:
        raise ConfigError(setting, f"{describe_dsn(dsn)}: {exc}") from None
    assert pool is not None
    return pool


_releasing: set[asyncio.Task[None]] = set()


async def fetch_now(pool: asyncpg.Pool, query: str, *args: Any) -> list[asyncpg.Record]:
    """`pool.fetch` without waiting for the connection's release: the rows are returned at once
    and the release (a shielded task inside asyncpg, two more event-loop turns: ~60 us of a
    get_account_state call here) finishes behind the caller. For single-statement reads on a
    latency path; `Pool.close` still waits for every release."""
    conn = await pool.acquire()
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        return rows
    finally:
        release_behind(pool, conn)


def release_behind(pool: asyncpg.Pool, conn: Any, last: str | None = None, timeout: float = 10.0) -> None:
    """Give `conn` back to `pool` behind the caller, after `last` (e.g. the COMMIT of a read-only
    transaction whose rows are already read) within `timeout`. The connection stays acquired, so
    no other caller gets it, until both are done; a failure terminates it (asyncpg's release)."""
    task = asyncio.ensure_future(_finish(pool, conn, last, timeout))
    _releasing.add(task)  # a running task must be referenced, or it may be collected
    task.add_done_callback(_released)


async def _finish(pool: asyncpg.Pool, conn: Any, last: str | None, timeout: float) -> None:
    try:
        if last is not None:
            async with asyncio.timeout(timeout):
                await conn.execute(last)
    finally:
        await pool.release(conn)


def _released(task: asyncio.Task[None]) -> None:
    _releasing.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        # asyncpg has terminated the connection; the pool opens a new one when needed.
        get_logger("db").warning("release_failed", error=f"{type(exc).__name__}: {exc}")
