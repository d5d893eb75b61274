"""SQL of the market side: snapshots, the close series, latest prices, funding, open interest,
and the equity snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from shared.db import Connection, Executor
from shared.messages import FundingRate, OpenInterest

Optional = Decimal | None
# (ema20, ema50, macd, rsi7, rsi14) as stored.
StoredIndicators = tuple[Optional, Optional, Optional, Optional, Optional]


@dataclass(frozen=True)
class SnapshotRow:
    """One `market_snapshots` row: the candle and its indicators (as stored)."""

    symbol: str
    timeframe: str
    as_of: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    ema20: Decimal | None
    ema50: Decimal | None
    macd: Decimal | None
    rsi7: Decimal | None
    rsi14: Decimal | None


# Funding rate and open interest are the latest known at the candle's close; the average is
# the mean of the open-interest samples in the 24 h ending there.
UPSERT_SNAPSHOT = """
INSERT INTO aitrader.market_snapshots AS s
    (symbol, timeframe, as_of, open, high, low, price, volume,
     ema20, ema50, macd, rsi7, rsi14, funding_rate, open_interest, open_interest_avg)
SELECT $1::text, $2::text, $3::timestamptz, $4::numeric, $5::numeric, $6::numeric,
    $7::numeric, $8::numeric, $9::numeric, $10::numeric, $11::numeric, $12::numeric,
    $13::numeric,
    (SELECT f.funding_rate FROM aitrader.funding_rates f
      WHERE f.symbol = $1 AND f.as_of <= $3 ORDER BY f.as_of DESC LIMIT 1),
    (SELECT o.open_interest FROM aitrader.open_interest o
      WHERE o.symbol = $1 AND o.as_of <= $3 ORDER BY o.as_of DESC LIMIT 1),
    (SELECT avg(o.open_interest) FROM aitrader.open_interest o
      WHERE o.symbol = $1 AND o.as_of > $3 - interval '24 hours' AND o.as_of <= $3)
ON CONFLICT (symbol, timeframe, as_of) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, price = EXCLUDED.price,
    volume = EXCLUDED.volume, ema20 = EXCLUDED.ema20, ema50 = EXCLUDED.ema50,
    macd = EXCLUDED.macd, rsi7 = EXCLUDED.rsi7, rsi14 = EXCLUDED.rsi14,
    funding_rate = EXCLUDED.funding_rate, open_interest = EXCLUDED.open_interest,
    open_interest_avg = EXCLUDED.open_interest_avg, updated_at = now()
"""


async def upsert_snapshots(conn: Connection, rows: list[SnapshotRow]) -> None:
    """Insert or replace candle rows (unique on symbol, timeframe, as_of)."""
    await conn.executemany(
        UPSERT_SNAPSHOT,
        [
            (r.symbol, r.timeframe, r.as_of, r.open, r.high, r.low, r.close, r.volume,
             r.ema20, r.ema50, r.macd, r.rsi7, r.rsi14)
            for r in rows
        ],
    )


async def set_indicators(
    conn: Connection, symbol: str, timeframe: str,
    rows: list[tuple[datetime, StoredIndicators]],
) -> None:
    """Replace the indicators of stored rows, given as (as_of, indicators)."""
    await conn.executemany(
        """UPDATE aitrader.market_snapshots
              SET ema20 = $4, ema50 = $5, macd = $6, rsi7 = $7, rsi14 = $8, updated_at = now()
            WHERE symbol = $1 AND timeframe = $2 AND as_of = $3""",
        [(symbol, timeframe, as_of, *values) for as_of, values in rows],
    )


async def load_tail(
    conn: Executor, symbol: str, timeframe: str, limit: int
) -> list[tuple[datetime, Decimal]]:
    """The newest `limit` stored closes of one series, oldest first."""
    rows = await conn.fetch(
        """SELECT as_of, price FROM aitrader.market_snapshots
            WHERE symbol = $1 AND timeframe = $2 AND price IS NOT NULL
            ORDER BY as_of DESC LIMIT $3""",
        symbol, timeframe, limit,
    )
    return [(r["as_of"], r["price"]) for r in reversed(rows)]


async def load_around(
    conn: Connection, symbol: str, timeframe: str, as_of: datetime, window: int
) -> list[tuple[datetime, Decimal]]:
    """Closes a late candle affects: `window - 1` before it, it, and `window - 1` after."""
    rows = await conn.fetch(
        """(SELECT as_of, price FROM aitrader.market_snapshots
             WHERE symbol = $1 AND timeframe = $2 AND as_of < $3 AND price IS NOT NULL
             ORDER BY as_of DESC LIMIT $4)
           UNION ALL
           (SELECT as_of, price FROM aitrader.market_snapshots
             WHERE symbol = $1 AND timeframe = $2 AND as_of >= $3 AND price IS NOT NULL
             ORDER BY as_of LIMIT $4 + 1)""",
        symbol, timeframe, as_of, window - 1,
    )
    return sorted((r["as_of"], r["price"]) for r in rows)


async def known_symbols(conn: Executor) -> set[str]:
    """Every symbol of the instruments table."""
    return {r["symbol"] for r in await conn.fetch("SELECT symbol FROM aitrader.instruments")}


async def save_last_price(
    conn: Executor, symbol: str, as_of: datetime,
    last: Decimal, bid: Decimal | None, ask: Decimal | None,
) -> None:
    """Latest ticker of a symbol (the caller drops stale ones)."""
    await conn.execute(
        """INSERT INTO aitrader.market_prices AS m (symbol, last_price, bid_price, ask_price, as_of)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (symbol) DO UPDATE SET last_price = EXCLUDED.last_price,
               bid_price = EXCLUDED.bid_price, ask_price = EXCLUDED.ask_price,
               as_of = GREATEST(m.as_of, EXCLUDED.as_of), updated_at = now()""",
        symbol, last, bid, ask, as_of,
    )


async def save_mark_price(
    conn: Executor, symbol: str, as_of: datetime, mark: Decimal
) -> None:
    """Latest mark price of a symbol (the caller drops stale ones)."""
    await conn.execute(
        """INSERT INTO aitrader.market_prices AS m (symbol, mark_price, as_of)
           VALUES ($1, $2, $3)
           ON CONFLICT (symbol) DO UPDATE SET mark_price = EXCLUDED.mark_price,
               as_of = GREATEST(m.as_of, EXCLUDED.as_of), updated_at = now()""",
        symbol, mark, as_of,
    )


async def save_funding_rate(conn: Executor, event: FundingRate) -> None:
    """One funding-rate observation (idempotent on symbol and time)."""
    await conn.execute(
        """INSERT INTO aitrader.funding_rates
               (symbol, as_of, funding_rate, funding_time, next_funding_time)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (symbol, as_of) DO UPDATE SET funding_rate = EXCLUDED.funding_rate,
               funding_time = EXCLUDED.funding_time,
               next_funding_time = EXCLUDED.next_funding_time""",
        event.inst_id, event.ts_event, event.funding_rate, event.funding_time,
        event.next_funding_time,
    )


async def save_open_interest(
    conn: Executor, event: OpenInterest
) -> None:
    """One open-interest observation (idempotent on symbol and time)."""
    await conn.execute(
        """INSERT INTO aitrader.open_interest (symbol, as_of, open_interest, open_interest_ccy)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (symbol, as_of) DO UPDATE SET open_interest = EXCLUDED.open_interest,
               open_interest_ccy = EXCLUDED.open_interest_ccy""",
        event.inst_id, event.ts_event, event.oi, event.oi_ccy,
    )


# The account's live equity as the schema values it (view `account_equity_now`: cash, else
# available + locked, plus the open positions' unrealized PnL at the latest mark, in NUMERIC).
# An account whose equity is unknown (no balance, a position's PnL unknown) or whose open
# positions cannot all be priced gets no snapshot (see docs/metrics.md).
WRITE_EQUITY = """
INSERT INTO aitrader.equity_snapshots
    (account_id, equity, cash, net_position_value, unrealized_pnl, as_of, source)
SELECT e.account_id, e.equity_usdt, e.equity_cash_usdt, e.net_position_value_usdt,
       e.unrealized_pnl_usdt, $2, 'calculated'
  FROM aitrader.account_equity_now e
 WHERE e.status = 'active' AND ($1::uuid[] IS NULL OR e.account_id = ANY($1::uuid[]))
   AND e.equity_usdt IS NOT NULL AND e.net_position_value_usdt IS NOT NULL
RETURNING account_id
"""


async def write_equity(
    conn: Executor, accounts: list[UUID] | None, as_of: datetime
) -> list[UUID]:
    """Write one equity snapshot per active account (all when `accounts` is None); return
    the accounts written."""
    rows = await conn.fetch(WRITE_EQUITY, accounts, as_of)
    return [r["account_id"] for r in rows]
