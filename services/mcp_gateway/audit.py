"""Every tool call is exactly one `mcp_tool_calls` row: redacted request, response, status,
latency. A server middleware wraps each `tools/call` (so calls whose arguments fail the
input schema, and unknown tools, are recorded too) and the rows are written by a background
writer in batches, off the call's latency path (redaction included; `audit_writer`, which
spills what the database cannot take in time). A call that must reference its own row
(execute_trade's order, update_exit_plan's history) writes it synchronously first, as
`pending`; the final write is an upsert either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, TextContent
from pydantic_core import from_json

from services.mcp_gateway.audit_writer import AuditWriter
from services.mcp_gateway.auth import Principal
from shared.clock import utcnow
from shared.db import json_dumps
from shared.logging import get_logger, may_hold_secret_value, redact

__all__ = ["AuditMiddleware", "AuditWriter", "ToolCall", "current_call"]
log = get_logger("mcp_gateway.audit")


@dataclass
class ToolCall:
    """One tool call in flight."""

    tool: str
    request: dict[str, Any]
    principal: Principal | None
    transport: str
    id: UUID = field(default_factory=uuid4)
    started_at: datetime = field(default_factory=utcnow)
    t0: float = field(default_factory=time.perf_counter)
    # The result's structured content as the tool serialized it (compact JSON), if it did:
    # stored as is when it holds nothing to redact, instead of walked and dumped again.
    result_json: str | None = None

    def row(self, status: str, response: Any, error: str | None, latency_ms: int | None) -> tuple[Any, ...]:
        p = self.principal
        return (
            self.id,
            p.account_id if p else None,
            self.tool,
            redact(self.request),
            self._response_payload(response),
            status,
            latency_ms,
            redact(error) if error else None,
            self.transport,
            p.token_id if p else None,
            self.started_at,
        )

    def _response_payload(self, response: Any) -> str | None:
        if response is None:
            return None
        if self.result_json is None:
            return json_dumps(redact(response))
        # A tool's JSON has its view's keys, none of them secret-looking (a test walks every
        # output schema): only a registered secret value, inside a string, could need masking.
        if not may_hold_secret_value(self.result_json):
            return self.result_json
        # Walk the JSON the caller received (the structured content may hold Python values).
        return json_dumps(redact(from_json(self.result_json)))


_current: ContextVar[ToolCall | None] = ContextVar("mcp_tool_call", default=None)


def current_call() -> ToolCall:
    """The tool call being served (set by `AuditMiddleware`)."""
    call = _current.get()
    if call is None:
        raise RuntimeError("no tool call in context (is AuditMiddleware installed?)")
    return call


def _outcome(result: HandlerResult) -> tuple[bool, Any, str | None]:
    """(failed, structured content, error text) of a tools/call result, without re-serializing it."""
    if isinstance(result, CallToolResult):
        texts = [c.text for c in result.content if isinstance(c, TextContent)]
        failed, structured = bool(result.is_error), result.structured_content
    else:
        data = result if isinstance(result, dict) else result.model_dump(by_alias=True) if result else {}
        blocks = data.get("content") or []
        texts = [c.get("text", "") for c in blocks if isinstance(c, dict)]
        failed, structured = bool(data.get("isError")), data.get("structuredContent")
    if not failed:
        return False, structured, None
    return True, None, "\n".join(t for t in texts if t) or "tool error"


def _refusal(text: str) -> HandlerResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


class AuditMiddleware:
    """Server middleware: resolves the caller, exposes the call to the tool, records the row."""

    def __init__(
        self, writer: AuditWriter, principal: Callable[[], Principal | None], transport: str
    ) -> None:
        self._writer = writer
        self._principal = principal
        self._transport = transport

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        params = ctx.params or {}
        arguments = params.get("arguments")
        call = ToolCall(
            tool=str(params.get("name")),
            request=dict(arguments) if isinstance(arguments, dict) else {"arguments": arguments},
            principal=self._principal(),
            transport=self._transport,
        )
        if call.principal is None:
            await self._writer.finish(call, "failed", None, "no authenticated account")
            return _refusal("No authenticated account: send a bearer token bound to an account.")
        if "\\u0000" in json_dumps(call.request):
            error = "an argument contains a NUL character (\\u0000), which no field accepts"
            await self._writer.finish(call, "failed", None, error)
            return _refusal(f"Invalid arguments: {error}; remove it and call again.")
        token = _current.set(call)
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            await self._writer.finish(call, "failed", None, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            _current.reset(token)
        await self._record(call, result)
        return result

    async def _record(self, call: ToolCall, result: HandlerResult) -> None:
        failed, response, error = _outcome(result)
        latency = await self._writer.finish(call, "failed" if failed else "success", response, error)
        level = log.info if failed or call.tool in ("execute_trade", "update_exit_plan") else log.debug
        level(
            "tool_call",
            tool=call.tool,
            call_id=str(call.id),
            status="failed" if failed else "success",
            latency_ms=latency,
            account=call.principal.external_id if call.principal else None,
            error=error,
        )
