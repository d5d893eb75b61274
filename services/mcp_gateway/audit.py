"""Every tool call is exactly one `mcp_tool_calls` row: redacted request, response, status,
latency. A server middleware wraps each `tools/call` (so calls whose arguments fail the
input schema, and unknown tools, are recorded too) and the rows are written by a background
writer in batches, off the call's latency path. A call that must reference its own row
(execute_trade's order, update_exit_plan's history) writes it synchronously first, as
`pending`; the final write is an upsert either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, TextContent

from services.mcp_gateway.auth import Principal
from shared.clock import utcnow
from shared.logging import get_logger, redact

log = get_logger("mcp_gateway.audit")

_UPSERT = """
INSERT INTO aitrader.mcp_tool_calls
    (id, account_id, tool_name, request_payload, response_payload, status, latency_ms, error,
     transport, token_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE SET
    response_payload = EXCLUDED.response_payload, status = EXCLUDED.status,
    latency_ms = EXCLUDED.latency_ms, error = EXCLUDED.error
"""


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

    def row(self, status: str, response: Any, error: str | None, latency_ms: int | None) -> tuple[Any, ...]:
        p = self.principal
        return (
            self.id,
            p.account_id if p else None,
            self.tool,
            redact(self.request),
            redact(response) if response is not None else None,
            status,
            latency_ms,
            redact(error) if error else None,
            self.transport,
            p.token_id if p else None,
            self.started_at,
        )


_current: ContextVar[ToolCall | None] = ContextVar("mcp_tool_call", default=None)


def current_call() -> ToolCall:
    """The tool call being served (set by `AuditMiddleware`)."""
    call = _current.get()
    if call is None:
        raise RuntimeError("no tool call in context (is AuditMiddleware installed?)")
    return call


class AuditWriter:
    """Writes tool-call rows from a bounded queue, in batches; a full queue slows callers down
    rather than dropping rows."""

    def __init__(self, pool: asyncpg.Pool, maxsize: int = 10_000, batch: int = 500) -> None:
        self._pool = pool
        self._queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(maxsize)
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mcp-audit-writer")

    async def flush(self) -> None:
        """Wait until every finished call is written."""
        await self._queue.join()

    async def close(self) -> None:
        """Write everything queued, then stop."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def write_pending(self, conn: asyncpg.Connection, call: ToolCall) -> None:
        """Insert the call's row now (status pending), e.g. inside the order's transaction."""
        await conn.execute(_UPSERT, *call.row("pending", None, None, None))

    async def finish(self, call: ToolCall, status: str, response: Any, error: str | None) -> int:
        latency_ms = round((time.perf_counter() - call.t0) * 1000)
        row = call.row(status, response, error, latency_ms)
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            await self._queue.put(row)
        return latency_ms

    async def _run(self) -> None:
        while True:
            rows = [await self._queue.get()]
            while len(rows) < self._batch and not self._queue.empty():
                rows.append(self._queue.get_nowait())
            await self._write(rows)
            for _ in rows:
                self._queue.task_done()

    async def _write(self, rows: list[tuple[Any, ...]]) -> None:
        delay = 0.1
        while True:
            try:
                await self._pool.executemany(_UPSERT, rows)
                return
            except (OSError, asyncpg.PostgresConnectionStatusError, asyncpg.InterfaceError) as exc:
                # The database is away: keep the rows and retry; callers block once the queue fills.
                log.warning("audit_write_retry", rows=len(rows), error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def _error_text(result: dict[str, Any]) -> str:
    parts = [c.get("text", "") for c in result.get("content") or [] if isinstance(c, dict)]
    return "\n".join(p for p in parts if p) or "tool error"


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
        data = result if isinstance(result, dict) else result.model_dump(by_alias=True) if result else {}
        failed = bool(data.get("isError"))
        error = _error_text(data) if failed else None
        response = None if failed else data.get("structuredContent")
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
