"""Order commands over NATS request/reply: checked before OKX, leverage set, clOrdId = the
order id, OKX's rejection passed through, and a timeout is an answer, never a hang.

The order rules are `shared.instruments`'; their table (`tests/shared/cases.py`) runs here
through the command handler on PostgreSQL, and through the gateway in tests/mcp_gateway."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client
from pydantic import SecretStr

from services.ingest.normalize_account import Listing
from services.ingest.okx_rest import OkxRest
from services.ingest.orders import OrderHandler, check_command
from services.ingest.repository import Repository
from services.ingest.signing import Credentials
from services.okx_sim import SimHandle
from shared.instruments import InstrumentSpec
from shared.messages import PlaceOrder, PlaceOrderReply
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments
from tests.ingest.conftest import KEY, ingest_settings, running
from tests.shared.cases import ORDER_CASES, SOL, OrderCase

ACCOUNT_ID = UUID(int=42)


def command(**overrides: Any) -> PlaceOrder:
    values: dict[str, Any] = {"order_id": uuid4(), "account_id": ACCOUNT_ID,
                              "inst_id": "SOL-USDT-SWAP", "side": "buy", "sz": Decimal("2"),
                              "lever": Decimal("5")}
    return PlaceOrder(**(values | overrides))


def case_command(case: OrderCase, account_id: UUID) -> PlaceOrder:
    """The table case as the gateway would send it to ingest."""
    px = None if case.price is None else Decimal(case.price)
    return command(account_id=account_id, inst_id=case.instrument.symbol, side=case.side,
                   pos_side=case.pos_side, ord_type=case.order_type, sz=Decimal(case.size),
                   px=px, lever=Decimal(case.leverage))


# Refusals that are ingest's own; the order rules are ORDER_CASES (test_order_rules_...).
@pytest.mark.parametrize(("overrides", "spec", "problem"), [
    pytest.param({}, SOL, None, id="valid"),
    pytest.param({"account_id": uuid4()}, SOL, "command for account", id="other-account"),
    pytest.param({}, None, "unknown instrument", id="unknown-instrument"),
])
def test_check_command(overrides: dict[str, Any], spec: InstrumentSpec | None,
                       problem: str | None) -> None:
    found = check_command(command(**overrides), ACCOUNT_ID, spec, "net_mode")
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize("case", ORDER_CASES)
async def test_order_rules_as_the_command_reply_states_them(
        case: OrderCase, db_pool: asyncpg.Pool, black_hole: str) -> None:
    # The instrument as ingest stores it, read back by the handler; OKX never answers, so a
    # command that passes the checks ends in "timeout" and a refused one in "invalid".
    repo = Repository(db_pool)
    await repo.upsert_instruments([Listing(case.instrument, "USDT", "USDT", "SOL", {})])
    account_id = await create_account(db_pool)
    creds = Credentials(SecretStr("k"), SecretStr("s"), SecretStr("p"))
    rest = OkxRest(black_hole, creds=creds, simulated=True, timeout_s=30)
    handler = OrderHandler(rest, repo, account_id, timeout_s=0.2)
    handler.pos_mode = case.pos_mode
    try:
        reply = await handler.handle(case_command(case, account_id).model_dump_json().encode())
    finally:
        await handler.close()
        await rest.aclose()
    if case.ingest is None:
        assert reply.s_code == "timeout", reply.s_msg
    else:
        assert (reply.ok, reply.s_code) == (False, "invalid")
        assert case.ingest in reply.s_msg


async def _request(nc: Client, subject: str, body: bytes, timeout: float = 8.0
                   ) -> PlaceOrderReply:
    msg = await nc.request(subject, body, timeout=timeout)
    return PlaceOrderReply.model_validate_json(msg.data)


async def test_orders_through_nats_on_the_sim(settings: Settings, sim: SimHandle, nc: Client,
                                              subjects: Subjects) -> None:
    async with running(ingest_settings(settings, sim, ingest_market_data=False)) as app:
        assert app.account is not None
        subject = subjects.place_order(app.account.account_id)
        good = command(account_id=app.account.account_id, inst_id="ETH-USDT-SWAP",
                       lever=Decimal("7"))
        ok = await _request(nc, subject, good.model_dump_json().encode())
        too_big = command(account_id=app.account.account_id, inst_id="ETH-USDT-SWAP",
                          sz=Decimal("900000"), lever=Decimal("7"))
        refused = await _request(nc, subject, too_big.model_dump_json().encode())
        lot = await _request(nc, subject, command(account_id=app.account.account_id,
                                                  inst_id="ETH-USDT-SWAP",
                                                  sz=Decimal("0.015")).model_dump_json().encode())
        garbage = await _request(nc, subject, b'{"order_id": "nope"')
    acct = sim.exchange.accounts[KEY]
    assert ok.ok and ok.s_code == "0" and ok.order_id == good.order_id
    assert ok.ord_id is not None and acct.orders[ok.ord_id].cl_ord_id == good.order_id.hex
    assert acct.levers["ETH-USDT-SWAP"] == 7
    assert (refused.ok, refused.s_code) == (False, "51008")
    assert (lot.s_code, garbage.s_code) == ("invalid", "invalid")
    assert "lotSz" in lot.s_msg


async def test_a_silent_okx_is_answered_with_timeout_without_blocking(
        nc: Client, subjects: Subjects, db_pool: asyncpg.Pool, black_hole: str) -> None:
    account_id = await create_account(db_pool)
    await create_instruments(db_pool)
    creds = Credentials(SecretStr("k"), SecretStr("s"), SecretStr("p"))
    rest = OkxRest(black_hole, creds=creds, simulated=True, timeout_s=30)
    handler = OrderHandler(rest, Repository(db_pool), account_id, timeout_s=0.5)
    handler.pos_mode = "net_mode"
    sub = await nc.subscribe(subjects.place_order(account_id), cb=handler.on_message)
    try:
        commands = [command(account_id=account_id, inst_id="BTC-USDT-SWAP") for _ in range(5)]
        started = time.monotonic()
        replies = await asyncio.gather(*(_request(nc, subjects.place_order(account_id),
                                                  c.model_dump_json().encode())
                                         for c in commands))
        elapsed = time.monotonic() - started
    finally:
        await sub.unsubscribe()
        await handler.close()
        await rest.aclose()
    assert [r.s_code for r in replies] == ["timeout"] * 5
    assert [r.order_id for r in replies] == [c.order_id for c in commands]
    assert elapsed < 1.5  # five concurrent commands, not five times the bound
