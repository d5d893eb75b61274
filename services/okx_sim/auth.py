"""OKX request signatures: REST headers (ISO timestamp) and websocket login (Unix seconds)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .protocol import OkxError

LOGIN_PATH = "/users/self/verify"


@dataclass(frozen=True)
class ApiKey:
    """A key the exchange knows, and the account it trades for."""

    key: str
    secret: str
    passphrase: str
    live: bool = False  # a production key; else a demo-trading one


def sign(secret: str, message: bytes) -> str:
    """Base64(HMAC-SHA256(secret, message))."""
    mac = hmac.new(secret.encode(), message, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def rest_prehash(timestamp: str, method: str, path_with_query: str, body: bytes) -> bytes:
    """What OKX signs: timestamp + METHOD + requestPath(+query) + raw body bytes."""
    return (timestamp + method.upper() + path_with_query).encode() + body


def parse_iso_ms(text: str) -> int:
    """`2020-12-08T09:08:57.715Z` -> Unix ms; ValueError when malformed."""
    if not text.endswith("Z"):
        raise ValueError(text)
    parsed = datetime.fromisoformat(text[:-1] + "+00:00")
    return int(parsed.timestamp() * 1000)


def is_simulated(headers: Mapping[str, str]) -> bool:
    """OKX REST serves demo trading when `x-simulated-trading: 1`; production otherwise."""
    return headers.get("x-simulated-trading", "").strip() == "1"


def check_rest(
    headers: Mapping[str, str],
    method: str,
    path_with_query: str,
    body: bytes,
    keys: Mapping[str, ApiKey],
    now_ms: int,
    window_s: float,
) -> ApiKey:
    """The key that signed this request, or the OkxError OKX would answer."""
    key = headers.get("ok-access-key", "")
    signature = headers.get("ok-access-sign", "")
    timestamp = headers.get("ok-access-timestamp", "")
    passphrase = headers.get("ok-access-passphrase", "")
    if not key:
        raise OkxError("50103")
    if not signature:
        raise OkxError("50106")
    if not timestamp:
        raise OkxError("50107")
    if not passphrase:
        raise OkxError("50104")
    try:
        ts_ms = parse_iso_ms(timestamp)
    except ValueError:
        raise OkxError("50112") from None
    if abs(now_ms - ts_ms) > window_s * 1000:
        raise OkxError("50102")
    api_key = keys.get(key)
    if api_key is None:
        raise OkxError("50111")
    if not hmac.compare_digest(passphrase, api_key.passphrase):
        raise OkxError("50105")
    expected = sign(api_key.secret, rest_prehash(timestamp, method, path_with_query, body))
    if not hmac.compare_digest(signature, expected):
        raise OkxError("50113")
    if api_key.live == is_simulated(headers):
        raise OkxError("50101")
    return api_key


class LoginError(Exception):
    """A refused websocket login, with its OKX code."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


def check_login(
    arg: Mapping[str, Any], keys: Mapping[str, ApiKey], now_ms: int, window_s: float,
    live: bool = False,
) -> ApiKey:
    """The key of a websocket login arg on a `live` (else demo) endpoint, or LoginError with
    OKX's code."""
    key = arg.get("apiKey")
    api_key = keys.get(key) if isinstance(key, str) else None
    if api_key is None:
        raise LoginError("60005")
    if arg.get("passphrase") != api_key.passphrase:
        raise LoginError("60024")
    raw_ts = arg.get("timestamp")
    # python-okx sends the timestamp as a JSON number; OKX's docs show a string.
    if isinstance(raw_ts, bool) or not isinstance(raw_ts, (int, str)):
        raise LoginError("60004")
    ts_text = str(raw_ts)
    try:
        ts_s = float(ts_text)
    except ValueError:
        raise LoginError("60004") from None
    if abs(now_ms / 1000 - ts_s) > window_s:
        raise LoginError("60006")
    expected = sign(api_key.secret, (ts_text + "GET" + LOGIN_PATH).encode())
    provided = arg.get("sign")
    if not isinstance(provided, str) or not hmac.compare_digest(provided, expected):
        raise LoginError("60007")
    if api_key.live != live:
        raise LoginError("50101")
    return api_key
