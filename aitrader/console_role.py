"""The console role's password: `aitrader migrate` sets it when AITRADER_CONSOLE_DB_PASSWORD is
given (compose: the `aitrader_console_db_password` file secrets-init generates).

Migration 0013 creates `aitrader_console` without a password (a local server trusts loopback);
a server that asks for one over the network (the compose image) needs it set. The password is
sent as a SCRAM-SHA-256 verifier computed here, as psql's \\password does: the plain text never
reaches the server or its statement log. Nothing is altered when the stored verifier already
matches, so a restart of the one-shot migrate changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

import asyncpg

ITERATIONS: Final = 4096  # PostgreSQL's scram_iterations default


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802 for `password` (ASCII: SASLprep leaves it unchanged)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client = hmac.new(salted, b"Client Key", "sha256").digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    return hashlib.sha256(client).digest(), server


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as pg_authid stores it."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    stored, server = _keys(password, salt, iterations)
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored)}:{_b64(server)}"


def matches(verifier: str | None, password: str) -> bool:
    """Whether a stored verifier is this password's (False for none, md5 or anything else)."""
    try:
        method, rest = (verifier or "").split("$", 1)
        params, keys = rest.split("$")
        iterations, salt = params.split(":")
        if method != "SCRAM-SHA-256":
            return False
        expected = scram_verifier(password, base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected.split("$")[2], keys)


async def set_password(conn: asyncpg.Connection, role: str, password: str) -> bool:
    """Give `role` this password unless it has it already; True when it was changed. Needs a
    superuser (or CREATEROLE) connection: the schema owner's."""
    try:
        stored = await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    except asyncpg.InsufficientPrivilegeError:
        stored = None  # a CREATEROLE owner cannot read verifiers: set it every time
    if matches(stored, password):
        return False
    statement = await conn.fetchval(
        "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", role, scram_verifier(password)
    )
    await conn.execute(statement)
    return True
