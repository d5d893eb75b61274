"""Exit attribution and the no-orphans safety net, on the real servers: a close by a fill of an
algo's order is `take_profit` / `stop_loss` by the leg that fired (known from the algo's row, or
learned later and patched), `aitrader replay` agrees, and a close cancels the live algos it left
behind (CancelAlgo to a fake ingest on core NATS) but not a flip's own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any
from uuid import UUID

import asyncpg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from services.positions.catalog import InstrumentCatalog
from services.positions.config import PositionsSettings
from services.positions.handlers import handle_batch
from services.positions.store import LedgerStore
from shared.clock import SystemClock
from shared.messages import AlgoOrderUpdate, AlgoReply, CancelAlgo, Fill
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.positions.conftest import at, closed_rows, consumed, fill, publish
from tests.positions.test_algo_orders import through_the_subject
from tests.positions.test_replay import run_replay
from tests.positions.test_service import agent_order

TP_SL = {"tp": "52000", "sl": "49000"}


def algo(
    account: UUID,
    algo_id: str,
    state: str = "live",
    minute: float = 1,
    *,
    created: float = 1,
    tp: str | None = None,
    sl: str | None = None,
    **changes: Any,
) -> AlgoOrderUpdate:
    """An algo's update: oco with both legs, conditional with one; closes a net long."""
    values: dict[str, Any] = {
        "account_id": account,
        "mode": "simulated",
        "inst_id": "BTC-USDT-SWAP",
        "algo_id": algo_id,
        "ord_type": "oco" if tp and sl else "conditional",
        "side": "sell",
        "pos_side": "net",
        "state": state,
        "sz": D(2),
        "reduce_only": True,
        "ts_event": at(minute),
        "created_time": at(created),
    }
    for leg, px in (("tp", tp), ("sl", sl)):
        if px is not None:
            values |= {
                f"{leg}_trigger_px": D(px),
                f"{leg}_trigger_px_type": "mark",
                f"{leg}_ord_px": "market",
            }
    return AlgoOrderUpdate(**(values | changes))


def fired(update: AlgoOrderUpdate, leg: str, minute: float, ord_id: str) -> AlgoOrderUpdate:
    """The `effective` update: `leg` fired and placed order `ord_id`."""
    return update.model_copy(
        update={
            "state": "effective",
            "actual_side": leg,
            "actual_sz": update.sz,
            "ord_id": ord_id,
            "ts_event": at(minute),
        }
    )


def from_algo(f: Fill, algo_id: str) -> Fill:
    """A fill of the order an algo placed when it fired (OKX puts the algoId on it)."""
    return f.model_copy(update={"algo_id": algo_id})


async def value(v: Any) -> Any:
    return v


def orphan_count(result: str) -> float:
    return REGISTRY.get_sample_value("aitrader_positions_orphan_algos_total", {"result": result}) or 0.0


async def exit_reasons(pool: asyncpg.Pool, account: UUID) -> dict[str, str]:
    return {r["closing_trade_id"]: r["exit_reason"] for r in await closed_rows(pool, account)}


async def reasons_become(pool: asyncpg.Pool, account: UUID, expected: dict[str, str]) -> None:
    """Wait for the closed rows to carry these reasons (by closing trade); a bare `consumed()`
    right after a publish can see the consumer before it has the new messages."""

    async def reached() -> bool:
        return await exit_reasons(pool, account) == expected

    try:
        await wait_for(reached, timeout=30, message=f"exit reasons {expected}")
    except AssertionError:
        assert await exit_reasons(pool, account) == expected  # says what the rows hold
        raise


async def replay_identical(dsn: str) -> None:
    code, out = await run_replay(dsn)
    assert (code, out.split(":")[0]) == (0, "identical"), out


async def test_a_stop_loss_fill_after_its_effective_update_closes_with_stop_loss(
    service: PositionsSettings,
    account: UUID,
    js: JetStreamContext,
    subjects: Subjects,
    db_pool: asyncpg.Pool,
) -> None:
    plan = algo(account, "801", sl="49000", tp="52000")
    await publish(
        js,
        subjects,
        [
            fill(account, "1", "buy", "2", "50000", 0),
            plan,
            fired(plan, "sl", 5, "9001"),
            from_algo(fill(account, "2", "sell", "2", "49000", 5, ord_id="9001"), "801"),
        ],
    )
    await reasons_become(db_pool, account, {"2": "stop_loss"})


async def test_an_oco_fill_before_its_effective_update_is_external_then_take_profit(
    service: PositionsSettings,
    account: UUID,
    js: JetStreamContext,
    subjects: Subjects,
    db_pool: asyncpg.Pool,
    db_dsn: str,
) -> None:
    plan = algo(account, "802", **TP_SL)
    await publish(
        js,
        subjects,
        [
            fill(account, "1", "buy", "2", "50000", 0),
            plan,
            from_algo(fill(account, "2", "sell", "2", "52000", 5), "802"),
        ],
    )
    await reasons_become(db_pool, account, {"2": "external"})  # which leg: not known yet

    await publish(js, subjects, [fired(plan, "tp", 5, "o2")])
    await reasons_become(db_pool, account, {"2": "take_profit"})
    await replay_identical(db_dsn)


async def test_a_one_leg_algo_gives_its_leg_before_any_effective_update(
    service: PositionsSettings,
    account: UUID,
    js: JetStreamContext,
    subjects: Subjects,
    db_pool: asyncpg.Pool,
    db_dsn: str,
) -> None:
    await publish(
        js,
        subjects,
        [
            fill(account, "1", "buy", "2", "50000", 0),
            algo(account, "803", tp="52000"),
            from_algo(fill(account, "2", "sell", "2", "52000", 5), "803"),
        ],
    )
    await reasons_become(db_pool, account, {"2": "take_profit"})

    # A fill ahead of its algo's first update (none stored yet): external, until the row says
    # the algo has one leg only.
    await publish(
        js,
        subjects,
        [
            fill(account, "3", "buy", "1", "50000", 6),
            from_algo(fill(account, "4", "sell", "1", "48000", 7), "804"),
        ],
    )
    await reasons_become(db_pool, account, {"2": "take_profit", "4": "external"})
    await publish(js, subjects, [algo(account, "804", "live", 8, created=6, sl="48000")])
    await reasons_become(db_pool, account, {"2": "take_profit", "4": "stop_loss"})
    await replay_identical(db_dsn)


@contextlib.asynccontextmanager
async def fake_ingest(
    nc: Client, subjects: Subjects, account: UUID, answer: AlgoReply | None = None
) -> AsyncIterator[list[CancelAlgo]]:
    """Answers CancelAlgo on the account's subject (ok, or `answer`); yields what it got."""
    got: list[CancelAlgo] = []

    async def respond(msg: Msg) -> None:
        cmd = CancelAlgo.model_validate_json(msg.data)
        got.append(cmd)
        reply = answer or AlgoReply(request_id=cmd.request_id, ok=True, algo_id=cmd.algo_id, s_code="0")
        await msg.respond(reply.model_copy(update={"request_id": cmd.request_id}).model_dump_json().encode())

    sub = await nc.subscribe(subjects.cancel_algo(account), cb=respond)
    await nc.flush()
    try:
        yield got
    finally:
        await sub.unsubscribe()


async def test_an_agent_close_stays_agent_and_cancels_the_algo_it_left_but_not_the_flips(
    service: PositionsSettings,
    account: UUID,
    js: JetStreamContext,
    subjects: Subjects,
    db_pool: asyncpg.Pool,
    nc: Client,
) -> None:
    closing = await agent_order(db_pool, account, "sell", "3", confidence="50", leverage="5")
    async with fake_ingest(nc, subjects, account) as requests:
        await publish(
            js,
            subjects,
            [
                fill(account, "1", "buy", "2", "50000", 0),
                algo(account, "805", created=0, **TP_SL),  # the long's plan: resting, not fired
                # the agent flips to short 1; the exchange attaches the new short's own plan (its
                # push may come first: stored before the close is folded)
                algo(account, "806", minute=10, created=10, side="buy", sz=D(1), tp="48000"),
                fill(account, "2", "sell", "3", "50500", 10, cl_ord_id=closing.hex),
            ],
        )
        await consumed(js, subjects)
        # Then another slot's close: its request comes after any the first close made.
        eth: dict[str, Any] = {"inst": "ETH-USDT-SWAP"}
        sentinel = algo(account, "899", created=11, inst_id="ETH-USDT-SWAP", sz=D(1), sl="1900")
        await publish(
            js,
            subjects,
            [
                fill(account, "3", "buy", "1", "2000", 11, **eth),
                sentinel,
                fill(account, "4", "sell", "1", "2000", 12, **eth),
            ],
        )
        await wait_for(lambda: value(len(requests) >= 2), message="the sentinel's CancelAlgo")
    assert [(r.algo_id, r.inst_id, r.account_id) for r in requests] == [
        ("805", "BTC-USDT-SWAP", account),
        ("899", "ETH-USDT-SWAP", account),
    ]
    assert await exit_reasons(db_pool, account) == {"2": "agent", "4": "external"}


async def test_a_reply_not_live_is_the_normal_case_and_no_ingest_is_a_counted_failure(
    service: PositionsSettings,
    account: UUID,
    js: JetStreamContext,
    subjects: Subjects,
    nc: Client,
) -> None:
    not_live = AlgoReply(request_id=account, ok=False, s_code="51400", s_msg="not live")
    before = orphan_count("not_live"), orphan_count("failed")
    async with fake_ingest(nc, subjects, account, not_live) as requests:
        await publish(
            js,
            subjects,
            [
                fill(account, "1", "buy", "2", "50000", 0),
                algo(account, "807", created=0, sl="49000"),
                fill(account, "2", "sell", "2", "50100", 5),
            ],
        )
        await consumed(js, subjects)
        await wait_for(
            lambda: value(orphan_count("not_live") > before[0]), message="the not-live reply counted"
        )
    assert [r.algo_id for r in requests] == ["807"]
    await publish(
        js,
        subjects,
        [fill(account, "3", "buy", "2", "50000", 6), fill(account, "4", "sell", "2", "50100", 7)],
    )  # 807 still live
    await consumed(js, subjects)
    await wait_for(
        lambda: value(orphan_count("failed") > before[1]), message="no responder counted as a failure"
    )


async def test_only_the_closed_slots_live_close_only_algos_created_before_the_close_are_orphans(
    db_pool: asyncpg.Pool,
    account: UUID,
) -> None:
    """Which algos a close leaves behind, exactly (the list the consumer then cancels)."""
    eth: dict[str, Any] = {"inst": "ETH-USDT-SWAP", "pos_side": "long"}
    eth_algo: dict[str, Any] = {"inst_id": "ETH-USDT-SWAP", "pos_side": "long", "sz": D(1)}
    events = [
        fill(account, "1", "buy", "2", "50000", 0),
        algo(account, "811", created=0, **TP_SL),  # the long's plan: an orphan once it closes
        algo(account, "812", created=0, sl="49000", state="canceled"),  # not live
        algo(account, "813", created=0, sl="49000", reduce_only=False),  # may open: not ours
        fill(account, "2", "sell", "3", "50500", 10),  # flips to short 1
        algo(account, "814", created=9, side="buy", sl="51000"),  # the short's (a resting flip)
        fill(account, "3", "buy", "1", "2000", 0, **eth),
        fill(account, "4", "sell", "1", "2100", 10, **eth),  # closes, and a new long opens:
        fill(account, "5", "buy", "1", "2100", 10, **eth),
        algo(account, "815", created=10, tp="2200", **eth_algo),  # the new long's, at the close
        algo(account, "816", created=5, tp="2200", **eth_algo),  # the old long's
    ]
    catalog = InstrumentCatalog(SystemClock(), grace_seconds=0)
    async with db_pool.acquire() as conn, conn.transaction():
        outcome = await handle_batch(LedgerStore(conn), through_the_subject(events), catalog)
    assert not outcome.dead, outcome.dead
    assert [(o.symbol, o.algo_id) for o in outcome.orphans] == [
        ("BTC-USDT-SWAP", "811"),
        ("ETH-USDT-SWAP", "816"),
    ]
