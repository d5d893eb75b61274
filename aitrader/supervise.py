"""The processes `aitrader up` runs: started, their stderr passed through, restarted with backoff
when they exit on their own — except for a configuration error (exit 2), which no restart can
fix: then the supervisor stops with that child's one-line reason.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final

from aitrader.embedded import EmbeddedNats, EmbeddedPostgres
from aitrader.embedded_cluster import EmbeddedNatsCluster
from shared.errors import ConfigError
from shared.logging import get_logger

CONFIG_EXIT: Final = 2  # shared.runner.fail: bad configuration
CONFIG_PREFIX: Final = "aitrader: configuration error: "
RESTART_BACKOFF: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
HEALTHY_AFTER_S: Final = 60.0  # a child that ran this long starts its backoff afresh
LINE_LIMIT: Final = 1 << 20
log = get_logger("up")


@dataclass
class Stack:
    """Everything `up` started, so that it can be stopped in reverse order."""

    env: dict[str, str] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | EmbeddedNatsCluster | None = None
    children: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    forwarders: dict[str, asyncio.Task[str | None]] = field(default_factory=dict)
    monitor: asyncio.Task[None] | None = None  # the supervisor, once every child is started

    def stop_servers(self) -> None:
        """Stop only the servers this `up` started (never one it merely found running)."""
        if self.nats:
            self.nats.stop()
            log.info("stopped", server="nats")
        if self.postgres:
            self.postgres.stop()
            log.info("stopped", server="postgres")


async def forward(stream: asyncio.StreamReader) -> str | None:
    """Copy a child's stderr to ours; return its last configuration-error reason, if any."""
    reason: str | None = None
    writable = True
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line over LINE_LIMIT: asyncio dropped it, go on with the next
            continue
        if not line:
            return reason
        if writable:
            try:
                sys.stderr.buffer.write(line)
                sys.stderr.buffer.flush()
            except (OSError, ValueError):  # our stderr is gone: keep draining, or the child blocks
                writable = False
        text = line.decode(errors="replace").strip()
        if text.startswith(CONFIG_PREFIX):
            reason = text.removeprefix(CONFIG_PREFIX)[:500]


async def spawn(name: str, argv: list[str], env: dict[str, str], stack: Stack) -> None:
    # A session of its own, as the embedded servers have: a terminal's Ctrl-C reaches `up`
    # alone, which stops each service with SIGTERM in order (a service hit by both at once
    # logged its web server's lifespan being torn down as an error).
    process = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, **env}, stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
        start_new_session=True,
    )
    assert process.stderr is not None
    stack.children[name] = process
    stack.commands[name] = argv
    stack.envs[name] = env
    stack.started[name] = asyncio.get_running_loop().time()
    stack.forwarders[name] = asyncio.create_task(forward(process.stderr), name=f"stderr-{name}")
    log.info("started", service=name, pid=process.pid)


async def exit_reason(stack: Stack, name: str) -> str | None:
    """The child's configuration-error line, once its stderr is drained (bounded: a grandchild
    holding the pipe open must not hang the supervisor)."""
    try:
        return await asyncio.wait_for(asyncio.shield(stack.forwarders[name]), 5.0)
    except TimeoutError:
        return None


@dataclass
class Restarts:
    """Per child: consecutive quick exits (the backoff step) and their exit codes."""

    backoff: tuple[float, ...] = RESTART_BACKOFF
    healthy_after: float = HEALTHY_AFTER_S
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    codes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def delay(self, name: str, code: int, ran: float) -> float:
        if ran >= self.healthy_after:  # it ran healthy for a while: not a crash loop
            self.failures[name] = 0
            self.codes[name].clear()
        self.codes[name] = [*self.codes[name], code][-10:]
        step = min(self.failures[name], len(self.backoff) - 1)
        self.failures[name] += 1
        return self.backoff[step]


async def supervise(stack: Stack, restarts: Restarts | None = None) -> None:
    """Until cancelled: restart a child that exits on its own, with backoff; raise
    `ConfigError` with the child's reason when one exits with a configuration error."""
    restarts = restarts or Restarts()
    pending: dict[asyncio.Future[object], str] = {}
    try:
        await _supervise(stack, restarts, pending)
    finally:
        for sleeping in pending:
            sleeping.cancel()


async def _supervise(stack: Stack, restarts: Restarts, pending: dict[asyncio.Future[object], str]) -> None:
    while True:
        waiters: dict[asyncio.Future[object], str] = {
            asyncio.ensure_future(p.wait()): n for n, p in stack.children.items() if p.returncode is None
        }
        if not waiters and not pending:  # nothing to watch (`--services none`): until cancelled
            await asyncio.Future()
        try:
            done, _ = await asyncio.wait([*waiters, *pending], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()  # a no-op on the finished ones
        for task in done:
            if task in pending:  # a restart's delay ran out
                name = pending.pop(task)
                await spawn(name, stack.commands[name], stack.envs[name], stack)
                continue
            name = waiters[task]
            delay = await on_exit(stack, restarts, name, int(stack.children[name].returncode or 0))
            pending[asyncio.ensure_future(asyncio.sleep(delay))] = name


async def on_exit(stack: Stack, restarts: Restarts, name: str, code: int) -> float:
    """Log the exit; the delay before its restart (a configuration error raises instead)."""
    reason = await exit_reason(stack, name)
    if code == CONFIG_EXIT:
        log.error("service_misconfigured", service=name, code=code, reason=reason)
        raise ConfigError(name, reason or "exited with a configuration error (status 2)")
    ran = asyncio.get_running_loop().time() - stack.started[name]
    delay = restarts.delay(name, code, ran)
    event = "service_crash_loop" if restarts.failures[name] >= 3 else "service_exited"
    log.error(event, service=name, code=code, ran_s=round(ran, 1), restart_in_s=delay,
              recent_codes=restarts.codes[name])
    return delay


async def stop_children(stack: Stack, timeout: float = 15.0) -> None:
    for process in stack.children.values():
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    for name, process in stack.children.items():
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
        await exit_reason(stack, name)  # its last lines reach our stderr before we go on
        log.info("stopped", service=name, code=process.returncode)
