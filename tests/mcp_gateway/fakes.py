"""A stand-in for ingest + positions in gateway-only tests, on the real NATS server: answers
PlaceOrder, then writes the fill the way the positions service folds it and publishes the
position event. The end-to-end test uses the real services instead."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import asyncpg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared.messages import AlgoReply, AmendAlgo, CancelAlgo, PlaceAlgo, PlaceOrder, PlaceOrderReply
from shared.subjects import Subjects

Behaviour = Literal["fill", "accept", "reject", "silent"]


@dataclass
class FakeIngest:
    nc: Client
    subjects: Subjects
    pool: asyncpg.Pool
    fill_price: Decimal = Decimal("60000.5")
    behaviour: Behaviour = "fill"
    received: list[PlaceOrder] = field(default_factory=list)
    _subs: list[Subscription] = field(default_factory=list)
    _trade: int = 0

    async def start(self, account_id: UUID) -> None:
        self._subs.append(await self.nc.subscribe(self.subjects.place_order(account_id), cb=self._on))

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()

    async def _on(self, msg: Msg) -> None:
        cmd = PlaceOrder.model_validate_json(msg.data)
        self.received.append(cmd)
        if self.behaviour == "silent":
            return
        if self.behaviour == "reject":
            reply = PlaceOrderReply(
                order_id=cmd.order_id,
                ok=False,
                s_code="51008",
                s_msg="Order failed. Insufficient USDT margin in account",
            )
            await msg.respond(reply.model_dump_json().encode())
            return
        ord_id = f"9{len(self.received):05d}"
        reply = PlaceOrderReply(order_id=cmd.order_id, ok=True, ord_id=ord_id, s_code="0")
        await msg.respond(reply.model_dump_json().encode())
        if self.behaviour == "fill":
            asyncio.get_running_loop().create_task(self._fill(cmd, ord_id))

    async def _fill(self, cmd: PlaceOrder, ord_id: str) -> None:
        self._trade += 1
        await self.pool.execute(
            """INSERT INTO aitrader.fills (account_id, order_id, symbol, side, price, size, fee_usdt,
                   "timestamp", exchange_trade_id, exchange_order_id, pos_side, leverage, confidence)
               SELECT account_id, id, symbol, side, $2, size, -0.3, now(), $3, $4, pos_side,
                      leverage, confidence FROM aitrader.orders WHERE id = $1""",
            cmd.order_id,
            self.fill_price,
            f"t{self._trade}",
            ord_id,
        )
        await self.pool.execute(
            """UPDATE aitrader.orders SET status = 'filled', filled_size = size, avg_fill_price = $2
               WHERE id = $1""",
            cmd.order_id,
            self.fill_price,
        )
        await self.nc.publish(self.subjects.position(cmd.account_id, cmd.inst_id), b"{}")


@dataclass
class AlgoDesk:
    """A stand-in for ingest's algo commands: answers each kind with a fixed sCode."""

    answers: dict[str, str]
    received: list[Any] = field(default_factory=list)

    async def serve(self, nc: Client, subjects: Subjects, account_id: UUID) -> list[Subscription]:
        kinds: dict[str, type[PlaceAlgo | AmendAlgo | CancelAlgo]] = {
            "place_algo": PlaceAlgo,
            "amend_algo": AmendAlgo,
            "cancel_algo": CancelAlgo,
        }

        def handler(kind: str) -> Callable[[Msg], Awaitable[None]]:
            async def on(msg: Msg) -> None:
                cmd = kinds[kind].model_validate_json(msg.data)
                self.received.append(cmd)
                code = self.answers[kind]
                algo_id = "A2" if isinstance(cmd, PlaceAlgo) else getattr(cmd, "algo_id", None)
                reply = AlgoReply(request_id=cmd.request_id, ok=code == "0", algo_id=algo_id, s_code=code)
                await msg.respond(reply.model_dump_json().encode())

            return on

        subject = {
            "place_algo": subjects.place_algo,
            "amend_algo": subjects.amend_algo,
            "cancel_algo": subjects.cancel_algo,
        }
        return [await nc.subscribe(subject[k](account_id), cb=handler(k)) for k in self.answers]
