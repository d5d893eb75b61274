"""Exit plans resting on the exchange, end to end: MCP -> gateway -> ingest -> okx_sim, the
algo updates back through ingest -> positions -> algo_orders; what rests is read from the
sim's REST API with the official python-okx SDK (nobody here wrote it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import okx.Trade as Trade
import pytest
import pytest_asyncio
from nats.aio.client import Client as Nats

from services.mcp_gateway.config import GatewaySettings
from services.mcp_gateway.gateway import Gateway, open_gateway
from services.okx_sim import SimHandle, run_sim
from services.positions.main import serve as serve_positions
from shared.messages import AmendAlgo, PlaceAlgo
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.ingest.conftest import ACCOUNT, KEY, PASSPHRASE, SECRET, ingest_settings, running, sim_config
from tests.mcp_gateway import seed
from tests.mcp_gateway.conftest import call, client_for, error_text, memory_client, ok
from tests.mcp_gateway.fakes import AlgoDesk

BTC = "BTC-USDT-SWAP"
BUY = {"symbol": BTC, "side": "buy", "leverage": 5, "confidence": 70}
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # python-okx on httpx 0.28


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[SimHandle]:
    async with run_sim(sim_config()) as handle:
        yield handle


@pytest_asyncio.fixture(loop_scope="session")
async def positions(settings: Settings) -> AsyncIterator[None]:
    task = asyncio.create_task(serve_positions(settings))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def pending(sim: SimHandle) -> list[dict[str, Any]]:
    """The live algo orders on the sim, as OKX's REST API lists them."""
    trade = Trade.TradeAPI(KEY, SECRET, PASSPHRASE, flag="1", domain=sim.rest_url, debug=False)
    answer = await asyncio.to_thread(trade.order_algos_list, ordType="conditional,oco", instId=BTC)
    assert answer["code"] == "0", answer
    return list(answer["data"])


async def one_resting(sim: SimHandle, **fields: str) -> dict[str, Any]:
    """Wait until exactly one algo rests on the sim with these fields; return it."""

    async def check() -> dict[str, Any] | None:
        rows = await pending(sim)
        if len(rows) == 1 and all(rows[0][k] == v for k, v in fields.items()):
            return rows[0]
        return None

    found = await wait_for(check, timeout=10, message=f"one algo with {fields}")
    assert found is not None
    return found


async def test_the_plan_rests_on_the_exchange_and_follows_each_change(
    settings: Settings, sim: SimHandle, positions: None, db_pool: asyncpg.Pool
) -> None:
    gw_settings = GatewaySettings(**settings.model_dump(), mcp_fill_wait_ms=3000, mcp_exit_settle_ms=3000)
    sim.set_price(BTC, "60000")
    await seed.market_price(db_pool, BTC, "60000")
    plan = {"take_profit": "66000", "stop_loss": "57000"}
    async with running(ingest_settings(settings, sim)), open_gateway(gw_settings) as gw:
        async with memory_client(gw, await client_for(gw, ACCOUNT)) as client:
            opened = ok(await call(client, "execute_trade", **BUY, size="2", exit_plan=plan))
            # entry: attached to the order, one oco of the order's size, triggered by the mark
            entry = await one_resting(sim, ordType="oco", tpTriggerPx="66000", slTriggerPx="57000")
            assert (entry["sz"], entry["tpTriggerPxType"], entry["slOrdPx"]) == ("2", "mark", "-1")
            await _ledger_has(db_pool, entry["algoId"])

            moved = ok(await call(client, "update_exit_plan", symbol=BTC, stop_loss="58000"))
            amended = await one_resting(sim, algoId=entry["algoId"], slTriggerPx="58000")
            again = ok(await call(client, "update_exit_plan", symbol=BTC, stop_loss="58000"))
            assert await pending(sim) == [amended]  # the same reqId: nothing was sent again

            no_tp = ok(await call(client, "update_exit_plan", symbol=BTC, take_profit="none"))
            await one_resting(sim, algoId=entry["algoId"], tpTriggerPx="", slTriggerPx="58000")

            added = ok(await call(client, "execute_trade", **BUY, size="1"))
            whole = await one_resting(sim, closeFraction="1", slTriggerPx="58000", tpTriggerPx="")
            # adding with a plan: it becomes the position's; the close-position algo fits any size
            replan = ok(
                await call(client, "execute_trade", **BUY, size="1", exit_plan={"stop_loss": "58500"})
            )
            await one_resting(sim, algoId=whole["algoId"], slTriggerPx="58500")

            # a net-mode flip: 4 long -> 2 short; the attached algo (of the order's 6) is
            # replaced by a close-position one, the long's died with it
            flip = {"take_profit": "54000", "stop_loss": "63000"}
            flipped = ok(
                await call(client, "execute_trade", **(BUY | {"side": "sell"}), size="6", exit_plan=flip)
            )
            short = await one_resting(sim, closeFraction="1", side="buy", ordType="oco", slTriggerPx="63000")
    assert opened["order"]["exit_plan"]["version"] == 1 and "attached" in opened["exit_orders_note"]
    assert moved["position"]["exit_plan"] == {
        "take_profit": "66000",
        "stop_loss": "58000",
        "invalidation_condition": None,
        "version": 2,
    }
    assert f"algo {entry['algoId']}" in moved["exit_orders_note"] and "amended" in moved["exit_orders_note"]
    assert "already resting" in again["exit_orders_note"]
    assert no_tp["position"]["exit_plan"]["take_profit"] is None
    # 2 contracts became 3: a close-position algo replaced the sized one, which would leave 1 bare
    assert whole["algoId"] != entry["algoId"] and whole["ordType"] == "conditional"
    assert (
        "placed" in added["exit_orders_note"]
        and f"canceled algo {entry['algoId']}" in added["exit_orders_note"]
    )
    assert (replan["order"]["exit_plan"]["stop_loss"], replan["order"]["exit_plan"]["version"]) == (
        "58500",
        5,
    )
    assert flipped["order"]["exit_plan"]["version"] == 1 and short["tpTriggerPx"] == "54000"
    history = await db_pool.fetch(
        """SELECT exit_plan->>'version' AS version, algo_id, s_code FROM aitrader.exit_plan_history
           ORDER BY id"""
    )
    assert [(h["version"], h["algo_id"], h["s_code"]) for h in history] == [
        ("1", None, "0"),  # attached to the order: its algo id comes with the fill
        ("2", entry["algoId"], "0"),
        ("3", entry["algoId"], "0"),
        ("4", whole["algoId"], "0"),  # the same plan, resting again for the bigger position
        ("5", whole["algoId"], "0"),  # the adding order's plan, amended onto it
        ("1", short["algoId"], "0"),  # the short's first plan
    ]


async def _ledger_has(pool: asyncpg.Pool, algo_id: str) -> None:
    await wait_for(
        lambda: pool.fetchval(
            "SELECT 1 FROM aitrader.algo_orders WHERE algo_id = $1 AND state = 'live'", algo_id
        ),
        timeout=10,
        message=f"algo {algo_id} live in the ledger",
    )


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param(
            {"stop_loss": "61000"},
            "stop_loss 61000 is above the mark 60500: a long's stop must be below the mark",
            id="stop-above-the-mark-for-a-long",
        ),
        pytest.param(
            {"take_profit": "60000"},
            "take_profit 60000 is below the mark 60500: a long's take-profit must be above",
            id="take-profit-below-the-mark-for-a-long",
        ),
        pytest.param(
            {"stop_loss": "58000.05"},
            "stop_loss 58000.05 is not a multiple of the tick size 0.1 for BTC-USDT-SWAP; "
            "use 58000 or 58000.1",
            id="off-the-tick-grid",
        ),
    ],
)
async def test_update_exit_plan_refuses_triggers_that_cannot_rest(
    gateway: Gateway,
    db_pool: asyncpg.Pool,
    accounts: dict[str, UUID],
    arguments: dict[str, str],
    expected: str,
) -> None:
    await seed.market_price(db_pool, BTC, "60500")
    await seed.position(db_pool, accounts["a"], BTC, exit_plan={"stop_loss": "55000"})
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        refused = await call(client, "update_exit_plan", symbol=BTC, **arguments)
    assert expected in error_text(refused)
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.exit_plan_history") == 0


async def test_execute_trade_refuses_plans_that_cannot_rest(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    await seed.market_price(db_pool, BTC, "60500")
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        on_reduce = await call(
            client, "execute_trade", **BUY, size="1", reduce_only=True, exit_plan={"stop_loss": "55000"}
        )
        short_stop = await call(
            client, "execute_trade", **(BUY | {"side": "sell"}), size="1", exit_plan={"stop_loss": "60000"}
        )
    assert "exit_plan cannot go with reduce_only=true" in error_text(on_reduce)
    assert "stop_loss 60000 is below the mark 60500: a short's stop must be above the mark" in error_text(
        short_stop
    )
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.orders") == 0


# ------------------------------------------------------------------------------ exchange answers
@pytest.fixture
def gw_settings(settings: Settings) -> GatewaySettings:
    """No algo update comes back from the stand-in below: the settling wait is kept short."""
    return GatewaySettings(**settings.model_dump(), mcp_order_timeout_ms=500, mcp_exit_settle_ms=100)


@pytest.mark.parametrize(
    ("place_code", "expected"),
    [
        pytest.param("0", ("A2", "0"), id="amend-of-a-gone-algo-places-a-close-position-one"),
        pytest.param("51304", None, id="a-refused-placement-is-the-error-and-the-old-plan-stays"),
    ],
)
async def test_an_amendment_refused_as_not_live_places_a_new_algo(
    gateway: Gateway,
    nc: Nats,
    subjects: Subjects,
    db_pool: asyncpg.Pool,
    accounts: dict[str, UUID],
    place_code: str,
    expected: tuple[str, str] | None,
) -> None:
    await seed.market_price(db_pool, BTC, "60000")
    await seed.position(db_pool, accounts["a"], BTC, qty="1", exit_plan={"stop_loss": "55000"})
    await _live_algo(db_pool, accounts["a"], "A1", sz="1", sl="55000")
    desk = AlgoDesk({"amend_algo": "51503", "place_algo": place_code, "cancel_algo": "0"})
    subs = await desk.serve(nc, subjects, accounts["a"])
    await nc.flush()
    try:
        async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
            answer = await call(client, "update_exit_plan", symbol=BTC, stop_loss="56000")
    finally:
        for sub in subs:
            await sub.unsubscribe()
    amend, place, *restore = desk.received
    assert isinstance(amend, AmendAlgo) and (amend.algo_id, amend.new_sl_trigger_px) == ("A1", Decimal(56000))
    assert isinstance(place, PlaceAlgo)
    assert (place.ord_type, place.side, place.close_fraction, place.reduce_only) == (
        "conditional",
        "sell",
        1,
        True,
    )
    assert (place.sl_trigger_px, place.sl_trigger_px_type, place.sl_ord_px) == (
        Decimal(56000),
        "mark",
        "market",
    )
    row = await db_pool.fetchrow("SELECT algo_id, s_code, exit_plan FROM aitrader.exit_plan_history")
    stored = await db_pool.fetchval("SELECT exit_plan FROM aitrader.positions_open")
    if expected is None:  # OKX refused the new stop: the call says so, the old plan stays
        assert answer.is_error and "OKX did not take the exit orders" in str(answer.content)
        assert "The new plan was not stored" in str(answer.content)
        assert row is None and stored["stop_loss"] == "55000"
        # A1 is gone (OKX said so): the old stop is placed again, not assumed to rest; the
        # desk refuses that too, and the call says so rather than "rests again"
        (again,) = restore
        assert isinstance(again, PlaceAlgo) and again.sl_trigger_px == Decimal(55000)
        assert "restoring what rested before failed too" in str(answer.content)
        return
    assert restore == []
    moved = ok(answer)
    assert row is not None
    assert (row["algo_id"], row["s_code"]) == expected and row["exit_plan"]["stop_loss"] == "56000"
    assert moved["position"]["exit_plan"]["stop_loss"] == "56000" == stored["stop_loss"]


async def _live_algo(pool: asyncpg.Pool, account_id: UUID, algo_id: str, sz: str, sl: str) -> None:
    await pool.execute(
        """INSERT INTO aitrader.algo_orders (account_id, symbol, pos_side, algo_id, ord_type, side,
               state, sz, reduce_only, sl_trigger_px, sl_trigger_px_type, created_at,
               exchange_updated_at)
           VALUES ($1, $2, 'net', $3, 'conditional', 'sell', 'live', $4, true, $5, 'mark', now(), now())""",
        account_id,
        BTC,
        algo_id,
        Decimal(sz),
        Decimal(sl),
    )
