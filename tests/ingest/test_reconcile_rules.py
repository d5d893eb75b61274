"""Reconciliation's pure rules: which slots differ, the labelled fills that heal them, and
which algo orders are orphans or missing."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from services.ingest.reconcile import (
    FLAT,
    Holding,
    PositionDifference,
    RestingAlgo,
    balance_differs,
    corrections,
    has_legs,
    held,
    open_orders_unknown,
    orphan_algos,
    plans_not_resting,
    position_differences,
    signed,
)

BTC = ("BTC-USDT-SWAP", "net")


def diff(have: str, have_px: str | None, want: str, want_px: str | None) -> PositionDifference:
    return PositionDifference(BTC, Holding(D(want), D(want_px) if want_px else None),
                              Holding(D(have), D(have_px) if have_px else None))


@pytest.mark.parametrize(("d", "mark", "expected"), [
    pytest.param(diff("1.5", "100", "0", None), "90", [("sell", "1.5", "90")],
                 id="zombie-long-closed-at-the-mark"),
    pytest.param(diff("-2", "100", "0", None), "110", [("buy", "2", "110")],
                 id="zombie-short-closed-at-the-mark"),
    pytest.param(diff("0", None, "2", "101"), "90", [("buy", "2", "101")],
                 id="unknown-long-opened-at-the-exchange-average"),
    # ledger 1 @ 100, exchange 3 @ 102: the 2 added cost 3 x 102 - 100 = 206, i.e. 103 each
    pytest.param(diff("1", "100", "3", "102"), "90", [("buy", "2", "103")],
                 id="more-on-the-exchange-added-at-the-price-that-gives-its-average"),
    pytest.param(diff("3", "100", "1", "100"), "95", [("sell", "2", "95")],
                 id="less-on-the-exchange-reduced-at-the-mark"),
    pytest.param(diff("1", "100", "-2", "105"), "104", [("sell", "1", "104"), ("sell", "2", "105")],
                 id="other-direction-closed-then-opened"),
    # ledger 1 @ 200, exchange 2 @ 100 would need the added one at 0: the average instead
    pytest.param(diff("1", "200", "2", "100"), "90", [("buy", "1", "100")],
                 id="no-positive-price-gives-the-average-falls-back-to-it"),
])
def test_corrections_take_the_ledger_to_the_exchange(d: PositionDifference, mark: str,
                                                     expected: list[tuple[str, str, str]]) -> None:
    found = corrections(d, D(mark))
    assert [(c.side, c.size, c.price) for c in found] == [(s, D(z), D(p)) for s, z, p in expected]
    net = d.ledger.quantity + sum(c.size if c.side == "buy" else -c.size for c in found)
    assert net == d.exchange.quantity


def test_only_quantity_is_corrected() -> None:
    assert corrections(diff("1", "100", "1", "105"), D(90)) == []


def test_differences() -> None:
    exchange = {BTC: Holding(D(1), D("100.00000001")), ("ETH-USDT-SWAP", "net"): Holding(D(2), D(50)),
                ("SOL-USDT-SWAP", "long"): FLAT}
    ledger = {BTC: Holding(D(1), D("100")), ("DOGE-USDT-SWAP", "net"): Holding(D(-5), D(1))}
    found = position_differences(exchange, ledger)
    # BTC's averages agree within the tolerance; SOL is flat on both sides
    assert [(d.subject, d.quantity_differs) for d in found] == [
        ("DOGE-USDT-SWAP:net", True), ("ETH-USDT-SWAP:net", True)]
    assert position_differences({BTC: Holding(D(1), D(101))}, {BTC: Holding(D(1), D(100))})


@pytest.mark.parametrize(("pos_side", "pos", "side", "expected"), [
    pytest.param("net", "-2", None, "-2", id="okx-net-is-signed"),
    pytest.param("short", "2", None, "-2", id="okx-short-slot-positive"),
    pytest.param("long", "2", None, "2", id="okx-long-slot"),
    pytest.param("net", "2", "short", "-2", id="ledger-row-by-side"),
])
def test_signed(pos_side: str, pos: str, side: str | None, expected: str) -> None:
    assert signed(pos_side, D(pos), side) == D(expected)  # type: ignore[arg-type]


def test_balance_and_orders() -> None:
    assert balance_differs(D("100"), None) and balance_differs(D("100"), D("99.99999999"))
    assert not balance_differs(D("100"), D("100.00000000"))
    assert open_orders_unknown(["1", "2", "3"], ["2"]) == ["1", "3"]


def algo(algo_id: str, pos_side: str, side: str, *, reduce_only: bool = False,
         close_fraction: bool = False, symbol: str = "BTC-USDT-SWAP") -> RestingAlgo:
    return RestingAlgo(algo_id, symbol, pos_side, side, reduce_only,  # type: ignore[arg-type]
                       close_fraction)


@pytest.mark.parametrize(("a", "closes"), [
    pytest.param(algo("1", "net", "sell", reduce_only=True), ("BTC-USDT-SWAP", "net", "long"),
                 id="net-reduce-only-sell-closes-a-long"),
    pytest.param(algo("1", "net", "buy", close_fraction=True), ("BTC-USDT-SWAP", "net", "short"),
                 id="net-close-position-buy-closes-a-short"),
    pytest.param(algo("1", "net", "sell"), None, id="net-plain-sell-may-open-a-short"),
    pytest.param(algo("1", "long", "sell"), ("BTC-USDT-SWAP", "long", "long"),
                 id="long-slot-sell-closes-it"),
    pytest.param(algo("1", "short", "buy"), ("BTC-USDT-SWAP", "short", "short"),
                 id="short-slot-buy-closes-it"),
    pytest.param(algo("1", "long", "buy", reduce_only=True), None, id="long-slot-buy-opens"),
])
def test_what_an_algo_closes(a: RestingAlgo, closes: tuple[str, str, str] | None) -> None:
    assert a.closes == closes


def test_held_is_the_non_flat_slots_with_their_direction() -> None:
    assert held({BTC: Holding(D(-2), D(1)), ("ETH-USDT-SWAP", "long"): Holding(D(3), D(1)),
                 ("SOL-USDT-SWAP", "net"): FLAT}) == {
        ("BTC-USDT-SWAP", "net", "short"), ("ETH-USDT-SWAP", "long", "long")}


def test_an_orphan_only_closes_and_nobody_holds_what_it_closes() -> None:
    algos = [algo("5", "net", "sell", reduce_only=True),  # closes a long: only a short is held
             algo("4", "net", "buy", close_fraction=True),  # closes the short held: not one
             algo("3", "net", "buy"),  # may open: never one
             algo("2", "long", "sell", symbol="ETH-USDT-SWAP"),  # the exchange alone holds it
             algo("1", "short", "buy", symbol="ETH-USDT-SWAP")]  # ETH short: nobody
    anywhere = {("BTC-USDT-SWAP", "net", "short"), ("ETH-USDT-SWAP", "long", "long")}
    assert [a.algo_id for a in orphan_algos(algos, anywhere)] == ["5", "1"]
    assert orphan_algos(algos[1:4], anywhere) == []


@pytest.mark.parametrize(("plan", "legs"), [
    pytest.param({"stop_loss": "90", "version": 1}, True, id="stop-loss"),
    pytest.param({"take_profit": "110", "stop_loss": None}, True, id="take-profit"),
    pytest.param({"invalidation_condition": "4H close below 60000"}, False, id="words-only"),
    pytest.param({}, False, id="empty"),
    pytest.param(None, False, id="none"),
])
def test_has_legs(plan: dict[str, object] | None, legs: bool) -> None:
    assert has_legs(plan) is legs


def test_a_plan_not_resting_has_legs_a_position_both_hold_and_no_algo_closing_it() -> None:
    long_btc, short_eth = ("BTC-USDT-SWAP", "net", "long"), ("ETH-USDT-SWAP", "short", "short")
    sol = ("SOL-USDT-SWAP", "net", "long")
    plans = {long_btc: {"stop_loss": "90"}, short_eth: {"take_profit": "10"},
             sol: {"stop_loss": "1"}, ("DOGE-USDT-SWAP", "net", "long"): {"version": 1}}
    both = {long_btc, short_eth, ("DOGE-USDT-SWAP", "net", "long")}  # SOL: a position difference
    wrong_way = algo("1", "net", "buy", reduce_only=True)  # closes a short, not the long
    assert plans_not_resting(plans, both, [wrong_way]) == [long_btc, short_eth]
    resting = [algo("2", "net", "sell", close_fraction=True),
               algo("3", "short", "buy", symbol="ETH-USDT-SWAP")]
    assert plans_not_resting(plans, both, resting) == []
