"""One `aitrader up` per data directory: an exclusive flock on `<data dir>/aitrader.lock`,
taken before anything else, with the holder's pid written in it.

The kernel drops the lock when its holder dies however it dies, so a killed `up` never leaves
a stale lock behind; the pid in the file only names the holder in the refusal.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from shared.errors import ConfigError

LOCK_NAME = "aitrader.lock"


class DataDirLock:
    """Held from `acquire` until `release` (or the process's end)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise a `ConfigError` naming the directory and the holder's pid."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Not O_TRUNC: the file of a running holder must keep its pid until we own the lock.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            problem = f"cannot use {self.path.parent} ({exc.strerror})"
            raise ConfigError("AITRADER_DATA_DIR", problem) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                "AITRADER_DATA_DIR",
                f"{self.path.parent} is in use by another `aitrader up` (pid {holder}); "
                "stop it, or give this one its own --data-dir",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None
