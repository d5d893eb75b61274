"""Who owns which partition: the server's pins decide; each instance only gives back what it
holds beyond its fair share, so that instances started one after the other end up sharing.

The live instances are counted by a roll call on core NATS (`Subjects.positions_instances`:
one request, every instance answers within `ROLL_CALL_S`). An instance owning more than
ceil(partitions / instances) hands one over per step: it stops pulling there, lets its batches
in flight commit and ack, asks the server to unpin (the server pins a waiting standby, which
starts from the ack floor), and stays away for `COOLDOWN_TTLS` pinned TTLs. No lock, no
membership list: a wrong count (an instance starting or dying during a step) costs at most one
extra handover, never a second owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from prometheus_client import Counter, Gauge

from services.positions.subscribers import LedgerConsumer
from shared.errors import TransientError
from shared.logging import get_logger

COOLDOWN_TTLS = 2  # a released partition is left to the others this many pinned TTLs
ROLL_CALL_S = 0.1  # how long a roll call waits for the answers
OWNED = Gauge("aitrader_positions_partitions_owned", "ACCOUNT partitions this instance holds the pin of.")
HANDOVERS = Counter("aitrader_positions_partition_handovers", "Partitions this instance gave back "
                    "to another over its fair share.")
log = get_logger("positions")


@dataclass
class RollCall:
    """How many instances answer on `subject` (this one included, once `start`ed)."""

    nc: Client
    subject: str
    _sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.subject, cb=self._answer)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(NatsError):
                await self._sub.unsubscribe()

    async def _answer(self, msg: Msg) -> None:
        if msg.reply:
            with contextlib.suppress(NatsError):
                await self.nc.publish(msg.reply, b"")

    async def count(self) -> int:
        answers: list[Msg] = []

        async def keep(msg: Msg) -> None:
            answers.append(msg)

        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, cb=keep)
        try:
            await self.nc.publish(self.subject, b"", reply=inbox)
            await asyncio.sleep(ROLL_CALL_S)
        finally:
            await sub.unsubscribe()
        return len(answers)


@dataclass
class Balancer:
    """Every `every` s: count the owned partitions, give one back when over the fair share."""

    nc: Client
    consumers: Sequence[LedgerConsumer]
    every: float
    ttl: float
    roll_call: RollCall

    def owned(self) -> list[LedgerConsumer]:
        return [c for c in self.consumers if c.source is not None and c.source.owner]

    async def run(self) -> None:
        await self.roll_call.start()
        try:
            while True:
                await asyncio.sleep(self.every)
                try:
                    await self.step()
                except (TransientError, NatsError, TimeoutError) as exc:
                    log.debug("rebalance_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            await self.roll_call.close()

    async def step(self) -> None:
        owned = self.owned()
        OWNED.set(len(owned))
        if len(owned) <= 1:
            return
        instances = max(1, await self.roll_call.count())
        share = math.ceil(len(self.consumers) / instances)
        if len(owned) > share:
            await self.release(owned[-1], share, instances)

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
