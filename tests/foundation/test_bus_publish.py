"""`shared.bus.publish_event` while no stream answers (what a cluster's failover looks like to a
publisher: no leader, no responder): it tries again with the same Nats-Msg-Id until a stream
takes the event, within its bound; past the bound the error is raised (session's NATS)."""

from __future__ import annotations

import asyncio
import secrets
import time
from decimal import Decimal

import nats.js.errors
import pytest
from nats.js import JetStreamContext

from shared.bus import ensure_streams, publish_event
from shared.clock import utcnow
from shared.messages import Ticker
from shared.subjects import STREAM_MARKET, Subjects


def ticker() -> Ticker:
    return Ticker(inst_id="BTC-USDT-SWAP", last=Decimal("50000.1"), ts_event=utcnow())


async def test_a_publish_waits_for_the_stream_to_answer_again(js: JetStreamContext) -> None:
    tag = secrets.token_hex(4)
    later = Subjects(root=f"p{tag}", stream_prefix=f"P{tag.upper()}_")  # no stream yet
    publishing = asyncio.create_task(publish_event(js, later.ticker("BTC-USDT-SWAP"), ticker(), within=10))
    await asyncio.sleep(0.3)  # the outage's length, not a wait on a condition
    assert not publishing.done()
    await ensure_streams(js, later)  # "a new leader"
    try:
        ack = await asyncio.wait_for(publishing, 10)
        assert ack.stream == later.stream(STREAM_MARKET) and ack.seq == 1
        assert (await js.stream_info(later.stream(STREAM_MARKET))).state.messages == 1
    finally:
        for stream in later.stream_subjects():
            await js.delete_stream(stream)


async def test_past_its_bound_the_last_error_is_raised(js: JetStreamContext) -> None:
    nowhere = Subjects(root=f"q{secrets.token_hex(4)}")
    started = time.monotonic()
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await publish_event(js, nowhere.ticker("BTC-USDT-SWAP"), ticker(), within=0.5)
    assert 0.3 < time.monotonic() - started < 2
