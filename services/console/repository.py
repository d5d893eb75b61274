"""The console's SQL: one `Listing` per list, one builder for the keyset page of any of them,
and `ConsoleDb`, which runs every read in a read-only transaction that first names the
caller's token to the row-level security policies (migration 0013).

The WHERE clause also says which accounts are asked for; the policies are the second wall, so a
query that forgot it would still return only the token's accounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final
from uuid import UUID

import asyncpg
from prometheus_client import Counter
from pydantic import BaseModel

from services.console.json_sql import page_json_sql
from services.console.paging import PageQuery, TimedQuery, encode_cursor
from shared.db import Connection, release_behind

QUERY_TIMEOUT_S: Final = 10.0
SET_TOKEN: Final = "SELECT set_config('aitrader.console_token_hash', $1, true)"
_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
QUERIES = Counter("console_queries", "Data queries run by the console", ["listing"])
Shape = Callable[[asyncpg.Record], dict[str, Any]]


@dataclass(frozen=True)
class Listing:
    """A list the console serves: where its rows come from, whose they are, how they sort
    (`time` then `row_id`, newest first), and which filters map to which columns."""

    name: str
    source: str
    columns: str
    owner: str
    time: str
    row_id: str
    filters: Mapping[str, str] = field(default_factory=dict)
    shape: Shape | None = None


@dataclass(frozen=True)
class PageSql:
    text: str
    args: tuple[Any, ...]


def _begin(digest: str) -> str:
    """BEGIN READ ONLY and SET_TOKEN's setting for `digest` (a SHA-256 hex: nothing to quote)."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError("not a token digest")
    return f"BEGIN READ ONLY; SELECT set_config('aitrader.console_token_hash', '{digest}', true)"


def page_sql(
    listing: Listing, accounts: Sequence[UUID], query: PageQuery, filters: Mapping[str, Any]
) -> PageSql:
    """The keyset query of one page: LIMIT one more row than asked, to know if there is a next."""
    # One account: `= $1`, so that the (account, time, id) index gives the order and the LIMIT
    # stops the scan (`= ANY` of an array makes PostgreSQL sort every row of the account).
    one = len(accounts) == 1
    args: list[Any] = [accounts[0] if one else list(accounts)]
    where = [f"{listing.owner} = $1" if one else f"{listing.owner} = ANY($1::uuid[])"]

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    for name, value in filters.items():
        if value is not None:
            where.append(f"{listing.filters[name]} = {param(value)}")
    if isinstance(query, TimedQuery):
        if query.from_ is not None:
            where.append(f"{listing.time} >= {param(query.from_)}")
        if query.to is not None:
            where.append(f"{listing.time} < {param(query.to)}")
    position = query.position()
    if position is not None:
        where.append(f"({listing.time}, {listing.row_id}) < ({param(position.time)}, {param(position.id)})")
    text = (
        f"SELECT {listing.columns}, {listing.time} AS page_time, {listing.row_id} AS page_id "
        f"FROM {listing.source} WHERE {' AND '.join(where)} "
        f"ORDER BY {listing.time} DESC, {listing.row_id} DESC LIMIT {param(query.limit + 1)}"
    )
    return PageSql(text, tuple(args))


async def fetch_page_rows(conn: Connection, listing: Listing, sql: PageSql) -> list[dict[str, Any]]:
    """The rows of one page as dicts, shaped by the listing (one more than the page's limit when
    there is a next page: `as_page` cuts it). The console runs it under its token's policies;
    the operator's CLI (`aitrader trades` ...) as the schema's owner."""
    rows = await conn.fetch(sql.text, *sql.args)
    shape = listing.shape or dict
    return [shape(row) for row in rows]


def as_page(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """`{"items", "next_cursor"}` from the rows `page_sql` fetched (limit + 1 when there is more)."""
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return {"items": rows, "next_cursor": encode_cursor(last["page_time"], last["page_id"]) if last else None}


def page_json(row: type[BaseModel], sql: PageSql, limit: int) -> PageSql:
    """The page of `sql` (from `page_sql`) written as JSON by PostgreSQL (json_sql.py): one row
    of `items`, `more`, `last_time`, `last_id`, for `json_body`."""
    args = (*sql.args, limit)
    return PageSql(page_json_sql(row, sql.text, f"${len(args)}"), args)


def json_body(page: asyncpg.Record) -> bytes:
    """`{"items", "next_cursor"}` from a `page_json` row: the items as PostgreSQL wrote them,
    the cursor as `as_page` makes it (one home for its form)."""
    cursor = encode_cursor(page["last_time"], page["last_id"]) if page["more"] else None
    items: str = page["items"]
    return b'{"items":' + items.encode() + b',"next_cursor":' + json.dumps(cursor).encode() + b"}"


class ConsoleDb:
    """Reads as the console's role, each in a transaction scoped to one token."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def reading(self, digest: str, name: str) -> AsyncIterator[Any]:
        """A connection in a read-only transaction scoped to the token, within QUERY_TIMEOUT_S;
        `name` labels the data query in console_queries_total."""
        QUERIES.labels(name).inc()
        begin = _begin(digest)
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            conn = await self.pool.acquire()
            try:
                # BEGIN and the token in one round trip (a simple query: the digest as a literal,
                # checked to be SHA-256 hex), instead of asyncpg's BEGIN then a bound set_config.
                await conn.execute(begin)
                yield conn
            except BaseException:
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    await conn.execute("ROLLBACK")  # else the pool's release rolls it back
                await self.pool.release(conn)
                raise
        # The rows are read: the COMMIT of this read-only transaction (it can change nothing)
        # and the release run behind the answer, one round trip less on every request. The
        # connection stays out of the pool, its token set, until the COMMIT is done.
        release_behind(self.pool, conn, "COMMIT", QUERY_TIMEOUT_S)

    async def page(self, digest: str, listing: Listing, sql: PageSql) -> list[dict[str, Any]]:
        """The rows of one page as dicts (shaped by the listing), within QUERY_TIMEOUT_S."""
        async with self.reading(digest, listing.name) as conn:
            return await fetch_page_rows(conn, listing, sql)

    async def page_body(self, digest: str, listing: Listing, sql: PageSql) -> bytes:
        """The JSON of one page (`sql` from `page_json`), within QUERY_TIMEOUT_S."""
        async with self.reading(digest, listing.name) as conn:
            page = await conn.fetchrow(sql.text, *sql.args)
        assert page is not None  # an aggregate without GROUP BY: always one row
        return json_body(page)
