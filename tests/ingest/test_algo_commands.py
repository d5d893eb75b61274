"""Algo command bodies and checks (pure), and the deadline on a silent OKX (PostgreSQL for the
instrument, a server that never answers for OKX)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from pydantic import SecretStr

from services.ingest.algo_orders import AlgoCommands, amend_body, attach_body, check_algo, place_body
from services.ingest.normalize_account import Listing
from services.ingest.okx_rest import OkxRest
from services.ingest.orders import check_command, order_body
from services.ingest.repository import Repository
from services.ingest.signing import Credentials
from shared.messages import AmendAlgo, AttachedAlgo, CancelAlgo, PlaceAlgo, PlaceOrder
from tests.factories import create_account
from tests.shared.cases import SOL

ACCOUNT_ID = UUID(int=42)
BASE: dict[str, Any] = {"account_id": ACCOUNT_ID, "inst_id": "SOL-USDT-SWAP"}


def stop(**overrides: Any) -> PlaceAlgo:
    values: dict[str, Any] = {"request_id": UUID(int=1), **BASE, "side": "sell",
                              "close_fraction": 1, "sl_trigger_px": D("95.5")}
    return PlaceAlgo(**(values | overrides))


def test_a_close_position_stop_is_reduce_only_at_market_with_our_client_id() -> None:
    assert place_body(stop(), "net_mode") == {
        "instId": "SOL-USDT-SWAP", "tdMode": "cross", "side": "sell", "ordType": "conditional",
        "algoClOrdId": UUID(int=1).hex, "slTriggerPx": "95.5", "slTriggerPxType": "last",
        "slOrdPx": "-1", "closeFraction": "1", "reduceOnly": True}
    oco = place_body(stop(ord_type="oco", close_fraction=None, sz=D(3), pos_side="long",
                          tp_trigger_px=D(120), tp_ord_px=D("119.9")), "long_short_mode")
    assert (oco["sz"], oco["posSide"], oco["tpOrdPx"], "reduceOnly" in oco) == (
        "3", "long", "119.9", False)


def test_an_amendment_sends_only_what_changes_and_a_deleted_leg_as_zero() -> None:
    cmd = AmendAlgo(request_id=UUID(int=2), **BASE, algo_id="61", new_sl_trigger_px=D(96),
                    new_sl_ord_px="market", cancel_tp=True)
    assert amend_body(cmd) == {"instId": "SOL-USDT-SWAP", "algoId": "61",
                               "reqId": UUID(int=2).hex, "cxlOnFail": False,
                               "newTpTriggerPx": "0", "newSlTriggerPx": "96", "newSlOrdPx": "-1"}


def test_an_attached_tp_sl_is_one_element_of_attach_algo_ords() -> None:
    plan = AttachedAlgo(attach_algo_cl_ord_id="plan1", tp_trigger_px=D(120),
                        sl_trigger_px=D(95), sl_trigger_px_type="mark")
    order = PlaceOrder(order_id=uuid4(), **BASE, side="buy", sz=D(1), lever=D(3), attach_algo=plan)
    assert order_body(order, "net_mode")["attachAlgoOrds"] == attach_body(plan) == [
        {"attachAlgoClOrdId": "plan1", "tpTriggerPx": "120", "tpTriggerPxType": "last",
         "tpOrdPx": "-1", "slTriggerPx": "95", "slTriggerPxType": "mark", "slOrdPx": "-1"}]
    assert check_command(order, ACCOUNT_ID, SOL, "net_mode") is None
    off_grid = order.model_copy(update={"attach_algo": AttachedAlgo(sl_trigger_px=D("95.0001"))})
    assert "tickSz" in (check_command(off_grid, ACCOUNT_ID, SOL, "net_mode") or "")
    reduce = order.model_copy(update={"reduce_only": True})
    assert "51333" in (check_command(reduce, ACCOUNT_ID, SOL, "net_mode") or "")


@pytest.mark.parametrize(("cmd", "problem"), [
    pytest.param(stop(), None, id="valid"),
    pytest.param(stop(account_id=uuid4()), "command for account", id="other-account"),
    pytest.param(stop(sl_trigger_px=D("95.501")), "tickSz", id="trigger-off-grid"),
    pytest.param(stop(sl_ord_px=D("95.123")), "tickSz", id="limit-off-grid"),
    pytest.param(stop(close_fraction=None, sz=D("1.05")), "lotSz", id="size-off-lot"),
    pytest.param(stop(pos_side="long"), "net_mode", id="pos-side-for-mode"),
    pytest.param(AmendAlgo(request_id=uuid4(), **BASE, algo_id="1", new_sz=D("1.05")), "lotSz",
                 id="amend-size"),
    pytest.param(CancelAlgo(request_id=uuid4(), **BASE, algo_id="1"), None, id="cancel"),
])
def test_check_algo(cmd: PlaceAlgo | AmendAlgo | CancelAlgo, problem: str | None) -> None:
    found = check_algo(cmd, ACCOUNT_ID, SOL, "net_mode")
    assert (found is None) if problem is None else (found is not None and problem in found)
    assert "unknown instrument" in (check_algo(cmd, cmd.account_id, None, "net_mode") or "")


async def test_a_silent_okx_is_the_answer_timeout_within_the_bound(
        db_pool: asyncpg.Pool, black_hole: str) -> None:
    repo = Repository(db_pool)
    await repo.upsert_instruments([Listing(SOL, "USDT", "USDT", "SOL", {})])
    account_id = await create_account(db_pool)
    creds = Credentials(SecretStr("k"), SecretStr("s"), SecretStr("p"))
    rest = OkxRest(black_hole, creds=creds, simulated=True, timeout_s=30)
    handler = AlgoCommands(PlaceAlgo, rest, repo, account_id, lambda: "net_mode", timeout_s=0.2)
    try:
        reply = await handler.handle(stop(account_id=account_id).model_dump_json().encode())
        invalid = await handler.handle(b'{"request_id": "not-a-uuid"}')
    finally:
        await handler.close()
        await rest.aclose()
    assert (reply.ok, reply.s_code, reply.request_id) == (False, "timeout", UUID(int=1))
    assert (invalid.s_code, invalid.request_id) == ("invalid", UUID(int=0))
