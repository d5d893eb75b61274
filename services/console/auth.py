"""Who reads: a bearer token with the `console` scope (shared.tokens: the check the gateway
makes too), and which of its accounts a request names. An account outside the token's set is
404, the answer an unknown one gets: the console does not confirm that it exists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, HTTPException, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.tokens import TokenChecker, TokenStoreUnavailable, VerifiedToken

SCOPE = "console"
RETRY_AFTER_S = 5
bearer = HTTPBearer(auto_error=False, description="an API token with the `console` scope")


@dataclass(frozen=True)
class Reader:
    """What one request may read: the token's digest (for the database's policies) and the
    accounts asked for, all of them granted by the token."""

    digest: str
    accounts: tuple[UUID, ...]


def _refused(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> VerifiedToken:
    """The verified console token of the request (401 without one, 503 while unverifiable)."""
    if credentials is None:
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    checker: TokenChecker = request.app.state.checker
    try:
        verified = await checker.check(credentials.credentials)
    except TokenStoreUnavailable:
        raise HTTPException(
            503,
            f"database unavailable, retry in {RETRY_AFTER_S} s",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    if verified is None:
        raise _refused("unknown, revoked or expired token")
    if SCOPE not in verified.scopes:
        raise _refused("this token has no `console` scope")
    return verified


Token = Annotated[VerifiedToken, Depends(token)]


async def all_accounts(verified: Token) -> Reader:
    return Reader(verified.digest, tuple(g.account_id for g in verified.grants))


async def one_account(
    verified: Token,
    external_id: Annotated[str, Path(max_length=64, description="the account's external id")],
) -> Reader:
    grant = verified.grant(external_id)
    if grant is None:
        raise HTTPException(404, f"no account {external_id!r}")
    return Reader(verified.digest, (grant.account_id,))


AllAccounts = Annotated[Reader, Depends(all_accounts)]
OneAccount = Annotated[Reader, Depends(one_account)]
