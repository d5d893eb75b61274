"""get_account_state shows, per open position, what of its exit plan rests on the exchange
(`exit_orders`, design decision 8): from the algo orders of the position's slot and closing
side, and the exchange's answer to the plan's last placement (exit_plan_history.s_code)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import pytest

from services.mcp_gateway import exit_view
from services.mcp_gateway.gateway import Gateway
from tests.mcp_gateway import seed
from tests.mcp_gateway.conftest import call, client_for, memory_client, ok

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
AGAIN_ONE = "; call update_exit_plan to place it again"


def leg(
    name: str,
    price: str,
    state: str,
    algo_id: str | None = None,
    exchange: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    return {
        "leg": name,
        "trigger_price": price,
        "state": state,
        "algo_id": algo_id,
        "exchange_trigger_price": exchange,
        "note": note,
    }


def idle(name: str, price: str, state: str) -> str:
    return f"{name} {price} is stored but not resting on the exchange (state {state})"


async def _state(gateway: Gateway, external_id: str) -> list[dict[str, Any]]:
    async with memory_client(gateway, await client_for(gateway, external_id)) as client:
        positions: list[dict[str, Any]] = ok(await call(client, "get_account_state"))["positions"]
    return [p["exit_orders"] for p in positions]


async def test_each_leg_says_whether_it_rests(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    a = accounts["a"]
    # BTC long: one oco rests with both legs, its stop not at the plan's price
    await seed.position(
        db_pool,
        a,
        BTC,
        pos_side="long",
        exit_plan={"take_profit": "65000", "stop_loss": "58000", "version": 2},
    )
    await seed.algo_order(db_pool, a, BTC, "A1", pos_side="long", side="sell", tp="65000", sl="57500")
    # BTC short: a live stop on the opening side (sell) is not this position's; an effective
    # stop of the slot updated before the position opened belonged to an earlier position
    await seed.position(db_pool, a, BTC, side="short", pos_side="short", exit_plan={"stop_loss": "64000"})
    await seed.algo_order(db_pool, a, BTC, "A2", pos_side="short", side="sell", sl="64000")
    await seed.algo_order(
        db_pool,
        a,
        BTC,
        "A3",
        pos_side="short",
        side="buy",
        sl="64000",
        state="effective",
        actual_side="sl",
        updated_s=-3600,
    )
    # ETH long: the stop fired (a sized algo, the position is still open); the take-profit's
    # order failed when it fired
    await seed.position(
        db_pool, a, ETH, pos_side="long", exit_plan={"take_profit": "3500", "stop_loss": "2800"}
    )
    await seed.algo_order(  # no actualSide: the only leg of a conditional fired
        db_pool, a, ETH, "A4", pos_side="long", side="sell", sl="2800", state="effective"
    )
    await seed.algo_order(
        db_pool,
        a,
        ETH,
        "A5",
        pos_side="long",
        side="sell",
        tp="3500",
        state="order_failed",
        fail_code="51008",
    )
    # ETH short: the oco was canceled and the last placement refused (newest history row)
    pid = await seed.position(
        db_pool,
        a,
        ETH,
        side="short",
        pos_side="short",
        exit_plan={"take_profit": "2500", "stop_loss": "3300"},
    )
    await seed.algo_order(
        db_pool, a, ETH, "A6", pos_side="short", side="buy", tp="2500", sl="3300", state="canceled"
    )
    await seed.plan_outcome(db_pool, pid, "0")
    await seed.plan_outcome(db_pool, pid, "51279", "TP trigger price cannot be lower than the last price.")

    btc_long, btc_short, eth_long, eth_short = await _state(gateway, "acct-a")

    assert btc_long == {
        "plan_version": 2,
        "legs": [
            leg("take_profit", "65000", "live", "A1", "65000"),
            leg("stop_loss", "58000", "live", "A1", "57500", "rests at 57500, not at the plan's 58000"),
        ],
        "stop_loss_resting": True,
        "warning": None,
    }
    assert btc_short == {
        "plan_version": None,
        "legs": [leg("stop_loss", "64000", "missing")],
        "stop_loss_resting": False,
        "warning": idle("stop_loss", "64000", "missing") + AGAIN_ONE,
    }
    assert eth_long == {
        "plan_version": None,
        "legs": [
            leg(
                "take_profit",
                "3500",
                "failed",
                "A5",
                "3500",
                "algo A5 fired but its order failed (code 51008)",
            ),
            leg("stop_loss", "2800", "triggered", "A4", "2800", "algo A4 fired this leg"),
        ],
        "stop_loss_resting": False,
        "warning": idle("take_profit", "3500", "failed")
        + "; "
        + idle("stop_loss", "2800", "triggered")
        + "; call update_exit_plan to place them again",
    }
    refused = (
        "the exchange refused the last placement (51279: TP trigger price cannot be lower "
        "than the last price.)"
    )
    assert eth_short["legs"] == [
        leg("take_profit", "2500", "failed", note=refused),
        leg("stop_loss", "3300", "failed", note=refused),
    ]
    assert eth_short["stop_loss_resting"] is False


async def test_a_stop_rests_without_a_plan_leg_and_old_refusals_do_not_count(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    b = accounts["b"]
    pid = await seed.position(db_pool, b, BTC, exit_plan={"take_profit": "70000", "version": 1})
    await seed.plan_outcome(db_pool, pid, "51000", "refused once")
    await seed.plan_outcome(db_pool, pid, "0")  # newest: placed
    await seed.algo_order(db_pool, b, BTC, "B1", pos_side="net", side="sell", sl="59000")
    await seed.algo_order(db_pool, b, BTC, "B2", pos_side="net", side="sell", tp="70000", state="canceled")
    await seed.position(db_pool, b, ETH, side="short", exit_plan=None)
    await seed.algo_order(db_pool, accounts["a"], ETH, "A9", pos_side="net", side="buy", sl="3100")

    btc, eth = await _state(gateway, "acct-b")

    assert btc == {
        "plan_version": 1,
        "legs": [
            leg("take_profit", "70000", "missing", note="the last algo order with this leg (B2) is canceled")
        ],
        "stop_loss_resting": True,  # B1 rests, though the plan has no stop
        "warning": idle("take_profit", "70000", "missing") + AGAIN_ONE,
    }
    # no plan, and the live stop is another account's
    assert eth == {"plan_version": None, "legs": [], "stop_loss_resting": False, "warning": None}


def _row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(exit_view.COLUMNS)
    # what aitrader.stop_loss_resting answers for such a row: its live stop-loss leg rests
    row["stop_loss_resting"] = values.get("sl_state") == "live"
    return row | values


PLAN = {"take_profit": None, "stop_loss": "58000", "invalidation_condition": None}


@pytest.mark.parametrize(
    ("row", "state", "note"),
    [
        pytest.param(
            _row(sl_state="live", sl_algo_id="X", sl_trigger_px="58000.0"),
            "live",
            None,
            id="live-at-the-plans-price-however-written",
        ),
        pytest.param(
            _row(
                sl_state="live",
                sl_algo_id="X",
                sl_trigger_px="57000",
                plan_s_code="51280",
                plan_s_msg="SL too high",
            ),
            "live",
            "rests at 57000, not at the plan's 58000; the exchange refused the last "
            "placement (51280: SL too high)",
            id="an-amendment-refused-leaves-the-old-price",
        ),
        pytest.param(
            _row(sl_state="effective", sl_algo_id="X", sl_trigger_px="58000", sl_actual_side="tp"),
            "missing",
            "the last algo order with this leg (X) is effective",
            id="the-other-leg-fired",
        ),
        pytest.param(
            _row(sl_state="order_failed", sl_algo_id="X", sl_trigger_px="58000"),
            "failed",
            "algo X fired but its order failed (code unknown)",
            id="failed-without-a-code",
        ),
        pytest.param(_row(plan_s_code="0"), "missing", None, id="placed-and-gone"),
    ],
)
def test_leg_states(row: dict[str, Any], state: str, note: str | None) -> None:
    doc = exit_view.exit_orders_doc(PLAN, row)
    [got] = doc["legs"]
    assert (got["state"], got["note"]) == (state, note)
    assert doc["stop_loss_resting"] is (state == "live")
    assert (doc["warning"] is None) is (state == "live")


async def test_a_stop_of_an_earlier_position_or_of_part_of_this_one_is_not_resting(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    a, b = accounts["a"], accounts["b"]
    # a's long opened now; the slot's live stop was last updated a minute before (an earlier
    # long's, whose cancel the ledger never heard of): not this position's
    await seed.position(db_pool, a, BTC, exit_plan={"stop_loss": "58000", "version": 1})
    await seed.algo_order(db_pool, a, BTC, "OLD", pos_side="net", side="sell", sl="58000", updated_s=-60)
    # b's long of 3 contracts: its entry's sized stop covers 2 (the add was folded late)
    await seed.position(db_pool, b, BTC, qty="3", exit_plan={"stop_loss": "58000", "version": 1})
    await seed.algo_order(
        db_pool, b, BTC, "PART", pos_side="net", side="sell", sl="58000", sized="2", updated_s=1
    )

    (old,) = await _state(gateway, "acct-a")
    (part,) = await _state(gateway, "acct-b")

    assert [x["state"] for x in old["legs"]] == ["missing"] and old["stop_loss_resting"] is False
    (leg_b,) = part["legs"]
    assert (leg_b["state"], leg_b["algo_id"], leg_b["note"]) == (
        "live",
        "PART",
        "covers 2 contracts, not the whole position",
    )
    assert part["warning"] == (
        "stop_loss 58000 rests for 2 contracts only, not the whole position" + AGAIN_ONE
    )
