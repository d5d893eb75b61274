"""The bus client (`shared.bus`): a server list that cannot be reached is one line without its
credentials; `publish_event` while no stream answers (what a cluster's failover looks like to a
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

from aitrader.embedded import free_port
from shared.bus import connect_nats, ensure_streams, publish_event
from shared.clock import utcnow
from shared.errors import ConfigError
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


async def test_an_unreachable_server_list_is_one_line_without_its_credentials() -> None:
    down = [free_port(), free_port()]
    url = f"nats://app:hunter22pw@127.0.0.1:{down[0]},nats://t0k3nvalue@127.0.0.1:{down[1]}"
    with pytest.raises(ConfigError) as caught:
        await connect_nats(url)
    text = str(caught.value)
    assert text.startswith(f"AITRADER_NATS_URL: cannot connect to nats://***@127.0.0.1:{down[0]},"
                           f"nats://***@127.0.0.1:{down[1]} (")
    assert "hunter22pw" not in text and "t0k3nvalue" not in text
