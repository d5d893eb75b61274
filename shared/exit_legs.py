"""The pure planner of a position's exit orders: what to send so that the exchange holds
exactly the plan's legs (docs/exit_plans.md, issue #16, decisions 1-4). No I/O.

Invariants of `plan_actions`'s answer, applied in order to the live algos given:
- afterwards exactly one algo holds the desired legs (none when no leg is desired, or the
  slot is flat); every other live algo of the slot is canceled;
- the algo kept is close-position, or sized with `sz` equal to the position's contracts; any
  new one is close-position (`close_fraction=1`);
- prices change by amendment when the kept algo already has every desired leg (a leg set to
  null is an amendment that cancels it); adding a leg, a one-leg <-> two-leg change that
  amendment cannot do, or a size that no longer fits is a replacement;
- a replacement cancels close-position algos before placing (OKX keeps one per position,
  51342) and sized ones after (a sized stop protects until the new one rests);
- nothing is sent when the exchange already matches (idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from shared.types import AlgoOrdType, Direction, PosSide, Side

Leg = str  # "tp" or "sl"


@dataclass(frozen=True)
class LiveAlgo:
    """A live algo order of the slot, as `aitrader.algo_orders` holds it."""

    algo_id: str
    ord_type: AlgoOrdType
    sz: Decimal  # 0 for a close-position algo until it fires
    close_fraction: Decimal | None
    tp_trigger_px: Decimal | None
    sl_trigger_px: Decimal | None

    @property
    def closes_position(self) -> bool:
        return self.close_fraction is not None and self.close_fraction > 0

    @property
    def legs(self) -> dict[Leg, Decimal]:
        return _legs(self.tp_trigger_px, self.sl_trigger_px)


@dataclass(frozen=True)
class Place:
    """Place a close-position algo with these legs (oco with two, conditional with one)."""

    ord_type: AlgoOrdType
    side: Side  # the closing side
    pos_side: PosSide
    tp_trigger_px: Decimal | None
    sl_trigger_px: Decimal | None


@dataclass(frozen=True)
class Amend:
    """Move the given legs of a live algo to new trigger prices; cancel the flagged ones."""

    algo_id: str
    tp_trigger_px: Decimal | None = None
    sl_trigger_px: Decimal | None = None
    cancel_tp: bool = False
    cancel_sl: bool = False


@dataclass(frozen=True)
class Cancel:
    algo_id: str


Action = Place | Amend | Cancel


def closing_side(direction: Direction) -> Side:
    return "sell" if direction == "long" else "buy"


def plan_actions(
    direction: Direction,
    pos_side: PosSide,
    contracts: Decimal,
    tp: Decimal | None,
    sl: Decimal | None,
    live: Sequence[LiveAlgo],
) -> list[Action]:
    """The actions, in order, that make the slot's live algos match the legs (tp, sl)."""
    want = _legs(tp, sl)
    if not want or contracts <= 0:
        return [Cancel(a.algo_id) for a in live]
    keeper = _keeper(want, contracts, live)
    if keeper is not None:
        amend = _amendment(keeper, want)
        actions: list[Action] = [amend] if amend else []
        return actions + [Cancel(a.algo_id) for a in live if a.algo_id != keeper.algo_id]
    place = Place("oco" if len(want) == 2 else "conditional", closing_side(direction), pos_side, tp, sl)
    first = [Cancel(a.algo_id) for a in live if a.closes_position]
    last = [Cancel(a.algo_id) for a in live if not a.closes_position]
    return [*first, place, *last]


def _legs(tp: Decimal | None, sl: Decimal | None) -> dict[Leg, Decimal]:
    return {k: v for k, v in (("tp", tp), ("sl", sl)) if v is not None}


def _fits(algo: LiveAlgo, want: dict[Leg, Decimal], contracts: Decimal) -> bool:
    """Whether amending `algo` can give it exactly the legs wanted, at the right size."""
    if not (algo.closes_position or algo.sz == contracts):
        return False
    if not want.keys() <= algo.legs.keys():
        return False  # adding a leg is a replacement
    # A net-mode conditional with both legs runs only its stop (OKX): two legs need an oco.
    return not (algo.ord_type == "conditional" and len(want) == 2)


def _keeper(want: dict[Leg, Decimal], contracts: Decimal, live: Sequence[LiveAlgo]) -> LiveAlgo | None:
    """The live algo to keep: one that already matches, else the one needing the fewest
    changes; a close-position one before a sized one (it fits any later size)."""
    usable = [a for a in live if _fits(a, want, contracts)]
    if not usable:
        return None

    def cost(a: LiveAlgo) -> tuple[int, bool, str]:
        changes = sum(a.legs.get(k) != want.get(k) for k in ("tp", "sl"))
        return changes, not a.closes_position, a.algo_id

    return min(usable, key=cost)


def _amendment(algo: LiveAlgo, want: dict[Leg, Decimal]) -> Amend | None:
    have = algo.legs
    if have == want:
        return None
    moved = {k: v for k, v in want.items() if have.get(k) != v}
    return Amend(
        algo.algo_id,
        tp_trigger_px=moved.get("tp"),
        sl_trigger_px=moved.get("sl"),
        cancel_tp="tp" in have and "tp" not in want,
        cancel_sl="sl" in have and "sl" not in want,
    )
