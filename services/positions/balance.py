"""Who owns which partition: the server's pins decide; each instance only gives back what it
holds beyond its fair share, so that instances started one after the other end up sharing.

Every instance keeps a pull request open on each partition it does not own (its standby
requests), so a partition consumer's waiting requests, less the owner's own, count the other
live instances. An instance owning more than ceil(partitions / instances) hands one over per
step: it stops pulling there, lets its batches in flight commit and ack, asks the server to
unpin (the server pins a waiting standby, which starts from the ack floor), and stays away for
`COOLDOWN_TTLS` pinned TTLs. No lock, no membership list: a wrong count (an instance starting
or dying during a step) costs at most one extra handover, never a second owner.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import Error as NatsError
from prometheus_client import Counter, Gauge

from services.positions.partitions import api
from services.positions.subscribers import LedgerConsumer
from shared.errors import TransientError
from shared.logging import get_logger

COOLDOWN_TTLS = 2  # a released partition is left to the others this many pinned TTLs
OWNED = Gauge("aitrader_positions_partitions_owned", "ACCOUNT partitions this instance holds the pin of.")
HANDOVERS = Counter("aitrader_positions_partition_handovers", "Partitions this instance gave back "
                    "to another over its fair share.")
log = get_logger("positions")


@dataclass
class Balancer:
    """Every `every` s: count the owned partitions, give one back when over the fair share."""

    nc: Client
    consumers: Sequence[LedgerConsumer]
    every: float
    ttl: float

    def owned(self) -> list[LedgerConsumer]:
        return [c for c in self.consumers if c.source is not None and c.source.owner]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.step()
            except (TransientError, NatsError, TimeoutError) as exc:
                log.debug("rebalance_failed", error=f"{type(exc).__name__}: {exc}")

    async def step(self) -> None:
        owned = self.owned()
        OWNED.set(len(owned))
        if len(owned) <= 1:
            return
        others = 0
        for consumer in owned:
            assert consumer.source is not None
            info = await api(self.nc, f"$JS.API.CONSUMER.INFO.{consumer.source.stream}.{consumer.consumer}")
            others = max(others, int(info.get("num_waiting", 0)) - consumer.source.requesting)
        share = math.ceil(len(self.consumers) / (1 + others))
        if len(owned) > share:
            await self.release(owned[-1], share, others + 1)

    async def release(self, consumer: LedgerConsumer, share: int, instances: int) -> None:
        """Hand one partition over: stop pulling, let what is in flight be acked, unpin, and
        pull there again (as a standby) only after the cooldown."""
        source = consumer.source
        assert source is not None
        source.pause()
        try:
            async with asyncio.timeout(source.expires + 2 * self.ttl):
                await source.request_ended()  # within `expires`
                await consumer.idle.wait()
            await source.unpin()
        except TimeoutError:  # a batch still committing: keep the partition, try again later
            log.debug("release_postponed", consumer=consumer.consumer)
            source.resume()
            return
        except BaseException:
            source.resume()
            raise
        HANDOVERS.inc()
        OWNED.set(len(self.owned()))
        log.info("partition_released", consumer=consumer.consumer, share=share, instances=instances)
        asyncio.get_running_loop().call_later(COOLDOWN_TTLS * self.ttl, source.resume)
