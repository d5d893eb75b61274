"""Exit attribution per window, from closed positions and algo orders as positions stores them:
closed positions and net PnL per exit reason, and the share that had a stop-loss resting on the
exchange when they closed (docs/metrics.md). Every number is worked out by hand below."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg

from services.metrics.refresh import refresh_performance
from shared.clock import ManualClock, utcnow
from tests.factories import create_account, create_instruments

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"


async def _closed(
    pool: asyncpg.Pool,
    account: UUID,
    trade: str,
    *,
    symbol: str = BTC,
    side: str = "long",
    entry: datetime,
    exit_: datetime,
    reason: str,
    pnl: str,
) -> None:
    await pool.execute(
        """INSERT INTO aitrader.positions_closed (account_id, symbol, side, quantity, entry_price,
               exit_price, realized_pnl_usdt, entry_time, exit_time, exit_reason, closing_trade_id)
           VALUES ($1, $2, $3, 1, 100, 101, $4, $5, $6, $7, $8)""",
        account,
        symbol,
        side,
        Decimal(pnl),
        entry,
        exit_,
        reason,
        trade,
    )


async def _algo(
    pool: asyncpg.Pool,
    account: UUID,
    algo_id: str,
    *,
    symbol: str = BTC,
    side: str = "sell",
    state: str,
    tp: str | None = None,
    sl: str | None = None,
    actual_side: str | None = None,
    created: datetime,
    updated: datetime,
) -> None:
    await pool.execute(
        """INSERT INTO aitrader.algo_orders (account_id, symbol, pos_side, algo_id, ord_type, side,
               state, sz, tp_trigger_px, sl_trigger_px, actual_side, created_at, exchange_updated_at)
           VALUES ($1, $2, 'net', $3, $4, $5, $6, 1, $7, $8, $9, $10, $11)""",
        account,
        symbol,
        algo_id,
        "oco" if tp and sl else "conditional",
        side,
        state,
        None if tp is None else Decimal(tp),
        None if sl is None else Decimal(sl),
        actual_side,
        created,
        updated,
    )


async def test_exit_reasons_and_the_share_closed_with_a_stop_resting(db_pool: asyncpg.Pool) -> None:
    await create_instruments(db_pool)
    account = await create_account(db_pool, "acct-exits")
    now = utcnow().replace(microsecond=0)

    def ago(hours: float) -> datetime:
        return now - timedelta(hours=hours)

    second = timedelta(seconds=1)
    # P1 long, stopped out: its oco fired the stop 1 s before the closing fill -> resting
    await _closed(db_pool, account, "p1", entry=ago(10), exit_=ago(9), reason="stop_loss", pnl="-50")
    await _algo(
        db_pool,
        account,
        "X1",
        state="effective",
        tp="65000",
        sl="58000",
        actual_side="sl",
        created=ago(10),
        updated=ago(9) - second,
    )
    # P2 long, closed by the agent; the exchange canceled its stop at the close -> resting
    await _closed(db_pool, account, "p2", entry=ago(8), exit_=ago(7), reason="agent", pnl="30")
    await _algo(db_pool, account, "X2", state="canceled", sl="58000", created=ago(8), updated=ago(7))
    # P3 short, closed by the agent half an hour after its stop was canceled -> not resting; a
    # sell-side stop (the opening side of a short) does not protect it
    await _closed(db_pool, account, "p3", side="short", entry=ago(6), exit_=ago(5), reason="agent", pnl="20")
    await _algo(
        db_pool, account, "X3", side="buy", state="canceled", sl="70000", created=ago(6), updated=ago(5.5)
    )
    await _algo(db_pool, account, "X3b", state="canceled", sl="50000", created=ago(6), updated=ago(5))
    # P4 long, take-profit of a take-profit-only algo -> not resting (X1 fired before P4 opened)
    await _closed(db_pool, account, "p4", entry=ago(4), exit_=ago(3), reason="take_profit", pnl="40")
    await _algo(
        db_pool,
        account,
        "X4",
        state="effective",
        tp="66000",
        actual_side="tp",
        created=ago(4),
        updated=ago(3) - second,
    )
    # P5 long, take-profit of an oco: its stop leg rested until then -> resting
    await _closed(db_pool, account, "p5", entry=ago(2), exit_=ago(1), reason="take_profit", pnl="25")
    await _algo(
        db_pool,
        account,
        "X5",
        state="effective",
        tp="67000",
        sl="59000",
        actual_side="tp",
        created=ago(2),
        updated=ago(1) - second,
    )
    # P6 ETH long, 30 h ago (weekly), liquidated under a stop still live -> resting
    await _closed(
        db_pool, account, "p6", symbol=ETH, entry=ago(50), exit_=ago(30), reason="liquidation", pnl="-100"
    )
    await _algo(db_pool, account, "X6", symbol=ETH, state="live", sl="2000", created=ago(50), updated=ago(50))
    # P7 long, 200 h ago (all_time only), no algo -> not resting
    await _closed(db_pool, account, "p7", entry=ago(201), exit_=ago(200), reason="agent", pnl="10")

    assert await refresh_performance(db_pool, ManualClock(now), [account]) == 3

    snapshots = await db_pool.fetch(
        """SELECT "window", stop_loss_resting_ratio FROM aitrader.performance_snapshots
            WHERE account_id = $1""",
        account,
    )
    ratios = {r["window"]: r["stop_loss_resting_ratio"] for r in snapshots}
    # daily: P1-P5, resting P1 P2 P5 = 3 / 5; weekly: + P6 = 4 / 6 = 0.66667 -> 0.6667;
    # all_time: + P7 = 4 / 7 = 0.571428... -> 0.5714
    assert ratios == {"daily": Decimal("0.6"), "weekly": Decimal("0.6667"), "all_time": Decimal("0.5714")}
    rows = await db_pool.fetch(
        """SELECT "window", exit_reason, closed_positions, realized_pnl_usdt
             FROM aitrader.exit_attribution WHERE account_id = $1""",
        account,
    )
    assert len(rows) == 3 * 7  # every reason of every window, none closed so included
    found = {
        (r["window"], r["exit_reason"]): (r["closed_positions"], r["realized_pnl_usdt"])
        for r in rows
        if r["closed_positions"]
    }
    assert found == {
        # daily: stop_loss P1 -50; agent P2 + P3 = 30 + 20; take_profit P4 + P5 = 40 + 25
        ("daily", "stop_loss"): (1, Decimal("-50")),
        ("daily", "agent"): (2, Decimal("50")),
        ("daily", "take_profit"): (2, Decimal("65")),
        # weekly: + liquidation P6 -100
        ("weekly", "stop_loss"): (1, Decimal("-50")),
        ("weekly", "agent"): (2, Decimal("50")),
        ("weekly", "take_profit"): (2, Decimal("65")),
        ("weekly", "liquidation"): (1, Decimal("-100")),
        # all_time: + agent P7 10
        ("all_time", "stop_loss"): (1, Decimal("-50")),
        ("all_time", "agent"): (3, Decimal("60")),
        ("all_time", "take_profit"): (2, Decimal("65")),
        ("all_time", "liquidation"): (1, Decimal("-100")),
    }
    empty = {(r["closed_positions"], r["realized_pnl_usdt"]) for r in rows if not r["closed_positions"]}
    assert empty == {(0, None)}
