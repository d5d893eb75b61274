"""Live equity has one definition, the schema's views `positions_valued` / `account_equity_now`;
here it is read through both services that use it: the gateway's get_account_state and the
metrics service's equity snapshot writer, over the same seeded account."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple
from uuid import UUID

import asyncpg
import pytest

from services.mcp_gateway.gateway import Gateway
from services.metrics.repository import write_equity
from tests.mcp_gateway import seed
from tests.mcp_gateway.conftest import call, client_for, memory_client, ok

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"  # one contract: 0.01 BTC, 0.1 ETH
AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
CENT_MILLIONTH = Decimal("0.00000001")  # the scale of equity_snapshots' columns


class Pos(NamedTuple):
    symbol: str
    side: str
    contracts: str
    entry: str | None
    exchange_pnl: str | None = None


async def _open(db: asyncpg.Pool, account: UUID, p: Pos) -> None:
    await db.execute(
        """INSERT INTO aitrader.positions_open (account_id, symbol, side, pos_side, quantity,
               avg_entry_price, unrealized_pnl_usdt, opened_at)
           VALUES ($1, $2, $3, $3, $4::numeric, $5::numeric, $6::numeric, now())""",
        account,
        p.symbol,
        p.side,
        p.contracts,
        p.entry,
        p.exchange_pnl,
    )


async def _balance(db: asyncpg.Pool, account: UUID, cash: str | None, available: str, locked: str) -> None:
    await db.execute(
        """INSERT INTO aitrader.balance_snapshots (account_id, available_usdt, locked_usdt, cash_usdt, as_of)
           VALUES ($1, $2::numeric, $3::numeric, $4::numeric, now())""",
        account,
        available,
        locked,
        cash,
    )


async def _both_readers(
    gw: Gateway, db: asyncpg.Pool, account: UUID
) -> tuple[str | None, asyncpg.Record | None]:
    """(the gateway's equity_usdt, the metrics equity point written now or None)."""
    async with memory_client(gw, await client_for(gw, "acct-a")) as client:
        state = ok(await call(client, "get_account_state"))
    written = await write_equity(db, [account], AS_OF)
    point = await db.fetchrow(
        """SELECT equity, cash, unrealized_pnl, net_position_value FROM aitrader.equity_snapshots
           WHERE account_id = $1""",
        account,
    )
    assert (point is not None) == (written == [account])
    return state["equity_usdt"], point


LONG_BTC = Pos(BTC, "long", "1.5", "60000")  # (61000 - 60000) x 0.015 = +15
LONG_ETH = Pos(ETH, "long", "1", "3000")  # (2975 - 3000) x 0.1 = -2.5
SHORT_ETH = Pos(ETH, "short", "2", "3000")  # (3000 - 2975) x 0.2 = +5


@pytest.mark.parametrize(
    ("balance", "positions", "equity"),
    [
        pytest.param(("1000", "900", "50"), [LONG_BTC, LONG_ETH], "1012.5", id="cash-plus-upl"),
        pytest.param((None, "900", "50"), [LONG_BTC], "965", id="no-cash-uses-available-plus-locked"),
        pytest.param(("1000", "900", "50"), [], "1000", id="flat"),
        pytest.param(("1000", "900", "50"), [LONG_BTC, SHORT_ETH], "1020", id="short-gains-on-a-fall"),
        pytest.param(  # no entry price: the exchange's own PnL figure counts
            ("1000", "900", "50"),
            [LONG_BTC, Pos(ETH, "long", "1", None, "12.5")],
            "1027.5",
            id="exchange-pnl",
        ),
        pytest.param(  # neither: the PnL is unknown, and so is the equity (no point written)
            ("1000", "900", "50"), [LONG_BTC, Pos(ETH, "long", "1", None)], None, id="unknown-pnl"
        ),
        pytest.param(None, [LONG_BTC], None, id="no-balance"),
    ],
)
async def test_live_equity_rule_through_both_readers(
    gateway: Gateway,
    db_pool: asyncpg.Pool,
    accounts: dict[str, UUID],
    balance: tuple[str | None, str, str] | None,
    positions: list[Pos],
    equity: str | None,
) -> None:
    account = accounts["a"]
    await seed.market_price(db_pool, BTC, "61000")
    await seed.market_price(db_pool, ETH, "2975")
    if balance is not None:
        await _balance(db_pool, account, *balance)
    for p in positions:
        await _open(db_pool, account, p)
    reported, point = await _both_readers(gateway, db_pool, account)
    assert reported == equity
    assert (point["equity"] if point else None) == (Decimal(equity) if equity else None)


async def test_gateway_equity_equals_the_metrics_equity_point(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    """One account, both readers, figures computed by hand: the gateway reports the exact
    value, metrics stores it at its columns' scale (8 places, half away from zero)."""
    account = accounts["a"]
    await _balance(db_pool, account, "10000.5", "9000", "1000")
    await seed.market_price(db_pool, BTC, "61000.123")
    await seed.market_price(db_pool, ETH, "2900.654321")
    await _open(db_pool, account, Pos(BTC, "long", "1.37", "60000.5"))
    await _open(db_pool, account, Pos(ETH, "short", "2.37", "3000.123456"))
    reported, point = await _both_readers(gateway, db_pool, account)

    btc = (Decimal("61000.123") - Decimal("60000.5")) * Decimal("0.0137")  # 13.6948351
    eth = (Decimal("3000.123456") - Decimal("2900.654321")) * Decimal("0.237")  # 23.574184995
    upl = btc + eth
    expected = Decimal("10000.5") + upl
    assert expected == Decimal("10037.769020095")
    assert reported is not None and Decimal(reported) == expected
    assert point is not None
    npv = Decimal("61000.123") * Decimal("0.0137") - Decimal("2900.654321") * Decimal("0.237")
    assert tuple(point) == tuple(
        x.quantize(CENT_MILLIONTH, rounding=ROUND_HALF_UP) for x in (expected, Decimal("10000.5"), upl, npv)
    )
    assert point["equity"] == Decimal(reported).quantize(CENT_MILLIONTH, rounding=ROUND_HALF_UP)


async def test_live_equity_is_exact_beyond_28_digits(
    gateway: Gateway, db_pool: asyncpg.Pool, accounts: dict[str, UUID]
) -> None:
    """34 significant digits, not rounded to Python's default 28 (more than equity_snapshots'
    NUMERIC(24, 8) can hold: only the gateway shows such a figure)."""
    await _balance(db_pool, accounts["a"], "10000.00000001", "0", "0")
    await seed.market_price(db_pool, ETH, "99999999999.99999999")
    await _open(db_pool, accounts["a"], Pos(ETH, "short", "123456789012.5", "0.5"))
    async with memory_client(gateway, await client_for(gateway, "acct-a")) as client:
        state = ok(await call(client, "get_account_state"))
    assert state["positions"][0]["unrealized_pnl_usdt"] == "-1234567890118827160425.9182109875"
    assert state["equity_usdt"] == "-1234567890118827150425.9182109775"
