"""The console on a migrated database: its pool as the console's role, an HTTP client on the
app (in process), and two seeded accounts A and B with a console token for A."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import httpx
import pytest_asyncio

from services.console.config import ConsoleSettings
from services.console.main import create_app
from shared.db import create_pool
from tests.console.seed import console_token, seed_account


@pytest_asyncio.fixture(loop_scope="session")
async def console_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    dsn = ConsoleSettings(database_url=db_dsn).console_dsn()
    pool = await create_pool(dsn, min_size=1, max_size=4, application_name="console-tests")
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def client(console_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(console_pool, token_cache_s=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as c:
        yield c


@dataclass(frozen=True)
class Seeded:
    a: UUID
    b: UUID
    token_a: str  # console scope, account A only

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_a}"}


@pytest_asyncio.fixture(loop_scope="session")
async def seeded(db_pool: asyncpg.Pool) -> Seeded:
    a = await seed_account(db_pool, "A")
    b = await seed_account(db_pool, "B")
    return Seeded(a, b, await console_token(db_pool, [a]))
