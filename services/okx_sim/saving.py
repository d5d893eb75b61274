"""When and how the state file is written: atomically, at most `delay` s after a change.

A change marks the state dirty; the first mark schedules a save `delay` seconds later, and
marks until then ride along. The document is encoded on the event loop (the state is only
consistent there) and written by a worker thread (fsync must not stall the loop). A kill -9
therefore loses at most the changes of the last `delay` seconds plus one write in flight;
a clean stop (`close`) writes the final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import structlog

from .state import StateError

log = structlog.get_logger("okx_sim")


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` by `text`: temp file (mode 0600) in the same directory, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode())  # in the writer thread: 10 MB take ~10 ms
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a crash
    finally:
        os.close(dir_fd)


def lock(path: Path) -> BinaryIO:
    """Hold `<path>.lock` while this sim runs: two sims writing one file would lose trades."""
    try:
        held = open(f"{path}.lock", "ab")  # held (locked) until Saver.close
    except OSError as err:
        raise StateError(f"state file {path}: cannot create {path}.lock ({err.strerror})"
                         ) from None
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.close()
        raise StateError(f"state file {path}: in use by another okx-sim (it holds "
                         f"{path}.lock)") from None
    return held


class Saver:
    """Writes `encode()` to `path` soon after each change, off the loop, one write at a time."""

    def __init__(self, path: Path, encode: Callable[[], str], held: BinaryIO,
                 delay: float = 0.2) -> None:
        self.path, self.delay, self._encode, self._held = path, delay, encode, held
        self._dirty = self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Future[None] | None = None

    def save_now(self) -> None:
        """Write synchronously (start-up and shut-down); raises OSError if it cannot."""
        self._dirty = False
        write_atomic(self.path, self._encode())

    def changed(self) -> None:
        """The state changed: make sure a save follows within `delay` seconds."""
        self._dirty = True
        if self._timer is not None or self._task is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (a script): write at once
            self.save_now()
            return
        self._timer = loop.call_later(self.delay, self._start)

    def _start(self) -> None:
        self._timer = None
        self._dirty = False
        self._task = asyncio.ensure_future(asyncio.to_thread(write_atomic, self.path,
                                                             self._encode()))
        self._task.add_done_callback(self._written)

    def _written(self, task: asyncio.Future[None]) -> None:
        self._task = None
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("okx_sim.state_not_saved", path=str(self.path), error=str(err))
            self._dirty = True  # retried on the next change
            return
        if self._dirty:
            self.changed()

    async def close(self) -> None:
        """Cancel the pending save, wait for the one in flight, and write the final state."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            self.save_now()
        except OSError as err:
            log.error("okx_sim.state_not_saved", path=str(self.path), error=str(err))
        finally:
            self._held.close()  # releases the lock
