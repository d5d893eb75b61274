"""The no-orphans safety net: after a live fold closed a slot, ask ingest to cancel the algo
(TP/SL) orders of that slot still `live` in `algo_orders` (`store.orphan_algos` says which).

The exchange cancels close-only algos itself when their position closes or flips; this only
catches one it did not. One `CancelAlgo` request per algo on core NATS, after commit, each in a
task of a bounded set (the consumer never waits for them), each with a deadline. Failures are
one log line and a count, never raised: a reply "not live" (51400) is the normal case (the
exchange was first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from uuid import uuid4

import nats.errors
from nats.aio.client import Client
from prometheus_client import Counter
from pydantic import ValidationError

from services.positions.algo_rows import OrphanAlgo
from shared.logging import get_logger
from shared.messages import AlgoReply, CancelAlgo
from shared.subjects import Subjects

log = get_logger("positions.orphans")
NOT_LIVE = "51400"  # OKX: the algo is not live (canceled or fired already) or unknown
ORPHAN_ALGOS = Counter(
    "aitrader_positions_orphan_algos",
    "Live algo orders of slots a fold closed that the ledger "
    "asked ingest to cancel, by result: canceled, not_live (the exchange was first: normal), "
    "failed (refused, no answer, no ingest), skipped (too many requests in flight).",
    ["result"],
)


class OrphanSweeper:
    """Cancels orphan algos in the background; `close()` on shutdown."""

    def __init__(self, nc: Client, subjects: Subjects, deadline_s: float, limit: int = 256) -> None:
        self._nc, self._subjects = nc, subjects
        self.deadline_s, self.limit = deadline_s, limit
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, algos: Iterable[OrphanAlgo]) -> None:
        """Start one cancel request per algo; returns at once."""
        for algo in algos:
            if len(self._tasks) >= self.limit:
                ORPHAN_ALGOS.labels("skipped").inc()
                log.warning("orphan_algo_skipped", algo_id=algo.algo_id, in_flight=len(self._tasks))
                continue
            task = asyncio.create_task(self.cancel(algo))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def cancel(self, algo: OrphanAlgo) -> None:
        """One CancelAlgo request; its outcome is logged and counted."""
        cmd = CancelAlgo(
            request_id=uuid4(), account_id=algo.account_id, inst_id=algo.symbol, algo_id=algo.algo_id
        )
        where = {"account": str(algo.account_id), "symbol": algo.symbol, "algo_id": algo.algo_id}
        try:
            msg = await self._nc.request(
                self._subjects.cancel_algo(algo.account_id),
                cmd.model_dump_json().encode(),
                timeout=self.deadline_s,
            )
            reply = AlgoReply.model_validate_json(msg.data)
        except (nats.errors.Error, TimeoutError, ValidationError) as exc:
            ORPHAN_ALGOS.labels("failed").inc()
            log.warning("orphan_algo_cancel_failed", **where, error=type(exc).__name__)
            return
        if reply.ok:
            ORPHAN_ALGOS.labels("canceled").inc()
            log.info("orphan_algo_canceled", **where)
        elif reply.s_code == NOT_LIVE:
            ORPHAN_ALGOS.labels("not_live").inc()
            log.debug("orphan_algo_not_live", **where)
        else:
            ORPHAN_ALGOS.labels("failed").inc()
            log.warning("orphan_algo_cancel_failed", **where, s_code=reply.s_code, s_msg=reply.s_msg[:200])

    async def close(self) -> None:
        """Cancel the requests still in flight and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
