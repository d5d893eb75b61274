"""The five tools through the SDK's in-memory client, on real PostgreSQL and NATS."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from services.mcp_gateway.audit import ToolCall
from services.mcp_gateway.gateway import Gateway
from shared.clock import utcnow
from shared.definitions import DEFINITIONS
from shared.logging import redact, register_secrets
from shared.messages import MarketDataRefresh, MarketDataRefreshReply
from shared.subjects import Subjects
from tests.mcp_gateway import seed
from tests.mcp_gateway.conftest import call, client_for, error_text, memory_client, ok
from tests.mcp_gateway.fakes import AlgoDesk, FakeIngest

BTC = "BTC-USDT-SWAP"
TRADE = {"symbol": BTC, "side": "buy", "size": "0.5", "leverage": 5, "confidence": 72}


async def test_tool_list_and_schemas(gateway: Gateway) -> None:
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {
        "get_account_state",
        "get_market_data",
        "execute_trade",
        "update_exit_plan",
        "get_performance_metrics",
    }
    for tool in tools.values():
        assert tool.description and len(tool.description) > 100, tool.name
        assert tool.output_schema is not None, tool.name
    trade = tools["execute_trade"].input_schema
    assert trade["required"] == ["symbol", "side", "size", "leverage", "confidence"]
    assert trade["properties"]["side"]["enum"] == ["buy", "sell"]
    assert {"minimum": 0.0, "maximum": 100.0, "type": "number"} in trade["properties"]["confidence"]["anyOf"]
    market = tools["get_market_data"].input_schema["properties"]
    assert market["timeframes"]["default"] == ["3m", "4H"] and market["limit"]["default"] == 10
    assert tools["get_account_state"].annotations.read_only_hint is True  # type: ignore[union-attr]
    # Only a call carrying an idempotency_key is idempotent, and annotations are per tool.
    assert tools["execute_trade"].annotations.idempotent_hint is False  # type: ignore[union-attr]


async def test_get_account_state(gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]) -> None:
    await seed.balance(db_pool, accounts["a"])
    await seed.performance(db_pool, accounts["a"])
    await seed.market_price(db_pool, BTC, "61000")
    await seed.market_price(db_pool, "ETH-USDT-SWAP", "2900")
    await seed.position(
        db_pool,
        accounts["a"],
        BTC,
        qty="1.5",
        entry="60000",
        confidence="80",
        exit_plan={"take_profit": "65000", "stop_loss": "58000"},
    )
    await seed.position(
        db_pool, accounts["a"], "ETH-USDT-SWAP", side="short", qty="2", entry="3000", confidence=None
    )
    await seed.position(db_pool, accounts["b"], BTC, qty="9")  # another account's: invisible
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        state = ok(await call(client, "get_account_state"))
    assert (state["account"], state["mode"]) == ("acct-a", "simulated")
    # cash 10000 + BTC +15 + ETH +20 (below); the exchange's own figure is kept apart
    assert (state["available_usdt"], state["locked_usdt"], state["cash_usdt"]) == ("9000.5", "1000", "10000")
    assert (state["equity_usdt"], state["exchange_equity_usdt"]) == ("10035", "10012.25")
    btc, eth = state["positions"]
    assert btc | {"opened_at": None, "updated_at": None} == {
        "symbol": BTC,
        "side": "long",
        "pos_side": "net",
        "contracts": "1.5",
        "coin_quantity": "0.015",
        "base_asset": "BTC",
        "entry_price": "60000",
        "mark_price": "61000",
        "leverage": "5",
        "margin_usdt": "120",
        "liquidation_price": "50000",
        "unrealized_pnl_usdt": "15",
        "notional_usdt": "915",
        "exit_plan": {
            "take_profit": "65000",
            "stop_loss": "58000",
            "invalidation_condition": None,
            "version": None,  # stored before plans had versions
        },
        "exit_orders": {  # no algo order of the slot: nothing rests (tests/mcp_gateway/test_exit_view.py)
            "plan_version": None,
            "legs": [
                {"leg": "take_profit", "trigger_price": "65000", "state": "missing", "algo_id": None,
                 "exchange_trigger_price": None, "note": None},
                {"leg": "stop_loss", "trigger_price": "58000", "state": "missing", "algo_id": None,
                 "exchange_trigger_price": None, "note": None},
            ],
            "stop_loss_resting": False,
            "warning": "take_profit 65000 is stored but not resting on the exchange (state missing); "
            "stop_loss 58000 is stored but not resting on the exchange (state missing); "
            "call update_exit_plan to place them again",
        },
        "confidence": "80",
        "opened_at": None,
        "updated_at": None,
    }
    # short 2 contracts x 0.1 ETH from 3000 to 2900: +20 USDT
    assert (eth["side"], eth["unrealized_pnl_usdt"], eth["confidence"]) == ("short", "20", None)
    assert state["performance"]["realized_pnl_usdt"] == "123.45"
    assert state["performance"]["closed_positions"] == 5


async def test_read_values_are_exact_at_the_edges_of_their_columns(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    """PostgreSQL computes and formats the read tools' decimals (`call` checks each document
    against the model's own JSON); here with the smallest and largest values the columns hold."""
    await seed.market_price(db_pool, BTC, "0.00000013")
    await seed.market_price(db_pool, "ETH-USDT-SWAP", "99999999999.99999999")
    # confidence 33.325 -> 33.32: half to even, as the ledger rounds average_confidence
    await seed.position(
        db_pool,
        accounts["a"],
        BTC,
        qty="0.00000001",
        entry="0.00000012",
        confidence="33.325",
        exit_plan={"stop_loss": "0.0000001"},
    )
    await seed.position(
        db_pool, accounts["a"], "ETH-USDT-SWAP", side="short", qty="123456789012.5", entry="0.5"
    )
    await db_pool.execute(
        """INSERT INTO aitrader.market_snapshots
               (symbol, timeframe, as_of, price, ema20, ema50, macd, rsi7, rsi14, funding_rate,
                open_interest)
           VALUES ($1, '3m', date_trunc('minute', now()) - interval '1 minute', 0.00000001, 0, 0,
                   -0.00000001, 0, 100, -0.00000001, 99999999999999999999.9999)""",
        BTC,
    )
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        state = ok(await call(client, "get_account_state"))
        data = ok(await call(client, "get_market_data", symbol=BTC, timeframes=["3m"]))
    btc, eth = state["positions"]
    # 1e-8 contracts x 0.01 BTC; (1.3e-7 - 1.2e-7) x 1e-10 BTC
    assert (btc["coin_quantity"], btc["unrealized_pnl_usdt"]) == ("0.0000000001", "0.000000000000000001")
    assert (btc["notional_usdt"], btc["confidence"]) == ("0.000000000000000013", "33.32")
    assert btc["exit_plan"] == {
        "take_profit": None,
        "stop_loss": "0.0000001",
        "invalidation_condition": None,
        "version": None,
    }
    # 123456789012.5 contracts x 0.1 ETH, short from 0.5 to 99999999999.99999999: exact to the
    # last digit (34 significant ones; Python's default decimal context would round to 28)
    assert eth["coin_quantity"] == "12345678901.25"
    assert eth["unrealized_pnl_usdt"] == "-1234567890118827160425.9182109875"
    assert eth["notional_usdt"] == "1234567890124999999876.5432109875"
    assert state["equity_usdt"] is None  # no balance yet
    [candle] = data["series"][0]["candles"]
    assert {k: candle[k] for k in ("price", "ema20", "macd", "rsi7", "rsi14")} == {
        "price": "0.00000001",
        "ema20": "0",
        "macd": "-0.00000001",
        "rsi7": "0",
        "rsi14": "100",
    }
    assert (data["funding_rate"], data["open_interest"]) == ("-0.00000001", "99999999999999999999.9999")


async def _open(
    db: asyncpg.Pool,
    account: UUID,
    symbol: str,
    pos_side: str,
    side: str,
    qty: str,
    entry: str | None,
    *,
    mark: str | None = None,
    upl: str | None = None,
    plan: str | None = None,
) -> None:
    await db.execute(
        """INSERT INTO aitrader.positions_open (account_id, symbol, pos_side, side, quantity,
               avg_entry_price, mark_price, unrealized_pnl_usdt, exit_plan, opened_at)
           VALUES ($1, $2, $3, $4, $5::numeric, $6::numeric, $7::numeric, $8::numeric,
                   $9::text::jsonb, now())""",
        account,
        symbol,
        pos_side,
        side,
        qty,
        entry,
        mark,
        upl,
        plan,
    )


async def test_account_state_says_when_the_book_is_in_doubt(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    """Never reconciled: in doubt. Reconciled with an open difference: in doubt, and the
    difference is shown; another account's issues and resolved ones are not."""
    a, b = accounts["a"], accounts["b"]
    await seed.balance(db_pool, a)
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        never = ok(await call(client, "get_account_state"))["reconciliation"]
        await db_pool.execute("UPDATE aitrader.accounts SET last_reconciled_at = now() WHERE id = $1", a)
        clean = ok(await call(client, "get_account_state"))["reconciliation"]
        for account, resolved in ((a, False), (a, True), (b, False)):
            await db_pool.execute(
                """INSERT INTO aitrader.reconciliation_issues
                       (id, account_id, kind, subject, expected, found, resolved_at, resolution)
                   VALUES (gen_random_uuid(), $1, 'position', $2, '{"quantity": "0"}',
                           '{"quantity": "1.5"}', CASE WHEN $3 THEN now() END,
                           CASE WHEN $3 THEN 'exchange_wins' END)""",
                account, f"BTC-USDT-SWAP:net:{resolved}", resolved)
        doubt = ok(await call(client, "get_account_state"))["reconciliation"]
        await db_pool.execute("DELETE FROM aitrader.reconciliation_issues")
        await db_pool.execute("UPDATE aitrader.accounts SET last_reconciled_at = now()"
                              " - interval '16 minutes' WHERE id = $1", a)
        stale = ok(await call(client, "get_account_state"))["reconciliation"]
    assert (stale["in_doubt"], stale["open"]) == (True, [])  # not compared for too long
    assert (never["last_reconciled_at"], never["in_doubt"], never["open"]) == (None, True, [])
    assert (clean["in_doubt"], clean["open"]) == (False, []) and clean["last_reconciled_at"]
    assert doubt["in_doubt"] is True
    assert [(d["kind"], d["subject"], d["exchange"], d["ledger"]) for d in doubt["open"]] == [
        ("position", "BTC-USDT-SWAP:net:False", {"quantity": "0"}, {"quantity": "1.5"})]


async def test_account_state_price_fallbacks_order_and_stored_plans(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    """The mark is the latest mark, else the latest last price, else the position's own; the
    PnL is computed from it, else the exchange's stored figure; positions come by symbol, then
    slot; a stored plan is validated and tidied like any input."""
    a, b = accounts["a"], accounts["b"]
    for account in (a, b):
        await seed.balance(db_pool, account)  # cash 10000
    await db_pool.execute(
        """INSERT INTO aitrader.market_prices (symbol, mark_price, last_price, as_of)
           VALUES ($1, NULL, 61000, now())""",
        BTC,
    )
    # inserted short first: the order comes from the query
    await _open(db_pool, a, BTC, "short", "short", "1", "62000")
    await _open(
        db_pool,
        a,
        BTC,
        "long",
        "long",
        "2",
        "60000",
        plan='{"take_profit": 65000.50, "stop_loss": "58000.00", "note": "x"}',
    )
    await _open(db_pool, a, "ETH-USDT-SWAP", "net", "short", "3", "3000", mark="2900", plan="null")
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        state = ok(await call(client, "get_account_state"))
    got = [
        (p["symbol"], p["pos_side"], p["mark_price"], p["unrealized_pnl_usdt"], p["notional_usdt"])
        for p in state["positions"]
    ]
    assert got == [
        (BTC, "long", "61000", "20", "1220"),  # last price; (61000 - 60000) x 0.02
        (BTC, "short", "61000", "10", "610"),  # (62000 - 61000) x 0.01
        ("ETH-USDT-SWAP", "net", "2900", "30", "870"),  # no market price: the position's own
    ]
    assert state["equity_usdt"] == "10060"
    assert state["positions"][0]["exit_plan"] == {
        "take_profit": "65000.5",
        "stop_loss": "58000",
        "invalidation_condition": None,
        "version": None,
    }
    assert state["positions"][2]["exit_plan"] is None  # a JSON null plan is no plan

    # No entry price: the exchange's stored PnL counts; without that either, equity is unknown.
    await seed.market_price(db_pool, "ETH-USDT-SWAP", "2950")
    await _open(db_pool, b, "ETH-USDT-SWAP", "net", "long", "1", None, upl="12.5")
    async with memory_client(gateway, await client_for(gateway, "acct-b")) as client:
        stored = ok(await call(client, "get_account_state"))
        await _open(db_pool, b, BTC, "net", "long", "1", None)
        unknown = ok(await call(client, "get_account_state"))
    assert (stored["positions"][0]["unrealized_pnl_usdt"], stored["equity_usdt"]) == ("12.5", "10012.5")
    assert (unknown["positions"][0]["unrealized_pnl_usdt"], unknown["equity_usdt"]) == (None, None)


async def test_equity_moves_with_the_mark_between_balance_updates(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    await seed.balance(db_pool, accounts["a"])  # cash 10000, exchange equity 10012.25
    await seed.market_price(db_pool, BTC, "61000")
    await seed.market_price(db_pool, "ETH-USDT-SWAP", "2900")
    await seed.position(db_pool, accounts["a"], BTC, qty="1.5", entry="60000")
    await seed.position(db_pool, accounts["a"], "ETH-USDT-SWAP", side="short", qty="2", entry="3000")
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        # long 1.5 x 0.01 BTC: (61000 - 60000) x 0.015 = +15; short 2 x 0.1 ETH: (3000 - 2900) x 0.2 = +20
        before = ok(await call(client, "get_account_state"))
        await seed.market_price(db_pool, BTC, "59000.5")  # no new balance: only the mark moves
        await seed.market_price(db_pool, "ETH-USDT-SWAP", "3012.25")
        after = ok(await call(client, "get_account_state"))
    assert before["equity_usdt"] == "10035"
    # (59000.5 - 60000) x 0.015 = -14.9925; (3000 - 3012.25) x 0.2 = -2.45
    upl = [p["unrealized_pnl_usdt"] for p in after["positions"]]
    assert upl == ["-14.9925", "-2.45"]
    assert after["equity_usdt"] == "9982.5575"
    assert after["exchange_equity_usdt"] == before["exchange_equity_usdt"] == "10012.25"
    assert after["balance_as_of"] == before["balance_as_of"]


async def test_equity_without_cash_balance_uses_available_plus_locked(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        empty = ok(await call(client, "get_account_state"))
        await db_pool.execute(
            """INSERT INTO aitrader.balance_snapshots (account_id, available_usdt, locked_usdt, as_of)
               VALUES ($1, 800.5, 199.5, now())""",
            accounts["a"],
        )
        await seed.market_price(db_pool, BTC, "60100")
        await seed.position(db_pool, accounts["a"], BTC, qty="2", entry="60000")
        state = ok(await call(client, "get_account_state"))
    assert (empty["equity_usdt"], empty["positions"], empty["balance_as_of"]) == (None, [], None)
    # 800.5 + 199.5 + (60100 - 60000) x 0.02
    assert (state["cash_usdt"], state["exchange_equity_usdt"], state["equity_usdt"]) == (None, None, "1002")


async def test_get_market_data_reads_closed_candles_oldest_first(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    times_3m = await seed.snapshots(db_pool, BTC, "3m", 12)
    await seed.snapshots(db_pool, BTC, "4H", 12, newest=utcnow() - seed.BAR["4H"])
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        data = ok(await call(client, "get_market_data", symbol=BTC, limit=10))
    three, four = data["series"]
    assert (three["timeframe"], four["timeframe"]) == ("3m", "4H")
    assert len(three["candles"]) == 10 and len(four["candles"]) == 10
    assert [c["as_of"] for c in three["candles"]] == [
        t.isoformat().replace("+00:00", "Z") for t in times_3m[2:]
    ]
    assert three["candles"][-1] == {
        "as_of": three["as_of"],
        "price": "60011",
        "ema20": "60001",
        "ema50": "59991",
        "macd": "1.5",
        "rsi7": "55.5",
        "rsi14": "52.25",
    }
    assert (data["funding_rate"], data["open_interest"], data["stale"]) == ("0.0001", "12345.5", False)


async def test_stale_market_data_asks_ingest_to_refresh(
    gateway: Gateway, db_pool: asyncpg.Pool, nc: Nats, subjects: Subjects, accounts: dict[str, UUID]
) -> None:
    old = utcnow() - seed.BAR["3m"] * 50
    await seed.snapshots(db_pool, BTC, "3m", 5, newest=old)
    requests: list[MarketDataRefresh] = []

    async def ingest_refresh(msg: Msg) -> None:  # ingest fetches over REST; metrics folds it
        requests.append(MarketDataRefresh.model_validate_json(msg.data))
        await seed.snapshots(db_pool, BTC, "3m", 3)
        await msg.respond(MarketDataRefreshReply(ok=True, published=3).model_dump_json().encode())

    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        stale = ok(await call(client, "get_market_data", symbol=BTC, timeframes=["3m"]))
        assert stale["stale"] is True and stale["series"][0]["stale"] is True  # nobody answered
        sub = await nc.subscribe(subjects.market_data_refresh(), cb=ingest_refresh)
        await nc.flush()
        try:
            fresh = ok(await call(client, "get_market_data", symbol=BTC, timeframes=["3m"], limit=8))
        finally:
            await sub.unsubscribe()
    assert requests[0].inst_id == BTC and requests[0].bars == ["3m"]
    assert fresh["stale"] is False and len(fresh["series"][0]["candles"]) == 8


async def test_execute_trade_writes_call_then_order_and_returns_fills(
    gateway: Gateway, db_pool: asyncpg.Pool, ingest: FakeIngest, accounts: dict[str, UUID]
) -> None:
    await seed.market_price(db_pool, BTC, "60000")
    plan = {"take_profit": "66000", "stop_loss": "57000", "invalidation_condition": "4H close < 56000"}
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        result = ok(await call(client, "execute_trade", **TRADE, exit_plan=plan, idempotency_key="k1"))
    order = result["order"]
    assert (order["status"], order["filled_size"], order["confidence"], order["leverage"]) == (
        "filled",
        "0.5",
        "72",
        "5",
    )
    assert order["exit_plan"] == plan | {"version": 1} and result["replayed"] is False
    assert [(f["price"], f["size"]) for f in result["fills"]] == [("60000.5", "0.5")]
    sent = ingest.received[-1]
    assert (sent.cl_ord_id, sent.pos_side, sent.sz, sent.lever) == (
        order["client_order_id"],
        "net",
        Decimal("0.5"),
        Decimal(5),
    )
    row = await db_pool.fetchrow("SELECT * FROM aitrader.orders WHERE id = $1", UUID(order["order_id"]))
    await gateway.audit.flush()
    (audit,) = await seed.tool_calls(db_pool, tool_name="execute_trade")
    assert row["tool_call_id"] == audit["id"] and row["exchange_order_id"] == "900001"
    assert (audit["status"], audit["transport"], audit["account_id"]) == ("success", "memory", accounts["a"])
    assert audit["request_payload"]["idempotency_key"] == "k1" and audit["latency_ms"] >= 0
    assert audit["response_payload"]["order"]["order_id"] == order["order_id"]


async def test_same_idempotency_key_returns_first_order_and_places_nothing(
    gateway: Gateway, db_pool: asyncpg.Pool, ingest: FakeIngest, accounts: dict[str, UUID]
) -> None:
    await seed.market_price(db_pool, BTC, "60000")
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        first = ok(await call(client, "execute_trade", **TRADE, idempotency_key="same"))
        second = ok(await call(client, "execute_trade", **TRADE, idempotency_key="same"))
        other = await call(client, "execute_trade", **{**TRADE, "side": "sell"}, idempotency_key="same")
    assert second["replayed"] is True and second["order"]["order_id"] == first["order"]["order_id"]
    assert len(second["fills"]) == 1
    assert "already used for a different order" in error_text(other)
    assert len(ingest.received) == 1
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.orders") == 1
    await gateway.audit.flush()
    statuses = [r["status"] for r in await seed.tool_calls(db_pool, tool_name="execute_trade")]
    assert statuses == ["success", "success", "failed"]


@pytest.mark.parametrize(
    ("behaviour", "status", "fragment"),
    [
        pytest.param("reject", "rejected", "51008", id="exchange-rejects"),
        pytest.param("silent", "unknown", "unknown state", id="ingest-times-out"),
    ],
)
async def test_order_not_placed_is_an_error_and_marked(
    gateway: Gateway, db_pool: asyncpg.Pool, ingest: FakeIngest, behaviour: Any, status: str, fragment: str
) -> None:
    await seed.market_price(db_pool, BTC, "60000")
    ingest.behaviour = behaviour
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        result = await call(client, "execute_trade", **TRADE)
    assert fragment in error_text(result)
    assert await db_pool.fetchval("SELECT status FROM aitrader.orders") == status
    await gateway.audit.flush()
    (audit,) = await seed.tool_calls(db_pool, tool_name="execute_trade")
    assert audit["status"] == "failed" and fragment in audit["error"]


async def test_no_ingest_running_is_a_clear_error(gateway: Gateway, db_pool: asyncpg.Pool) -> None:
    await seed.market_price(db_pool, BTC, "60000")
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        result = await call(client, "execute_trade", **TRADE)
    assert "not running" in error_text(result) and "Nothing reached the exchange" in error_text(result)
    assert await db_pool.fetchval("SELECT status FROM aitrader.orders") == "failed"


BAD_ARGUMENTS = [
    pytest.param(
        "execute_trade",
        {**TRADE, "symbol": "DOGE-USDT-SWAP"},
        ["Unknown symbol", "BTC-USDT-SWAP, ETH-USDT-SWAP"],
        id="unknown-symbol",
    ),
    pytest.param("execute_trade", {**TRADE, "size": "0.015"}, ["lot size 0.01"], id="size-not-lot-multiple"),
    pytest.param("execute_trade", {**TRADE, "size": "0.001"}, ["below the minimum"], id="size-below-minimum"),
    pytest.param(
        "execute_trade",
        {**TRADE, "confidence": 150},
        ["confidence must be a decimal from 0 to 100", "(got 150)"],
        id="confidence-above-100",
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "confidence": -1},
        ["confidence must be a decimal from 0 to 100", "(got -1)"],
        id="confidence-below-0",
    ),
    pytest.param(
        "execute_trade", {**TRADE, "leverage": 50}, ["leverage 50", "1 to 20"], id="leverage-above-limit"
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "order_type": "limit", "price": -5},
        ["price must be a decimal > 0", "(got -5)"],
        id="negative-price",
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "order_type": "limit", "price": "60000.05"},
        ["tick size 0.1"],
        id="price-not-tick-multiple",
    ),
    pytest.param(
        "execute_trade", {**TRADE, "price": "60000"}, ["only for limit orders"], id="price-on-market-order"
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "size": "lots"},
        ["size must be a decimal > 0 with at most 12 digits before the point and 8 after"],
        id="size-wrong-type",
    ),
    pytest.param(
        "execute_trade", {**TRADE, "side": "hold"}, ["side", "'buy' or 'sell'"], id="side-not-allowed"
    ),
    pytest.param(
        "execute_trade",
        {**TRADE, "size": "200"},
        ["exceeds the maximum 100000 USDT", "166.66 contracts"],
        id="notional-too-large",
    ),
    pytest.param(
        "execute_trade",
        {"symbol": BTC, "side": "buy"},
        ["size is required", "leverage is required", "confidence is required"],
        id="missing-arguments",
    ),
    pytest.param(
        "update_exit_plan",
        {"symbol": BTC, "stop_loss": 50000},
        ["No open position in BTC-USDT-SWAP"],
        id="exit-plan-without-position",
    ),
    pytest.param(
        "update_exit_plan",
        {"symbol": "XRP-USDT-SWAP", "stop_loss": 1},
        ["Unknown symbol"],
        id="exit-plan-unknown-symbol",
    ),
    pytest.param(
        "get_market_data",
        {"symbol": BTC, "timeframes": ["7m"]},
        ["timeframes", "'3m'"],
        id="unknown-timeframe",
    ),
    pytest.param(
        "get_market_data",
        {"symbol": BTC, "limit": 0},
        ["limit", "greater than or equal to 1"],
        id="limit-zero",
    ),
    pytest.param(
        "get_performance_metrics",
        {"window": "monthly"},
        ["window", "'daily', 'weekly' or 'all_time'"],
        id="unknown-window",
    ),
]


@pytest.mark.parametrize(("tool", "arguments", "fragments"), BAD_ARGUMENTS)
async def test_bad_arguments_are_tool_errors_recorded_as_failed(
    gateway: Gateway,
    db_pool: asyncpg.Pool,
    ingest: FakeIngest,
    tool: str,
    arguments: dict[str, Any],
    fragments: list[str],
) -> None:
    await seed.market_price(db_pool, BTC, "60000")
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        text = error_text(await call(client, tool, **arguments))
    for fragment in fragments:
        assert fragment in text
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.orders") == 0
    assert ingest.received == []
    await gateway.audit.flush()
    (audit,) = await seed.tool_calls(db_pool)
    assert (audit["tool_name"], audit["status"]) == (tool, "failed")
    assert audit["request_payload"] == arguments and fragments[0] in audit["error"]


async def test_update_exit_plan_merges_and_keeps_history(
    gateway: Gateway, nc: Nats, subjects: Subjects, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    await seed.market_price(db_pool, BTC, "60000")
    pid = await seed.position(
        db_pool, accounts["a"], BTC, exit_plan={"take_profit": "65000", "stop_loss": "55000"}
    )
    desk = AlgoDesk({"place_algo": "0", "amend_algo": "0", "cancel_algo": "0"})  # ingest's algo side
    subs = await desk.serve(nc, subjects, accounts["a"])
    await nc.flush()
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        moved = ok(
            await call(
                client,
                "update_exit_plan",
                symbol=BTC,
                stop_loss="58000.5",
                invalidation_condition="funding turns negative",
            )
        )
        crossed = await call(client, "update_exit_plan", symbol=BTC, take_profit=57000)
        for sub in subs:
            await sub.unsubscribe()
        away = await call(client, "update_exit_plan", symbol=BTC, stop_loss="59000")
    assert "the exchange adapter (ingest) is not running" in error_text(away)
    assert "The new plan was not stored" in error_text(away)
    assert moved["position"]["exit_plan"] == {
        "take_profit": "65000",
        "stop_loss": "58000.5",
        "invalidation_condition": "funding turns negative",
        "version": 2,  # the stored plan predates versions: it was the first
    }
    assert moved["previous_exit_plan"]["stop_loss"] == "55000"
    assert "must be above stop_loss" in error_text(crossed)
    stored = await db_pool.fetchval("SELECT exit_plan FROM aitrader.positions_open WHERE id = $1", pid)
    assert stored["stop_loss"] == "58000.5"
    history = await db_pool.fetch("SELECT * FROM aitrader.exit_plan_history")
    assert len(history) == 1 and history[0]["position_id"] == pid
    await gateway.audit.flush()
    calls = await seed.tool_calls(db_pool, tool_name="update_exit_plan")
    assert history[0]["tool_call_id"] == calls[0]["id"]
    assert [c["status"] for c in calls] == ["success", "failed", "failed"]


async def test_get_performance_metrics(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    await seed.performance(db_pool, accounts["a"], "weekly")
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        weekly = ok(await call(client, "get_performance_metrics", window="weekly"))
        daily = ok(await call(client, "get_performance_metrics", window="daily"))
    assert (weekly["available"], weekly["sharpe_ratio"], weekly["biggest_loss_usdt"]) == (
        True,
        "1.25",
        "-80.25",
    )
    assert [b["bucket"] for b in weekly["calibration"]] == ["0-50", "70-85"]
    assert (weekly["stop_loss_resting_ratio"], weekly["max_drawdown_pct"]) == ("0.8", "4.25")
    assert "max_drawdown_pct" in weekly["definitions"]
    assert weekly["exit_attribution"] == [  # most positions first; none closed by liquidation
        {"exit_reason": "agent", "closed_positions": 3, "realized_pnl_usdt": "183.95"},
        {"exit_reason": "stop_loss", "closed_positions": 2, "realized_pnl_usdt": "-60.5"},
    ]
    assert "sharpe_ratio" in weekly["definitions"] and weekly["updated_at"]
    assert weekly["definitions_version"] == "1"  # the seeded row's (the column default)
    assert (daily["available"], daily["calibration"], daily["sharpe_ratio"]) == (False, [], None)
    assert (daily["exit_attribution"], daily["stop_loss_resting_ratio"]) == ([], None)
    assert daily["definitions_version"] is None


async def test_read_scope_cannot_trade(
    gateway: Gateway, db_pool: asyncpg.Pool, ingest: FakeIngest, accounts: dict[str, UUID]
) -> None:
    await seed.position(db_pool, accounts["a"], BTC)
    async with memory_client(gateway, await client_for(gateway, "acct-a", {"read"})) as client:
        trade = await call(client, "execute_trade", **TRADE)
        plan = await call(client, "update_exit_plan", symbol=BTC, stop_loss=1)
        ok(await call(client, "get_account_state"))
    assert "scope read only" in error_text(trade) and "scope trade" in error_text(plan)
    assert ingest.received == [] and await db_pool.fetchval("SELECT count(*) FROM aitrader.orders") == 0


async def test_secrets_never_reach_the_audit_table(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    register_secrets(["sk-live-7f3a9c2e"])
    await seed.position(db_pool, accounts["a"], BTC)
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        ok(await call(client, "update_exit_plan", symbol=BTC, invalidation_condition="key sk-live-7f3a9c2e"))
    await gateway.audit.flush()
    raw = await db_pool.fetchval(
        "SELECT request_payload::text || response_payload::text FROM aitrader.mcp_tool_calls"
    )
    assert "sk-live-7f3a9c2e" not in raw and "key ***" in raw


def _property_names(schema: Any) -> set[str]:
    """Every property name anywhere in a JSON schema (nested objects, $defs, arrays, unions)."""
    names: set[str] = set()
    if isinstance(schema, dict):
        names.update(schema.get("properties", {}))
        for value in schema.values():
            names |= _property_names(value)
    elif isinstance(schema, list):
        for value in schema:
            names |= _property_names(value)
    return names


async def test_no_result_key_looks_secret(gateway: Gateway) -> None:
    """The audit stores a result's JSON without the key-redaction walk (only a registered secret
    value is looked for): that holds only while no key a tool returns is one `redact` masks."""
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        tools = (await client.list_tools()).tools
    keys = set().union(*(_property_names(t.output_schema) for t in tools)) | set(DEFINITIONS)
    assert {"positions", "exit_plan", "take_profit", "definitions", "calibration"} <= keys
    assert redact(dict.fromkeys(keys, "x")) == dict.fromkeys(keys, "x")


async def test_a_nul_character_is_refused_and_its_call_still_recorded(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    # PostgreSQL stores NUL in neither text nor jsonb: the call is refused with a clear error,
    # its row is stored with U+FFFD in place of NUL, and the audit writer keeps working.
    await seed.position(db_pool, accounts["a"], BTC)
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        text = error_text(await call(client, "update_exit_plan", symbol=BTC, invalidation_condition="a\x00b"))
        assert "NUL character" in text
        ok(await call(client, "get_account_state"))
    await gateway.audit.flush()
    rows = await seed.tool_calls(db_pool)
    assert [(r["tool_name"], r["status"]) for r in rows] == [
        ("update_exit_plan", "failed"),
        ("get_account_state", "success"),
    ]
    assert rows[0]["request_payload"]["invalidation_condition"] == "a\ufffdb"
    assert await db_pool.fetchval("SELECT exit_plan FROM aitrader.positions_open") in ({}, None)


async def test_the_audit_writer_stores_a_row_postgres_refuses_after_fixing_it(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    good = ToolCall("get_account_state", {"n": 1}, await client_for(gateway, "acct-a"), "memory")
    bad = ToolCall("get_market_data\x00", {"symbol": "x\x00"}, good.principal, "memory")
    await gateway.audit.finish(good, "success", {"ok": True}, None)
    await gateway.audit.finish(bad, "failed", None, "boom\x00")
    await gateway.audit.flush()
    rows = {r["id"]: r for r in await seed.tool_calls(db_pool)}
    assert rows[good.id]["response_payload"] == {"ok": True}
    assert (rows[bad.id]["tool_name"], rows[bad.id]["error"]) == ("get_market_data\ufffd", "boom\ufffd")
    assert rows[bad.id]["request_payload"] == {"symbol": "x\ufffd"}
