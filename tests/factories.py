"""Test data that many tests need: accounts, instruments, and waiting on a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from shared.instruments import InstrumentSpec

T = TypeVar("T")

# Realistic OKX values (GET /api/v5/public/instruments?instType=SWAP).
INSTRUMENTS: dict[str, dict[str, Any]] = {
    "BTC-USDT-SWAP": {
        "base_asset": "BTC",
        "ct_val": Decimal("0.01"),
        "lot_sz": Decimal("0.01"),
        "min_sz": Decimal("0.01"),
        "tick_sz": Decimal("0.1"),
        "max_leverage": Decimal("100"),
    },
    "ETH-USDT-SWAP": {
        "base_asset": "ETH",
        "ct_val": Decimal("0.1"),
        "lot_sz": Decimal("0.01"),
        "min_sz": Decimal("0.01"),
        "tick_sz": Decimal("0.01"),
        "max_leverage": Decimal("100"),
    },
}


def instrument_spec(symbol: str) -> InstrumentSpec:
    """The spec of one of `INSTRUMENTS`, as the services read it from `aitrader.instruments`."""
    values = INSTRUMENTS[symbol]
    return InstrumentSpec(
        symbol,
        values["base_asset"],
        values["ct_val"],
        Decimal(1),
        values["lot_sz"],
        values["min_sz"],
        values["tick_sz"],
        values["max_leverage"],
        "live",
    )


async def create_account(
    conn: asyncpg.Connection | asyncpg.Pool, external_id: str = "test-account", mode: str = "simulated"
) -> UUID:
    account_id: UUID = await conn.fetchval(
        """INSERT INTO aitrader.accounts (external_id, mode) VALUES ($1, $2)
           ON CONFLICT (external_id) DO UPDATE SET mode = EXCLUDED.mode RETURNING id""",
        external_id,
        mode,
    )
    return account_id


async def create_instruments(
    conn: asyncpg.Connection | asyncpg.Pool, symbols: list[str] | None = None
) -> None:
    for symbol in symbols or list(INSTRUMENTS):
        spec = INSTRUMENTS[symbol]
        await conn.execute(
            """INSERT INTO aitrader.instruments
                   (symbol, base_asset, quote_asset, settle_ccy, ct_val, ct_mult, ct_val_ccy,
                    lot_sz, min_sz, tick_sz, max_leverage)
               VALUES ($1, $2, 'USDT', 'USDT', $3, 1, $2, $4, $5, $6, $7)
               ON CONFLICT (symbol) DO NOTHING""",
            symbol,
            spec["base_asset"],
            spec["ct_val"],
            spec["lot_sz"],
            spec["min_sz"],
            spec["tick_sz"],
            spec["max_leverage"],
        )


async def wait_for(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll `check` until it returns a truthy value; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T = await check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; last={last!r}")
        await asyncio.sleep(interval)
        last = await check()
    return last
