"""The service on real NATS JetStream and PostgreSQL: publish, wait for the acks, read the rows.
Expected numbers are computed by hand in the comments."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from services.positions.config import PositionsSettings
from services.positions.store import STAGE_MIN_ROWS
from shared.messages import Balance, ExchangePosition, OrderUpdate, PositionEvent
from shared.settings import Settings
from shared.subjects import DEFAULT_PARTITIONS, Subjects, partition_of
from tests.factories import create_account, wait_for
from tests.positions.conftest import (
    assert_row,
    at,
    closed_rows,
    consumed,
    fill,
    funding,
    ledger_consumer,
    open_rows,
    positions_config,
    publish,
    publish_raw,
    running,
)


async def agent_order(pool: asyncpg.Pool, account_id: UUID, side: str, size: str, *,
                      confidence: str, leverage: str, exit_plan: dict[str, Any] | None = None,
                      symbol: str = "BTC-USDT-SWAP") -> UUID:
    """An order as the MCP gateway writes it before sending the command."""
    tool_call = uuid4()
    await pool.execute(
        """INSERT INTO aitrader.mcp_tool_calls (id, account_id, tool_name, request_payload)
           VALUES ($1, $2, 'execute_trade', '{}'::jsonb)""", tool_call, account_id)
    order_id = uuid4()
    await pool.execute(
        """INSERT INTO aitrader.orders (id, account_id, symbol, side, order_type, size, status,
               leverage, confidence, tool_call_id, client_order_id, source, exit_plan)
           VALUES ($1, $2, $3, $4, 'market', $5, 'submitted', $6, $7, $8, $9, 'agent', $10)""",
        order_id, account_id, symbol, side, D(size), D(leverage), D(confidence), tool_call,
        order_id.hex, exit_plan)
    return order_id


async def test_fills_fold_into_positions_and_inherit_from_their_orders(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    plan = {"stop_loss": "48000", "take_profit": "56000"}
    opening = await agent_order(db_pool, account, "buy", "3", confidence="80", leverage="5",
                                exit_plan=plan)
    closing = await agent_order(db_pool, account, "sell", "2", confidence="40", leverage="5")
    await publish(js, subjects, [
        fill(account, "1", "buy", "2", "50000", 0, fee="-0.5", cl_ord_id=opening.hex, ord_id="A"),
        fill(account, "2", "buy", "1", "51000", 1, fee="-0.25", cl_ord_id=opening.hex, ord_id="A"),
        fill(account, "3", "sell", "1", "52000", 2, fee="-0.26", ord_id="X"),  # from the OKX app
    ])
    await consumed(js, subjects)
    # avg (2 x 50000 + 51000) / 3 = 50333.33333333; partial (52000 - avg) x 1 x 0.01 = 16.66666667
    row = (await open_rows(db_pool, account))[("BTC-USDT-SWAP", "net")]
    assert_row(row, side="long", quantity="2", avg_entry_price="50333.33333333",
               realized_gross_usdt="16.66666667", fees_usdt="-1.01", leverage="5", fill_count=3)
    assert row["exit_plan"] == plan and row["opened_at"] == at(0)
    fills = await db_pool.fetch("SELECT * FROM aitrader.fills ORDER BY exchange_trade_id")
    assert [(f["order_id"] == opening, f["confidence"], f["leverage"]) for f in fills[:2]] == [
        (True, D("80"), D("5")), (True, D("80"), D("5"))]
    external = await db_pool.fetchrow("SELECT * FROM aitrader.orders WHERE exchange_order_id = 'X'")
    assert (external["source"], external["tool_call_id"], external["confidence"]) == ("external", None, None)
    assert fills[2]["order_id"] == external["id"]
    assert await db_pool.fetchval("SELECT exchange_order_id FROM aitrader.orders WHERE id = $1",
                                  opening) == "A"

    await publish(js, subjects, [
        fill(account, "4", "sell", "2", "49000", 3, fee="-0.49", cl_ord_id=closing.hex, ord_id="B"),
    ])
    await consumed(js, subjects)
    # close (49000 - avg) x 2 x 0.01 = -26.66666667; gross -10; fees -1.5; net -11.5
    assert await open_rows(db_pool, account) == {}
    [closed] = await closed_rows(db_pool, account)
    assert_row(closed, side="long", quantity="3", entry_price="50333.33333333", exit_price="50000",
               gross_pnl_usdt="-10", fee_usdt="-1.5", funding_usdt="0", realized_pnl_usdt="-11.5",
               holding_minutes="3", average_confidence="80", exit_reason="agent", leverage="5",
               fill_count=4, closing_trade_id="4")
    assert (closed["entry_time"], closed["exit_time"], closed["exit_plan"]) == (at(0), at(3), plan)


async def test_two_symbols_interleaved_eth_and_btc_contract_sizes(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    eth = {"inst": "ETH-USDT-SWAP"}
    await publish(js, subjects, [
        fill(account, "b1", "buy", "1", "2000", 0),
        fill(account, "e1", "buy", "1", "2000", 0, **eth),
        fill(account, "b2", "sell", "1", "2100", 1),
        fill(account, "e2", "sell", "3", "2100", 1, **eth),  # flip: short 2 @ 2100
    ])
    await consumed(js, subjects)
    closed = {r["symbol"]: r for r in await closed_rows(db_pool, account)}
    # same move, BTC (2100-2000) x 1 x 0.01 = 1; ETH x 0.1 = 10
    assert closed["BTC-USDT-SWAP"]["gross_pnl_usdt"] == D("1")
    assert closed["ETH-USDT-SWAP"]["gross_pnl_usdt"] == D("10")
    rows = await open_rows(db_pool, account)
    assert list(rows) == [("ETH-USDT-SWAP", "net")]
    eth_row = rows[("ETH-USDT-SWAP", "net")]
    assert (eth_row["side"], eth_row["quantity"], eth_row["avg_entry_price"]) == ("short", D("2"), D("2100"))


async def test_duplicates_and_late_fills_give_the_in_order_result(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    # In order: buy 3 @ 2000 (t0), sell 5 @ 2100 fee -0.5 (t10) -> closed long 3 (gross 30, fee
    # -0.3) and short 2 @ 2100 (fee -0.2); then buy 1 @ 2000 (t20): realized (2000-2100) x -0.1 = 10.
    eth = {"inst": "ETH-USDT-SWAP"}
    first, flip, cover = (fill(account, "1", "buy", "3", "2000", 0, **eth),
                          fill(account, "2", "sell", "5", "2100", 10, fee="-0.5", **eth),
                          fill(account, "3", "buy", "1", "2000", 20, **eth))
    await publish(js, subjects, [cover, flip])
    await consumed(js, subjects)
    await publish(js, subjects, [first])  # arrives last, sorts first: a refold
    await consumed(js, subjects)
    await js.publish(subjects.fill(account, "ETH-USDT-SWAP"), flip.to_bytes())  # no Nats-Msg-Id
    await consumed(js, subjects)
    [closed] = await closed_rows(db_pool, account)
    assert_row(closed, side="long", quantity="3", gross_pnl_usdt="30", fee_usdt="-0.3")
    row = (await open_rows(db_pool, account))[("ETH-USDT-SWAP", "net")]
    assert_row(row, side="short", quantity="1", realized_gross_usdt="10", fees_usdt="-0.2")
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.fills") == 3


async def test_trade_ids_at_the_same_instant_fold_in_integer_order(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    # One instant: trade 99 (buy 1 @ 2000) executed before trade 100 (sell 2 @ 2100). 100 arrives
    # first; when 99 comes, the stored last key (SQL) must sort after it, so the slot is refolded:
    # long 1 flips, closed by 100 with gross (2100 - 2000) x 1 x 0.1 = 10, short 1 @ 2100 left.
    # (Ordered as text, "100" < "99": no refold, and a short 2 reduced to 1 with nothing closed.)
    eth = {"inst": "ETH-USDT-SWAP"}
    await publish(js, subjects, [fill(account, "100", "sell", "2", "2100", 5, **eth)])
    await consumed(js, subjects)
    await publish(js, subjects, [fill(account, "99", "buy", "1", "2000", 5, **eth)])
    await consumed(js, subjects)
    [closed] = await closed_rows(db_pool, account)
    assert_row(closed, side="long", quantity="1", gross_pnl_usdt="10")
    assert closed["closing_trade_id"] == "100"
    row = (await open_rows(db_pool, account))[("ETH-USDT-SWAP", "net")]
    assert_row(row, side="short", quantity="1", avg_entry_price="2100")


async def test_long_short_mode_and_an_over_close_that_is_recorded_not_applied(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    await publish(js, subjects, [
        fill(account, "1", "buy", "1", "50000", 0, pos_side="long"),
        fill(account, "2", "sell", "2", "50100", 1, pos_side="short"),
        fill(account, "3", "sell", "1", "50500", 2, pos_side="long"),  # long: +500 x 0.01 = 5
        fill(account, "4", "buy", "3", "49900", 3, pos_side="short"),  # 3 > 2 open: anomaly
    ])
    await consumed(js, subjects)
    [closed] = await closed_rows(db_pool, account)
    assert (closed["pos_side"], closed["gross_pnl_usdt"]) == ("long", D("5"))
    short = (await open_rows(db_pool, account))[("BTC-USDT-SWAP", "short")]
    assert (short["side"], short["quantity"]) == ("short", D("2"))
    letter = await db_pool.fetchrow("SELECT * FROM aitrader.dead_letters")
    assert letter["error_type"] == "fold_anomaly" and "over-close" in letter["reason"]
    assert json.loads(letter["payload"])["trade_id"] == "4"


async def test_funding_payments_accumulate_between_fills(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    await publish(js, subjects, [
        fill(account, "1", "buy", "1", "50000", 0, fee="-0.25"),
        funding(account, "f1", "-0.5", 480),
        funding(account, "f1", "-0.5", 480),  # the same bill twice
        funding(account, "f2", "0.2", 960),
        fill(account, "2", "sell", "1", "50000", 1000, fee="-0.25"),
    ])
    await consumed(js, subjects)
    [closed] = await closed_rows(db_pool, account)
    # gross 0, fees -0.5, funding -0.5 + 0.2 = -0.3, net -0.8, held 1000 minutes
    assert_row(closed, gross_pnl_usdt="0", fee_usdt="-0.5", funding_usdt="-0.3",
               realized_pnl_usdt="-0.8", holding_minutes="1000")
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.funding_payments") == 2


async def test_order_updates_balances_and_the_exchange_view(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    ours = await agent_order(db_pool, account, "buy", "2", confidence="70", leverage="3")
    common: dict[str, Any] = {"account_id": account, "mode": "simulated", "inst_id": "BTC-USDT-SWAP",
                              "side": "buy", "pos_side": "net", "ord_type": "market", "sz": D("2")}
    balance = Balance(account_id=account, mode="simulated", cash_bal=D("1000.5"),
                      avail_bal=D("900.25"), frozen_bal=D("100.25"), eq=D("1001"), ts_event=at(1))
    await publish(js, subjects, [
        OrderUpdate(**common, ord_id="A", cl_ord_id=ours.hex, state="filled", acc_fill_sz=D("2"),
                    avg_px=D("50000"), ts_event=at(1)),
        OrderUpdate(**common, ord_id="A", cl_ord_id=ours.hex, state="partially_filled",
                    acc_fill_sz=D("1"), avg_px=D("50000"), ts_event=at(0.5)),  # late: no regress
        OrderUpdate(**common, ord_id="Z", cl_ord_id="myAppOrder1", state="live", ts_event=at(1)),
        fill(account, "1", "buy", "2", "50000", 1, cl_ord_id=ours.hex, ord_id="A"),
        balance, balance,
        ExchangePosition(account_id=account, mode="simulated", inst_id="BTC-USDT-SWAP",
                         pos_side="net", pos=D("2"), margin=D("333.3"), liq_px=D("40000"),
                         mark_px=D("50100"), upl=D("2"), ts_event=at(1.1)),
    ])
    await consumed(js, subjects)
    order = await db_pool.fetchrow("SELECT * FROM aitrader.orders WHERE id = $1", ours)
    assert (order["status"], order["filled_size"], order["avg_fill_price"], order["exchange_order_id"],
            order["source"], order["confidence"]) == ("filled", D("2"), D("50000"), "A", "agent", D("70"))
    external = await db_pool.fetchrow("SELECT * FROM aitrader.orders WHERE exchange_order_id = 'Z'")
    assert (external["status"], external["source"], external["tool_call_id"]) == ("open", "external", None)
    [snapshot] = await db_pool.fetch("SELECT * FROM aitrader.balance_snapshots")
    assert (snapshot["available_usdt"], snapshot["locked_usdt"], snapshot["cash_usdt"],
            snapshot["equity_usdt"]) == (D("900.25"), D("100.25"), D("1000.5"), D("1001"))
    row = (await open_rows(db_pool, account))[("BTC-USDT-SWAP", "net")]
    assert (row["margin_usdt"], row["liquidation_price"], row["mark_price"], row["unrealized_pnl_usdt"],
            row["quantity"], row["avg_entry_price"]) == (
        D("333.3"), D("40000"), D("50100"), D("2"), D("2"), D("50000"))


async def test_an_exit_plan_set_by_the_gateway_survives_fills_and_is_kept_on_close(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    opening = await agent_order(db_pool, account, "buy", "2", confidence="60", leverage="2",
                                exit_plan={"stop_loss": "1"})
    await publish(js, subjects, [fill(account, "1", "buy", "1", "100", 0, cl_ord_id=opening.hex,
                                      ord_id="A", inst="ETH-USDT-SWAP")])
    await consumed(js, subjects)
    updated = {"stop_loss": "2", "invalidation_condition": "4H close below 90"}
    await db_pool.execute("UPDATE aitrader.positions_open SET exit_plan = $1", updated)
    await publish(js, subjects, [
        fill(account, "2", "buy", "1", "110", 1, cl_ord_id=opening.hex, ord_id="A", inst="ETH-USDT-SWAP"),
        fill(account, "0", "buy", "1", "90", -1, inst="ETH-USDT-SWAP"),  # late: refold
    ])
    await consumed(js, subjects)
    row = (await open_rows(db_pool, account))[("ETH-USDT-SWAP", "net")]
    assert row["exit_plan"] == updated and row["quantity"] == D("3")
    await publish(js, subjects, [fill(account, "3", "sell", "3", "120", 2, inst="ETH-USDT-SWAP")])
    await consumed(js, subjects)
    [closed] = await closed_rows(db_pool, account)
    assert closed["exit_plan"] == updated and closed["exit_reason"] == "external"


async def test_position_events_are_published_after_commit(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
) -> None:
    sub = await js.subscribe(subjects.positions_all, ordered_consumer=True)
    await publish(js, subjects, [fill(account, "1", "buy", "1", "100", 0, inst="ETH-USDT-SWAP")])
    await consumed(js, subjects)
    await publish(js, subjects, [fill(account, "2", "buy", "1", "110", 1, inst="ETH-USDT-SWAP")])
    await consumed(js, subjects)
    await publish(js, subjects, [fill(account, "3", "sell", "3", "120", 2, inst="ETH-USDT-SWAP")])
    await consumed(js, subjects)
    events = [PositionEvent.model_validate_json((await sub.next_msg(timeout=5)).data) for _ in range(4)]
    assert [e.kind for e in events] == ["opened", "changed", "closed", "opened"]
    assert events[1].position is not None and events[1].position.avg_entry_price == D("105")
    # closed 2 long: (120 - 105) x 2 x 0.1 = 3; the flip opens short 1 @ 120
    assert events[2].closed is not None and events[2].closed.gross_pnl_usdt == D("3")
    assert events[3].position is not None and events[3].position.side == "short"
    await sub.unsubscribe()


async def wait_rows(pool: asyncpg.Pool, sql: str, count: int, *args: Any) -> None:
    async def enough() -> bool:
        return bool(await pool.fetchval(sql, *args) >= count)

    await wait_for(enough, timeout=15, message=sql)


async def first_settlement(acks: Subscription, stream: str, timeout: float = 15.0) -> bytes:
    """The first word a consumer of `stream` said about a message: +ACK, -NAK, +WPI (in progress)
    or +TERM, seen on the ack subjects `$JS.ACK.<stream>.<consumer>...` it publishes to."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await acks.next_msg(timeout=timeout)
            if msg.subject.split(".")[2:3] == [stream]:
                return msg.data


async def test_no_ack_before_commit_while_the_database_is_unreachable(
    service: PositionsSettings, account: UUID, js: JetStreamContext, subjects: Subjects,
    db_pool: asyncpg.Pool, pg_admin_dsn: str, db_dsn: str, nc: Client,
) -> None:
    name = db_dsn.rsplit("/", 1)[1]
    acks = await nc.subscribe("$JS.ACK.>")
    await nc.flush()  # listening before the fill is published
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND application_name = 'positions'", name)
        await publish(js, subjects, [fill(account, "1", "buy", "1", "100", 0)])
        # The service fetched the fill, failed to commit it and holds it (in progress) while it
        # retries: its first word about the message is that, never an ack.
        assert await first_settlement(acks, subjects.stream("ACCOUNT")) == b"+WPI"
        info = await js.consumer_info(subjects.stream("ACCOUNT"), ledger_consumer(account))
        assert info.num_ack_pending == 1 and info.num_pending == 0
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await admin.close()
        await acks.unsubscribe()
    await consumed(js, subjects, timeout=20)
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.fills") == 1
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.dead_letters") == 0


async def test_a_backlog_is_committed_in_one_transaction_per_stream_partition(
    settings: Settings, account: UUID, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool,
) -> None:
    # Three accounts in three ACCOUNT partitions, 71 fills each (enough for the COPY path), and
    # a schema-invalid message, all published before the service starts: one fetched batch per
    # partition, each folded by that partition's own pipeline.
    by_part: dict[int, UUID] = {partition_of(str(account), DEFAULT_PARTITIONS): account}
    n = 0
    while len(by_part) < 3:
        n += 1
        extra = await create_account(db_pool, f"partition-{n}")
        by_part.setdefault(partition_of(str(extra), DEFAULT_PARTITIONS), extra)
    accounts = list(by_part.values())
    # per account: 35 buys of 1 @ 100 and 35 of 1 @ 101 -> long 70 @ 100.5; then the batch's
    # last fill of each sells 80 @ 102: flip, closed 70 with gross (102 - 100.5) x 70 x 0.01 = 1.05
    events = [fill(acc, f"{acc.hex[:6]}-{i:03d}", "buy", "1", "100" if i % 2 else "101", i)
              for i in range(70) for acc in accounts]
    events += [fill(acc, f"{acc.hex[:6]}-close", "sell", "80", "102", 70) for acc in accounts]
    assert len(events) // 3 >= STAGE_MIN_ROWS
    await publish(js, subjects, events)
    await publish_raw(js, subjects.fill(accounts[0], "BTC-USDT-SWAP"), b'{"not": "a fill"}')
    async with running(positions_config(settings), js):
        await consumed(js, subjects)
    for acc in accounts:
        [closed] = await closed_rows(db_pool, acc)
        assert_row(closed, side="long", quantity="70", entry_price="100.5", exit_price="102",
                   gross_pnl_usdt="1.05", fill_count=71)
        row = (await open_rows(db_pool, acc))[("BTC-USDT-SWAP", "net")]
        assert_row(row, side="short", quantity="10", avg_entry_price="102", fill_count=1)
    # Each account's fills were written by one transaction, a different one per account.
    xmins = await db_pool.fetch(
        "SELECT account_id, array_agg(DISTINCT xmin::text) AS x FROM aitrader.fills GROUP BY account_id")
    assert all(len(r["x"]) == 1 for r in xmins) and len({r["x"][0] for r in xmins}) == 3
    [reason] = await db_pool.fetch("SELECT reason FROM aitrader.dead_letters")
    assert reason["reason"].startswith("schema-invalid fill")
