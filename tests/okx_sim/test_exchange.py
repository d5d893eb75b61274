"""Exchange arithmetic pinned against hand-computed values (pure engine, no server)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from services.okx_sim.config import AccountSpec, instrument_for
from services.okx_sim.exchange import Exchange, OrderRequest
from services.okx_sim.models import AccountUpdate, Fill, OrderUpdate
from services.okx_sim.protocol import Reject

BTC = "BTC-USDT-SWAP"  # ctVal 0.01; taker 0.05 %, maker 0.02 %


def make(pos_mode: str = "net_mode", balance: str = "10000", **kw: object) -> Exchange:
    spec = replace(instrument_for(BTC), **kw)  # type: ignore[arg-type]
    ex = Exchange({BTC: spec}, clock=lambda: 1_000)
    ex.add_account(AccountSpec("k", "s", "p", D(balance)), pos_mode)
    ex.set_price(BTC, D("50000"), D("50000"))
    return ex


def trade(ex: Exchange, px: str, side: str, sz: str, pos_side: str = "",
          ord_type: str = "market", limit: str | None = None) -> list[Fill]:
    ex.on_market(BTC, D(px), D(px))
    _, events = ex.place_order("k", OrderRequest(BTC, side, ord_type, D(sz), px=(
        D(limit) if limit else None), pos_side=pos_side))
    return [e.fill for e in events if isinstance(e, OrderUpdate) and e.fill]


NET_STEPS = [  # (price, side, size) -> expected (fillPnl, fee, pos, avgPx) after the fill
    pytest.param("50000", "buy", "2", ("0", "-0.5", "2", "50000"), id="open-long"),
    pytest.param("53000", "buy", "1", ("0", "-0.265", "3", "51000"), id="add-long-weighted-avg"),
    pytest.param("54000", "sell", "1", ("30", "-0.27", "2", "51000"), id="reduce-long"),
    pytest.param("50000", "sell", "5", ("-20", "-1.25", "-3", "50000"), id="flip-long-to-short"),
    pytest.param("48000", "buy", "3", ("60", "-0.72", "0", None), id="close-short"),
]


def test_net_mode_sequence_with_flip() -> None:
    ex = make()
    cash = D("10000")
    for step in NET_STEPS:
        px, side, sz, (pnl, fee, pos, avg) = step.values
        (fill,) = trade(ex, px, side, sz)
        assert (fill.pnl, fill.fee, fill.fill_px, fill.exec_type) == (D(pnl), D(fee), D(px), "T")
        cash += D(pnl) + D(fee)
        held = ex.accounts["k"].positions.get((BTC, "net"))
        assert (held.pos if held else D(0)) == D(pos), step.id
        if avg is not None:
            assert held is not None and held.avg_px == D(avg), step.id
    assert ex.accounts["k"].cash == cash == D("10066.995")


def test_flip_splits_the_fee_and_new_position_has_upl() -> None:
    ex = make()
    trade(ex, "50000", "buy", "2")
    trade(ex, "50000", "sell", "5")  # closes 2, opens 3 short; fee 1.25 split 2/5 : 3/5
    pos = ex.accounts["k"].positions[(BTC, "net")]
    assert (pos.pos, pos.avg_px, pos.fee, pos.realized_pnl) == (D(-3), D(50000), D("-0.75"),
                                                                 D("-0.75"))
    ex.set_price(BTC, D("49000"), D("49000"))
    (view,) = ex.account_view("k").positions
    assert view.risk.upl == D("30")  # (49000 - 50000) x -3 x 0.01
    assert view.risk.imr == D("147")  # 3 x 0.01 x 49000 / 10


def test_long_short_mode_keeps_two_positions_and_never_flips() -> None:
    ex = make("long_short_mode")
    trade(ex, "50000", "buy", "1", "long")
    trade(ex, "50000", "sell", "2", "short")
    (close_long,) = trade(ex, "51000", "sell", "1", "long")
    assert (close_long.pnl, close_long.fee, close_long.sub_type) == (D(10), D("-0.255"), "5")
    (cover,) = trade(ex, "51000", "buy", "1", "short")
    assert (cover.pnl, cover.sub_type) == (D(-10), "6")  # (50000 - 51000) x 1 x 0.01
    short = ex.accounts["k"].positions[(BTC, "short")]
    assert (short.pos, short.avg_px) == (D(1), D(50000))
    assert (BTC, "long") not in ex.accounts["k"].positions
    with pytest.raises(Reject) as err:
        trade(ex, "51000", "buy", "2", "short")  # more than the short held: no flip
    assert err.value.code == "51112"
    with pytest.raises(Reject) as err:
        trade(ex, "51000", "buy", "1")  # posSide is required in long/short mode
    assert err.value.code == "51000"


def test_limit_order_rests_then_fills_as_maker() -> None:
    ex = make()
    assert trade(ex, "50000", "buy", "1", ord_type="limit", limit="49000") == []
    order = next(iter(ex.accounts["k"].orders.values()))
    assert order.state == "live"
    assert ex.account_view("k").frozen == D("49")  # 1 x 0.01 x 49000 / 10
    events = ex.on_market(BTC, D("48900"), D("48900"))
    (fill,) = [e.fill for e in events if isinstance(e, OrderUpdate) and e.fill]
    assert (fill.fill_px, fill.exec_type, fill.fee, fill.fee_rate) == (
        D("49000"), "M", D("-0.098"), D("-0.0002"))
    assert order.state == "filled"


def test_large_market_order_fills_in_parts_at_worse_levels() -> None:
    ex = make(depth_sz=D("1"))
    fills = trade(ex, "50000", "buy", "2.5")
    # one level per 1 contract, each 1 bp (5 USDT) worse
    assert [(f.fill_sz, f.fill_px) for f in fills] == [
        (D(1), D(50000)), (D(1), D(50005)), (D("0.5"), D(50010))]
    order = next(iter(ex.accounts["k"].orders.values()))
    assert (order.state, order.acc_fill_sz, order.avg_px) == ("filled", D("2.5"), D(50004))
    trade_ids = [int(f.trade_id) for f in fills]
    assert trade_ids == sorted(trade_ids) and len(set(trade_ids)) == 3


def test_margin_check_rejects_with_51008() -> None:
    ex = make(balance="100")
    with pytest.raises(Reject) as err:
        trade(ex, "50000", "buy", "3")  # 3 x 0.01 x 50000 / 10 = 150 > 100
    assert err.value.code == "51008"
    assert trade(ex, "50000", "buy", "1")  # 50 + fee fits


def test_reduce_only_cannot_open() -> None:
    ex = make()
    with pytest.raises(Reject) as err:
        ex.place_order("k", OrderRequest(BTC, "sell", "market", D(1), reduce_only=True))
    assert err.value.code == "51148"


def test_liquidation_closes_at_mark_with_negative_trade_id() -> None:
    ex = make(balance="100")
    ex.set_leverage("k", BTC, 100)
    trade(ex, "50000", "buy", "10")  # 0.1 BTC, fee 2.5 -> cash 97.5
    (view,) = ex.account_view("k").positions
    # (50000 x 0.1 - 97.5) / (0.1 x (1 - 0.004)) = 49221.88… -> tick 0.1
    assert view.liq_px == D("49221.9")
    assert ex.on_market(BTC, D("49300"), D("49300")) == []
    events = ex.on_market(BTC, D("49200"), D("49200"))
    (fill,) = [e.fill for e in events if isinstance(e, OrderUpdate) and e.fill]
    assert fill.trade_id.startswith("-") and fill.category == "full_liquidation"
    assert (fill.side, fill.fill_sz, fill.fill_px, fill.pnl) == ("sell", D(10), D(49200), D(-80))
    assert [e.reason for e in events if isinstance(e, AccountUpdate)] == ["liquidation"]
    assert ex.accounts["k"].open_positions() == []


def test_funding_is_paid_by_longs_and_written_as_bills() -> None:
    ex = make()
    ex.add_account(AccountSpec("k2", "s", "p", D("10000")), "net_mode")
    trade(ex, "50000", "buy", "2")
    ex.place_order("k2", OrderRequest(BTC, "sell", "market", D(2)))
    events = ex.settle_funding(BTC, D("0.0001"))
    assert {e.api_key for e in events} == {"k", "k2"}
    long_bill, short_bill = ex.accounts["k"].bills[-1], ex.accounts["k2"].bills[-1]
    # 2 x 0.01 x 50000 x 0.0001 = 0.1
    assert (long_bill.type, long_bill.sub_type, long_bill.pnl) == ("8", "173", D("-0.1"))
    assert (short_bill.type, short_bill.sub_type, short_bill.pnl) == ("8", "174", D("0.1"))
    assert ex.accounts["k"].positions[(BTC, "net")].funding_fee == D("-0.1")
    assert ex.accounts["k"].cash == D("10000") - D("0.5") - D("0.1")


def test_position_mode_switch_refused_with_open_position() -> None:
    ex = make()
    trade(ex, "50000", "buy", "1")
    with pytest.raises(Reject) as err:
        ex.set_position_mode("k", "long_short_mode")
    assert err.value.code == "59000"
