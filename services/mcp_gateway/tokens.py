"""Token lifetimes: `--expires 30d` durations, rotation, and telling the holder of a token that
expired (or was rotated) so, rather than the "Authentication required" an unknown token gets.

A rotation issues a new secret for the same account, scopes and label, and ends the old token
at once or after a grace period (its `expires_at`, so the verifier refuses it from then on).
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import timedelta

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.mcp_gateway.auth import PREFIX_LEN, TOKEN_PREFIX, TokenError, hash_token, refuse_secret

_DURATION = re.compile(r"(\d{1,6})([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
MAX_DURATION = timedelta(days=3650)
LOOKUP_TIMEOUT_S = 2.0


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m` as a timedelta; anything else is a TokenError saying what to write."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise TokenError(f"{text!r} is not a duration: write a whole number and d, h or m (30d, 12h, 90m)")
    duration = timedelta(**{_UNITS[match[2]]: int(match[1])})
    if not timedelta(0) < duration <= MAX_DURATION:
        raise TokenError(f"{text!r}: a token lives more than 0 minutes and at most {MAX_DURATION.days}d")
    return duration


# A token a rotation can start from: one not revoked nor already rotated, named by its id, its
# prefix (8+ characters) or its label; not by the secret, which has no business in argv.
_ROTATABLE = """
SELECT id, account_id, scopes, label, created_at, expires_at FROM aitrader.api_tokens
WHERE revoked_at IS NULL AND replaced_by IS NULL
  AND (id::text = $1 OR label = $1 OR (length($1) >= 8 AND starts_with(token_prefix, left($1, 12))))
FOR UPDATE
"""
_INSERT = """
INSERT INTO aitrader.api_tokens (account_id, token_hash, token_prefix, scopes, label, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + $6::interval)
RETURNING id, token_prefix, scopes, label, created_at, expires_at
"""
_SAME_ACCOUNTS = """
INSERT INTO aitrader.token_accounts (token_id, account_id)
SELECT $1, account_id FROM aitrader.token_accounts WHERE token_id = $2
"""
_RETIRE = """
UPDATE aitrader.api_tokens
SET replaced_by = $2, expires_at = LEAST(COALESCE(expires_at, 'infinity'), now() + $3::interval)
WHERE id = $1
RETURNING id, token_prefix, expires_at
"""


async def rotate_token(
    pool: asyncpg.Pool, ref: str, grace: timedelta, lifetime: timedelta | None = None
) -> tuple[str, asyncpg.Record, asyncpg.Record]:
    """Replace a token (same account or accounts, scopes, label); return (the new token, shown
    once; its row; the old token's row).

    The new token lives `lifetime`, by default as long as the old one was given (or forever)."""
    refuse_secret(ref)  # named by id, prefix or label: the secret never on a command line
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_ROTATABLE, ref)
        if not rows:
            raise TokenError(f"no active token with id, prefix or label {ref!r}")
        if len(rows) > 1:
            raise TokenError(f"{ref!r} matches {len(rows)} tokens; give the token id")
        old = rows[0]
        if lifetime is None and old["expires_at"] is not None:
            lifetime = old["expires_at"] - old["created_at"]
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        new = await conn.fetchrow(
            _INSERT,
            old["account_id"],
            hash_token(token),
            token[:PREFIX_LEN],
            old["scopes"],
            old["label"],
            lifetime,
        )
        assert new is not None
        await conn.execute(_SAME_ACCOUNTS, new["id"], old["id"])
        retired = await conn.fetchrow(_RETIRE, old["id"], new["id"], grace)
        assert retired is not None
    return token, new, retired


_LAPSED = """
SELECT expires_at, replaced_by IS NOT NULL AS rotated FROM aitrader.api_tokens
WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at <= now()
"""


async def lapsed(pool: asyncpg.Pool, token: str) -> str | None:
    """Why a token that was once good is refused now (expired, rotated), or None."""
    row = await pool.fetchrow(_LAPSED, hash_token(token), timeout=LOOKUP_TIMEOUT_S)
    if row is None:
        return None
    when = f"{row['expires_at']:%Y-%m-%d %H:%M:%S}Z"
    if row["rotated"]:
        return f"this token was rotated and stopped working at {when}: use the token that replaced it"
    return f"this token expired at {when}: ask for a new one (aitrader token rotate)"


class ExpiredTokenNotice:
    """ASGI: a 401 for an expired or rotated token carries that reason. Only refused requests
    pay the extra lookup; a database that does not answer leaves the SDK's generic 401."""

    def __init__(self, app: ASGIApp, pool: asyncpg.Pool) -> None:
        self._app = app
        self._pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _bearer(scope)
        if token is None:
            await self._app(scope, receive, send)
            return
        answered = False

        async def guarded(message: Message) -> None:
            nonlocal answered
            if answered:  # the body of the 401 this middleware replaced
                return
            if message["type"] == "http.response.start" and message["status"] == 401:
                reason = await self._reason(token)
                if reason is not None:
                    answered = True
                    await _send_invalid_token(send, reason)
                    return
            await send(message)

        await self._app(scope, receive, guarded)

    async def _reason(self, token: str) -> str | None:
        try:
            return await lapsed(self._pool, token)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None


def _bearer(scope: Scope) -> str | None:
    if scope["type"] != "http":
        return None
    for key, value in scope["headers"]:
        if key == b"authorization" and value[:7].lower() == b"bearer ":
            return str(value[7:].decode("latin-1"))
    return None


async def _send_invalid_token(send: Send, description: str) -> None:
    """RFC 6750's answer to a token that is no longer valid: 401 invalid_token."""
    body = json.dumps({"error": "invalid_token", "error_description": description}).encode()
    challenge = f'Bearer error="invalid_token", error_description="{description}"'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode()),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
