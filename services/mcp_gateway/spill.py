"""The audit writer's spill: rows it could not write within its bound, kept in a local file
until the database takes them.

One JSON object a line (the row's columns by name; its values already redacted), in files of
mode 0600 in a directory of mode 0700. Appends take an exclusive `flock` and check that the
path still names the file they opened, so a drain that renamed it cannot lose a row appended
at that moment. A drain renames the active file aside, reads it, writes its rows (an upsert on
the row's id: a replay after a crash between the write and the removal writes nothing twice),
then removes it. A line cut short by a crash mid-append is skipped and logged.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import platformdirs

from shared.logging import get_logger

log = get_logger("mcp_gateway.audit")
ACTIVE = "audit-spill.jsonl"
COLUMNS = ("id", "account_id", "tool_name", "request_payload", "response_payload", "status",
           "latency_ms", "error", "transport", "token_id", "created_at")
_UUIDS = ("id", "account_id", "token_id")
Row = tuple[Any, ...]


def default_spill_dir(data_dir: Path | None) -> Path:
    """Under the data directory when one is set; else the user's state directory (as root,
    /var/lib/aitrader, as `aitrader up` has it)."""
    if data_dir is not None:
        return data_dir / "audit-spill"
    if os.geteuid() == 0:
        return Path("/var/lib/aitrader/audit-spill")
    return Path(platformdirs.user_state_dir("aitrader")) / "audit-spill"


def encode(row: Row) -> bytes:
    """One line of the spill: the row's columns by name."""
    named = dict(zip(COLUMNS, row, strict=True))
    for key in _UUIDS:
        named[key] = str(named[key]) if named[key] is not None else None
    named["created_at"] = named["created_at"].isoformat()
    return json.dumps(named, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> Row:
    """The row of one spill line (ValueError, KeyError or TypeError when it is not one)."""
    named = json.loads(line)
    for key in _UUIDS:
        named[key] = UUID(named[key]) if named[key] is not None else None
    named["created_at"] = datetime.fromisoformat(named["created_at"])
    return tuple(named[key] for key in COLUMNS)


class Spill:
    """The spill files of one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rows = sum(len(self._lines(path)) for path in self.files())

    def files(self) -> list[Path]:
        """Every spill file, oldest first (the active one last)."""
        if not self.directory.is_dir():
            return []
        aside = sorted(self.directory.glob("audit-spill-*.jsonl"))
        active = self.directory / ACTIVE
        return [*aside, active] if active.exists() else aside

    def append(self, rows: Sequence[Row], *, sync: bool = False) -> None:
        """Append rows to the active file (OSError when the disk refuses)."""
        data = b"".join(encode(row) for row in rows)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / ACTIVE
        with _locked(path) as fd:
            os.fchmod(fd, 0o600)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a line a crash cut short
                data = b"\n" + data
            os.write(fd, data)
            if sync:
                os.fsync(fd)
        self.rows += len(rows)

    def next_file(self) -> Path | None:
        """The next file to drain: the oldest one set aside, else the active one, set aside
        now (new rows go to a fresh one); None when there is none. While the database stays
        away one file waits aside, however often a drain is tried."""
        files = self.files()
        if not files:
            return None
        if files[0].name != ACTIVE:
            return files[0]
        aside = self.directory / f"audit-spill-{time.time_ns()}-{os.getpid()}.jsonl"
        os.rename(files[0], aside)
        return aside

    def read(self, path: Path) -> list[Row]:
        """The rows of one file set aside; unreadable lines are logged and skipped."""
        rows: list[Row] = []
        for number, line in enumerate(self._lines(path), 1):
            try:
                rows.append(decode(line))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("audit_spill_line_unreadable", file=path.name, line=number,
                          error=f"{type(exc).__name__}: {exc}"[:200])
        return rows

    def remove(self, path: Path) -> None:
        """The file's rows are written: remove it."""
        path.unlink(missing_ok=True)
        self.rows = sum(len(self._lines(p)) for p in self.files())

    def _lines(self, path: Path) -> list[bytes]:
        try:
            with _locked(path, create=False) as fd:
                data = os.pread(fd, os.fstat(fd).st_size, 0)
        except FileNotFoundError:  # drained by another gateway on the same directory
            return []
        return [line for line in data.split(b"\n") if line.strip()]


class _locked:
    """An fd of `path` under an exclusive flock, still the file the path names."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path, self.create = path, create
        self.fd = -1

    def __enter__(self) -> int:
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if self.create else 0)
        for fd in _opened(self.path, flags):
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same or not self.create:
                self.fd = fd
                return fd
            os.close(fd)  # renamed aside meanwhile: open the new active file
        raise AssertionError("unreachable")

    def __exit__(self, *_exc: object) -> None:
        os.close(self.fd)  # releases the lock


def _opened(path: Path, flags: int) -> Iterator[int]:
    while True:
        yield os.open(path, flags, 0o600)
