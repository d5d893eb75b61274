"""The running service on real NATS JetStream and PostgreSQL: candles -> market_snapshots,
bad input -> dead letters, position events -> equity and performance within 2 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg
import pytest_asyncio
from nats.js import JetStreamContext

from services.metrics.config import MetricsSettings
from services.metrics.main import serve
from shared.bus import publish_event
from shared.messages import Candle, ClosedPositionState, MarkPrice, PositionEvent
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import create_account, create_instruments, wait_for

BTC = "BTC-USDT-SWAP"
T0 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def service(
    settings: Settings, db_pool: asyncpg.Pool, js: JetStreamContext, subjects: Subjects
) -> AsyncIterator[None]:
    await create_instruments(db_pool)
    config = MetricsSettings(**settings.model_dump(), metrics_debounce_s=0.2)
    task = asyncio.create_task(serve(config))

    async def ready() -> bool:
        info = await js.streams_info()
        consumers = [await js.consumers_info(s.config.name) for s in info
                     if s.config.name and s.config.name.startswith(subjects.stream_prefix)]
        return sum(len(c) for c in consumers) == 3

    await wait_for(ready, timeout=10, message="the three durable consumers")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def candle(i: int, close: str) -> Candle:
    t = T0 + timedelta(minutes=3 * i)
    return Candle(ts_event=t, inst_id=BTC, bar="3m", open_time=t, open=Decimal(close),
                  high=Decimal(close), low=Decimal(close), close=Decimal(close),
                  volume=Decimal(2), confirmed=True)


async def test_candles_on_jetstream_become_snapshots_and_bad_ones_dead_letters(
    service: None, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool
) -> None:
    subject = subjects.candle("3m", BTC)
    for i in range(30):
        await publish_event(js, subject, candle(i, str(100 + i)))
    bad = candle(30, "130").model_dump(mode="json")
    for field, value in [("close", "abc"), ("close", "-5")]:
        await js.publish(subject, Candle.model_validate(bad).to_bytes().replace(
            b'"close":"130"', f'"{field}":"{value}"'.encode()))
    doge = candle(31, "1").model_dump_json().replace(BTC, "DOGE-USDT-SWAP")
    await js.publish(subjects.candle("3m", "DOGE-USDT-SWAP"), doge.encode())
    await publish_event(js, subject, candle(30, "130"))

    count = "SELECT count(*) FROM aitrader.market_snapshots WHERE symbol = $1"
    await wait_for(lambda: _equals(db_pool, count, 31), message="31 rows")
    dead = await wait_for(lambda: _dead_letters(db_pool, 3), message="3 dead letters")
    assert dead is not None
    reasons = sorted(r["reason"] for r in dead)
    assert reasons[0].startswith("invalid Candle: close: Input should be a valid decimal")
    assert reasons[1].startswith("invalid Candle: close: Input should be greater than 0")
    assert reasons[2].startswith("unknown symbol 'DOGE-USDT-SWAP'")
    last = await db_pool.fetchrow(
        "SELECT as_of, price, ema20, rsi14 FROM aitrader.market_snapshots ORDER BY as_of DESC LIMIT 1")
    # closes 100..130 rise by 1: EMA20 of a straight line lags it by (20 - 1) / 2 = 9.5
    assert tuple(last) == (T0 + timedelta(minutes=93), Decimal("130.00000000"),
                           Decimal("120.50000000"), Decimal("100.0000"))


async def _equals(pool: asyncpg.Pool, query: str, expected: int) -> bool:
    return bool(await pool.fetchval(query, BTC) == expected)


async def _dead_letters(pool: asyncpg.Pool, n: int) -> list[asyncpg.Record] | None:
    rows = await pool.fetch("SELECT reason FROM aitrader.dead_letters WHERE service = 'metrics'")
    return rows if len(rows) >= n else None


async def test_position_event_updates_equity_and_performance_within_2s(
    service: None, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool
) -> None:
    account = await create_account(db_pool, "perf-account")
    now = datetime.now(UTC)
    await db_pool.execute(
        """INSERT INTO aitrader.balance_snapshots (account_id, available_usdt, locked_usdt,
               cash_usdt, as_of) VALUES ($1, 900, 100, 1000, $2)""", account, now)
    await db_pool.execute(
        """INSERT INTO aitrader.positions_open (account_id, symbol, side, quantity,
               avg_entry_price, opened_at) VALUES ($1, $2, 'long', 3, 50000, $3)""",
        account, BTC, now - timedelta(hours=1))
    await publish_event(js, subjects.mark_price(BTC),
                        MarkPrice(ts_event=now, inst_id=BTC, mark_px=Decimal("50100")))
    await wait_for(lambda: db_pool.fetchval("SELECT mark_price FROM aitrader.market_prices"),
                   message="mark price stored")
    await _close_position(db_pool, account, now, pnl="12.5", confidence="72")

    event = PositionEvent(
        ts_event=now, account_id=account, mode="simulated", kind="closed", inst_id=BTC,
        pos_side="net", trade_id="t-1", closed=_closed_state(now))
    started = time.monotonic()
    await publish_event(js, subjects.position(account, BTC), event)
    row = await wait_for(lambda: _daily(db_pool, account), timeout=2.0,
                         message="performance row with the closed position")
    assert time.monotonic() - started < 2.0
    assert row is not None
    assert (row["win_rate"], row["biggest_win_usdt"], row["definitions_version"]) == (
        Decimal("1.0000"), Decimal("12.50000000"), "2026-12-2")
    assert row["max_drawdown_pct"] == Decimal("0.0000")  # its one equity point (1003) never fell
    equity = await db_pool.fetchrow(
        "SELECT equity, cash, net_position_value, unrealized_pnl FROM aitrader.equity_snapshots"
        " WHERE account_id = $1 ORDER BY as_of DESC LIMIT 1", account)
    # 3 contracts x ctVal 0.01 = 0.03 BTC long; uPnL (50100 - 50000) x 0.03 = 3
    assert tuple(equity) == (Decimal("1003.00000000"), Decimal("1000.00000000"),
                             Decimal("1503.00000000"), Decimal("3.00000000"))
    calibration = await db_pool.fetchval(
        """SELECT closed_positions FROM aitrader.confidence_calibration
            WHERE account_id = $1 AND "window" = 'daily' AND bucket = '70-85'""", account)
    assert calibration == 1


async def _close_position(pool: asyncpg.Pool, account: UUID, now: datetime, *, pnl: str,
                          confidence: str) -> None:
    await pool.execute(
        """INSERT INTO aitrader.positions_closed (account_id, symbol, side, quantity,
               entry_price, exit_price, realized_pnl_usdt, average_confidence, entry_time,
               exit_time, closing_trade_id)
           VALUES ($1, $2, 'long', 1, 100, 101, $3, $4, $5, $6, 't-1')""",
        account, BTC, Decimal(pnl), Decimal(confidence), now - timedelta(minutes=30),
        now - timedelta(seconds=1))


def _closed_state(now: datetime) -> ClosedPositionState:
    return ClosedPositionState(
        side="long", quantity=Decimal(1), entry_price=Decimal(100), exit_price=Decimal(101),
        realized_pnl_usdt=Decimal("12.5"), gross_pnl_usdt=Decimal("12.5"), fee_usdt=Decimal(0),
        funding_usdt=Decimal(0), holding_minutes=Decimal(30), entry_time=now - timedelta(minutes=30),
        exit_time=now - timedelta(seconds=1), exit_reason="agent", closing_trade_id="t-1")


async def _daily(pool: asyncpg.Pool, account: UUID) -> asyncpg.Record | None:
    row = await pool.fetchrow(
        """SELECT win_rate, biggest_win_usdt, definitions_version, closed_positions,
                  max_drawdown_pct
             FROM aitrader.performance_snapshots WHERE account_id = $1 AND "window" = 'daily'""",
        account)
    return row if row is not None and row["closed_positions"] == 1 else None
