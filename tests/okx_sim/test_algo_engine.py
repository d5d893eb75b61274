"""TP/SL algo orders in the pure engine: which price fires which leg, refusals, orphans."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from services.okx_sim.algo_rules import AlgoAmend, AlgoRequest, LegEdit
from services.okx_sim.exchange import Exchange
from services.okx_sim.models import AlgoOrder, AlgoUpdate, Attach, Event, Leg, OrderRequest
from services.okx_sim.protocol import Reject

from .test_exchange import BTC, make, trade


def states(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.algo.algo_id, e.algo.state) for e in events if isinstance(e, AlgoUpdate)]


def long_with(ex: Exchange, **legs: Leg) -> AlgoOrder:
    """A long of 2 at 50000 and a closeFraction algo on it."""
    trade(ex, "50000", "buy", "2")
    algo, _ = ex.algos.place("k", AlgoRequest(BTC, "cross", "sell", legs.pop("kind", None)
                                              or "conditional", None, "1", reduce_only=True,
                                              **legs))
    return algo


def mark(px: str) -> Leg:
    return Leg(D(px), "mark", None)


def last(px: str) -> Leg:
    return Leg(D(px), "last", None)


def test_a_mark_stop_ignores_the_last_price_and_fires_on_the_mark() -> None:
    ex = make()
    algo = long_with(ex, sl=mark("49000"))
    assert states(ex.on_market(BTC, D("48000"), D("49500"))) == []  # last crossed, mark not
    events = ex.on_market(BTC, D("49500"), D("48990"))
    assert states(events)[0] == (algo.algo_id, "effective")
    assert (algo.actual_side, algo.actual_sz) == ("sl", D(2))
    order = ex.accounts["k"].orders[algo.ord_id]
    assert (order.ord_type, order.side, order.reduce_only, order.algo_id, order.source,
            order.state) == ("market", "sell", True, algo.algo_id, "7", "filled")
    assert ex.accounts["k"].open_positions() == []


def test_a_last_take_profit_ignores_the_mark() -> None:
    ex = make()
    algo = long_with(ex, tp=last("51000"))
    assert states(ex.on_market(BTC, D("50900"), D("52000"))) == []
    assert states(ex.on_market(BTC, D("51000"), D("50000"))) == [(algo.algo_id, "effective")]


def test_a_net_conditional_with_both_legs_runs_only_its_stop_loss() -> None:
    """OKX place-algo-order: 'When placing net TP/SL order (ordType=conditional) and both
    take-profit and stop-loss parameters are sent, only stop-loss logic will be performed'."""
    ex = make()
    algo = long_with(ex, tp=last("51000"), sl=last("49000"))
    assert states(ex.on_market(BTC, D("52000"), D("52000"))) == []
    assert states(ex.on_market(BTC, D("48000"), D("48000")))[0] == (algo.algo_id, "effective")


def test_oco_fires_one_leg_and_is_done() -> None:
    ex = make()
    algo = long_with(ex, kind="oco", tp=last("51000"), sl=last("49000"))  # type: ignore[arg-type]
    assert states(ex.on_market(BTC, D("51000"), D("51000")))[0] == (algo.algo_id, "effective")
    assert algo.actual_side == "tp"
    assert states(ex.on_market(BTC, D("48000"), D("48000"))) == []


WRONG_SIDE = [  # algo side, leg, trigger type, trigger -> OKX sCode (last = mark = 50000)
    pytest.param("sell", "tp", "last", "49999", "51279", id="long-tp-below-last"),
    pytest.param("sell", "sl", "last", "50001", "51280", id="long-sl-above-last"),
    pytest.param("buy", "tp", "last", "50001", "51277", id="short-tp-above-last"),
    pytest.param("buy", "sl", "last", "49999", "51278", id="short-sl-below-last"),
    pytest.param("sell", "tp", "mark", "49999", "51303", id="long-tp-below-mark"),
    pytest.param("sell", "sl", "mark", "50001", "51304", id="long-sl-above-mark"),
    pytest.param("buy", "tp", "mark", "50001", "51300", id="short-tp-above-mark"),
    pytest.param("buy", "sl", "mark", "49999", "51302", id="short-sl-below-mark"),
]


@pytest.mark.parametrize(("side", "kind", "px_type", "trigger", "code"), WRONG_SIDE)
def test_a_trigger_already_passed_is_refused_with_okx_code(
        side: str, kind: str, px_type: str, trigger: str, code: str) -> None:
    ex = make()
    trade(ex, "50000", "buy" if side == "sell" else "sell", "1")
    leg = Leg(D(trigger), px_type, None)
    with pytest.raises(Reject) as caught:
        ex.algos.place("k", AlgoRequest(BTC, "cross", side, "conditional", D(1),
                                        reduce_only=True, **{kind: leg}))
    assert caught.value.code == code


REFUSALS = [
    pytest.param(AlgoRequest(BTC, "cross", "sell", "conditional", None, "1", sl=last("49000")),
                 "51328", id="close-fraction-without-reduce-only"),
    pytest.param(AlgoRequest(BTC, "cross", "sell", "conditional", None, "1", reduce_only=True,
                             sl=Leg(D("49000"), "last", D("48900"))),
                 "51330", id="close-fraction-limit"),
    pytest.param(AlgoRequest(BTC, "cross", "buy", "conditional", D(1), reduce_only=True,
                             sl=last("51000")), "51169", id="reduce-only-without-short"),
    pytest.param(AlgoRequest(BTC, "cross", "sell", "oco", D(1), reduce_only=True,
                             sl=last("49000")), "51000", id="oco-needs-both-legs"),
    pytest.param(AlgoRequest(BTC, "cross", "sell", "conditional", D("0.015"), reduce_only=True,
                             sl=last("49000")), "51121", id="odd-size"),
    pytest.param(AlgoRequest(BTC, "cross", "sell", "conditional", D(1), reduce_only=True,
                             sl=last("49000.05")), "51000", id="off-tick-trigger"),
]


@pytest.mark.parametrize(("request_", "code"), REFUSALS)
def test_refusals(request_: AlgoRequest, code: str) -> None:
    ex = make()
    trade(ex, "50000", "buy", "1")
    with pytest.raises(Reject) as caught:
        ex.algos.place("k", request_)
    assert caught.value.code == code


def test_one_close_all_algo_per_position() -> None:
    ex = make()
    long_with(ex, sl=last("49000"))
    with pytest.raises(Reject) as caught:
        ex.algos.place("k", AlgoRequest(BTC, "cross", "sell", "conditional", None, "1",
                                        reduce_only=True, tp=last("52000")))
    assert caught.value.code == "51342"


def test_a_flip_cancels_the_old_legs() -> None:
    ex = make()
    algo = long_with(ex, sl=last("49000"))
    _, events = ex.place_order("k", OrderRequest(BTC, "sell", "market", D(3)))
    assert states(events) == [(algo.algo_id, "canceled")]
    assert ex.accounts["k"].positions[(BTC, "net")].pos == D(-1)


def test_a_reduce_only_trigger_that_would_open_fails_with_its_code() -> None:
    """A reduce-only stop of 3 on a long of 2 cannot be placed as an order: order_failed."""
    ex = make()
    trade(ex, "50000", "buy", "2")
    algo, _ = ex.algos.place("k", AlgoRequest(BTC, "cross", "sell", "conditional", D(3),
                                              reduce_only=True, sl=last("49000")))
    assert states(ex.on_market(BTC, D("48000"), D("48000"))) == [(algo.algo_id, "order_failed")]
    assert algo.fail_code == "51148"
    assert ex.accounts["k"].positions[(BTC, "net")].pos == D(2)


def test_attached_legs_wait_for_the_fill_and_a_canceled_parent_drops_them() -> None:
    ex = make()
    attach = Attach("tpsl1", last("52000"), last("49000"))
    order, events = ex.place_order("k", OrderRequest(BTC, "buy", "limit", D(1), px=D("49500"),
                                                     attach=attach))
    (waiting,) = ex.accounts["k"].algos.values()
    assert (waiting.state, states(events)) == ("attached", [])
    events = ex.on_market(BTC, D("49500"), D("49500"))
    assert states(events) == [(waiting.algo_id, "live")]
    assert (waiting.ord_type, waiting.side, waiting.sz, waiting.reduce_only,
            waiting.algo_cl_ord_id) == ("oco", "sell", D(1), True, "tpsl1")
    other, _ = ex.place_order("k", OrderRequest(BTC, "buy", "limit", D(1), px=D("40000"),
                                                attach=Attach("", None, last("39000"))))
    ex.cancel_order("k", BTC, other.ord_id, "")
    assert [a.parent_ord_id for a in ex.accounts["k"].algos.values()] == [order.ord_id]


def test_amend_moves_a_leg_and_zero_deletes_one() -> None:
    ex = make()
    algo = long_with(ex, kind="oco", tp=last("52000"), sl=last("49000"))  # type: ignore[arg-type]
    ex.algos.amend("k", BTC, algo.algo_id, "", AlgoAmend(sl=LegEdit(D("49500")), req_id="r1"))
    assert (algo.sl_trigger_px, algo.sl_ord_px, algo.req_id) == (D("49500"), None, "r1")
    ex.algos.amend("k", BTC, algo.algo_id, "", AlgoAmend(tp=LegEdit(D(0))))
    assert algo.tp is None and algo.sl is not None
    with pytest.raises(Reject) as caught:
        ex.algos.amend("k", BTC, algo.algo_id, "", AlgoAmend(sl=LegEdit(ord_px=D(0))))
    assert caught.value.code == "51531"  # a stop order must keep a leg
    with pytest.raises(Reject) as caught:
        ex.algos.amend("k", BTC, algo.algo_id, "", AlgoAmend(new_sz=D(1)))
    assert caught.value.code == "51524"  # closeFraction: the size is the position's
    assert states(ex.on_market(BTC, D("49600"), D("49600"))) == []
    assert states(ex.on_market(BTC, D("49500"), D("49500")))[0] == (algo.algo_id, "effective")
