"""API tokens: created once, stored as SHA-256 (only a prefix in clear), bound to one account,
scoped `read` or `trade` (trade implies read), revocable, optionally expiring (`expires_at`).
The check itself is `shared.tokens` (the console's too); a `console` token is not for the gateway
(its tools require `read`).

The verifier caches each answer for `ttl` seconds, so a revocation or an expiry takes effect
within it, and a token's `last_used_at` is written at most once a minute.

While the database is away a token verified in the last `outage_grace` seconds still passes
(its calls then get the tools' retryable "Temporarily unavailable" error): a token revoked just
before an outage may pass for that long, never longer, and only while nothing can be checked.
Any other token gets HTTP 503 with Retry-After (`AnswerTokenStoreOutage`), never a bare 500.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from starlette import types as asgi
from starlette.responses import JSONResponse

from shared.db import Connection
from shared.tokens import (
    OUTAGE_GRACE_S,
    PREFIX_LEN,
    TOKEN_PREFIX,
    TokenChecker,
    TokenStoreUnavailable,
    hash_token,
)

__all__ = ["PREFIX_LEN", "TOKEN_PREFIX", "TokenStoreUnavailable", "hash_token"]

Scope = Literal["read", "trade", "console"]
SCOPES: dict[str, list[str]] = {"read": ["read"], "trade": ["read", "trade"], "console": ["console"]}
RETRY_AFTER_S = 5  # what a caller is told to wait while the database is away


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


async def create_token(
    pool: asyncpg.Pool,
    external_id: str,
    scope: Scope,
    label: str | None = None,
    expires_at: datetime | None = None,
    also: Sequence[str] = (),
) -> tuple[str, asyncpg.Record]:
    """Create a token for the account (a console token: and the accounts `also` names);
    return (the token, shown once; its row)."""
    if also and scope != "console":
        raise TokenError("only a console token is bound to several accounts")
    async with pool.acquire() as conn, conn.transaction():
        accounts = [await _account_id(conn, name) for name in (external_id, *also)]
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = await conn.fetchrow(
            """INSERT INTO aitrader.api_tokens
                   (account_id, token_hash, token_prefix, scopes, label, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING id, token_prefix, scopes, label, created_at, expires_at""",
            accounts[0],
            hash_token(token),
            token[:PREFIX_LEN],
            SCOPES[scope],
            label,
            expires_at,
        )
        assert row is not None
        await conn.executemany(
            """INSERT INTO aitrader.token_accounts (token_id, account_id) VALUES ($1, $2)
               ON CONFLICT DO NOTHING""",
            [(row["id"], account) for account in accounts[1:] if account != accounts[0]],
        )
    return token, row


async def _account_id(conn: Connection, external_id: str) -> UUID:
    account_id: UUID | None = await conn.fetchval(
        "SELECT id FROM aitrader.accounts WHERE external_id = $1", external_id)
    if account_id is None:
        raise TokenError(f"no account with external id {external_id!r}")
    return account_id


def refuse_secret(ref: str) -> None:
    """A command naming a token by its secret is refused: the secret has no business in argv
    (shell history, `ps`); its first PREFIX_LEN characters, the prefix, name it as well."""
    if ref.startswith(TOKEN_PREFIX) and len(ref) > PREFIX_LEN:
        raise TokenError(
            "that is a token's secret, which does not belong on a command line; give its "
            f"id, its prefix (the first {PREFIX_LEN} characters) or its label "
            "(`aitrader token list`)"
        )


async def revoke_token(pool: asyncpg.Pool, ref: str) -> asyncpg.Record:
    """Revoke a token by its id, its prefix or its label (never its secret); refuse an ambiguous one."""
    refuse_secret(ref)
    rows = await pool.fetch(
        """SELECT id FROM aitrader.api_tokens
           WHERE id::text = $1 OR label = $1
              OR (length($1) >= 8 AND starts_with(token_prefix, left($1, 12)))""",
        ref,
    )
    if not rows:
        raise TokenError(f"no token with id, prefix or label {ref!r}")
    if len(rows) > 1:
        raise TokenError(f"{ref!r} matches {len(rows)} tokens; give the token id")
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
                      t.last_used_at, t.revoked_at, t.expires_at, t.replaced_by,
                      (SELECT count(*) FROM aitrader.token_accounts ta
                       WHERE ta.token_id = t.id AND ta.account_id <> t.account_id) AS more_accounts
               FROM aitrader.api_tokens t JOIN aitrader.accounts a ON a.id = t.account_id
               ORDER BY t.created_at"""
        )
    )


class TokenVerifier:
    """The SDK's `TokenVerifier`: bearer token -> `AccessToken` carrying our `Principal`. The
    check is `shared.tokens` (one rule for every service); a gateway token acts on its own
    account, which must be active."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = 2.0, max_entries: int = 10_000,
                 outage_grace: float = OUTAGE_GRACE_S) -> None:
        self._checker = TokenChecker(pool, ttl, max_entries, outage_grace)

    async def verify_token(self, token: str) -> AccessToken | None:
        verified = await self._checker.check(token)
        if verified is None or verified.home is None:
            return None
        home = verified.home
        claims: dict[str, Any] = {
            "account_id": str(home.account_id),
            "external_id": home.external_id,
            "mode": home.mode,
            "token_id": str(verified.token_id),
        }
        return AccessToken(
            token=token,
            client_id=str(verified.token_id),
            subject=str(home.account_id),
            scopes=sorted(verified.scopes),
            claims=claims,
        )


class AnswerTokenStoreOutage:
    """ASGI middleware: a request whose token cannot be checked (the database away) gets
    HTTP 503, Retry-After and a JSON body saying so — a JSON-RPC error with the request's id
    when it was JSON-RPC — instead of a bare 500."""

    BODY_LIMIT = 64 * 1024  # enough for any request's id; a larger body is not parsed

    def __init__(self, app: asgi.ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except TokenStoreUnavailable:  # raised before the app read the body or answered
            request_id = _jsonrpc_id(await _body(receive, self.BODY_LIMIT))
            message = (f"database unavailable, retry in {RETRY_AFTER_S} s "
                       "(the gateway cannot check the bearer token now)")
            body: dict[str, Any] = {"error": message}
            if request_id is not _NOT_JSONRPC:
                body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32000, "message": message}}
            response = JSONResponse(body, 503, headers={"Retry-After": str(RETRY_AFTER_S)})
            await response(scope, receive, send)


_NOT_JSONRPC = object()


async def _body(receive: asgi.Receive, limit: int) -> bytes:
    """The request body, up to `limit` bytes, read within a deadline (b"" otherwise)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(2.0):
            while size <= limit:
                message = await receive()
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
    except TimeoutError:
        return b""
    return b"".join(chunks) if size <= limit else b""


def _jsonrpc_id(body: bytes) -> Any:
    """The JSON-RPC request's id (None for a notification), or `_NOT_JSONRPC`."""
    try:
        request = json.loads(body)
    except ValueError:
        return _NOT_JSONRPC
    if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
        return _NOT_JSONRPC
    request_id = request.get("id")
    return request_id if isinstance(request_id, str | int) else None


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
