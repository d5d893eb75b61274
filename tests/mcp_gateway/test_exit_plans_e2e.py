"""Exit plans that act, end to end with the real services: an agent's take-profit and stop-loss
given through MCP rest on okx_sim as algo orders (read back with the official python-okx SDK,
not through our tables), fire when the price crosses them, and the ledger says why the position
closed; a close or a flip by any other path leaves no order behind (docs/exit_plans.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.factories import wait_for
from tests.ingest.conftest import KEY
from tests.mcp_gateway.conftest import call, ok
from tests.mcp_gateway.exit_stack import BTC, Stack, legs, stack

__all__ = ["stack"]  # the fixture
# python-okx posts with httpx `data=`, which httpx 0.28 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def test_a_stop_loss_rests_on_okx_fires_and_the_close_says_stop_loss(stack: Stack) -> None:
    tp, sl = stack.price("1.05"), stack.price("0.95")
    opened = await stack.trade(
        "buy", "2", exit_plan={"take_profit": str(tp), "stop_loss": str(sl)}, idempotency_key="sl-open"
    )
    assert opened["order"]["status"] == "filled"
    (algo,) = await stack.resting(1)
    assert (algo["ordType"], algo["side"], algo["instId"]) == ("oco", "sell", BTC)
    assert (Decimal(algo["tpTriggerPx"]), Decimal(algo["slTriggerPx"])) == (tp, sl)
    assert (algo["tpOrdPx"], algo["slOrdPx"]) == ("-1", "-1")  # market on trigger

    async def shown() -> dict[str, Any] | None:
        (position,) = await stack.positions()
        got = legs(position)
        return position if {g["state"] for g in got.values()} == {"live"} and len(got) == 2 else None

    position = await wait_for(shown, timeout=10, message="both legs live in get_account_state")
    assert position is not None and position["exit_orders"]["stop_loss_resting"] is True
    assert {g["algo_id"] for g in legs(position).values()} == {algo["algoId"]}

    stack.sim.set_price(BTC, stack.price("0.9"))  # through the stop
    (row,) = await stack.closed()
    assert (row["exit_reason"], row["side"], row["quantity"]) == ("stop_loss", "long", 2)
    assert row["exit_plan"]["stop_loss"] == str(sl) and row["exit_plan"]["version"] == 1
    assert await stack.pending() == []  # the take-profit went with it: nothing left to fire
    (fired,) = [h for h in await stack.history() if h["algoId"] == algo["algoId"]]
    assert (fired["state"], fired["actualSide"]) == ("effective", "sl")
    assert await stack.positions() == []


async def test_a_take_profit_fires_and_the_close_says_take_profit(stack: Stack) -> None:
    await stack.trade("sell", "1", exit_plan={"stop_loss": str(stack.price("1.1"))})
    (stop,) = await stack.resting(1)
    assert (stop["ordType"], stop["side"]) == ("conditional", "buy")  # one leg: conditional
    tp, sl = stack.price("0.96"), stack.price("1.1")
    moved = ok(await call(stack.client, "update_exit_plan", symbol=BTC, take_profit=str(tp)))
    assert moved["position"]["exit_plan"]["version"] == 2
    (algo,) = await stack.resting(1)  # two legs: an oco replaced the one-leg order
    assert (algo["ordType"], algo["side"]) == ("oco", "buy")
    assert (Decimal(algo["tpTriggerPx"]), Decimal(algo["slTriggerPx"])) == (tp, sl)
    stack.sim.set_price(BTC, stack.price("0.93"))
    (row,) = await stack.closed()
    assert (row["exit_reason"], row["side"], row["exit_plan"]["version"]) == ("take_profit", "short", 2)
    assert row["realized_pnl_usdt"] > 0
    assert await stack.pending() == []


async def test_moving_the_stop_amends_the_resting_order_and_a_null_leg_is_cancelled(stack: Stack) -> None:
    tp, sl = stack.price("1.05"), stack.price("0.95")
    await stack.trade("buy", "2", exit_plan={"take_profit": str(tp), "stop_loss": str(sl)})
    (before,) = await stack.resting(1)
    higher = stack.price("0.97")
    moved = ok(await call(stack.client, "update_exit_plan", symbol=BTC, stop_loss=str(higher)))
    assert moved["position"]["exit_plan"]["stop_loss"] == str(higher)
    (after,) = await stack.resting(1)
    assert after["algoId"] == before["algoId"]  # amended in place, never without a stop
    assert (Decimal(after["slTriggerPx"]), Decimal(after["tpTriggerPx"])) == (higher, tp)
    again = ok(await call(stack.client, "update_exit_plan", symbol=BTC, stop_loss=str(higher)))
    assert again["position"]["exit_plan"]["stop_loss"] == str(higher)
    assert [a["algoId"] for a in await stack.resting(1)] == [before["algoId"]]  # nothing new

    ok(await call(stack.client, "update_exit_plan", symbol=BTC, take_profit="none"))

    async def stop_only() -> dict[str, Any] | None:
        got = await stack.pending()
        return got[0] if len(got) == 1 and not got[0]["tpTriggerPx"] else None

    stop = await wait_for(stop_only, timeout=10, message="the take-profit leg removed on OKX")
    assert stop is not None and Decimal(stop["slTriggerPx"]) == higher


async def test_an_agent_close_and_a_flip_leave_no_order_behind(stack: Stack) -> None:
    await stack.trade(
        "buy", "2", exit_plan={"take_profit": str(stack.price("1.05")), "stop_loss": str(stack.price("0.95"))}
    )
    await stack.resting(1)
    await stack.trade("sell", "2", reduce_only=True)  # the agent closes by hand
    (row,) = await stack.closed()
    assert row["exit_reason"] == "agent"
    await stack.resting(0)

    await stack.trade(
        "buy", "2", exit_plan={"take_profit": str(stack.price("1.05")), "stop_loss": str(stack.price("0.95"))}
    )
    (old,) = await stack.resting(1)
    flipped = await stack.trade("sell", "3")  # long 2 -> short 1, no plan for the short
    assert flipped["order"]["status"] == "filled"
    await stack.resting(0)
    (short,) = await stack.positions()
    assert (short["side"], short["contracts"], short["exit_plan"], short["exit_orders"]["legs"]) == (
        "short",
        "1",
        None,
        [],
    )
    canceled = [h for h in await stack.history() if h["algoId"] == old["algoId"]]
    assert [h["state"] for h in canceled] == ["canceled"]

    tp, sl = stack.price("1.05"), stack.price("0.95")
    await stack.trade("buy", "3", exit_plan={"take_profit": str(tp), "stop_loss": str(sl)})  # long 2
    (new,) = await stack.resting(1)
    assert new["side"] == "sell" and (new["closeFraction"] == "1" or new["sz"] == "2"), new
    assert (Decimal(new["tpTriggerPx"]), Decimal(new["slTriggerPx"])) == (tp, sl)


async def test_a_stop_that_fires_while_the_sockets_are_down_still_closes_as_stop_loss(stack: Stack) -> None:
    """An oco: which leg fired is known only from the algo's own state (actualSide), which
    comes back over REST once the sockets reconnect; the fill alone cannot tell."""
    tp, sl = stack.price("1.05"), stack.price("0.95")
    await stack.trade("buy", "1", exit_plan={"take_profit": str(tp), "stop_loss": str(sl)})
    (algo,) = await stack.resting(1)
    assert algo["ordType"] == "oco"
    stack.sim.pause_pushes(KEY)  # neither the algo's nor the fill's pushes are sent
    stack.sim.set_price(BTC, stack.price("0.9"))
    stack.sim.resume_pushes(KEY)
    assert stack.sim.drop_business(KEY) == 1 and stack.sim.drop_private(KEY) >= 1
    (row,) = await stack.closed()  # from the REST backfill after the reconnects
    assert (row["exit_reason"], row["quantity"]) == ("stop_loss", 1)
    assert await stack.pending() == []


async def test_when_the_exchange_leaves_the_legs_behind_the_ledger_cancels_them(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OKX documents its own cancel of a closed position's TP/SL only for close-position
    algos; the entry's attached legs are sized. With the sim's own cancel turned off, the
    positions service's safety net must remove them, after an agent close and after a flip.
    The sim's clock stands still unless moved: a second passes between the trades, as it would."""
    monkeypatch.setattr(stack.sim.exchange.algos, "_cancel_orphans", lambda acct: [])
    plan = {"take_profit": str(stack.price("1.05")), "stop_loss": str(stack.price("0.95"))}
    await stack.trade("buy", "2", exit_plan=plan)
    (first,) = await stack.resting(1)
    stack.sim.advance(1)
    await stack.trade("sell", "2", reduce_only=True)
    await stack.resting(0)
    stack.sim.advance(1)
    await stack.trade("buy", "2", exit_plan=plan)
    (second,) = await stack.resting(1)
    stack.sim.advance(1)
    await stack.trade("sell", "3")  # long 2 -> short 1
    await stack.resting(0)
    states = {h["algoId"]: h["state"] for h in await stack.history()}
    assert (states[first["algoId"]], states[second["algoId"]]) == ("canceled", "canceled")
