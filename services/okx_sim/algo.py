"""TP/SL algo orders (OKX `conditional` and `oco`): placement, triggers, amend, cancel (pure).

Invariants, as OKX keeps them (docs/okx-algo-orders.md):
- an `attachAlgoOrds` leg waits (`attached`, unlisted) until its parent order is filled, then
  becomes one live algo: `conditional` with one leg, `oco` with both, reduce-only, the
  parent's size, the opposite side;
- a live algo is checked on every price change: a sell-side TP fires at price >= trigger, a
  sell-side SL at <= trigger (buy side mirrored), on the last or the mark price as its
  `*TriggerPxType` says; a net `conditional` with both legs runs only its stop-loss;
- firing makes it `effective` and places a normal order (`source` 7, its `algoId`), market
  for ordPx -1 else limit; a refused order makes it `order_failed` with `failCode`;
- a closing algo (reduce-only, closeFraction, or a long/short close) whose position is gone
  or flipped is `canceled` by the exchange.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import TYPE_CHECKING

from .algo_rules import (
    PX_TYPES,
    AlgoAmend,
    AlgoRequest,
    check_leg,
    closing,
    draft,
    edited,
    has_position,
    other,
    pos_side_for,
    rises,
    same_position,
    set_legs,
)
from .models import (
    ZERO,
    Account,
    AccountUpdate,
    AlgoOrder,
    AlgoUpdate,
    Attach,
    Event,
    Leg,
    Order,
    OrderRequest,
    OrderUpdate,
)
from .protocol import Reject

if TYPE_CHECKING:
    from .exchange import Exchange

TP_SL_SOURCE = "7"  # OKX orders `source`: "The normal order triggered by the TP/SL order"


class AlgoBook:
    """The algo orders of an exchange's accounts (kept in `Account.algos`)."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex

    # --- placing ---------------------------------------------------------------------------
    def check_attach(self, acct: Account, req: OrderRequest, pos_side: str) -> None:
        """Refuse an order whose attached TP/SL could not rest (before the order exists)."""
        assert req.attach is not None
        if req.reduce_only:
            raise Reject("51333")
        if req.attach.tp is None and req.attach.sl is None:
            raise Reject("51000", "attachAlgoOrds")
        self._check_cl_id(acct, req.attach.cl_id)
        self._check_legs(req.inst_id, other(req.side), req.attach.tp, req.attach.sl)

    def attach(self, acct: Account, order: Order, spec: Attach) -> None:
        """Record the TP/SL of a new order, to become live when it fills."""
        both = spec.tp is not None and spec.sl is not None
        algo = self._new(acct, order.inst_id, "oco" if both else "conditional",
                         other(order.side), order.pos_side, order.td_mode, order.sz, "",
                         True, order.tag, spec.cl_id, spec.tp, spec.sl)
        algo.state, algo.parent_ord_id = "attached", order.ord_id

    def place(self, api_key: str, req: AlgoRequest) -> tuple[AlgoOrder, list[Event]]:
        """Accept a standalone algo order, or raise Reject with OKX's sCode."""
        acct = self.ex.accounts[api_key]
        pos_side = self._check_place(acct, req)
        algo = self._new(acct, req.inst_id, req.ord_type, req.side, pos_side, req.td_mode,
                         req.sz or ZERO, req.close_fraction, req.reduce_only, req.tag,
                         req.algo_cl_ord_id, req.tp, req.sl)
        return algo, [self._update(acct, algo)]

    def _check_place(self, acct: Account, req: AlgoRequest) -> str:
        spec = self.ex.specs.get(req.inst_id)
        if spec is None:
            raise Reject("51001")
        if req.ord_type not in ("conditional", "oco"):
            raise Reject("51000", "ordType")
        pos_side = pos_side_for(acct.pos_mode, req.pos_side)
        if req.ord_type == "oco" and (req.tp is None or req.sl is None):
            raise Reject("51000", "slTriggerPx" if req.sl is None else "tpTriggerPx")
        if req.tp is None and req.sl is None:
            raise Reject("51000", "slTriggerPx")
        if req.close_fraction not in ("", "1"):
            raise Reject("51000", "closeFraction")
        probe = draft(req, pos_side)
        if req.close_fraction:
            self._check_close_all(acct, req, probe)
        elif req.sz is None:
            raise Reject("51000", "sz")
        elif req.sz <= 0 or req.sz % spec.lot_sz != 0:
            raise Reject("51121")
        elif req.sz < spec.min_sz:
            raise Reject("51020")
        elif closing(probe) and not has_position(acct, probe):
            raise Reject("51169")
        self._check_cl_id(acct, req.algo_cl_ord_id)
        self._check_legs(req.inst_id, req.side, req.tp, req.sl)
        return pos_side

    def _check_close_all(self, acct: Account, req: AlgoRequest, probe: AlgoOrder) -> None:
        if probe.pos_side == "net" and not req.reduce_only:
            raise Reject("51328")
        if any(leg is not None and leg.ord_px is not None for leg in (req.tp, req.sl)):
            raise Reject("51330")
        if not has_position(acct, probe):
            raise Reject("51169")
        if any(a.is_live and a.close_fraction and same_position(a, probe)
               for a in acct.algos.values()):
            raise Reject("51342")

    def _check_cl_id(self, acct: Account, cl_id: str) -> None:
        if cl_id and any(a.algo_cl_ord_id == cl_id and a.state in ("live", "attached")
                         for a in acct.algos.values()):
            raise Reject("51065")

    def _check_legs(self, inst_id: str, side: str, tp: Leg | None, sl: Leg | None) -> None:
        tick = self.ex.specs[inst_id].tick_sz
        for kind, leg in (("tp", tp), ("sl", sl)):
            if leg is None:
                continue
            if leg.trigger_px_type not in PX_TYPES:
                raise Reject("51000", f"{kind}TriggerPxType")
            check_leg(kind, side, leg, tick, self._price(inst_id, leg.trigger_px_type))

    def _new(self, acct: Account, inst_id: str, ord_type: str, side: str, pos_side: str,
             td_mode: str, sz: Decimal, close_fraction: str, reduce_only: bool, tag: str,
             cl_id: str, tp: Leg | None, sl: Leg | None) -> AlgoOrder:
        now = self.ex.clock()
        algo = AlgoOrder(str(next(self.ex.algo_ids)), cl_id, inst_id, ord_type, side, pos_side,
                         td_mode, sz, close_fraction, reduce_only, tag,
                         self.ex.leverage(acct.api_key, inst_id), now, now, self.ex.last[inst_id])
        set_legs(algo, tp, sl)
        acct.algos[algo.algo_id] = algo
        self.ex.on_change()
        return algo

    # --- amending and cancelling -----------------------------------------------------------
    def find(self, acct: Account, inst_id: str, algo_id: str, cl_id: str) -> AlgoOrder | None:
        """An algo order by algoId (or by algoClOrdId, the newest), shown or not."""
        algo = acct.algos.get(algo_id) if algo_id else next(
            (a for a in reversed(acct.algos.values()) if a.algo_cl_ord_id == cl_id), None)
        if algo is None or algo.inst_id != inst_id or algo.state == "attached":
            return None
        return algo

    def amend(self, api_key: str, inst_id: str, algo_id: str, cl_id: str, change: AlgoAmend
              ) -> tuple[AlgoOrder, list[Event]]:
        """Move a live algo's legs or size (a leg set to 0 is deleted)."""
        acct = self.ex.accounts[api_key]
        algo = self.find(acct, inst_id, algo_id, cl_id)
        if algo is None:
            raise Reject("51527")
        if not algo.is_live:
            raise Reject("51503")
        if change.new_sz is None and change.tp.empty and change.sl.empty:
            raise Reject("51500")
        sz = self._new_size(algo, change.new_sz)
        tp = edited(algo.tp, change.tp, "Tp")
        sl = edited(algo.sl, change.sl, "Sl")
        if tp is None and sl is None:
            raise Reject("51531")
        if algo.close_fraction and any(g is not None and g.ord_px is not None for g in (tp, sl)):
            raise Reject("51330")
        self._check_legs(algo.inst_id, algo.side, tp, sl)
        algo.sz, algo.req_id, algo.amend_result = sz, change.req_id, "0"
        set_legs(algo, tp, sl)
        algo.u_time = self.ex.clock()
        self.ex.on_change()
        return algo, [self._update(acct, algo)]

    def _new_size(self, algo: AlgoOrder, new_sz: Decimal | None) -> Decimal:
        if new_sz is None:
            return algo.sz
        if algo.close_fraction:
            raise Reject("51524")
        spec = self.ex.specs[algo.inst_id]
        if new_sz <= 0 or new_sz % spec.lot_sz != 0:
            raise Reject("51121")
        return new_sz

    def cancel(self, api_key: str, inst_id: str, algo_id: str, cl_id: str
               ) -> tuple[AlgoOrder, list[Event]]:
        """Cancel a live algo order at the client's request."""
        acct = self.ex.accounts[api_key]
        algo = self.find(acct, inst_id, algo_id, cl_id)
        if algo is None or not algo.is_live:
            raise Reject("51400")
        return algo, self._end(acct, algo, "canceled")

    # --- reacting to the exchange ----------------------------------------------------------
    def react(self, acct: Account, events: list[Event]) -> list[Event]:
        """Activate attached legs of filled parents; cancel algos whose position is gone."""
        out: list[Event] = []
        for event in events:
            if isinstance(event, OrderUpdate) and event.api_key == acct.api_key:
                out += self._parent_changed(acct, acct.orders[event.order.ord_id])
        if out or any(isinstance(e, AccountUpdate) for e in events):
            out += self._cancel_orphans(acct)
        return out

    def _parent_changed(self, acct: Account, order: Order) -> list[Event]:
        out: list[Event] = []
        for algo in [a for a in acct.algos.values() if a.state == "attached"
                     and a.parent_ord_id == order.ord_id]:
            if order.state == "filled":
                algo.state, algo.u_time, algo.last = "live", self.ex.clock(), \
                    self.ex.last[algo.inst_id]
                out.append(self._update(acct, algo))
            elif not order.is_open:  # canceled before it filled: OKX never places the legs
                del acct.algos[algo.algo_id]
            self.ex.on_change()
        return out

    def _cancel_orphans(self, acct: Account) -> list[Event]:
        out: list[Event] = []
        for algo in list(acct.algos.values()):
            if algo.is_live and closing(algo) and not has_position(acct, algo):
                out += self._end(acct, algo, "canceled")
        return out

    def on_market(self, acct: Account, inst_id: str, events: list[Event]) -> list[Event]:
        """After a price change: react to its fills, then fire the algos it crossed."""
        out = self.react(acct, events)
        for algo in list(acct.algos.values()):
            if algo.is_live and algo.inst_id == inst_id:
                fired = self._fired(algo)
                if fired is not None:
                    out += self._trigger(acct, algo, *fired)
        return out

    def _fired(self, algo: AlgoOrder) -> tuple[str, Leg] | None:
        legs = [("tp", algo.tp), ("sl", algo.sl)]
        if algo.ord_type == "conditional" and algo.pos_side == "net" and algo.sl is not None:
            legs = [("sl", algo.sl)]  # OKX: a net conditional with both legs runs only the SL
        for kind, leg in legs:
            if leg is None:
                continue
            ref = self._price(algo.inst_id, leg.trigger_px_type)
            if (ref >= leg.trigger_px) if rises(kind, algo.side) else (ref <= leg.trigger_px):
                return kind, leg
        return None

    def _trigger(self, acct: Account, algo: AlgoOrder, kind: str, leg: Leg) -> list[Event]:
        now = self.ex.clock()
        sz = algo.sz
        if algo.close_fraction:
            pos = acct.positions.get((algo.inst_id, algo.pos_side))
            sz = abs(pos.pos) if pos else ZERO
        algo.state, algo.actual_side, algo.trigger_time = "effective", kind, now
        algo.actual_sz, algo.actual_px = sz, leg.ord_px
        req = OrderRequest(algo.inst_id, algo.side, "market" if leg.ord_px is None else "limit",
                           sz, algo.td_mode, leg.ord_px, algo.pos_side,
                           algo.reduce_only or bool(algo.close_fraction), "", algo.tag,
                           algo_id=algo.algo_id, algo_cl_ord_id=algo.algo_cl_ord_id,
                           source=TP_SL_SOURCE)
        try:
            order, events = self.ex.place_order(acct.api_key, req)
        except Reject as err:  # e.g. 51008 margin, 51148 a reduce-only order that would open
            algo.fail_code = err.code
            return self._end(acct, algo, "order_failed")
        algo.ord_id, algo.u_time = order.ord_id, now
        self.ex.on_change()
        return [self._update(acct, algo), *events]

    # --- helpers -----------------------------------------------------------------------------
    def _price(self, inst_id: str, px_type: str) -> Decimal:
        # the sim has no index of its own: its index price is the mark, as in its tickers
        return self.ex.last[inst_id] if px_type == "last" else self.ex.mark[inst_id]

    def _end(self, acct: Account, algo: AlgoOrder, state: str) -> list[Event]:
        algo.state, algo.u_time = state, self.ex.clock()
        self.ex.on_change()
        return [self._update(acct, algo)]

    @staticmethod
    def _update(acct: Account, algo: AlgoOrder) -> Event:
        return AlgoUpdate(acct.api_key, copy.copy(algo))
