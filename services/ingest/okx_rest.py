"""OKX v5 REST client (httpx): signing, demo header, per-endpoint rate limits, retries.

Retries cover what cannot have taken effect or is safe to repeat: 50011/50013 (rate limit,
busy), HTTP 5xx and transport errors on reads. Placing an order is never retried on an
ambiguous failure (the order may exist); only a rate-limit refusal is retried.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from services.ingest.signing import Credentials, rest_headers
from shared.errors import AitraderError, TransientError
from shared.logging import get_logger

log = get_logger("ingest.rest")
RETRY_CODES = frozenset({"50011", "50013"})
# Requests per 2 s by path (OKX docs, "Rate limits"); unknown paths get the default.
LIMITS: dict[str, int] = {
    "/api/v5/trade/order": 60, "/api/v5/account/set-leverage": 20,
    "/api/v5/account/balance": 10, "/api/v5/account/positions": 10,
    "/api/v5/public/instruments": 20, "/api/v5/market/candles": 40,
    "/api/v5/market/history-candles": 20, "/api/v5/trade/fills": 60,
    "/api/v5/trade/fills-history": 10, "/api/v5/account/config": 5,
    "/api/v5/account/bills": 5, "/api/v5/account/bills-archive": 5,
    "/api/v5/trade/order-algo": 20, "/api/v5/trade/amend-algos": 20,
    "/api/v5/trade/cancel-algos": 20, "/api/v5/trade/orders-algo-pending": 20,
    "/api/v5/trade/orders-algo-history": 20,
}
DEFAULT_LIMIT = 10
WINDOW_S = 2.0


class OkxApiError(AitraderError):
    """OKX answered with an error code (top-level `code`, or HTTP status without a body)."""

    def __init__(self, code: str, msg: str, status: int, path: str) -> None:
        super().__init__(f"OKX {code} on {path} (HTTP {status}): {msg}")
        self.code, self.msg, self.status, self.path = code, msg, status, path


class OkxUnavailable(TransientError):
    """OKX could not be reached (or kept failing) within the retry budget."""


class RateLimiter:
    """A sliding window per path: at most `LIMITS[path]` requests per 2 s."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._sent: dict[str, deque[float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, path: str) -> None:
        """Wait until one more request on `path` fits in the window."""
        limit = LIMITS.get(path, DEFAULT_LIMIT)
        sent = self._sent.setdefault(path, deque())
        async with self._locks.setdefault(path, asyncio.Lock()):
            while len(sent) >= limit:
                wait = sent[0] + self.window_s - time.monotonic()
                if wait <= 0:
                    sent.popleft()
                else:
                    await asyncio.sleep(wait)
            sent.append(time.monotonic())


class OkxRest:
    """Signed OKX REST calls returning the `data` array."""

    def __init__(self, base_url: str, *, creds: Credentials | None = None,
                 simulated: bool = False, timeout_s: float = 10.0, retries: int = 4,
                 backoff_s: float = 0.25) -> None:
        self.creds, self.simulated = creds, simulated
        self.retries, self.backoff_s = retries, backoff_s
        self.limiter = RateLimiter()
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, path: str, params: Mapping[str, Any] | None = None, *,
                  signed: bool = False) -> list[Any]:
        """GET; raises OkxApiError on an OKX error code."""
        return _data(path, *await self._request("GET", path, params, None, signed,
                                                 retry_all=True))

    async def post(self, path: str, body: Mapping[str, Any]) -> list[Any]:
        """Signed POST that is safe to repeat (e.g. set-leverage)."""
        return _data(path, *await self._request("POST", path, None, body, True, retry_all=True))

    async def place_order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /trade/order; the item with sCode/sMsg, accepted or refused."""
        return await self.post_item("/api/v5/trade/order", body)

    async def post_item(self, path: str, body: Mapping[str, Any] | Sequence[Mapping[str, Any]]
                        ) -> dict[str, Any]:
        """A signed POST of one item (an order, an algo order, its amendment or cancel), never
        repeated on an ambiguous failure: the answer's item with sCode/sMsg, accepted or
        refused (OKX's envelope code 1 "All operations failed" still carries it)."""
        status, env = await self._request("POST", path, None, body, True, retry_all=False)
        data = env.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict) and "sCode" in data[0]:
            return data[0]
        _data(path, status, env)  # raises with the top-level code
        raise OkxApiError("unexpected", "no item in the answer", status, path)

    async def _request(self, method: str, path: str, params: Mapping[str, Any] | None,
                       body: Mapping[str, Any] | Sequence[Any] | None, signed: bool, *, retry_all: bool
                       ) -> tuple[int, dict[str, Any]]:
        query = urlencode({k: v for k, v in (params or {}).items() if v not in (None, "")})
        target = f"{path}?{query}" if query else path
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        for attempt in range(self.retries + 1):
            await self.limiter.acquire(path)
            try:
                status, env = await self._send(method, target, content, signed)
            except httpx.HTTPError as exc:
                if not retry_all or attempt == self.retries:
                    raise OkxUnavailable(f"{method} {path}: {type(exc).__name__}") from None
                await self._backoff(attempt, path, type(exc).__name__)
                continue
            code = str(env.get("code", status))
            retryable = code in RETRY_CODES or (status >= 500 and retry_all)
            if retryable and attempt < self.retries:
                await self._backoff(attempt, path, code)
                continue
            return status, env
        raise AssertionError("unreachable")

    async def _send(self, method: str, target: str, content: bytes, signed: bool
                    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if self.simulated:
            headers["x-simulated-trading"] = "1"
        if signed:
            if self.creds is None:
                raise OkxApiError("no_keys", "signed request without OKX keys", 0, target)
            headers |= rest_headers(self.creds, method, target, content, datetime.now(UTC))
        started = time.monotonic()
        resp = await self._client.request(method, target, content=content or None,
                                          headers=headers)
        try:
            env = resp.json()
        except ValueError:
            env = {}
        if not isinstance(env, dict):
            env = {}
        env.setdefault("code", "0" if resp.status_code < 400 else str(resp.status_code))
        log.debug("okx_rest", method=method, path=target.split("?")[0], status=resp.status_code,
                  code=str(env.get("code")), ms=round((time.monotonic() - started) * 1000, 1))
        return resp.status_code, env

    async def _backoff(self, attempt: int, path: str, reason: str) -> None:
        delay = random.uniform(0, self.backoff_s * 2**attempt)
        log.warning("okx_rest_retry", path=path, reason=reason, attempt=attempt + 1,
                    delay_s=round(delay, 3))
        await asyncio.sleep(delay)


def _data(path: str, status: int, env: Mapping[str, Any]) -> list[Any]:
    code = str(env.get("code"))
    if code != "0" or status >= 400:
        raise OkxApiError(code if code != "0" else str(status), str(env.get("msg", "")),
                          status, path)
    data = env.get("data")
    return data if isinstance(data, list) else []
