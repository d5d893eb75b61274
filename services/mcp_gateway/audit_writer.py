"""The background writer of the tool-call rows: a bounded queue, written in batches, never in
the way of a tool call.

Rows that cannot be written within a bound are spilled (`services.mcp_gateway.spill`), not
dropped, and never waited for: a full queue spills the caller's row at once; a batch the
database has not taken after `spill_after` s of retries (down, restarting, unreachable) is
spilled, and while it stays away each later batch gets one bounded attempt, then the spill;
stopping spills what is still queued. The spill is written back once the database answers —
at start, after a write succeeds again, and every `RETRY_EVERY_S` while it holds rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from prometheus_client import Gauge, Histogram

from services.mcp_gateway.spill import Row, Spill
from shared.consumer import DeadLetter, fate_of
from shared.db import Connection, json_dumps
from shared.logging import get_logger

if TYPE_CHECKING:
    from services.mcp_gateway.audit import ToolCall

log = get_logger("mcp_gateway.audit")

# An upsert on the call's id: the final row replaces the `pending` one a call wrote first, and
# a row written twice (a spill replayed after a crash, a write whose answer was lost) is one row.
# The key holds created_at (the partition key, 0018): both rows of a call carry its start time.
_UPSERT = """
INSERT INTO aitrader.mcp_tool_calls
    (id, account_id, tool_name, request_payload, response_payload, status, latency_ms, error,
     transport, token_id, created_at)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id, created_at) DO UPDATE SET
    response_payload = EXCLUDED.response_payload, status = EXCLUDED.status,
    latency_ms = EXCLUDED.latency_ms, error = EXCLUDED.error
"""
TOOL_SECONDS = Histogram("aitrader_mcp_tool_call_seconds", "A tool call, from the request to its result.",
                         ["tool", "status"])
AUDIT_QUEUE = Gauge("aitrader_mcp_audit_queue", "Finished tool calls waiting for their audit row.")
AUDIT_SPILLED = Gauge("aitrader_mcp_audit_spilled", "Audit rows in the local spill file, waiting for "
                      "the database.")
CLOSE_TIMEOUT_S = 10.0  # how long stopping waits for the queued rows to be written
SPILL_AFTER_S = 5.0  # how long a batch is retried before it is spilled
WRITE_TIMEOUT_S = 5.0  # one write of a batch
RETRY_EVERY_S = 2.0  # while the database is away: how often it is tried again


@dataclass(frozen=True)
class Finished:
    """A finished call waiting for its row: redacted and written by the writer task."""

    call: ToolCall
    status: str
    response: Any
    error: str | None
    latency_ms: int

    def row(self) -> Row:
        return self.call.row(self.status, self.response, self.error, self.latency_ms)


class AuditWriter:
    """Writes tool-call rows from a bounded queue, in batches; spills what it cannot write."""

    def __init__(
        self, pool: asyncpg.Pool, maxsize: int = 10_000, batch: int = 500, linger: float = 0.02, *,
        spill_dir: Path, spill_after: float = SPILL_AFTER_S,
    ) -> None:
        self._pool = pool
        # Rows wait up to `linger` s for company: one INSERT per burst rather than per call,
        # and the write does not compete with the caller's next request.
        self._linger = linger
        self._queue: asyncio.Queue[Finished] = asyncio.Queue(maxsize)
        AUDIT_QUEUE.set_function(self._queue.qsize)
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[Row] = []  # the batch being written (taken off the queue)
        self.spill = Spill(spill_dir)
        AUDIT_SPILLED.set_function(lambda: self.spill.rows)
        self._spill_after = spill_after
        self._away = False  # the last write failed: the database is away
        self._next_try = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mcp-audit-writer")

    async def flush(self) -> None:
        """Wait until every finished call is written or spilled."""
        await self._queue.join()

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued within `timeout` (at once when the database is away), then
        stop; what is left is spilled, for the next start to write."""
        if not self._away:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        rest = self._inflight + [self._queue.get_nowait().row() for _ in range(self._queue.qsize())]
        if rest:
            self._spill(rest, "stopping before the database took them")

    async def has_room(self) -> bool:
        """Below its bound (90 % of the queue): the writer keeps up."""
        return self._queue.qsize() < self._queue.maxsize * 0.9

    async def spill_empty(self) -> bool:
        """No spilled row waits for the database."""
        return self.spill.rows == 0

    async def write_pending(self, conn: Connection, call: ToolCall) -> None:
        """Insert the call's row now (status pending), e.g. inside the order's transaction."""
        await conn.execute(_UPSERT, *call.row("pending", None, None, None))

    async def finish(self, call: ToolCall, status: str, response: Any, error: str | None) -> int:
        """Queue the call's final row (spill it when the queue is full); `response` must not
        change afterwards."""
        elapsed = time.perf_counter() - call.t0
        TOOL_SECONDS.labels(call.tool, status).observe(elapsed)
        latency_ms = round(elapsed * 1000)
        entry = Finished(call, status, response, error, latency_ms)
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            # In the caller's path: no fsync (a killed process loses nothing; only the OS crashing
            # in the next seconds could; the writer task's own spills are synced), and one log
            # line per 1,000 rows, not per call.
            self._spill([entry.row()], f"the audit queue is full ({self._queue.maxsize} rows)",
                        sync=False, quiet=self.spill.rows % 1000 != 0)
        return latency_ms

    async def _run(self) -> None:
        await self._drain()  # what a previous process spilled
        while True:
            entries = await self._next_batch()
            if not entries:  # idle, with rows spilled: is the database back?
                await self._drain()
                continue
            self._inflight = [e.row() for e in entries]
            await self._write(self._inflight)
            self._inflight = []
            for _ in entries:
                self._queue.task_done()

    async def _next_batch(self) -> list[Finished]:
        try:
            first = await asyncio.wait_for(self._queue.get(), RETRY_EVERY_S if self.spill.rows else None)
        except TimeoutError:
            return []
        entries = [first]
        if self._linger:
            await asyncio.sleep(self._linger)
        while len(entries) < self._batch and not self._queue.empty():
            entries.append(self._queue.get_nowait())
        return entries

    async def _write(self, rows: list[Row]) -> None:
        """Write the rows, retried for up to `spill_after` s (one try while the database is
        known away), else spill them; after a success, write the spill back."""
        if self._away and time.monotonic() < self._next_try:
            self._spill(rows, "the database is away")
            return
        give_up = time.monotonic() + (0.0 if self._away else self._spill_after)
        delay = 0.1
        while (error := await self._try_write(rows)) is not None:
            if time.monotonic() >= give_up:
                self._away, self._next_try = True, time.monotonic() + RETRY_EVERY_S
                self._spill(rows, error)
                return
            await asyncio.sleep(min(delay, max(give_up - time.monotonic(), 0.0)))
            delay = min(delay * 2, 5.0)
        self._away = False
        if self.spill.rows:
            await self._drain()

    async def _drain(self) -> None:
        """Write every spilled row back, file by file; a file is removed once written."""
        try:
            while (path := self.spill.next_file()) is not None:
                rows = self.spill.read(path)
                for n in range(0, len(rows), self._batch):
                    if (error := await self._try_write(rows[n:n + self._batch])) is not None:
                        self._away, self._next_try = True, time.monotonic() + RETRY_EVERY_S
                        log.debug("audit_spill_kept", rows=self.spill.rows, error=error)
                        return
                self._away = False  # it took them: the next batch gets its full retries again
                self.spill.remove(path)
                log.info("audit_spill_written", rows=len(rows), left=self.spill.rows)
        except OSError as exc:  # the spill directory refuses us: keep writing the queue
            self._next_try = time.monotonic() + RETRY_EVERY_S
            log.error("audit_spill_unreadable", directory=str(self.spill.directory),
                      error=f"{type(exc).__name__}: {exc}")

    def _spill(self, rows: list[Row], reason: str, *, sync: bool = True, quiet: bool = False) -> None:
        try:
            self.spill.append(rows, sync=sync)
        except OSError as exc:  # nowhere left to keep them: say exactly what is lost
            log.error("audit_rows_unwritten", rows=len(rows), reason=reason,
                      error=f"spill to {self.spill.directory} failed: {type(exc).__name__}: {exc}")
            return
        (log.debug if quiet else log.warning)("audit_rows_spilled", rows=len(rows), spilled=self.spill.rows,
                                              reason=reason[:200])

    async def _try_write(self, rows: list[Row], fixes: int = 0) -> str | None:
        """Write the rows (a row PostgreSQL refuses is fixed or dropped, never retried):
        None when done, else why the database did not take them."""
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self._pool.executemany(_UPSERT, rows)
            return None
        except Exception as exc:  # fate_of decides: refused, or away
            error = f"{type(exc).__name__}: {exc}"[:300]
            fate = fate_of(exc)
            if isinstance(fate, DeadLetter):
                return await self._write_refused(rows, exc, fixes)
            if fate.unknown:  # not the database being away (a schema problem): say so loudly
                log.exception("audit_write_failed", rows=len(rows))
            else:
                log.warning("audit_write_retry", rows=len(rows), error=error)
            return error

    async def _write_refused(self, rows: list[Row], exc: Exception, fixes: int) -> str | None:
        """PostgreSQL refuses a value (a NUL in text or jsonb, a constraint): find the row, store
        it with the offending characters replaced or its payload replaced by a note, write the
        others as they are; never block the queue behind it."""
        if len(rows) > 1:
            for row in rows:
                if (error := await self._try_write([row])) is not None:
                    return error
            return None
        if fixes >= 2:  # not even the note could be stored: nothing more to try
            log.error("audit_row_dropped", call_id=str(rows[0][0]), error=str(exc))
            return None
        log.warning("audit_row_fixed", call_id=str(rows[0][0]), error=f"{type(exc).__name__}: {exc}")
        return await self._try_write([_storable(rows[0], str(exc))], fixes + 1)


def _storable(row: Row, reason: str) -> Row:
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
