"""API tokens: created once, stored as SHA-256 (only a prefix in clear), bound to one account,
scoped `read` or `trade` (trade implies read), revocable, optionally expiring (`expires_at`).

The verifier caches each answer for `ttl` seconds, so a revocation or an expiry takes effect
within it, and a token's `last_used_at` is written at most once a minute.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

TOKEN_PREFIX = "atk_"
PREFIX_LEN = 12  # "atk_" + 8 random characters: enough to recognise a token, useless to use it
Scope = Literal["read", "trade"]
SCOPES: dict[str, list[str]] = {"read": ["read"], "trade": ["read", "trade"]}


@dataclass(frozen=True)
class Principal:
    """Who is calling: one account, its scopes, and the token (None on stdio / in-process)."""

    account_id: UUID
    external_id: str
    mode: str
    scopes: frozenset[str]
    token_id: UUID | None = None

    def can(self, scope: str) -> bool:
        return scope in self.scopes


class TokenError(Exception):
    """A token command that cannot be done (unknown account, ambiguous prefix, ...)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    pool: asyncpg.Pool,
    external_id: str,
    scope: Scope,
    label: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, asyncpg.Record]:
    """Create a token for the account; return (the token, shown once; its row)."""
    account_id = await pool.fetchval("SELECT id FROM aitrader.accounts WHERE external_id = $1", external_id)
    if account_id is None:
        raise TokenError(f"no account with external id {external_id!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = await pool.fetchrow(
        """INSERT INTO aitrader.api_tokens
               (account_id, token_hash, token_prefix, scopes, label, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, token_prefix, scopes, label, created_at, expires_at""",
        account_id,
        hash_token(token),
        token[:PREFIX_LEN],
        SCOPES[scope],
        label,
        expires_at,
    )
    assert row is not None
    return token, row


async def revoke_token(pool: asyncpg.Pool, id_or_prefix: str) -> asyncpg.Record:
    """Revoke a token by its id, its prefix or the token itself; refuse an ambiguous prefix."""
    rows = await pool.fetch(
        """SELECT id FROM aitrader.api_tokens
           WHERE id::text = $1 OR token_hash = $2
              OR (length($1) >= 8 AND starts_with(token_prefix, left($1, 12)))""",
        id_or_prefix,
        hash_token(id_or_prefix),
    )
    if not rows:
        raise TokenError(f"no token with id or prefix {id_or_prefix!r}")
    if len(rows) > 1:
        raise TokenError(f"{id_or_prefix!r} matches {len(rows)} tokens; give the token id")
    row = await pool.fetchrow(
        """UPDATE aitrader.api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1
           RETURNING id, token_prefix, revoked_at""",
        rows[0]["id"],
    )
    assert row is not None
    return row


async def list_tokens(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            """SELECT t.id, t.token_prefix, a.external_id, t.scopes, t.label, t.created_at,
                      t.last_used_at, t.revoked_at, t.expires_at, t.replaced_by
               FROM aitrader.api_tokens t JOIN aitrader.accounts a ON a.id = t.account_id
               ORDER BY t.created_at"""
        )
    )


# last_used_at is written when it is a minute old or more, not on every call: the UPDATE of a
# data-modifying CTE runs whether or not the query reads it, and touching no row writes nothing.
_VERIFY = """
WITH hit AS (
    SELECT t.id, t.account_id, t.scopes, a.external_id, a.mode
    FROM aitrader.api_tokens t JOIN aitrader.accounts a ON a.id = t.account_id
    WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND a.status = 'active'
      AND (t.expires_at IS NULL OR t.expires_at > now())
), touched AS (
    UPDATE aitrader.api_tokens SET last_used_at = now()
    WHERE id = (SELECT id FROM hit)
      AND (last_used_at IS NULL OR last_used_at <= now() - interval '1 minute')
)
SELECT * FROM hit
"""


class TokenVerifier:
    """The SDK's `TokenVerifier`: bearer token -> `AccessToken` carrying our `Principal`."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = 2.0, max_entries: int = 10_000) -> None:
        self._pool = pool
        self._ttl = ttl
        self._max = max_entries
        self._cache: dict[str, tuple[float, AccessToken | None]] = {}

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hash_token(token)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        access = await self._lookup(token, digest)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, access)
        return access

    async def _lookup(self, token: str, digest: str) -> AccessToken | None:
        row = await self._pool.fetchrow(_VERIFY, digest)
        if row is None:
            return None
        claims: dict[str, Any] = {
            "account_id": str(row["account_id"]),
            "external_id": row["external_id"],
            "mode": row["mode"],
            "token_id": str(row["id"]),
        }
        return AccessToken(
            token=token,
            client_id=str(row["id"]),
            subject=str(row["account_id"]),
            scopes=list(row["scopes"]),
            claims=claims,
        )


def principal_from_token() -> Principal | None:
    """The principal of the HTTP request being served, from the verified bearer token."""
    access = get_access_token()
    if access is None or not access.claims:
        return None
    claims = access.claims
    return Principal(
        account_id=UUID(claims["account_id"]),
        external_id=claims["external_id"],
        mode=claims["mode"],
        scopes=frozenset(access.scopes),
        token_id=UUID(claims["token_id"]),
    )


async def local_principal(pool: asyncpg.Pool, external_id: str) -> Principal:
    """The principal of a local (stdio / in-process) server: the account, all scopes."""
    row = await pool.fetchrow(
        "SELECT id, external_id, mode FROM aitrader.accounts WHERE external_id = $1", external_id
    )
    if row is None:
        raise TokenError(f"no account with external id {external_id!r}")
    return Principal(row["id"], row["external_id"], row["mode"], frozenset({"read", "trade"}))
