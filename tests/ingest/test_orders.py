"""Order commands over NATS request/reply: checked before OKX, leverage set, clOrdId = the
order id, OKX's rejection passed through, and a timeout is an answer, never a hang."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from pydantic import SecretStr

from services.ingest.okx_rest import OkxRest
from services.ingest.orders import OrderHandler, check_command
from services.ingest.repository import InstrumentRules, Repository
from services.ingest.signing import Credentials
from services.okx_sim import SimHandle
from shared.messages import PlaceOrder, PlaceOrderReply
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments
from tests.ingest.conftest import KEY, ingest_settings, running

ACCOUNT_ID = UUID(int=42)
RULES = InstrumentRules("SOL-USDT-SWAP", Decimal("0.1"), Decimal("1"), Decimal("0.01"),
                        Decimal("50"), "live")


def command(**overrides: Any) -> PlaceOrder:
    values: dict[str, Any] = {"order_id": uuid4(), "account_id": ACCOUNT_ID,
                              "inst_id": "SOL-USDT-SWAP", "side": "buy", "sz": Decimal("2"),
                              "lever": Decimal("5")}
    return PlaceOrder(**(values | overrides))


@pytest.mark.parametrize(("overrides", "rules", "pos_mode", "problem"), [
    pytest.param({}, RULES, "net_mode", None, id="valid"),
    pytest.param({"account_id": uuid4()}, RULES, "net_mode", "command for account",
                 id="other-account"),
    pytest.param({}, None, "net_mode", "unknown instrument", id="unknown-instrument"),
    pytest.param({"sz": Decimal("1.05")}, RULES, "net_mode", "not a multiple of lotSz", id="lot"),
    pytest.param({"sz": Decimal("0.5")}, RULES, "net_mode", "below minSz", id="min-size"),
    pytest.param({"lever": Decimal("51")}, RULES, "net_mode", "exceeds the maximum", id="lever"),
    pytest.param({"ord_type": "limit"}, RULES, "net_mode", "needs a positive px",
                 id="limit-no-px"),
    pytest.param({"ord_type": "limit", "px": Decimal("1.005")}, RULES, "net_mode", "tickSz",
                 id="limit-off-tick"),
    pytest.param({"pos_side": "long"}, RULES, "net_mode", "net mode", id="long-in-net-mode"),
    pytest.param({}, RULES, "long_short_mode", "long/short mode", id="net-in-long-short"),
    pytest.param({}, InstrumentRules("SOL-USDT-SWAP", Decimal("0.1"), Decimal("1"),
                                     Decimal("0.01"), Decimal("50"), "suspend"), "net_mode",
                 "not live", id="suspended"),
])
def test_check_command(overrides: dict[str, Any], rules: InstrumentRules | None, pos_mode: str,
                       problem: str | None) -> None:
    found = check_command(command(**overrides), ACCOUNT_ID, rules, pos_mode)
    assert (found is None) if problem is None else (found is not None and problem in found)


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


@pytest_asyncio.fixture(loop_scope="session")
async def black_hole() -> AsyncIterator[str]:
    """A server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()


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
