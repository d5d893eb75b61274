"""Every tool call is exactly one `mcp_tool_calls` row: redacted request, response, status,
latency. A server middleware wraps each `tools/call` (so calls whose arguments fail the
input schema, and unknown tools, are recorded too) and the rows are written by a background
writer in batches, off the call's latency path (redaction included). A call that must reference its own row
(execute_trade's order, update_exit_plan's history) writes it synchronously first, as
`pending`; the final write is an upsert either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from prometheus_client import Gauge, Histogram
from pydantic_core import from_json

from services.mcp_gateway.auth import Principal
from shared.clock import utcnow
from shared.consumer import DeadLetter, fate_of
from shared.db import Connection, json_dumps
from shared.logging import get_logger, may_hold_secret_value, redact

log = get_logger("mcp_gateway.audit")

_UPSERT = """
INSERT INTO aitrader.mcp_tool_calls
    (id, account_id, tool_name, request_payload, response_payload, status, latency_ms, error,
     transport, token_id, created_at)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8, $9, $10, $11)
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


TOOL_SECONDS = Histogram("aitrader_mcp_tool_call_seconds", "A tool call, from the request to its result.",
                         ["tool", "status"])
AUDIT_QUEUE = Gauge("aitrader_mcp_audit_queue", "Finished tool calls waiting for their audit row.")
CLOSE_TIMEOUT_S = 10.0  # how long stopping waits for the queued rows to be written

_current: ContextVar[ToolCall | None] = ContextVar("mcp_tool_call", default=None)


def current_call() -> ToolCall:
    """The tool call being served (set by `AuditMiddleware`)."""
    call = _current.get()
    if call is None:
        raise RuntimeError("no tool call in context (is AuditMiddleware installed?)")
    return call


@dataclass(frozen=True)
class Finished:
    """A finished call waiting for its row: redacted and written by the writer task."""

    call: ToolCall
    status: str
    response: Any
    error: str | None
    latency_ms: int

    def row(self) -> tuple[Any, ...]:
        return self.call.row(self.status, self.response, self.error, self.latency_ms)


class AuditWriter:
    """Writes tool-call rows from a bounded queue, in batches; a full queue slows callers down
    rather than dropping rows."""

    def __init__(
        self, pool: asyncpg.Pool, maxsize: int = 10_000, batch: int = 500, linger: float = 0.02
    ) -> None:
        self._pool = pool
        # Rows wait up to `linger` s for company: one INSERT per burst rather than per call,
        # and the write does not compete with the caller's next request.
        self._linger = linger
        self._queue: asyncio.Queue[Finished] = asyncio.Queue(maxsize)
        AUDIT_QUEUE.set_function(self._queue.qsize)
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self._writing = 0  # rows of the batch being written (taken off the queue)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mcp-audit-writer")

    async def flush(self) -> None:
        """Wait until every finished call is written."""
        await self._queue.join()

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write everything queued, then stop; within `timeout`, so that a database that is away
        cannot keep the process from stopping (what is still queued then is logged as lost)."""
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            log.error("audit_rows_unwritten", rows=self._writing + self._queue.qsize(),
                      reason=f"the database did not take them within {timeout:g} s of stopping")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def has_room(self) -> bool:
        """Below its bound (90 % of the queue): tool calls are not waiting for the database."""
        return self._queue.qsize() < self._queue.maxsize * 0.9

    async def write_pending(self, conn: Connection, call: ToolCall) -> None:
        """Insert the call's row now (status pending), e.g. inside the order's transaction."""
        await conn.execute(_UPSERT, *call.row("pending", None, None, None))

    async def finish(self, call: ToolCall, status: str, response: Any, error: str | None) -> int:
        """Queue the call's final row; `response` must not change afterwards."""
        elapsed = time.perf_counter() - call.t0
        TOOL_SECONDS.labels(call.tool, status).observe(elapsed)
        latency_ms = round(elapsed * 1000)
        entry = Finished(call, status, response, error, latency_ms)
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            await self._queue.put(entry)
        return latency_ms

    async def _run(self) -> None:
        while True:
            entries = [await self._queue.get()]
            if self._linger:
                await asyncio.sleep(self._linger)
            while len(entries) < self._batch and not self._queue.empty():
                entries.append(self._queue.get_nowait())
            self._writing = len(entries)
            await self._write([e.row() for e in entries])
            self._writing = 0
            for _ in entries:
                self._queue.task_done()

    async def _write(self, rows: list[tuple[Any, ...]]) -> None:
        delay, fixes = 0.1, 0
        while True:
            try:
                await self._pool.executemany(_UPSERT, rows)
                return
            except Exception as exc:
                fate = fate_of(exc)
                if isinstance(fate, DeadLetter):
                    # PostgreSQL refuses a value (a NUL in text or jsonb, a constraint): find the
                    # row, store it with the offending characters replaced or its payload replaced
                    # by a note, write the others as they are; never block the queue behind it.
                    if len(rows) > 1:
                        for row in rows:
                            await self._write([row])
                        return
                    fixes += 1
                    if fixes > 2:  # not even the note could be stored: nothing more to try
                        log.error("audit_row_dropped", call_id=str(rows[0][0]), error=str(exc))
                        return
                    log.warning("audit_row_fixed", call_id=str(rows[0][0]),
                                error=f"{type(exc).__name__}: {exc}")
                    rows = [_storable(rows[0], str(exc))]
                    continue
                if not fate.unknown:
                    # The database is away (down, restarting): keep the rows and retry; callers
                    # block once the queue fills.
                    log.warning("audit_write_retry", rows=len(rows), error=f"{type(exc).__name__}: {exc}")
                else:  # anything else (a schema problem): say so loudly, keep the rows
                    log.exception("audit_write_failed", rows=len(rows))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _storable(row: tuple[Any, ...], reason: str) -> tuple[Any, ...]:
    """A row PostgreSQL refused, made storable: NUL (which neither text nor jsonb can hold)
    becomes U+FFFD everywhere; a payload still refused after that is replaced by a note."""
    request = json_dumps(row[3])
    if any(isinstance(v, str) and "\x00" in v for v in row) or "\\u0000" in request + str(row[4]):
        fixed = [v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in row]
        fixed[3] = json.loads(request.replace("\\u0000", "\\ufffd"))
        if isinstance(row[4], str):
            fixed[4] = row[4].replace("\\u0000", "\\ufffd")
        return tuple(fixed)
    note = {"unstorable": reason[:500]}
    return (*row[:3], note, json_dumps(note), *row[5:])


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
