"""OKX v5 request signatures (pure): REST headers and the websocket login request."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

LOGIN_PATH = "/users/self/verify"


@dataclass(frozen=True)
class Credentials:
    """An OKX API key; the values stay `SecretStr` until a request is signed."""

    api_key: SecretStr
    secret_key: SecretStr
    passphrase: SecretStr

    def __repr__(self) -> str:
        return "Credentials(***)"


def hmac_b64(secret: str, message: bytes) -> str:
    """Base64(HMAC-SHA256(secret, message)): OKX's signature."""
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def iso_timestamp(now: datetime) -> str:
    """`2020-12-08T09:08:57.715Z`: the OK-ACCESS-TIMESTAMP format."""
    utc = now.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def rest_headers(
    creds: Credentials, method: str, path_with_query: str, body: bytes, now: datetime
) -> dict[str, str]:
    """The four OK-ACCESS-* headers for one request (body: the exact bytes sent)."""
    ts = iso_timestamp(now)
    prehash = (ts + method.upper() + path_with_query).encode() + body
    return {
        "OK-ACCESS-KEY": creds.api_key.get_secret_value(),
        "OK-ACCESS-SIGN": hmac_b64(creds.secret_key.get_secret_value(), prehash),
        "OK-ACCESS-TIMESTAMP": ts,
        "OK-ACCESS-PASSPHRASE": creds.passphrase.get_secret_value(),
    }


def login_request(creds: Credentials, now: datetime) -> dict[str, Any]:
    """The websocket login op; the timestamp is Unix seconds as a string."""
    ts = str(int(now.timestamp()))
    sign = hmac_b64(creds.secret_key.get_secret_value(), (ts + "GET" + LOGIN_PATH).encode())
    arg = {
        "apiKey": creds.api_key.get_secret_value(),
        "passphrase": creds.passphrase.get_secret_value(),
        "timestamp": ts,
        "sign": sign,
    }
    return {"op": "login", "args": [arg]}
