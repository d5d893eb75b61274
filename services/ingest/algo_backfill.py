"""Algo (TP/SL) order state over REST after every (re)connect of the business socket: OKX does
not push orders-algo on subscribe, and a change while the socket was down is never pushed again.

Bounded: the live algos (orders-algo-pending, up to `PENDING_PAGES` pages of 100) and the newest
100 of each final state (orders-algo-history). Overlap with the stream is harmless: the
Nats-Msg-Id (algoId, uTime, state) and the ledger's state rank collapse it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from services.ingest import normalize_account as acct
from services.ingest.fields import AccountRef, BadFrame
from services.ingest.okx_rest import OkxRest
from services.ingest.okx_ws import FrameStats
from services.ingest.publisher import Publisher
from shared.exchange_ids import id_key
from shared.logging import get_logger
from shared.messages import AlgoOrderUpdate

log = get_logger("ingest.algo_backfill")
PAGE = 100
PENDING_PAGES = 10
ORD_TYPES = "conditional,oco"
HISTORY_STATES = ("effective", "canceled", "order_failed")
BACKFILLED = Counter("aitrader_okx_algo_backfilled", "Algo order states fetched over REST "
                     "after a business-socket connect and published.")


class AlgoBackfill:
    """Publishes the exchange's algo order states of one account, oldest change first."""

    def __init__(self, rest: OkxRest, publisher: Publisher, stats: FrameStats,
                 account: AccountRef) -> None:
        self.rest, self.publisher, self.stats, self.account = rest, publisher, stats, account
        self.runs = 0

    async def __call__(self) -> int:
        rows = await self._pending()
        for state in HISTORY_STATES:
            rows += await self._page("/api/v5/trade/orders-algo-history", {"state": state})
        now = datetime.now(UTC)
        found: dict[tuple[str, Any, str], AlgoOrderUpdate] = {}
        for row in rows:
            try:
                update = acct.algo_order(row, self.account, now)
            except BadFrame as err:
                self.stats.record(err, "(REST algo row)", "rest")
                continue
            found[(update.algo_id, update.ts_event, update.state)] = update
        chosen = sorted(found.values(), key=lambda u: (u.ts_event, id_key(u.algo_id)))
        await self.publisher.publish_many(chosen)
        self.runs += 1
        BACKFILLED.inc(len(chosen))
        log.info("backfill_algo_orders", published=len(chosen))
        return len(chosen)

    async def _pending(self) -> list[Any]:
        return await pending_rows(self.rest)

    async def _page(self, path: str, params: dict[str, Any]) -> list[Any]:
        return await _page(self.rest, path, params)


async def pending_rows(rest: OkxRest) -> list[dict[str, Any]]:
    """The account's live algos (orders-algo-pending), newest first, up to `PENDING_PAGES`
    pages of `PAGE`."""
    rows: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(PENDING_PAGES):
        page = await _page(rest, "/api/v5/trade/orders-algo-pending", {"after": after})
        rows += page
        if len(page) < PAGE:
            return rows
        after = str(page[-1].get("algoId", "")) or None
        if after is None:
            return rows
    log.warning("backfill_algo_page_cap", rows=len(rows), cap=PENDING_PAGES * PAGE)
    return rows


async def _page(rest: OkxRest, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    data = await rest.get(path, {"ordType": ORD_TYPES, "instType": "SWAP", "limit": PAGE,
                                 **params}, signed=True)
    return [r for r in data if isinstance(r, dict)]
