"""Publishing events to JetStream with their natural-key Nats-Msg-Id (DESIGN §4)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from nats.js import JetStreamContext

from shared.bus import headers_for, publish_event
from shared.messages import Event
from shared.subjects import Subjects


class Publisher:
    """Publishes events and waits for the PubAck: a returned call means stored."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, timeout_s: float = 5.0) -> None:
        self.js, self.subjects, self.timeout_s = js, subjects, timeout_s
        self.published = 0
        self.duplicates = 0

    async def publish(self, event: Event) -> None:
        """One event, acknowledged by the stream (retried across a cluster's failover)."""
        ack = await publish_event(self.js, self.subjects.for_event(event), event, self.timeout_s)
        self._count(ack)

    async def publish_read(self, event: Event) -> None:
        """A state read back from REST to heal the ledger (reconciliation), under a message id
        of its own (`<msg_id>:read:<event_id>`). Its natural key is the push's, and that push
        may be in the stream yet unapplied: held for the consumer's `ack_wait` when the
        positions process stopped with it fetched and unacknowledged. JetStream would drop
        this copy as its duplicate and the heal would never land. Only for events the ledger
        applies idempotently (an order's state never goes back)."""
        headers = headers_for(event) | {"Nats-Msg-Id": f"{event.msg_id()}:read:{event.event_id}"}
        ack = await self.js.publish(self.subjects.for_event(event), event.to_bytes(),
                                    timeout=self.timeout_s, headers=headers)
        self._count(ack)

    async def publish_many(self, events: Sequence[Event]) -> None:
        """A burst (backfill) in order, pipelined with publish_async; all acknowledged."""
        futures = [
            await self.js.publish_async(self.subjects.for_event(e), e.to_bytes(),
                                        headers=headers_for(e))
            for e in events
        ]
        if futures:
            async with asyncio.timeout(self.timeout_s + len(futures) / 1000):
                for ack in await asyncio.gather(*futures):
                    self._count(ack)

    def _count(self, ack: Any) -> None:
        self.published += 1
        if getattr(ack, "duplicate", False):
            self.duplicates += 1
