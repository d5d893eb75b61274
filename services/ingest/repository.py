"""SQL of ingest: its account row, instruments, and the backfill cursors it reads."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from services.ingest.normalize_account import Listing
from shared.errors import ConfigError
from shared.instruments import SPEC_COLUMNS, InstrumentSpec


def _listing_row(listing: Listing) -> tuple[object, ...]:
    s = listing.spec
    return (s.symbol, s.base_asset, listing.quote_asset, listing.settle_ccy, s.ct_val, s.ct_mult,
            listing.ct_val_ccy, s.lot_sz, s.min_sz, s.tick_sz, s.max_leverage, s.status,
            listing.raw)


class Repository:
    """Ingest's reads and writes; every method is one short statement or transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert_account(self, external_id: str, mode: str) -> UUID:
        """Create or re-activate the account row; a mode mismatch is a configuration error."""
        row = await self.pool.fetchrow(
            """INSERT INTO aitrader.accounts (external_id, mode, status) VALUES ($1, $2, 'active')
               ON CONFLICT (external_id) DO UPDATE SET status = 'active', updated_at = now()
               RETURNING id, mode""",
            external_id, mode,
        )
        assert row is not None
        if row["mode"] != mode:
            raise ConfigError("AITRADER_ACCOUNT_MODE", f"account {external_id!r} is "
                              f"{row['mode']} in the database, configured {mode}")
        account_id: UUID = row["id"]
        return account_id

    async def account_id(self, external_id: str, mode: str) -> UUID:
        """The id of an existing account; a missing one or another mode is a config error."""
        row = await self.pool.fetchrow(
            "SELECT id, mode FROM aitrader.accounts WHERE external_id = $1", external_id)
        if row is None:
            raise ConfigError("AITRADER_ACCOUNT", f"no account {external_id!r} in the database "
                              "(ingest creates it when it first runs)")
        if row["mode"] != mode:
            raise ConfigError("AITRADER_ACCOUNT_MODE", f"account {external_id!r} is "
                              f"{row['mode']} in the database, configured {mode}")
        account_id: UUID = row["id"]
        return account_id

    async def set_pos_mode(self, account_id: UUID, pos_mode: str) -> None:
        await self.pool.execute(
            "UPDATE aitrader.accounts SET pos_mode = $2, updated_at = now() WHERE id = $1",
            account_id, pos_mode,
        )

    async def upsert_instruments(self, listings: list[Listing]) -> None:
        """Insert or update instruments (contract values, steps, leverage, state)."""
        await self.pool.executemany(
            """INSERT INTO aitrader.instruments
                   (symbol, instrument_type, base_asset, quote_asset, settle_ccy, ct_val,
                    ct_mult, ct_val_ccy, lot_sz, min_sz, tick_sz, max_leverage, status,
                    raw_payload)
               VALUES ($1, 'SWAP', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               ON CONFLICT (symbol) DO UPDATE SET
                   base_asset = EXCLUDED.base_asset, quote_asset = EXCLUDED.quote_asset,
                   settle_ccy = EXCLUDED.settle_ccy, ct_val = EXCLUDED.ct_val,
                   ct_mult = EXCLUDED.ct_mult, ct_val_ccy = EXCLUDED.ct_val_ccy,
                   lot_sz = EXCLUDED.lot_sz, min_sz = EXCLUDED.min_sz,
                   tick_sz = EXCLUDED.tick_sz, max_leverage = EXCLUDED.max_leverage,
                   status = EXCLUDED.status, raw_payload = EXCLUDED.raw_payload,
                   updated_at = now()""",
            [_listing_row(listing) for listing in listings],
        )

    async def instrument_spec(self, symbol: str) -> InstrumentSpec | None:
        """What an order for `symbol` is checked against."""
        row = await self.pool.fetchrow(
            f"SELECT {SPEC_COLUMNS} FROM aitrader.instruments WHERE symbol = $1", symbol)
        return InstrumentSpec(**dict(row)) if row else None

    async def last_fill(self, account_id: UUID) -> datetime | None:
        """Time of the newest fill the ledger holds for the account."""
        last: datetime | None = await self.pool.fetchval(
            'SELECT max("timestamp") FROM aitrader.fills WHERE account_id = $1', account_id)
        return last

    async def fill_ids_since(self, account_id: UUID, since: datetime) -> set[tuple[str, str]]:
        """(symbol, trade id) of every fill the ledger holds for the account from `since` on."""
        rows = await self.pool.fetch(
            """SELECT symbol, exchange_trade_id FROM aitrader.fills
               WHERE account_id = $1 AND "timestamp" >= $2""", account_id, since)
        return {(r["symbol"], r["exchange_trade_id"]) for r in rows}

    async def last_funding(self, account_id: UUID) -> datetime | None:
        last: datetime | None = await self.pool.fetchval(
            'SELECT max("timestamp") FROM aitrader.funding_payments WHERE account_id = $1',
            account_id)
        return last

    async def last_candle_close(self, symbol: str, timeframe: str) -> datetime | None:
        """Close time of the newest stored closed candle (market_snapshots.as_of)."""
        last: datetime | None = await self.pool.fetchval(
            """SELECT max(as_of) FROM aitrader.market_snapshots
               WHERE symbol = $1 AND timeframe = $2""",
            symbol, timeframe)
        return last
