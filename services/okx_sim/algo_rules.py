"""The pure rules of TP/SL algo orders: requests, leg edits, directions, and OKX's refusals."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .models import ZERO, Account, AlgoOrder, Leg
from .protocol import Reject

PX_TYPES = ("last", "mark", "index")
# (leg, algo side) -> trigger price type -> sCode when the trigger is already on the wrong side
WRONG_SIDE = {
    ("tp", "sell"): {"last": "51279", "mark": "51303", "index": "51307"},
    ("sl", "sell"): {"last": "51280", "mark": "51304", "index": "51308"},
    ("tp", "buy"): {"last": "51277", "mark": "51300", "index": "51305"},
    ("sl", "buy"): {"last": "51278", "mark": "51302", "index": "51306"},
}


@dataclass(frozen=True)
class AlgoRequest:
    """A parsed `POST /trade/order-algo` (sz None with closeFraction "1")."""

    inst_id: str
    td_mode: str
    side: str
    ord_type: str
    sz: Decimal | None
    close_fraction: str = ""
    pos_side: str = ""
    reduce_only: bool = False
    algo_cl_ord_id: str = ""
    tag: str = ""
    tp: Leg | None = None
    sl: Leg | None = None


@dataclass(frozen=True)
class LegEdit:
    """The amend-algos fields of one leg; a 0 trigger or order price deletes the leg."""

    trigger_px: Decimal | None = None
    ord_px: Decimal | None = None  # -1 = market
    trigger_px_type: str = ""

    @property
    def empty(self) -> bool:
        """Nothing to change on this leg."""
        return self.trigger_px is None and self.ord_px is None and not self.trigger_px_type


@dataclass(frozen=True)
class AlgoAmend:
    """A parsed `POST /trade/amend-algos`."""

    new_sz: Decimal | None = None
    tp: LegEdit = LegEdit()
    sl: LegEdit = LegEdit()
    req_id: str = ""


def check_leg(kind: str, side: str, leg: Leg, tick: Decimal, ref: Decimal) -> None:
    """Refuse a leg off the tick grid, of an unknown price type, or already triggered."""
    if leg.trigger_px <= 0 or leg.trigger_px % tick != 0:
        raise Reject("51000", f"{kind}TriggerPx")
    if leg.ord_px is not None and (leg.ord_px <= 0 or leg.ord_px % tick != 0):
        raise Reject("51000", f"{kind}OrdPx")
    if (rises(kind, side) and leg.trigger_px < ref) or \
            (not rises(kind, side) and leg.trigger_px > ref):
        raise Reject(WRONG_SIDE[(kind, side)][leg.trigger_px_type])


def rises(kind: str, side: str) -> bool:
    """Whether this leg fires on a rise: a sell's (long's) TP, a buy's (short's) SL."""
    return (kind == "tp") == (side == "sell")


def other(side: str) -> str:
    return "sell" if side == "buy" else "buy"


def pos_side_for(pos_mode: str, asked: str) -> str:
    if pos_mode == "long_short_mode":
        if asked not in ("long", "short"):
            raise Reject("51000", "posSide")
        return asked
    if asked not in ("", "net"):
        raise Reject("51000", "posSide")
    return "net"


def draft(req: AlgoRequest, pos_side: str) -> AlgoOrder:
    """An unsaved algo with the request's direction, for the position checks."""
    return AlgoOrder("", "", req.inst_id, req.ord_type, req.side, pos_side, req.td_mode, ZERO,
                     req.close_fraction, req.reduce_only, "", 0, 0, 0, ZERO)


def closing(algo: AlgoOrder) -> bool:
    """Whether the algo only closes a position (so it dies with it)."""
    if algo.pos_side == "net":
        return algo.reduce_only or bool(algo.close_fraction)
    return algo.side != ("sell" if algo.pos_side == "short" else "buy")


def has_position(acct: Account, algo: AlgoOrder) -> bool:
    """Whether the position this algo would close exists (net: in the right direction)."""
    pos = acct.positions.get((algo.inst_id, algo.pos_side))
    held = pos.pos if pos else ZERO
    if algo.pos_side != "net":
        return held > 0
    return held > 0 if algo.side == "sell" else held < 0


def same_position(a: AlgoOrder, b: AlgoOrder) -> bool:
    return (a.inst_id, a.pos_side, a.side) == (b.inst_id, b.pos_side, b.side)


def set_legs(algo: AlgoOrder, tp: Leg | None, sl: Leg | None) -> None:
    algo.tp_trigger_px = tp.trigger_px if tp else None
    algo.tp_trigger_px_type = tp.trigger_px_type if tp else ""
    algo.tp_ord_px = tp.ord_px if tp else None
    algo.sl_trigger_px = sl.trigger_px if sl else None
    algo.sl_trigger_px_type = sl.trigger_px_type if sl else ""
    algo.sl_ord_px = sl.ord_px if sl else None


def edited(leg: Leg | None, edit: LegEdit, name: str) -> Leg | None:
    """A leg after an amendment: 0 deletes it, given fields replace, a new leg needs both."""
    if edit.empty:
        return leg
    if edit.trigger_px == 0 or edit.ord_px == 0:
        return None
    if leg is None and (edit.trigger_px is None or edit.ord_px is None):
        raise Reject("51000", f"new{name}TriggerPx" if edit.trigger_px is None
                     else f"new{name}OrdPx")
    old = leg or Leg(ZERO, "last", None)
    trigger = old.trigger_px if edit.trigger_px is None else edit.trigger_px
    if edit.ord_px is None:
        ord_px = old.ord_px
    else:
        ord_px = None if edit.ord_px == -1 else edit.ord_px
    return Leg(trigger, edit.trigger_px_type or old.trigger_px_type, ord_px)
