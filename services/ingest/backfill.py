"""Gap backfill over REST after every (re)connect: closed candles, fills, funding payments;
and the fill sweep, which compares the exchange's recent fills with the ledger's.

Cursors are the newest row the database holds (written by the positions and metrics
services) or the newest event this process published, whichever is later. Overlap with
what is already on the stream is harmless: Nats-Msg-Id and the unique keys collapse it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from prometheus_client import Counter

from services.ingest import normalize_account as acct
from services.ingest.normalize import AccountRef, BadFrame, closed_candles
from services.ingest.okx_rest import OkxApiError, OkxRest, OkxUnavailable
from services.ingest.okx_ws import FrameStats
from services.ingest.publisher import Publisher
from services.ingest.repository import Repository
from shared.bars import bar_ms
from shared.clock import from_ms, to_ms
from shared.exchange_ids import id_key
from shared.logging import get_logger
from shared.messages import Candle, Event, Fill, FundingPayment

log = get_logger("ingest.backfill")
PAGE = 100
MAX_PAGES = 100
MAX_CANDLES = 1440  # a long outage is bridged up to this many bars per (symbol, bar)
OVERLAP = timedelta(seconds=1)
FILL_PATHS = ["/api/v5/trade/fills", "/api/v5/trade/fills-history"]
FILL_GRACE = timedelta(seconds=10)  # a fill younger than this may still come as a push
RECENT_FILLS = 100_000  # bounded: ~100 bytes each
T = TypeVar("T")
BACKFILLED = Counter("aitrader_okx_backfilled", "Events backfill fetched over REST and published, by "
                     "kind (fill, funding, candle); overlap with the stream collapses downstream.",
                     ["kind"])


def _newest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


class Backfiller:
    """Fetches what was missed and publishes it, oldest first, before live pushes resume."""

    def __init__(self, rest: OkxRest, repo: Repository, publisher: Publisher,
                 stats: FrameStats, account: AccountRef | None = None,
                 candles_on_empty: int = 300) -> None:
        self.rest, self.repo, self.publisher, self.stats = rest, repo, publisher, stats
        self.account, self.candles_on_empty = account, candles_on_empty
        self._candle_open: dict[tuple[str, str], datetime] = {}
        self._fill_time: datetime | None = None
        # Fills this process published, newest last: published is not yet stored (positions may
        # lag), and the sweep must not publish them again and again.
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.sweeps = 0
        self.listed: set[tuple[str, str]] = set()  # (instId, tradeId) of the last sweep's listing
        self._funding_time: datetime | None = None

    # ------------------------------------------------------------------------ candles
    async def candles(self, symbols: Iterable[str], bars: Iterable[str]) -> int:
        """Closed candles since the last stored one for every (symbol, bar)."""
        bars = list(bars)
        return sum([await self.candles_for(s, b) for s in symbols for b in bars])

    async def candles_for(self, inst: str, bar: str) -> int:
        length = bar_ms(bar)
        stored_close = await self.repo.last_candle_close(inst, bar)
        published = self._candle_open.get((inst, bar))
        next_open = _newest(stored_close, published + timedelta(milliseconds=length)
                            if published and length else None)
        wanted = self.candles_on_empty if next_open is None else MAX_CANDLES
        found: dict[datetime, Candle] = {}
        after: int | None = None
        while len(found) < wanted:
            rows = await self.rest.get("/api/v5/market/history-candles",
                                       {"instId": inst, "bar": bar, "after": after,
                                        "limit": PAGE})
            page = self._parse(closed_candles, inst, bar, rows, _now())
            if page is None:
                break
            found.update((c.open_time, c) for c in page if not next_open
                         or c.open_time >= next_open)
            if len(rows) < PAGE or (next_open and page and page[0].open_time <= next_open):
                break
            after = int(rows[-1][0])
        chosen = sorted(found.values(), key=lambda c: c.open_time)[-wanted:]
        return await self._publish_candles(inst, bar, chosen)

    async def latest_candles(self, inst: str, bar: str, limit: int) -> int:
        """The latest `limit` closed candles (the gateway's stale-cache fallback)."""
        rows = await self.rest.get("/api/v5/market/candles",
                                   {"instId": inst, "bar": bar, "limit": min(limit + 1, 300)})
        found = closed_candles(inst, bar, rows, _now())[-limit:]
        return await self._publish_candles(inst, bar, found)

    async def _publish_candles(self, inst: str, bar: str, found: list[Candle]) -> int:
        await self.publisher.publish_many(found)
        if found:
            self._candle_open[(inst, bar)] = max(found[-1].open_time,
                                                 self._candle_open.get((inst, bar), _EPOCH))
        BACKFILLED.labels("candle").inc(len(found))
        log.info("backfill_candles", inst_id=inst, bar=bar, published=len(found))
        return len(found)

    def seen_candle(self, candle: Candle) -> None:
        """A live confirmed candle moves the in-memory cursor."""
        key = (candle.inst_id, candle.bar)
        if candle.confirmed and candle.open_time > self._candle_open.get(key, _EPOCH):
            self._candle_open[key] = candle.open_time

    # ------------------------------------------------------------------------ fills
    async def fills(self) -> int:
        """Fills since the last known trade: /trade/fills, then /trade/fills-history."""
        account = self._require_account()
        since = _newest(await self.repo.last_fill(account.account_id), self._fill_time)
        rows = await self._rows(FILL_PATHS, {"instType": "SWAP"}, "fillTime", since)
        chosen = await self._publish_fills(account, rows)
        log.info("backfill_fills", published=len(chosen), since=str(since))
        return len(chosen)

    async def sweep_fills(self, lookback: timedelta) -> int:
        """The sweep: publish the missing fills of the last `lookback` (see `missing_fills`)."""
        return len(await self.missing_fills(lookback))

    async def missing_fills(self, lookback: timedelta) -> list[Fill]:
        """The exchange's fills of the last `lookback` that neither the ledger holds nor this
        process published lately — a fill OKX never pushed on a healthy socket, or one older
        than the newest known fill (which the cursor of `fills` starts after) — published.
        A fill younger than `FILL_GRACE` may still be on its way as a push: the next sweep.
        Every fill listed is kept in `listed` (reconciliation's "has the ledger caught up")."""
        account = self._require_account()
        now = await self.exchange_now()
        since = now - lookback
        self.sweeps += 1
        rows = await self._rows(FILL_PATHS, {"instType": "SWAP"}, "fillTime", since)
        self.listed = {_fill_key(r) for r in rows}
        known = await self.repo.fill_ids_since(account.account_id, since - 2 * OVERLAP)
        settled_ms = to_ms(now - FILL_GRACE)
        missing = [r for r in rows if _fill_key(r) not in known and _fill_key(r) not in self._recent
                   and (_int(r.get("fillTime")) or 0) <= settled_ms]
        if not missing:
            return []
        chosen = await self._publish_fills(account, missing)
        log.warning("sweep_found_missing_fills", published=len(chosen),
                    trade_ids=[f.trade_id for f in chosen][:20], since=str(since))
        return chosen

    async def exchange_now(self) -> datetime:
        """The exchange's clock (the window is on its fill times), else ours."""
        try:
            data = await self.rest.get("/api/v5/public/time")
            return from_ms(int(data[0]["ts"]))
        except (OkxApiError, OkxUnavailable, LookupError, TypeError, ValueError) as exc:
            log.warning("exchange_time_unavailable", error=type(exc).__name__)
            return _now()

    async def _publish_fills(self, account: AccountRef, rows: list[dict[str, Any]]) -> list[Fill]:
        orders = await self._orders({(r.get("instId"), r.get("ordId")) for r in rows})
        fills: dict[tuple[str, str], Fill] = {}
        for row in rows:
            order = orders.get(str(row.get("ordId")))
            fill = self._parse(acct.fill_from_rest, row, account, _now(), order)
            if fill is not None:
                fills[(fill.inst_id, fill.trade_id)] = fill
        chosen = sorted(fills.values(), key=lambda x: (x.ts_event, id_key(x.trade_id)))
        await self.publisher.publish_many(chosen)
        for fill in chosen:
            self.seen_fill(fill)
        BACKFILLED.labels("fill").inc(len(chosen))
        return chosen

    def seen_fill(self, fill: Fill) -> None:
        """A fill published (live or backfilled): the cursor moves, the sweep skips it."""
        self._fill_time = _newest(self._fill_time, fill.ts_event)
        self._recent[(fill.inst_id, fill.trade_id)] = None
        self._recent.move_to_end((fill.inst_id, fill.trade_id))
        while len(self._recent) > RECENT_FILLS:
            self._recent.popitem(last=False)

    async def _orders(self, keys: set[tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
        """Order details (lever, type, category) so backfilled fills equal live ones."""
        out: dict[str, dict[str, Any]] = {}
        for inst, ord_id in keys:
            try:
                data = await self.rest.get("/api/v5/trade/order",
                                           {"instId": inst, "ordId": ord_id}, signed=True)
            except OkxApiError as exc:
                log.warning("backfill_order_unavailable", ord_id=ord_id, code=exc.code)
                continue
            if data and isinstance(data[0], dict):
                out[str(ord_id)] = data[0]
        return out

    # ------------------------------------------------------------------------ funding
    async def funding(self) -> int:
        """Funding payments (bills type 8) since the last known one."""
        account = self._require_account()
        since = _newest(await self.repo.last_funding(account.account_id), self._funding_time)
        rows = await self._rows(["/api/v5/account/bills", "/api/v5/account/bills-archive"],
                                {"instType": "SWAP", "type": acct.FUNDING_BILL_TYPE}, "ts",
                                since)
        found: dict[str, FundingPayment] = {}
        for row in rows:
            payment = self._parse(acct.funding_payment, row, account, _now())
            if payment is not None:
                found[payment.bill_id] = payment
        chosen = sorted(found.values(), key=lambda p: (p.ts_event, id_key(p.bill_id)))
        await self.publisher.publish_many(chosen)
        if chosen:
            self._funding_time = _newest(self._funding_time, chosen[-1].ts_event)
        BACKFILLED.labels("funding").inc(len(chosen))
        log.info("backfill_funding", published=len(chosen), since=str(since))
        return len(chosen)

    # ------------------------------------------------------------------------ paging
    async def _rows(self, paths: list[str], params: dict[str, str], time_key: str,
                    since: datetime | None) -> list[dict[str, Any]]:
        """Rows newer than `since` (minus an overlap), paging back by billId across paths."""
        since_ms = to_ms(since - OVERLAP) if since else None
        rows: list[dict[str, Any]] = []
        after: str | None = None
        for path in paths:
            for _ in range(MAX_PAGES):
                page = [r for r in await self.rest.get(
                    path, {**params, "after": after, "limit": PAGE,
                           "begin": since_ms}, signed=True) if isinstance(r, dict)]
                rows += page
                if page:
                    after = str(page[-1].get("billId", "")) or None
                oldest = _int(page[-1].get(time_key)) if page else None
                if since_ms is not None and oldest is not None and oldest < since_ms:
                    return rows
                if len(page) < PAGE or after is None:
                    break
            else:  # the cap, not the window's start, ended the paging: older rows are not read
                log.warning("backfill_page_cap", path=path, rows=len(rows), cap=MAX_PAGES * PAGE)
        return rows

    def _parse(self, make: Callable[..., T], *args: Any) -> T | None:
        try:
            return make(*args)
        except BadFrame as err:
            self.stats.record(err, "(REST row)", "rest")
            return None

    def _require_account(self) -> AccountRef:
        if self.account is None:
            raise RuntimeError("account backfill without an account")
        return self.account


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _fill_key(row: dict[str, Any]) -> tuple[str, str]:
    return str(row.get("instId")), str(row.get("tradeId"))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = ["Backfiller", "Event"]
