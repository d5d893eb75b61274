"""What the fault tests share: the suite's two sizes, the positions service as a process of its
own (started as a user starts it: `python -m services.positions` with `AITRADER_*` settings),
and a paced fill publisher that rides out a NATS restart.

`AITRADER_FAULTS=full` (what `make faults` sets) selects the long runs; unset, the short ones
that CI runs with the rest of the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import nats.errors
from nats.js import JetStreamContext

from aitrader.embedded import free_port
from services.positions.partitions import backlog
from shared.bus import headers_for
from shared.messages import Fill
from shared.settings import Settings
from shared.subjects import DEFAULT_PARTITIONS, Subjects
from tests.factories import wait_for
from tests.positions.conftest import CONSUMER

T = TypeVar("T")
FAULTS = os.environ.get("AITRADER_FAULTS", "short") or "short"
if FAULTS not in ("short", "full"):
    raise RuntimeError(f"AITRADER_FAULTS={FAULTS!r}: expected 'short' or 'full'")
FULL = FAULTS == "full"
# The killed process's unacked batch comes back after this; short enough to keep the suite
# fast, long enough for a batch (AITRADER_POSITIONS_BATCH_SIZE) to commit on a loaded machine
# (a batch redelivered while it is being written only collapses to duplicates).
ACK_WAIT_S = 5.0
BATCH_SIZE = 1000


def size(short: T, full: T) -> T:
    """The short run's figure, or the full run's under AITRADER_FAULTS=full."""
    return full if FULL else short


def report(line: str) -> None:
    """A measured figure, on the terminal even under pytest's capture (run with -s to see all)."""
    print(f"[faults:{FAULTS}] {line}", file=sys.__stderr__, flush=True)


@dataclass
class PositionsProcess:
    """`python -m services.positions` on the given servers and namespace, its log in `log_path`."""

    settings: Settings
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    health_port: int = 0
    starts: int = 0

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "AITRADER_DATABASE_URL": s.require_database_url(),
            "AITRADER_NATS_URL": s.require_nats_url(),
            "AITRADER_NATS_SUBJECT_ROOT": s.nats_subject_root,
            "AITRADER_NATS_STREAM_PREFIX": s.nats_stream_prefix,
            # A port of its own: the default (9102) would collide with any other test's service.
            "AITRADER_HEALTH_PORT": str(self.health_port),
            "AITRADER_POSITIONS_ACK_WAIT_SECONDS": str(ACK_WAIT_S),
            "AITRADER_POSITIONS_BATCH_SIZE": str(BATCH_SIZE),
            "AITRADER_LOG_LEVEL": "warning",
            "AITRADER_LOG_FORMAT": "json",
            **self.extra_env,
        }

    async def start(self) -> float:
        """Spawn the process; return the monotonic time just before."""
        self.health_port = free_port()
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.positions", env=self.env(), stdout=log, stderr=log)
        self.starts += 1
        return started

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def ready(self, timeout: float = 30.0) -> None:
        """Wait until its /readyz answers 200 (database and NATS reachable, the ledger moving)."""
        url = f"http://127.0.0.1:{self.health_port}/readyz"

        async def answers() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"positions exited {self.proc.returncode}: {self.log_tail()}")
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(url)).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(answers, timeout=timeout, interval=0.05, message=f"positions ready at {url}")

    def freeze(self) -> None:
        """SIGSTOP: the process holds whatever it is in the middle of."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """kill -9, and reap it."""
        assert self.proc is not None and self.proc.returncode is None, "not running"
        self.proc.kill()
        await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        """SIGTERM (kill -9 after 10 s), if it is still running."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def rss_kib(self) -> int:
        """Resident memory of the process now (VmRSS in /proc/<pid>/status), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return " | ".join(text.splitlines()[-lines:])


@dataclass
class Publisher:
    """Publishes fills in order at a steady pace, each retried with its Nats-Msg-Id until
    JetStream acknowledges it (a retry of one that did land is a duplicate the stream drops);
    `acked` is how many are in the stream for sure, a prefix of `fills`. Every
    `plain_copy_every`-th fill is published a second time without its Nats-Msg-Id: a duplicate
    that reaches the service (the ledger's unique key must drop it)."""

    js: JetStreamContext
    subjects: Subjects
    fills: Sequence[Fill]
    per_second: float
    plain_copy_every: int = 0
    acked: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Until every fill is acknowledged or `stop` is set."""
        every = 20  # a pause every so many fills makes the pace
        for n, event in enumerate(self.fills):
            if self.stop.is_set():
                return
            await self._publish(event)
            if self.plain_copy_every and n % self.plain_copy_every == 0:
                await self._publish(event, plain=True)
            self.acked = n + 1
            if n % every == every - 1:
                await asyncio.sleep(every / self.per_second)

    async def _publish(self, event: Fill, *, plain: bool = False) -> None:
        subject = self.subjects.for_event(event)
        headers = None if plain else headers_for(event)
        while True:
            try:
                await self.js.publish(subject, event.to_bytes(), headers=headers, timeout=2)
                return
            except (nats.errors.Error, TimeoutError):
                await asyncio.sleep(0.1)  # NATS away: the pace of retries, not a wait on a condition


@contextlib.asynccontextmanager
async def feeding(service: PositionsProcess, publisher: Publisher) -> AsyncIterator[asyncio.Task[None]]:
    """The service started and ready, then the publisher running; both stopped on exit."""
    await service.start()
    publishing: asyncio.Task[None] | None = None
    try:
        await service.ready()
        publishing = asyncio.create_task(publisher.run())
        yield publishing
        assert service.proc is not None and service.proc.returncode is None, service.log_tail()
    finally:
        if publishing is not None and not publishing.done():
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        await service.stop()


async def consumer_settled(js: JetStreamContext, subjects: Subjects) -> tuple[int, int]:
    """(num_pending, num_ack_pending) of the positions consumers (every partition)."""
    state = await asyncio.wait_for(backlog(js, subjects, CONSUMER, DEFAULT_PARTITIONS), 5)
    return state.pending, state.ack_pending
