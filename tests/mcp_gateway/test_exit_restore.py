"""A refused change of an exit plan puts back what rested before, planning from what this call
did rather than from the ledger, whose algo updates come back later (a unit: the exchange and
the ledger are stand-ins; the end-to-end paths are in test_exit_plans_e2e.py)."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest

from services.mcp_gateway import exit_orders, exit_plans, exit_store
from services.mcp_gateway.exit_store import Slot
from shared.exit_legs import Action, Cancel, LiveAlgo, Place
from shared.messages import AlgoReply

STOP = LiveAlgo("A1", "conditional", Decimal(0), Decimal(1), None, Decimal("57000"))


async def test_a_refused_replace_places_the_old_stop_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop-only close-position algo; the agent adds a take-profit: the planner cancels the old
    algo first (one close-position algo per position), then OKX refuses the oco. The ledger
    still shows the cancelled stop live; the restore must place it again, not trust the ledger."""
    slot = Slot(
        uuid4(), "BTC-USDT-SWAP", "net", uuid4(), "long", Decimal(3), {"stop_loss": "57000", "version": 2}
    )
    exchange: dict[str, Any] = {"A1": STOP}  # what OKX holds
    sent: list[Action] = []

    async def open_slot(*_: Any) -> Slot:
        return slot

    async def live_algos(*_: Any) -> list[LiveAlgo]:
        return [STOP]  # the cancel's update has not reached algo_orders

    async def send(_gw: Any, _slot: Slot, action: Action) -> AlgoReply:
        sent.append(action)
        if isinstance(action, Cancel):
            exchange.pop(action.algo_id, None)
            return AlgoReply(request_id=uuid4(), ok=True, algo_id=action.algo_id, s_code="0")
        assert isinstance(action, Place)
        if action.tp_trigger_px is not None:
            return AlgoReply(request_id=uuid4(), ok=False, s_code="51279", s_msg="TP below the last price")
        exchange["A2"] = action
        return AlgoReply(request_id=uuid4(), ok=True, algo_id="A2", s_code="0")

    monkeypatch.setattr(exit_store, "open_slot", open_slot)
    monkeypatch.setattr(exit_store, "live_algos", live_algos)
    monkeypatch.setattr(exit_orders, "_send", send)
    gw: Any = SimpleNamespace(
        pool=None, config=SimpleNamespace(mcp_exit_settle_ms=0, mcp_order_timeout_ms=100)
    )
    changed = await exit_plans.change(
        gw, slot, {"take_profit": "66000", "stop_loss": "57000", "version": 3}, uuid4()
    )
    assert not changed.stored
    assert [type(a).__name__ for a in sent] == ["Cancel", "Place", "Place"]
    (again,) = exchange.values()
    assert isinstance(again, Place) and (again.tp_trigger_px, again.sl_trigger_px) == (None, Decimal("57000"))
    assert "51279" in changed.note and "what rested before rests again" in changed.note
