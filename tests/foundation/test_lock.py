"""One `aitrader up` per data directory: the flock and the pid it names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aitrader.lock import DataDirLock
from shared.errors import ConfigError


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    first, second = DataDirLock(tmp_path / "data"), DataDirLock(tmp_path / "data")
    first.acquire()
    try:
        with pytest.raises(ConfigError) as caught:
            second.acquire()
        assert str(caught.value).startswith(
            f"AITRADER_DATA_DIR: {tmp_path / 'data'} is in use by another `aitrader up` (pid {os.getpid()})")
        assert first.path.read_text() == f"{os.getpid()}\n"  # the refusal left the holder's pid
    finally:
        first.release()
    second.acquire()  # free once released (as when its holder dies: the kernel drops it)
    second.release()
    assert first.path.read_text() == ""


def test_a_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^AITRADER_DATA_DIR: cannot use .*file/data \("):
        DataDirLock(tmp_path / "file" / "data").acquire()
