"""Publishing events to JetStream with their natural-key Nats-Msg-Id (DESIGN §4)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from nats.js import JetStreamContext

from shared.bus import headers_for
from shared.logging import get_logger
from shared.messages import (
    Balance,
    Candle,
    Event,
    ExchangePosition,
    Fill,
    FundingPayment,
    FundingRate,
    MarkPrice,
    OpenInterest,
    OrderUpdate,
    Ticker,
)
from shared.subjects import Subjects

log = get_logger("ingest.publish")


def subject_for(subjects: Subjects, event: Event) -> str:
    """The subject of an event, by its type."""
    match event:
        case Candle():
            return subjects.candle(event.bar, event.inst_id)
        case Ticker():
            return subjects.ticker(event.inst_id)
        case MarkPrice():
            return subjects.mark_price(event.inst_id)
        case FundingRate():
            return subjects.funding_rate(event.inst_id)
        case OpenInterest():
            return subjects.open_interest(event.inst_id)
        case Fill():
            return subjects.fill(event.account_id, event.inst_id)
        case OrderUpdate():
            return subjects.order(event.account_id, event.inst_id)
        case Balance():
            return subjects.balance(event.account_id)
        case ExchangePosition():
            return subjects.exchange_position(event.account_id, event.inst_id)
        case FundingPayment():
            return subjects.funding_payment(event.account_id, event.inst_id)
    raise TypeError(f"no subject for {type(event).__name__}")


class Publisher:
    """Publishes events and waits for the PubAck: a returned call means stored."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, timeout_s: float = 5.0) -> None:
        self.js, self.subjects, self.timeout_s = js, subjects, timeout_s
        self.published = 0
        self.duplicates = 0

    async def publish(self, event: Event) -> None:
        """One event, acknowledged by the stream."""
        ack = await self.js.publish(subject_for(self.subjects, event), event.to_bytes(),
                                    timeout=self.timeout_s, headers=headers_for(event))
        self._count(ack)

    async def publish_many(self, events: Sequence[Event]) -> None:
        """A burst (backfill) in order, pipelined with publish_async; all acknowledged."""
        futures = [
            await self.js.publish_async(subject_for(self.subjects, e), e.to_bytes(),
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
