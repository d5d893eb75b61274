"""The Starlette app: OKX REST under /api/v5, the three websockets, and test controls."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from . import ws
from .auth import check_rest
from .core import SimCore
from .params import BODY_LIST, LIST_PATHS, BatchError, ItemError
from .protocol import NOT_FOUND_BODY, OkxError, error_body, ok
from .rest import ROUTES

log = structlog.get_logger("okx_sim")


def create_app(core: SimCore) -> Starlette:
    """An ASGI app serving `core` (REST + websockets on one port)."""

    async def api(request: Request) -> Response:
        route = ROUTES.get((request.method, request.url.path))
        if route is None:
            return JSONResponse(NOT_FOUND_BODY, status_code=404)
        handler, private = route
        body = await request.body()
        try:
            api_key = ""
            if private:
                raw_path = request.scope.get("raw_path") or request.url.path.encode()
                query = request.scope.get("query_string", b"")
                path = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query
                                                     else "")
                api_key = check_rest(request.headers, request.method, path, body, core.keys,
                                     core.now_real_ms(), core.config.auth_window_s).key
            params = _params(request, body)
            return JSONResponse(ok(handler(core, params, api_key)))
        except OkxError as err:
            return JSONResponse(error_body(err), status_code=err.status)
        except ItemError as err:
            return JSONResponse({"code": "1", "msg": "All operations failed",
                                 "data": [err.item]})
        except BatchError as err:
            code, msg = ("2", "Bulk operation partially succeeded.") if err.partial else (
                "1", "All operations failed")
            return JSONResponse({"code": code, "msg": msg, "data": err.items})
        except Exception:
            log.exception("request failed", path=request.url.path)
            return JSONResponse({"code": "50026", "msg": "System error, please try again later.",
                                 "data": []}, status_code=500)

    async def control(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            result = _control(core, request.path_params["name"], body)
        except (ValueError, KeyError, TypeError, InvalidOperation) as err:
            return JSONResponse({"ok": False, "error": str(err)}, status_code=400)
        return JSONResponse({"ok": True, "result": result})

    def endpoint(kind: str, live: bool = False) -> Any:
        async def run(websocket: WebSocket) -> None:
            await ws.serve(websocket, core, kind, live)
        return run

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_market_loop(core))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    routes: list[Any] = [
        Route("/api/v5/{path:path}", api, methods=["GET", "POST"]),
        WebSocketRoute("/ws/v5/public", endpoint("public")),
        WebSocketRoute("/ws/v5/business", endpoint("business")),
        WebSocketRoute("/ws/v5/private", endpoint("private")),
        # One host plays both of OKX's: /ws/v5 is demo trading (wspap.okx.com), /live/ws/v5
        # production (ws.okx.com); a key logs in only where its environment is served.
        *(WebSocketRoute(f"/live/ws/v5/{kind}", endpoint(kind, live=True))
          for kind in ("public", "business", "private")),
    ]
    if core.config.test_controls:
        routes.append(Route("/sim/control/{name}", control, methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)


def _params(request: Request, body: bytes) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query_params)
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        raise OkxError("50002") from None
    if isinstance(parsed, list) and request.url.path in LIST_PATHS:  # batch endpoints
        return {BODY_LIST: parsed}
    if not isinstance(parsed, dict):
        raise OkxError("50002")
    return parsed


def _control(core: SimCore, name: str, body: dict[str, Any]) -> Any:
    key = body.get("apiKey")
    if name == "set-price":
        return str(core.set_price(body["instId"], Decimal(str(body["px"]))))
    if name == "advance":
        core.advance(float(body["seconds"]))
        return core.now()
    if name == "tick":
        core.tick()
        return core.now()
    if name == "transfer":
        return str(core.transfer(str(key), Decimal(str(body["amount"]))))
    if name == "drop-private":
        return core.drop_private(key, int(body.get("code", 1011)))
    if name == "drop-business":
        return core.drop_business(key, int(body.get("code", 1011)))
    if name == "repeat-push":
        return core.repeat_last_push(str(key))
    if name == "malformed":
        return core.send_malformed(key)
    if name == "pause":
        core.pause_pushes(str(key))
        return None
    if name == "resume":
        core.resume_pushes(str(key))
        return None
    raise ValueError(f"unknown control {name!r}")


async def _market_loop(core: SimCore) -> None:
    while True:
        try:
            core.tick()
        except Exception:
            log.exception("market tick failed")
        await asyncio.sleep(core.config.tick_interval_s)
