"""Run one service as a process: settings, logging, signals, and a one-line error on bad config.

Every service has `services/<name>/main.py` with `async def serve(settings) -> None`, which runs
until cancelled. `aitrader run <name>` and `python -m services.<name>` both come here.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from shared.errors import ConfigError
from shared.logging import configure_logging, get_logger
from shared.settings import Settings, load_settings

Serve = Callable[[Any], Awaitable[None]]


def fail(error: ConfigError) -> None:
    """Print one clear line naming the setting, and exit 2 (no traceback)."""
    print(f"aitrader: configuration error: {error}", file=sys.stderr)
    raise SystemExit(2)


async def run_until_signalled(coro: Awaitable[None]) -> None:
    """Run `coro`; SIGINT / SIGTERM cancel it so that its `finally` blocks clean up."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


# The youngest generation is collected every this many net allocations (CPython's default: 700).
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Garbage collection for a long-running service that allocates many short-lived objects
    per message or request: what is alive after start-up (modules, classes, settings) is frozen
    out of the collector's scans, and the youngest generation is collected every
    GC_GEN0_THRESHOLD allocations instead of 700. Reference counting still frees nearly
    everything at once; only cyclic garbage waits a little longer. Measured on the positions
    service: ~15 % less CPU per fill."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


def run_service(name: str, settings_cls: type[Settings] | None = None) -> None:
    """Load `services.<name>.main`, its settings, and run its `serve` until a signal."""
    module = importlib.import_module(f"services.{name}.main")
    serve: Serve = module.serve
    default: type[Settings] = getattr(module, "SETTINGS_CLASS", Settings)
    cls = settings_cls or default
    try:
        settings = load_settings(cls)
        configure_logging(settings.log_level, settings.log_format, service=name)
        get_logger().info("service_starting", service=name)
        tune_gc()
        asyncio.run(run_until_signalled(serve(settings)))
    except ConfigError as exc:
        fail(exc)
    except Exception:
        # One structured line with the traceback, then a non-zero exit for the supervisor.
        get_logger().exception("service_crashed", service=name)
        raise SystemExit(1) from None
