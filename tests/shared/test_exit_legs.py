"""The exit-order planner: named cases, and properties on a model of the exchange (the actions
always end with exactly the plan's legs on one algo, never two close-position algos at once,
and a sized stop protects until its replacement rests)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.exit_legs import Action, Amend, Cancel, LiveAlgo, Place, plan_actions
from shared.types import AlgoOrdType

D = Decimal


def sized(algo_id: str, sz: str, tp: str | None = None, sl: str | None = None) -> LiveAlgo:
    kind: AlgoOrdType = "oco" if tp and sl else "conditional"
    return LiveAlgo(algo_id, kind, D(sz), None, _d(tp), _d(sl))


def close_all(
    algo_id: str, tp: str | None = None, sl: str | None = None, kind: AlgoOrdType | None = None
) -> LiveAlgo:
    ord_type: AlgoOrdType = kind or ("oco" if tp and sl else "conditional")
    return LiveAlgo(algo_id, ord_type, D(0), D(1), _d(tp), _d(sl))


def _d(text: str | None) -> Decimal | None:
    return None if text is None else D(text)


def long_plan(tp: str | None, sl: str | None, live: list[LiveAlgo], contracts: str = "2") -> list[Action]:
    return plan_actions("long", "net", D(contracts), _d(tp), _d(sl), live)


@pytest.mark.parametrize(
    ("tp", "sl", "live", "contracts", "expected"),
    [
        pytest.param(
            "70000",
            "50000",
            [],
            "2",
            [Place("oco", "sell", "net", D(70000), D(50000))],
            id="nothing-live-places-a-close-position-oco",
        ),
        pytest.param(
            None,
            "50000",
            [],
            "2",
            [Place("conditional", "sell", "net", None, D(50000))],
            id="one-leg-is-a-conditional",
        ),
        pytest.param(
            "70000",
            "50000",
            [sized("a1", "2", "70000", "50000")],
            "2",
            [],
            id="attached-algo-of-the-position-size-already-matches",
        ),
        pytest.param(
            "70000",
            "51000",
            [sized("a1", "2", "70000", "50000")],
            "2",
            [Amend("a1", sl_trigger_px=D(51000))],
            id="moving-the-stop-is-an-amendment",
        ),
        pytest.param(
            None,
            "50000",
            [sized("a1", "2", "70000", "50000")],
            "2",
            [Amend("a1", cancel_tp=True)],
            id="take-profit-to-null-cancels-the-leg",
        ),
        pytest.param(
            None,
            None,
            [sized("a1", "2", "70000", "50000")],
            "2",
            [Cancel("a1")],
            id="no-leg-left-cancels-the-algo",
        ),
        # 2 contracts became 3: the sized algo would leave 1 unprotected; place first, then cancel
        pytest.param(
            "70000",
            "50000",
            [sized("a1", "2", "70000", "50000")],
            "3",
            [Place("oco", "sell", "net", D(70000), D(50000)), Cancel("a1")],
            id="sized-algo-off-the-position-size-is-replaced-place-first",
        ),
        pytest.param(
            "70000",
            "50000",
            [close_all("c1", sl="50000")],
            "2",
            [Cancel("c1"), Place("oco", "sell", "net", D(70000), D(50000))],
            id="adding-a-leg-to-close-position-cancels-first",
        ),
        pytest.param(
            "70000",
            "50000",
            [close_all("c1", "70000", "50000"), sized("a1", "2", "1", "2")],
            "5",
            [Cancel("a1")],
            id="extra-live-algo-is-canceled",
        ),
        # a one-leg oco is what a leg-to-null amendment leaves: it is kept, not replaced
        pytest.param(
            None,
            "49000",
            [close_all("c1", sl="50000", kind="oco")],
            "2",
            [Amend("c1", sl_trigger_px=D(49000))],
            id="one-leg-oco-is-amended",
        ),
        pytest.param(
            "70000",
            "50000",
            [close_all("c1", "70000", "50000", kind="conditional")],
            "2",
            [Cancel("c1"), Place("oco", "sell", "net", D(70000), D(50000))],
            id="two-leg-conditional-would-run-only-its-stop-so-it-becomes-an-oco",
        ),
        pytest.param(
            "70000",
            "50000",
            [sized("a1", "2", "70000", "50000")],
            "0",
            [Cancel("a1")],
            id="flat-slot-cancels-everything",
        ),
    ],
)
def test_plan_actions(
    tp: str | None, sl: str | None, live: list[LiveAlgo], contracts: str, expected: list[Action]
) -> None:
    assert long_plan(tp, sl, live, contracts) == expected


def test_a_short_closes_with_buy_orders_on_its_own_slot() -> None:
    actions = plan_actions("short", "short", D(1), D(50000), D(70000), [])
    assert actions == [Place("oco", "buy", "short", D(50000), D(70000))]


# ------------------------------------------------------------------------------ properties
class Exchange:
    """The slot's algos on a model of OKX: one close-position algo at most (51342)."""

    def __init__(self, live: list[LiveAlgo]) -> None:
        self.algos = {a.algo_id: a for a in live}
        self.placed = 0

    def apply(self, action: Action) -> None:
        match action:
            case Place():
                assert not any(a.closes_position for a in self.algos.values()), "51342"
                self.placed += 1
                algo_id = f"new{self.placed}"
                self.algos[algo_id] = LiveAlgo(
                    algo_id, action.ord_type, D(0), D(1), action.tp_trigger_px, action.sl_trigger_px
                )
            case Amend():
                old = self.algos[action.algo_id]
                tp = None if action.cancel_tp else action.tp_trigger_px or old.tp_trigger_px
                sl = None if action.cancel_sl else action.sl_trigger_px or old.sl_trigger_px
                assert tp is not None or sl is not None, "51531"
                self.algos[action.algo_id] = replace(old, tp_trigger_px=tp, sl_trigger_px=sl)
            case Cancel():
                del self.algos[action.algo_id]

    def has_stop(self) -> bool:
        return any(a.sl_trigger_px is not None for a in self.algos.values())


PRICES = st.sampled_from([None, D(100), D(101), D(102)])
SIZES = st.sampled_from([D(1), D(2), D(3)])


@st.composite
def live_algos(draw: st.DrawFn) -> list[LiveAlgo]:
    out: list[LiveAlgo] = []
    closers = 0
    for index in range(draw(st.integers(0, 3))):
        tp, sl = draw(PRICES), draw(PRICES)
        if tp is None and sl is None:
            sl = D(100)
        whole = draw(st.booleans()) and closers == 0  # the exchange holds at most one
        closers += whole
        both = tp is not None and sl is not None
        kind: AlgoOrdType = "oco" if both and draw(st.booleans()) else "conditional"
        out.append(
            LiveAlgo(f"a{index}", kind, D(0) if whole else draw(SIZES), D(1) if whole else None, tp, sl)
        )
    return out


@given(live=live_algos(), contracts=SIZES, tp=PRICES, sl=PRICES)
def test_actions_end_with_exactly_the_plan_on_one_algo(
    live: list[LiveAlgo], contracts: Decimal, tp: Decimal | None, sl: Decimal | None
) -> None:
    exchange = Exchange(live)
    sized_stop = any(a.sl_trigger_px is not None and not a.closes_position for a in live)
    for action in plan_actions("long", "net", contracts, tp, sl, live):
        exchange.apply(action)
        if sized_stop and sl is not None:
            assert exchange.has_stop(), "a moment without a stop"
    algos = list(exchange.algos.values())
    if tp is None and sl is None:
        assert algos == []
        return
    (kept,) = algos
    assert (kept.tp_trigger_px, kept.sl_trigger_px) == (tp, sl)
    assert kept.closes_position or kept.sz == contracts
    assert not (kept.ord_type == "conditional" and tp is not None and sl is not None)
    # and once there, nothing more is sent
    assert plan_actions("long", "net", contracts, tp, sl, algos) == []
