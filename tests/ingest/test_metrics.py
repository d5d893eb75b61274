"""Ingest's metrics move when their event happens, against okx_sim: a dropped private socket
counts one reconnect of that socket, and the fills it missed count as backfilled."""

from __future__ import annotations

from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from services.ingest.okx_rest import OkxRest
from services.okx_sim import SimHandle
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.ingest.conftest import KEY, fills_on_stream, ingest_settings, place, running, socket


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_dropped_socket_counts_a_reconnect_and_the_fills_backfilled(
        settings: Settings, sim: SimHandle, js: JetStreamContext, subjects: Subjects,
        trader: OkxRest) -> None:
    async with running(ingest_settings(settings, sim, ingest_market_data=False)) as app:
        assert app.account is not None
        account_id = app.account.account_id
        reconnects = sample("aitrader_okx_ws_reconnects_total", socket="private")
        backfilled = sample("aitrader_okx_backfilled_total", kind="fill")
        sim.pause_pushes(KEY)  # from here on only REST knows about the fills
        for side in ("buy", "sell"):
            await place(trader, "BTC-USDT-SWAP", side, "1")
        missed = len(sim.exchange.accounts[KEY].fills)
        assert sim.drop_private(KEY) == 1
        sim.resume_pushes(KEY)

        async def reconnected() -> bool:
            return socket(app, "private").sessions >= 2

        async def on_stream() -> bool:
            return len(await fills_on_stream(js, subjects, account_id)) >= missed

        await wait_for(reconnected, timeout=10, message="a second private session")
        await wait_for(on_stream, timeout=10, message="the missed fills on the stream")
    assert sample("aitrader_okx_ws_reconnects_total", socket="private") - reconnects == 1
    assert sample("aitrader_okx_backfilled_total", kind="fill") - backfilled >= 2
