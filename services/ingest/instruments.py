"""SWAP instruments from OKX into `instruments`, at start and then daily."""

from __future__ import annotations

import asyncio

from services.ingest.normalize import BadFrame
from services.ingest.normalize_account import Listing, instrument
from services.ingest.okx_rest import OkxApiError, OkxRest, OkxUnavailable
from services.ingest.repository import Repository
from shared.logging import get_logger

log = get_logger("ingest.instruments")


async def load_instruments(rest: OkxRest, repo: Repository) -> list[Listing]:
    """Fetch every SWAP instrument and upsert the USDT-margined linear ones."""
    rows = await rest.get("/api/v5/public/instruments", {"instType": "SWAP"})
    found: list[Listing] = []
    refused = 0
    for row in rows:
        try:
            item = instrument(row) if isinstance(row, dict) else None
        except BadFrame as err:
            refused += 1
            log.warning("instrument_refused", reason=err.reason, detail=err.detail)
            continue
        if item is not None:
            found.append(item)
    await repo.upsert_instruments(found)
    log.info("instruments_loaded", stored=len(found), skipped=len(rows) - len(found) - refused,
             refused=refused)
    return found


async def refresh_daily(rest: OkxRest, repo: Repository, every_s: float) -> None:
    """Reload instruments every `every_s` seconds (steps and leverage limits change)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await load_instruments(rest, repo)
        except (OkxApiError, OkxUnavailable) as exc:
            log.warning("instruments_refresh_failed", error=str(exc))
