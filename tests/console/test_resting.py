"""`positions/open` says whether each stop-loss rests on the exchange, by the one rule
(`aitrader.stop_loss_resting`, migration 0016) the gateway's account state uses too: both sides
are asked about the same rows and must agree."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import asyncpg
import httpx

from services.mcp_gateway.repository import fetch_position
from tests.console.conftest import Seeded
from tests.console.seed import T0

OPENED = T0  # seed_account's open long of BTC-USDT-SWAP (pos_side net); its live stop at +1 min


async def _algo(
    pool: asyncpg.Pool, account: object, *, side: str, state: str, at: datetime, sl: bool
) -> None:
    await pool.execute(
        """INSERT INTO aitrader.algo_orders (account_id, symbol, pos_side, algo_id, ord_type, side, state,
               sz, tp_trigger_px, sl_trigger_px, created_at, exchange_updated_at)
           VALUES ($1, 'BTC-USDT-SWAP', 'net', $2, 'conditional', $3, $4, 0, $5, $6, $7, $7)""",
        account,
        secrets.token_hex(4),
        side,
        state,
        None if sl else 52000,
        49000 if sl else None,
        at,
    )


async def _both_sides(client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool) -> tuple[bool, bool]:
    answer = await client.get("/api/v1/accounts/A/positions/open", headers=seeded.auth)
    (row,) = answer.json()["items"]
    doc = await fetch_position(db_pool, row["id"], seeded.a)
    assert doc is not None
    return row["stop_loss_resting"], doc["exit_orders"]["stop_loss_resting"]


# Each: (side, state, last update, a stop-loss leg?) of the one algo order of the slot.
NOT_RESTING = {
    "canceled": ("sell", "canceled", OPENED + timedelta(minutes=2), True),
    "fired": ("sell", "effective", OPENED + timedelta(minutes=2), True),
    "before-the-opening": ("sell", "live", OPENED - timedelta(minutes=1), True),
    "opening-side": ("buy", "live", OPENED + timedelta(minutes=2), True),
    "take-profit-only": ("sell", "live", OPENED + timedelta(minutes=2), False),
}


async def test_a_live_stop_on_the_closing_side_since_the_opening_rests_and_nothing_else_does(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    """One seeded account for all the cases (a fixture per case cost ~0.7 s each)."""
    assert await _both_sides(client, seeded, db_pool) == (True, True)  # seed_account's live stop
    await _algo(db_pool, seeded.a, side="sell", state="canceled", at=OPENED + timedelta(minutes=2), sl=True)
    assert await _both_sides(client, seeded, db_pool) == (True, True), "a canceled one beside it"
    for case, (side, state, at, sl) in NOT_RESTING.items():
        await db_pool.execute("DELETE FROM aitrader.algo_orders WHERE account_id = $1", seeded.a)
        await _algo(db_pool, seeded.a, side=side, state=state, at=at, sl=sl)
        assert await _both_sides(client, seeded, db_pool) == (False, False), case
