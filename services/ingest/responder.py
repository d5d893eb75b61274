"""Core NATS request/reply: each request is served in its own task, so one slow OKX call never
blocks the subscription, and every request gets exactly one reply."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from nats.aio.msg import Msg
from pydantic import BaseModel


class Responder(ABC):
    """Subclasses turn a request body into a reply model (`handle`, always within a bound)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_message(self, msg: Msg) -> None:
        """nats-py callback."""
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, msg: Msg) -> None:
        reply = await self.handle(msg.data)
        if msg.reply:
            await msg.respond(reply.model_dump_json().encode())

    @abstractmethod
    async def handle(self, data: bytes) -> BaseModel:
        """One request -> one reply."""
