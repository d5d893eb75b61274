"""`MarketDataRefresh` request/reply: the gateway's fallback when market_snapshots is stale."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from services.ingest import fields
from services.ingest.backfill import Backfiller
from services.ingest.normalize import BadFrame
from services.ingest.okx_rest import OkxApiError, OkxUnavailable
from services.ingest.responder import Responder
from shared.bars import bar_ms
from shared.logging import get_logger
from shared.messages import MarketDataRefresh, MarketDataRefreshReply

log = get_logger("ingest.refresh")


class RefreshHandler(Responder):
    """Fetch the latest closed candles over REST, publish them as confirmed, then reply."""

    def __init__(self, backfiller: Backfiller, timeout_s: float = 10.0) -> None:
        super().__init__()
        self.backfiller, self.timeout_s = backfiller, timeout_s

    async def handle(self, data: bytes) -> MarketDataRefreshReply:
        """One request -> one reply within the bound."""
        try:
            req = MarketDataRefresh.model_validate_json(data)
            fields.inst_id({"instId": req.inst_id})
        except (ValidationError, BadFrame) as exc:
            return MarketDataRefreshReply(ok=False, error=f"invalid request: {exc}"[:300])
        bad = [b for b in req.bars if bar_ms(b) is None]
        if bad or not req.bars:
            return MarketDataRefreshReply(ok=False, error=f"unsupported bars: {bad or 'none'}")
        published = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                for bar in req.bars:
                    published += await self.backfiller.latest_candles(req.inst_id, bar,
                                                                      req.limit)
        except TimeoutError:
            return MarketDataRefreshReply(ok=False, published=published, error="timeout")
        except (OkxApiError, OkxUnavailable) as exc:
            return MarketDataRefreshReply(ok=False, published=published, error=str(exc)[:300])
        log.info("market_data_refreshed", inst_id=req.inst_id, bars=req.bars,
                 published=published)
        return MarketDataRefreshReply(ok=True, published=published)
