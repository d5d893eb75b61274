"""The gateway's side of NATS: commands to ingest (request/reply) and the signal that a fold
happened (positions events), so execute_trade can wait for its fills without polling hard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import TypeVar
from uuid import UUID

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ValidationError

from shared.messages import (
    AlgoReply,
    AmendAlgo,
    CancelAlgo,
    MarketDataRefresh,
    MarketDataRefreshReply,
    PlaceAlgo,
    PlaceOrder,
    PlaceOrderReply,
)
from shared.subjects import SubjectError, Subjects


class CommandFailed(Exception):
    """Ingest could not be asked: `code` is `no_responders`, `timeout` or `bad_reply`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


R = TypeVar("R", bound=BaseModel)


async def _request(nc: Client, subject: str, cmd: BaseModel, reply: type[R], wait_s: float) -> R:
    """One request/reply to ingest with a deadline; CommandFailed when it cannot be had."""
    try:
        msg = await nc.request(subject, cmd.model_dump_json().encode(), timeout=wait_s)
    except nats.errors.NoRespondersError:
        raise CommandFailed("no_responders", "the exchange adapter (ingest) is not running") from None
    except nats.errors.TimeoutError:
        raise CommandFailed("timeout", f"no answer from the exchange adapter within {wait_s:g}s") from None
    try:
        return reply.model_validate_json(msg.data)
    except ValidationError as exc:
        raise CommandFailed(
            "bad_reply", f"unreadable reply from ingest ({exc.error_count()} errors)"
        ) from None


async def place_order(nc: Client, subjects: Subjects, cmd: PlaceOrder, wait_s: float) -> PlaceOrderReply:
    """Send the order to ingest and return its reply (OKX's order id or rejection)."""
    return await _request(nc, subjects.place_order(cmd.account_id), cmd, PlaceOrderReply, wait_s)


async def place_algo(nc: Client, subjects: Subjects, cmd: PlaceAlgo, wait_s: float) -> AlgoReply:
    """Place a standalone algo (TP/SL) order; the reply has OKX's algoId or its refusal."""
    return await _request(nc, subjects.place_algo(cmd.account_id), cmd, AlgoReply, wait_s)


async def amend_algo(nc: Client, subjects: Subjects, cmd: AmendAlgo, wait_s: float) -> AlgoReply:
    """Amend a live algo order's legs."""
    return await _request(nc, subjects.amend_algo(cmd.account_id), cmd, AlgoReply, wait_s)


async def cancel_algo(nc: Client, subjects: Subjects, cmd: CancelAlgo, wait_s: float) -> AlgoReply:
    """Cancel a live algo order."""
    return await _request(nc, subjects.cancel_algo(cmd.account_id), cmd, AlgoReply, wait_s)


async def refresh_market_data(
    nc: Client, subjects: Subjects, symbol: str, bars: list[str], limit: int, wait_s: float
) -> MarketDataRefreshReply:
    """Ask ingest to fetch candles over REST now; a missing or slow ingest is a failed reply."""
    request = MarketDataRefresh(inst_id=symbol, bars=bars, limit=limit)
    try:
        msg = await nc.request(
            subjects.market_data_refresh(), request.model_dump_json().encode(), timeout=wait_s
        )
        return MarketDataRefreshReply.model_validate_json(msg.data)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError, ValidationError) as exc:
        return MarketDataRefreshReply(ok=False, error=type(exc).__name__)


class FoldSignal:
    """Wakes waiters when the positions service publishes an event for (account, symbol)."""

    def __init__(self, nc: Client, subjects: Subjects) -> None:
        self._nc = nc
        self._subjects = subjects
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._subjects.positions_all, cb=self._on_event)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()

    async def _on_event(self, msg: Msg) -> None:
        try:
            tokens = self._subjects.parse(msg.subject).tokens
        except SubjectError:  # not a position subject: it wakes no one
            return
        for event in self._waiters.get((tokens["account_id"], tokens["inst_id"]), ()):
            event.set()

    @contextlib.contextmanager
    def watch(self, account_id: UUID, symbol: str) -> Iterator[asyncio.Event]:
        """An event set at each fold of this account and symbol, while the block runs."""
        key = (str(account_id), symbol)
        event = asyncio.Event()
        self._waiters[key].add(event)
        try:
            yield event
        finally:
            self._waiters[key].discard(event)
            if not self._waiters[key]:
                del self._waiters[key]
