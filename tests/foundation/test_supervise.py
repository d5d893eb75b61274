"""`aitrader up`'s supervisor on real child processes: a configuration error (exit 2) is never
restarted and ends the supervisor with the child's line; any other exit is restarted; the
backoff starts afresh after a child ran healthy for a while."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest

from aitrader.supervise import Restarts, Stack, spawn, stop_children, supervise
from aitrader.up import run_until_stopped, settings_env
from shared.errors import ConfigError
from shared.settings import Settings


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_a_configuration_error_is_not_restarted_and_names_its_reason(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    stack = Stack()
    await spawn("metrics", python(
        f"import sys; open({str(starts)!r}, 'a').write('x');"
        "print('aitrader: configuration error: AITRADER_TIMEFRAMES: unknown bar', file=sys.stderr);"
        "sys.exit(2)"), {}, stack)
    await spawn("positions", python("import time; time.sleep(60)"), {}, stack)
    try:
        with pytest.raises(ConfigError) as caught:
            await asyncio.wait_for(supervise(stack, Restarts(backoff=(0.01,))), 10)
        assert str(caught.value) == "metrics: AITRADER_TIMEFRAMES: unknown bar"
        assert starts.read_text() == "x"  # started once, never again
    finally:
        await stop_children(stack, timeout=5)
    assert stack.children["positions"].returncode is not None  # the others are stopped too


async def test_a_crash_is_restarted(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    stack = Stack()
    # Exits 1 at its first start; runs at its second.
    await spawn("ingest", python(
        f"import pathlib, sys, time; p = pathlib.Path({str(starts)!r}); p.write_text(p.read_text() + 'x' "
        "if p.exists() else 'x'); sys.exit(1) if p.read_text() == 'x' else time.sleep(60)"), {}, stack)
    monitor = asyncio.create_task(supervise(stack, Restarts(backoff=(0.01,))))
    try:
        for _ in range(500):  # bounded: 10 s
            if starts.exists() and starts.read_text() == "xx":
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("ingest was not restarted within 10 s")
        assert stack.children["ingest"].returncode is None
    finally:
        monitor.cancel()
        await stop_children(stack, timeout=5)


def test_backoff_grows_and_starts_afresh_after_a_healthy_run() -> None:
    restarts = Restarts(backoff=(1.0, 2.0, 5.0), healthy_after=60.0)
    assert [restarts.delay("ingest", 1, ran=0.5) for _ in range(4)] == [1.0, 2.0, 5.0, 5.0]
    assert restarts.codes["ingest"] == [1, 1, 1, 1]
    assert restarts.delay("ingest", 137, ran=61.0) == 1.0  # it ran a minute: not a crash loop
    assert restarts.codes["ingest"] == [137]
    assert restarts.delay("positions", 1, ran=0.1) == 1.0  # each child has its own


async def test_up_stops_the_stack_with_a_services_configuration_error(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past preflight (which would have refused it): the child itself finds the bad setting.
    monkeypatch.setenv("AITRADER_POSITIONS_BATCH_SIZE", "0")
    with pytest.raises(ConfigError) as caught:
        await asyncio.wait_for(
            run_until_stopped(settings, tmp_path, "okx", ["positions"], {"positions": 0}), 60
        )
    assert str(caught.value).startswith(
        "positions: AITRADER_POSITIONS_BATCH_SIZE: Input should be greater than or equal to 1")
    assert not (tmp_path / "ports.json").exists()  # the stack was stopped and cleaned up


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stderr", "chosen"), [(io.StringIO(), "json"), (Terminal(), "console")],
                         ids=["pipe", "terminal"])
def test_children_log_in_the_format_up_itself_would_choose(
    monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO, chosen: str
) -> None:
    # `auto` resolves as it would in `up` itself (by whether up's stderr is a terminal), not left
    # to the children, whose stderr is always a pipe. Up's stderr is set here: pytest's own
    # (captured or, with -s, the terminal) would decide otherwise.
    monkeypatch.setattr(sys, "stderr", stderr)
    assert settings_env(Settings(log_format="auto"))["AITRADER_LOG_FORMAT"] == chosen
    assert settings_env(Settings(log_format="console"))["AITRADER_LOG_FORMAT"] == "console"
