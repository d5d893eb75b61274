"""Bearer tokens: the one check both HTTP services make (the MCP gateway, the console).

A token is stored as its SHA-256 (only a prefix in clear). Whether it is good now, and which
accounts it grants, is one rule in the schema: `aitrader.verify_token(digest)` (migration 0013)
— not revoked, not expired, each granted account active; its own `api_tokens.account_id` is the
`home` grant, `aitrader.token_accounts` adds more (console tokens for a set of accounts).

`TokenChecker` caches each answer for `ttl` seconds (a revocation or an expiry takes effect
within it). While the database is away a token verified in the last `outage_grace` seconds
still passes; any other raises `TokenStoreUnavailable` (the service answers 503). The token
itself is never logged, nor kept: the cache is keyed by its digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from shared.consumer import Nak, fate_of
from shared.db import Executor
from shared.logging import get_logger

TOKEN_PREFIX: Final = "atk_"
PREFIX_LEN: Final = 12  # "atk_" + 8 random characters: enough to recognise a token, useless to use
LOOKUP_TIMEOUT_S: Final = 5.0
OUTAGE_GRACE_S: Final = 60.0
VERIFY: Final = """
SELECT token_id, scopes, account_id, external_id, mode, home FROM aitrader.verify_token($1)
"""
log = get_logger("tokens")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    """One account a token may act on or read."""

    account_id: UUID
    external_id: str
    mode: str


@dataclass(frozen=True)
class VerifiedToken:
    """A good token: its id, scopes, its own account (None when that one is not active) and
    every active account it grants (the home one first)."""

    token_id: UUID
    digest: str
    scopes: frozenset[str]
    home: Grant | None
    grants: tuple[Grant, ...]

    def grant(self, external_id: str) -> Grant | None:
        return next((g for g in self.grants if g.external_id == external_id), None)


class TokenStoreUnavailable(Exception):
    """A token could not be checked: the database is away."""


async def verify_token(db: Executor, token: str) -> VerifiedToken | None:
    """The token's grants now (None: unknown, revoked, expired, or no active account); the
    database's failures are raised as they are."""
    digest = hash_token(token)
    rows = await db.fetch(VERIFY, digest, timeout=LOOKUP_TIMEOUT_S)
    if not rows:
        return None
    grants = tuple(Grant(r["account_id"], r["external_id"], r["mode"]) for r in rows)
    home = next((g for g, r in zip(grants, rows, strict=True) if r["home"]), None)
    return VerifiedToken(rows[0]["token_id"], digest, frozenset(rows[0]["scopes"]), home, grants)


class TokenChecker:
    """`verify_token` with a cache of `ttl` seconds and an outage grace (module docstring)."""

    def __init__(
        self, db: Executor, ttl: float = 2.0, max_entries: int = 10_000, outage_grace: float = OUTAGE_GRACE_S
    ) -> None:
        self._db = db
        self._ttl = ttl
        self._max = max_entries
        self._grace = outage_grace
        self._cache: dict[str, tuple[float, VerifiedToken | None]] = {}  # digest -> (at, answer)

    async def check(self, token: str) -> VerifiedToken | None:
        digest = hash_token(token)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        try:
            answer = await self._lookup(token)
        except TokenStoreUnavailable:
            if hit is not None and hit[1] is not None and now - hit[0] < self._grace:
                return hit[1]  # verified moments ago: let the service answer "retry" itself
            raise
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[digest] = (now, answer)
        return answer

    async def _lookup(self, token: str) -> VerifiedToken | None:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                return await verify_token(self._db, token)
        except Exception as exc:  # fate_of decides: the database away, or a bug (raised as is)
            fate = fate_of(exc)
            if not isinstance(fate, Nak) or fate.unknown:
                raise
            log.warning("token_check_unavailable", error=type(exc).__name__)
            raise TokenStoreUnavailable(type(exc).__name__) from None
