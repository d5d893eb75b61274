"""The exchange engine (pure: no I/O; time from an injected clock, prices pushed in).

Accounts, orders, matching against the market price, fills with fees, positions in net and
long/short mode, cross margin, liquidation and funding settlement. Every state change returns
the events (`OrderUpdate`, `AccountUpdate`) that the server turns into OKX pushes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from .algo import AlgoBook
from .config import AccountSpec, InstrumentSpec
from .margin import Risk, equity, liquidation_px, qty, risk
from .models import (
    ZERO,
    Account,
    AccountUpdate,
    Bill,
    Event,
    Fill,
    IdSequence,
    Order,
    OrderRequest,
    OrderUpdate,
    Position,
)
from .protocol import Reject

ORDER_TYPES = ("market", "limit", "post_only", "ioc", "fok", "optimal_limit_ioc")
LEVEL_STEP = Decimal("0.0001")  # each depth level is ~1 bp worse than the one before
MAX_LEVELS = 50


@dataclass(frozen=True)
class PositionView:
    """A position with its risk figures at the current mark."""

    position: Position
    mark: Decimal
    risk: Risk
    liq_px: Decimal | None


@dataclass(frozen=True)
class AccountView:
    """Balance figures of an account at the current marks (USDT)."""

    cash: Decimal
    upl: Decimal
    eq: Decimal
    imr: Decimal
    mmr: Decimal
    frozen: Decimal
    avail: Decimal
    positions: tuple[PositionView, ...]


class Exchange:
    """A USDT-margined swap exchange for a set of instruments."""

    def __init__(
        self, specs: dict[str, InstrumentSpec], *, clock: Callable[[], int],
        maker_fee_rate: Decimal = Decimal("0.0002"), taker_fee_rate: Decimal = Decimal("0.0005"),
        mmr_rate: Decimal = Decimal("0.004"), slippage: Decimal = ZERO,
        liquidation: bool = True, default_lever: int = 10,
    ) -> None:
        self.specs = specs
        self.clock = clock
        self.maker_rate, self.taker_rate, self.mmr_rate = maker_fee_rate, taker_fee_rate, mmr_rate
        self.slippage, self.liquidation, self.default_lever = slippage, liquidation, default_lever
        self.accounts: dict[str, Account] = {}
        self.dormant: dict[str, Account] = {}  # restored but not configured: kept, not served
        self.last: dict[str, Decimal] = {}
        self.mark: dict[str, Decimal] = {}
        self.ord_ids = IdSequence(700_000_000_000_000_001)
        self.trade_ids = IdSequence(1_000_000_001)
        self.bill_ids = IdSequence(800_000_000_000_000_001)
        self.pos_ids = IdSequence(900_000_000_000_000_001)
        self.algo_ids = IdSequence(600_000_000_000_000_001)
        self.algos = AlgoBook(self)  # TP/SL algo orders: attached, standalone, triggers
        self.on_change: Callable[[], None] = _nothing  # told after every state change

    # --- setup -------------------------------------------------------------------------
    def add_account(self, spec: AccountSpec, pos_mode: str = "net_mode") -> Account:
        """Open an account with a USDT balance."""
        acct = Account(spec.api_key, spec.uid or self._free_uid(), spec.balance, pos_mode,
                       u_time=self.clock())
        self.accounts[spec.api_key] = acct
        self.on_change()
        return acct

    def _free_uid(self) -> str:
        used = {a.uid for a in (*self.accounts.values(), *self.dormant.values())}
        n = len(used)
        while str(614_488_474_791_936 + n) in used:
            n += 1
        return str(614_488_474_791_936 + n)

    def set_price(self, inst_id: str, last: Decimal, mark: Decimal) -> None:
        """Tell the engine the current market price (no matching)."""
        self.last[inst_id], self.mark[inst_id] = last, mark

    def set_leverage(self, api_key: str, inst_id: str, lever: int) -> None:
        """Set the leverage of an instrument (and of its open positions)."""
        spec = self._spec(inst_id)
        if not 1 <= lever <= spec.max_lever:
            raise Reject("59102")
        acct = self.accounts[api_key]
        acct.levers[inst_id] = lever
        for (inst, _), pos in acct.positions.items():
            if inst == inst_id:
                pos.lever = lever
        self.on_change()

    def leverage(self, api_key: str, inst_id: str) -> int:
        """Current leverage of an instrument for an account."""
        return self.accounts[api_key].levers.get(inst_id, self.default_lever)

    def set_position_mode(self, api_key: str, pos_mode: str) -> None:
        """Switch net_mode / long_short_mode; refused with positions or open orders."""
        acct = self.accounts[api_key]
        if acct.open_positions() or any(o.is_open for o in acct.orders.values()):
            raise Reject("59000")
        acct.pos_mode = pos_mode
        self.on_change()

    # --- orders --------------------------------------------------------------------------
    def place_order(self, api_key: str, req: OrderRequest) -> tuple[Order, list[Event]]:
        """Accept (and match) an order, or raise Reject with OKX's sCode."""
        acct = self.accounts[api_key]
        spec = self._spec(req.inst_id)
        pos_side = self._validate(acct, spec, req)
        if req.attach is not None:
            self.algos.check_attach(acct, req, pos_side)
        now = self.clock()
        lever = self.leverage(api_key, req.inst_id)
        order = Order(str(next(self.ord_ids)), req.cl_ord_id, req.tag, req.inst_id, req.side,
                      pos_side, req.ord_type, req.td_mode, req.px, req.sz, req.reduce_only,
                      lever, now, now, algo_id=req.algo_id, algo_cl_ord_id=req.algo_cl_ord_id,
                      source=req.source)
        acct.orders[order.ord_id] = order
        if req.attach is not None:
            self.algos.attach(acct, order, req.attach)
        self.on_change()
        events: list[Event] = [OrderUpdate(api_key, copy.copy(order))]
        events += self._match_new(acct, order, req)
        return order, events + self.algos.react(acct, events)

    def _match_new(self, acct: Account, order: Order, req: OrderRequest) -> list[Event]:
        events: list[Event] = []
        if req.ord_type == "post_only" and self._crosses(order, self.last[req.inst_id]):
            return self._cancel(acct, order, "31")
        if req.ord_type == "fok" and self._fillable(order) < order.sz:
            return self._cancel(acct, order, "14")
        if req.ord_type != "post_only":
            events += self._take(acct, order)
        if order.is_open and req.ord_type in ("market", "ioc", "fok", "optimal_limit_ioc"):
            events += self._cancel(acct, order, "14")
        return events

    def cancel_order(self, api_key: str, inst_id: str, ord_id: str, cl_ord_id: str
                     ) -> tuple[Order, list[Event]]:
        """Cancel an open order by ordId or clOrdId."""
        acct = self.accounts[api_key]
        self._spec(inst_id)
        order = acct.orders.get(ord_id) if ord_id else next(
            (o for o in acct.orders.values() if o.cl_ord_id == cl_ord_id and o.is_open), None)
        if order is None or order.inst_id != inst_id or not order.is_open:
            raise Reject("51400")
        events = self._cancel(acct, order, "1")
        return order, events + self.algos.react(acct, events)

    def _validate(self, acct: Account, spec: InstrumentSpec, req: OrderRequest) -> str:
        if req.ord_type not in ORDER_TYPES:
            raise Reject("51000", "ordType")
        if req.sz <= 0 or req.sz % spec.lot_sz != 0:
            raise Reject("51121")
        if req.sz < spec.min_sz:
            raise Reject("51020")
        needs_px = req.ord_type in ("limit", "post_only", "ioc", "fok")
        if needs_px and (req.px is None or req.px <= 0 or req.px % spec.tick_sz != 0):
            raise Reject("51000", "px")
        if req.cl_ord_id and any(o.cl_ord_id == req.cl_ord_id and o.is_open
                                 for o in acct.orders.values()):
            raise Reject("51016")
        if acct.pos_mode == "long_short_mode":
            if req.pos_side not in ("long", "short"):
                raise Reject("51000", "posSide")
            pos_side = req.pos_side
        elif req.pos_side not in ("", "net"):
            raise Reject("51000", "posSide")
        else:
            pos_side = "net"
        self._check_size(acct, spec, req, pos_side)
        return pos_side

    def _check_size(self, acct: Account, spec: InstrumentSpec, req: OrderRequest,
                    pos_side: str) -> None:
        pos = acct.positions.get((req.inst_id, pos_side))
        held = pos.pos if pos else ZERO
        opening, closing = _split(pos_side, req.side, req.sz, held)
        if pos_side == "net" and req.reduce_only and opening:
            raise Reject("51148")
        if pos_side != "net" and closing:
            pending = sum((o.remaining for o in acct.orders.values() if o.is_open
                           and o.inst_id == req.inst_id and o.pos_side == pos_side
                           and o.side != _opening_side(pos_side)), ZERO)
            if closing + pending > held:
                raise Reject("51112")
        if opening:
            px = req.px or self._levels(req.inst_id, req.side).__next__()
            lever = self.leverage(acct.api_key, req.inst_id)
            cv = spec.contract_size
            need = opening * cv * px / lever + req.sz * cv * px * self.taker_rate
            if need > self.account_view(acct.api_key).avail:
                raise Reject("51008")

    def _levels(self, inst_id: str, side: str) -> Iterator[Decimal]:
        spec, last = self.specs[inst_id], self.last[inst_id]
        tick = spec.tick_sz
        if side == "buy":
            base = (last * (1 + self.slippage) / tick).to_integral_value(ROUND_CEILING) * tick
        else:
            base = (last * (1 - self.slippage) / tick).to_integral_value(ROUND_FLOOR) * tick
        step = max(tick, (last * LEVEL_STEP / tick).to_integral_value(ROUND_CEILING) * tick)
        sign = 1 if side == "buy" else -1
        for i in range(MAX_LEVELS):
            yield base + sign * i * step

    def _take(self, acct: Account, order: Order) -> list[Event]:
        """Fill an order as taker across depth levels, up to its limit price."""
        events: list[Event] = []
        depth = self.specs[order.inst_id].depth_sz
        for i, px in enumerate(self._levels(order.inst_id, order.side)):
            if order.px is not None and (px - order.px) * (1 if order.side == "buy" else -1) > 0:
                break
            last_level = i == MAX_LEVELS - 1 and order.px is None
            sz = order.remaining if last_level else min(order.remaining, depth)
            events += self._fill(acct, order, px, sz, "T")
            if not order.remaining:
                break
        return events

    def _fillable(self, order: Order) -> Decimal:
        depth = self.specs[order.inst_id].depth_sz
        levels = self._levels(order.inst_id, order.side)
        sign = 1 if order.side == "buy" else -1
        n = sum(1 for px in levels if order.px is None or (px - order.px) * sign <= 0)
        return n * depth

    @staticmethod
    def _crosses(order: Order, last: Decimal) -> bool:
        assert order.px is not None
        return last <= order.px if order.side == "buy" else last >= order.px

    def _cancel(self, acct: Account, order: Order, source: str) -> list[Event]:
        order.state, order.cancel_source, order.u_time = "canceled", source, self.clock()
        self.on_change()
        return [OrderUpdate(acct.api_key, copy.copy(order))]

    # --- fills and positions -------------------------------------------------------------
    def _fill(self, acct: Account, order: Order, px: Decimal, sz: Decimal, exec_type: str,
              liquidation: bool = False) -> list[Event]:
        spec = self.specs[order.inst_id]
        now = self.clock()
        rate = self.taker_rate if exec_type == "T" else self.maker_rate
        fee = -(sz * spec.contract_size * px * rate)
        pnl, sub_type, changed = self._apply(acct, order, px, sz, fee, now)
        if liquidation:
            sub_type = "104" if order.side == "sell" else "105"
        acct.cash += pnl + fee
        acct.u_time = now
        trade_no = next(self.trade_ids)
        trade_id = f"-{trade_no}" if liquidation else str(trade_no)
        bill_id = str(next(self.bill_ids))
        fill = Fill(trade_id, bill_id, order.ord_id, order.cl_ord_id, order.tag, order.inst_id,
                    order.side, order.pos_side, px, sz, fee, -rate, pnl, exec_type, now,
                    sub_type, order.category, self.mark[order.inst_id])
        for pos in changed:
            pos.trade_id = trade_id
        order.acc_fill_sz += sz
        order.notional += px * sz
        order.fee += fee
        order.pnl += pnl
        order.state = "filled" if not order.remaining else "partially_filled"
        order.u_time = now
        acct.fills.append(fill)
        acct.bills.append(Bill(bill_id, "5" if liquidation else "2", sub_type, now, pnl + fee,
                               acct.cash, sz, px, pnl, fee, order.inst_id, order.ord_id,
                               trade_id, order.td_mode, exec_type))
        self.on_change()
        reason = "liquidation" if liquidation else "filled"
        snaps = tuple(copy.copy(p) for p in changed)
        return [OrderUpdate(acct.api_key, copy.copy(order), fill),
                AccountUpdate(acct.api_key, reason, snaps, (fill,))]

    def transfer(self, api_key: str, amount: Decimal) -> list[Event]:
        """USDT moved into (> 0) or out of (< 0) the trading account, as from the funding
        account in the OKX app: a bill of type 1 (transfer) and a balance push."""
        acct = self.accounts[api_key]
        if acct.cash + amount < 0:
            raise ValueError(f"a transfer of {amount} leaves a negative cash balance")
        now = self.clock()
        acct.cash += amount
        acct.u_time = now
        acct.bills.append(Bill(str(next(self.bill_ids)), "1", "11" if amount > 0 else "12", now,
                               amount, acct.cash, abs(amount), ZERO, ZERO, ZERO, ""))
        self.on_change()
        return [AccountUpdate(api_key, "transferred")]

    def _apply(self, acct: Account, order: Order, px: Decimal, sz: Decimal, fee: Decimal,
               now: int) -> tuple[Decimal, str, list[Position]]:
        """Apply one fill to its position; returns (price pnl, bill subType, changed)."""
        spec = self.specs[order.inst_id]
        key = (order.inst_id, order.pos_side)
        pos = acct.positions.get(key) or self._new_position(acct, order, now)
        opening, closing = _split(order.pos_side, order.side, sz, pos.pos)
        changed: list[Position] = []
        pnl = ZERO
        sub_type = "3" if order.side == "buy" else "4"
        if closing:
            sub_type = "5" if pos.direction > 0 else "6"
            pnl = (px - pos.avg_px) * closing * spec.contract_size * pos.direction
            pos.pnl += pnl
            pos.fee += fee * closing / sz
            pos.pos -= closing * (pos.direction if order.pos_side == "net" else 1)
            pos.u_time = now
            if pos.pos == 0:
                changed.append(pos)
                del acct.positions[key]
                pos = self._new_position(acct, order, now)
        if opening:
            held = abs(pos.pos)
            pos.avg_px = (held * pos.avg_px + opening * px) / (held + opening)
            direction = 1 if order.pos_side != "net" or order.side == "buy" else -1
            pos.pos += opening * direction
            pos.fee += fee * opening / sz
            pos.u_time = now
            acct.positions[key] = pos
            changed.append(pos)
        elif pos.pos != 0:
            changed.append(pos)
        return pnl, sub_type, changed

    def _new_position(self, acct: Account, order: Order, now: int) -> Position:
        return Position(order.inst_id, order.pos_side, str(next(self.pos_ids)), order.td_mode,
                        self.leverage(acct.api_key, order.inst_id), now, now)

    # --- market-driven events -----------------------------------------------------------
    def on_market(self, inst_id: str, last: Decimal, mark: Decimal) -> list[Event]:
        """New market price: fill crossed resting orders (maker), then liquidate."""
        self.set_price(inst_id, last, mark)
        depth = self.specs[inst_id].depth_sz
        events: list[Event] = []
        for acct in self.accounts.values():
            mine: list[Event] = []
            for order in list(acct.orders.values()):
                if order.inst_id == inst_id and order.is_open and order.px is not None \
                        and self._crosses(order, last):
                    mine += self._fill(acct, order, order.px, min(order.remaining, depth), "M")
            if self.liquidation:
                mine += self._liquidate(acct, inst_id)
            events += mine + self.algos.on_market(acct, inst_id, mine)
        return events

    def _liquidate(self, acct: Account, inst_id: str) -> list[Event]:
        events: list[Event] = []
        for view in self.account_view(acct.api_key).positions:
            pos, liq = view.position, view.liq_px
            if pos.inst_id != inst_id or liq is None:
                continue
            if (view.mark - liq) * pos.direction > 0:
                continue
            now = self.clock()
            side = "sell" if pos.direction > 0 else "buy"
            order = Order(str(next(self.ord_ids)), "", "", inst_id, side, pos.pos_side,
                          "market", pos.mgn_mode, None, abs(pos.pos), True, pos.lever, now, now,
                          category="full_liquidation")
            acct.orders[order.ord_id] = order
            events += self._fill(acct, order, view.mark, abs(pos.pos), "T", liquidation=True)
        return events

    def settle_funding(self, inst_id: str, rate: Decimal) -> list[Event]:
        """Pay funding on every open position of an instrument at the current mark."""
        mark = self.mark[inst_id]
        spec = self.specs[inst_id]
        now = self.clock()
        events: list[Event] = []
        for acct in self.accounts.values():
            changed = []
            for pos in acct.open_positions():
                if pos.inst_id != inst_id:
                    continue
                pay = -qty(pos, spec) * mark * rate
                acct.cash += pay
                pos.funding_fee += pay
                pos.u_time = now
                acct.bills.append(Bill(str(next(self.bill_ids)), "8",
                                       "173" if pay < 0 else "174", now, pay, acct.cash,
                                       abs(pos.pos), mark, pay, ZERO, inst_id,
                                       mgn_mode=pos.mgn_mode))
                changed.append(copy.copy(pos))
            if changed:
                acct.u_time = now
                self.on_change()
                events.append(AccountUpdate(acct.api_key, "funding_fee", tuple(changed)))
        return events

    # --- views ---------------------------------------------------------------------------
    def account_view(self, api_key: str) -> AccountView:
        """Equity, margins and positions of an account at the current marks."""
        acct = self.accounts[api_key]
        pairs = [(p, self.specs[p.inst_id], self.mark[p.inst_id]) for p in acct.open_positions()]
        risks = [risk(p, s, m, self.mmr_rate) for p, s, m in pairs]
        eq = equity(acct.cash, risks)
        imr = sum((r.imr for r in risks), ZERO)
        mmr = sum((r.mmr for r in risks), ZERO)
        frozen = sum((self._order_margin(o) for o in acct.orders.values() if o.is_open), ZERO)
        views = tuple(
            PositionView(p, m, r, liquidation_px(p, s, r, eq, mmr, self.mmr_rate))
            for (p, s, m), r in zip(pairs, risks, strict=True))
        return AccountView(acct.cash, eq - acct.cash, eq, imr, mmr, frozen, eq - imr - frozen,
                           views)

    def _order_margin(self, order: Order) -> Decimal:
        if order.px is None or order.reduce_only:
            return ZERO
        spec = self.specs[order.inst_id]
        return order.remaining * spec.contract_size * order.px / order.lever

    def _spec(self, inst_id: str) -> InstrumentSpec:
        spec = self.specs.get(inst_id)
        if spec is None:
            raise Reject("51001")
        return spec


def _nothing() -> None:
    pass


def _opening_side(pos_side: str) -> str:
    return "sell" if pos_side == "short" else "buy"


def _split(pos_side: str, side: str, sz: Decimal, held: Decimal) -> tuple[Decimal, Decimal]:
    """(opening, closing) contracts of an order of `sz` against a position of `held`."""
    if pos_side != "net":
        return (sz, ZERO) if side == _opening_side(pos_side) else (ZERO, sz)
    signed = sz if side == "buy" else -sz
    if held == 0 or (held > 0) == (signed > 0):
        return sz, ZERO
    closing = min(sz, abs(held))
    return sz - closing, closing
