"""Algo (TP/SL) order updates in the ledger's transaction, on a real PostgreSQL: one row per
algoId, idempotent, a state never goes back, the newest amendment wins, and an order placed by
an algo keeps its algo id."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal as D
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from services.positions.catalog import InstrumentCatalog
from services.positions.handlers import handle_batch
from services.positions.inbound import Inbound
from services.positions.inbound import parse as parse_inbound
from services.positions.store import LedgerStore
from shared.clock import SystemClock
from shared.errors import PermanentError
from shared.messages import AccountEvent, AlgoOrderUpdate
from shared.subjects import Subjects
from tests.positions.conftest import at, fill

ALGO_ID = "600000000000000001"


def algo(account: UUID, state: str = "live", minute: float = 0, **changes: Any) -> AlgoOrderUpdate:
    values: dict[str, Any] = {
        "account_id": account, "mode": "simulated", "inst_id": "BTC-USDT-SWAP",
        "algo_id": ALGO_ID, "ord_type": "oco", "side": "sell", "pos_side": "net",
        "state": state, "sz": D(2), "reduce_only": True, "tp_trigger_px": D(52000),
        "tp_trigger_px_type": "last", "tp_ord_px": "market", "sl_trigger_px": D(49000),
        "sl_trigger_px_type": "mark", "sl_ord_px": D("48900.5"), "ts_event": at(minute),
        "created_time": at(0),
    }
    return AlgoOrderUpdate(**(values | changes))


def through_the_subject(events: Sequence[AccountEvent]) -> list[Inbound]:
    """As the consumer reads them: subject parsed, body validated (an unknown kind would fail)."""
    subjects = Subjects("t9")
    return [parse_inbound(i, subjects.for_event(e), e.to_bytes(), "t9", lambda: at(0))
            for i, e in enumerate(events)]


async def apply(pool: asyncpg.Pool, events: Sequence[AccountEvent]) -> None:
    catalog = InstrumentCatalog(SystemClock(), grace_seconds=0)
    async with pool.acquire() as conn, conn.transaction():
        outcome = await handle_batch(LedgerStore(conn), through_the_subject(events), catalog)
    assert not outcome.dead and not outcome.retry, outcome.dead


async def stored(pool: asyncpg.Pool, account: UUID) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM aitrader.algo_orders WHERE account_id = $1", account)


async def test_an_algo_update_is_one_row_with_market_as_null_and_repeats_are_no_ops(
        db_pool: asyncpg.Pool, account: UUID) -> None:
    live = algo(account)
    await apply(db_pool, [live, live])
    await apply(db_pool, [live])
    (row,) = await stored(db_pool, account)
    assert (row["state"], row["ord_type"], row["sz"], row["reduce_only"]) == ("live", "oco", 2, True)
    assert (row["tp_trigger_px"], row["tp_trigger_px_type"], row["tp_ord_px"]) == (52000, "last", None)
    assert (row["sl_trigger_px"], row["sl_trigger_px_type"], row["sl_ord_px"]) == (
        49000, "mark", D("48900.5"))
    assert row["created_at"] == at(0) and row["exchange_updated_at"] == at(0)


async def test_a_state_never_goes_back_and_the_newest_amendment_wins(
        db_pool: asyncpg.Pool, account: UUID) -> None:
    amended = algo(account, minute=2, sl_trigger_px=D(49500))
    stale = algo(account, minute=1, sl_trigger_px=D(49200))
    await apply(db_pool, [algo(account), amended, stale])  # an older amendment arrives last
    (row,) = await stored(db_pool, account)
    assert row["sl_trigger_px"] == 49500
    fired = algo(account, "effective", minute=3, actual_side="sl", actual_sz=D(2),
                 ord_id="700000000000000009")
    await apply(db_pool, [fired])
    await apply(db_pool, [algo(account, minute=4)])  # a live push after it fired: ignored
    (row,) = await stored(db_pool, account)
    assert (row["state"], row["actual_side"], row["triggered_ord_id"], row["actual_sz"]) == (
        "effective", "sl", "700000000000000009", 2)
    assert row["exchange_updated_at"] == at(3)


async def test_an_order_placed_by_an_algo_keeps_its_algo_id(
        db_pool: asyncpg.Pool, account: UUID) -> None:
    placed = fill(account, "1", "sell", "2", "50000", 3, ord_id="700000000000000009"
                  ).model_copy(update={"algo_id": ALGO_ID})
    await apply(db_pool, [placed])
    assert await db_pool.fetchval(
        "SELECT algo_id FROM aitrader.orders WHERE account_id = $1 AND exchange_order_id = $2",
        account, "700000000000000009") == ALGO_ID


def test_an_algo_price_that_cannot_fit_its_column_is_refused_before_the_database(
        account: UUID) -> None:
    with pytest.raises(PermanentError, match=r"sl_trigger_px .* does not fit"):
        through_the_subject([algo(account, sl_trigger_px=D("1e13"))])
