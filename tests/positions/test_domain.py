"""The pure fold: named cases whose expected numbers were computed by hand (in the comments)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from services.positions.domain import (
    ClosedPosition,
    Entry,
    FundingEntry,
    LedgerFill,
    Position,
    apply_fill,
    exit_reason,
    fold,
)
from shared.instruments import InstrumentSpec
from tests.factories import instrument_spec
from tests.shared.cases import CONFIDENCE_CASES

BTC = instrument_spec("BTC-USDT-SWAP")  # ctVal 0.01
ETH = instrument_spec("ETH-USDT-SWAP")  # ctVal 0.1
ONE = replace(ETH, symbol="ONE-USDT-SWAP", ct_val=D(1), lot_sz=D("0.00000001"),
              min_sz=D("0.00000001"))  # ctVal 1, sizes of 8 decimals
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = iter(range(1, 10**9))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def fill(side: str, size: str, px: str, minute: float, *, fee: str = "0", slot: str = "net",
         conf: str | None = None, agent: bool = False, category: str = "normal",
         trade_id: str | None = None, lever: str | None = None, leg: str | None = None) -> LedgerFill:
    return LedgerFill(
        trade_id=trade_id or f"{next(_ids):09d}", time=at(minute), side=side,  # type: ignore[arg-type]
        pos_side=slot, price=D(px), size=D(size), fee=D(fee),  # type: ignore[arg-type]
        confidence=D(conf) if conf else None, leverage=D(lever) if lever else None,
        category=category, by_agent=agent, algo_leg=leg,  # type: ignore[arg-type]
    )


def buy(size: str, px: str, minute: float, **kw: Any) -> LedgerFill:
    return fill("buy", size, px, minute, **kw)


def sell(size: str, px: str, minute: float, **kw: Any) -> LedgerFill:
    return fill("sell", size, px, minute, **kw)


def funding(amount: str, minute: float, slot: str = "net") -> FundingEntry:
    return FundingEntry(f"bill{next(_ids)}", at(minute), slot, D(amount))  # type: ignore[arg-type]


def closed_row(side: str, qty: str, entry: str, exit_: str, gross: str, fee: str, funding_: str,
               net: str, minutes: str, entry_min: float, exit_min: float, *,
               conf: str | None = None, reason: str = "external") -> dict[str, Any]:
    return {
        "side": side, "quantity": D(qty), "entry_price": D(entry), "exit_price": D(exit_),
        "gross_pnl_usdt": D(gross), "fee_usdt": D(fee), "funding_usdt": D(funding_),
        "realized_pnl_usdt": D(net), "holding_minutes": D(minutes),
        "entry_time": at(entry_min), "exit_time": at(exit_min),
        "average_confidence": D(conf) if conf else None, "exit_reason": reason,
    }


def open_row(side: str, qty: str, avg: str, opened_min: float, *, gross: str = "0", fees: str = "0",
             funding_: str = "0", conf: str | None = None) -> dict[str, Any]:
    return {
        "side": side, "quantity": D(qty), "avg_entry_price": D(avg), "opened_at": at(opened_min),
        "realized_gross_usdt": D(gross), "fees_usdt": D(fees), "funding_usdt": D(funding_),
        "average_confidence": D(conf) if conf else None,
    }


def picked(obj: Position | ClosedPosition, expected: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in expected}


CASES = [
    pytest.param(
        # avg after the add: (2x50000 + 1x51000) / 3 = 50333.33333333
        BTC, [buy("2", "50000", 0, fee="-0.5", conf="80"), buy("1", "51000", 1, fee="-0.25", conf="50")],
        open_row("long", "3", "50333.33333333", 0, fees="-0.75", conf="70"), [],
        id="open-then-add-weighted-average",
    ),
    pytest.param(
        # partial: (52000 - 50333.33333333) x 1 x 0.01 = 16.66666667
        BTC, [buy("2", "50000", 0, fee="-0.5"), buy("1", "51000", 1, fee="-0.25"),
              sell("1", "52000", 2, fee="-0.26")],
        open_row("long", "2", "50333.33333333", 0, gross="16.66666667", fees="-1.01"), [],
        id="partial-reduce-keeps-average",
    ),
    pytest.param(
        # close: (49000 - 50333.33333333) x 2 x 0.01 = -26.66666667; gross 16.66666667 - 26.66666667
        # entry 151000/3, exit (52000 + 98000)/3 = 50000; fees -1.5; confidence (80x2 + 50)/3 = 70
        BTC, [buy("2", "50000", 0, fee="-0.5", conf="80"), buy("1", "51000", 1, fee="-0.25", conf="50"),
              sell("1", "52000", 2, fee="-0.26"), sell("2", "49000", 3, fee="-0.49", agent=True)],
        None,
        [closed_row("long", "3", "50333.33333333", "50000", "-10", "-1.5", "0", "-11.5", "3", 0, 3,
                    conf="70", reason="agent")],
        id="open-add-partial-close",
    ),
    pytest.param(
        # close 3 of 5: fee -0.5 x 3/5 = -0.3; gross (2100-2000) x 3 x 0.1 = 30; rest short 2 @ 2100
        ETH, [buy("3", "2000", 0, fee="-0.3"), sell("5", "2100", 10, fee="-0.5")],
        open_row("short", "2", "2100", 10, fees="-0.2"),
        [closed_row("long", "3", "2000", "2100", "30", "-0.6", "0", "29.4", "10", 0, 10)],
        id="flip-long-to-short",
    ),
    pytest.param(
        # short 1 @ 60000, buy 3 @ 59000: gross (59000-60000) x 1 x 0.01 x -1 = 10; fee -0.9/3 = -0.3
        BTC, [sell("1", "60000", 0, fee="-0.3"), buy("3", "59000", 5, fee="-0.9")],
        open_row("long", "2", "59000", 5, fees="-0.6"),
        [closed_row("short", "1", "60000", "59000", "10", "-0.6", "0", "9.4", "5", 0, 5)],
        id="flip-short-to-long",
    ),
    pytest.param(
        # fee -0.1 split 1/3 : 2/3 -> close -0.03333333, open -0.1 + 0.03333333 = -0.06666667
        ETH, [buy("1", "1000", 0), sell("3", "1000", 1, fee="-0.1")],
        open_row("short", "2", "1000", 1, fees="-0.06666667"),
        [closed_row("long", "1", "1000", "1000", "0", "-0.03333333", "0", "-0.03333333", "1", 0, 1)],
        id="flip-with-pro-rata-fee",
    ),
    pytest.param(
        # long 1 @1000 -> sell 3 @1100 (gross 10, fee -0.1 of -0.3) -> short 2 @1100 (fee -0.2)
        # -> buy 4 @1050: close 2, gross (1050-1100) x 2 x 0.1 x -1 = 10, fee -0.2 + -0.2
        ETH, [buy("1", "1000", 0), sell("3", "1100", 1, fee="-0.3"), buy("4", "1050", 2, fee="-0.4")],
        open_row("long", "2", "1050", 2, fees="-0.2"),
        [closed_row("long", "1", "1000", "1100", "10", "-0.1", "0", "9.9", "1", 0, 1),
         closed_row("short", "2", "1100", "1050", "10", "-0.4", "0", "9.6", "1", 1, 2)],
        id="double-flip",
    ),
    pytest.param(
        BTC, [buy("1", "50000", 0, fee="-0.2"), sell("1", "50000", 30, fee="-0.2")],
        None, [closed_row("long", "1", "50000", "50000", "0", "-0.4", "0", "-0.4", "30", 0, 30)],
        id="break-even-close",
    ),
    pytest.param(
        # maker rebates are positive: gross 10 x 2 x 0.1 = 2, fees +0.12, net 2.12
        ETH, [buy("2", "3000", 0, fee="0.06"), sell("2", "3010", 1, fee="0.06")],
        None, [closed_row("long", "2", "3000", "3010", "2", "0.12", "0", "2.12", "1", 0, 1)],
        id="fee-rebate",
    ),
    pytest.param(
        # same prices, ETH: (2100-2000) x 1 x 0.1 = 10
        ETH, [buy("1", "2000", 0), sell("1", "2100", 1)],
        None, [closed_row("long", "1", "2000", "2100", "10", "0", "0", "10", "1", 0, 1)],
        id="eth-contract-0.1",
    ),
    pytest.param(
        # same prices, BTC: (2100-2000) x 1 x 0.01 = 1
        BTC, [buy("1", "2000", 0), sell("1", "2100", 1)],
        None, [closed_row("long", "1", "2000", "2100", "1", "0", "0", "1", "1", 0, 1)],
        id="btc-contract-0.01",
    ),
    pytest.param(
        # funding -0.5 at 8 h and +0.2 at 16 h; fees -0.5; net 0 - 0.5 - 0.3 = -0.8
        BTC, [buy("1", "50000", 0, fee="-0.25"), funding("-0.5", 480), funding("0.2", 960),
              sell("1", "50000", 1000, fee="-0.25")],
        None, [closed_row("long", "1", "50000", "50000", "0", "-0.5", "-0.3", "-0.8", "1000", 0, 1000)],
        id="funding-between-fills",
    ),
    pytest.param(
        # opened 2025-01-01, closed 2026-01-01: 365 x 1440 = 525600 minutes
        BTC, [buy("1", "40000", -525600), sell("1", "50000", 0)],
        None, [closed_row("long", "1", "40000", "50000", "100", "0", "0", "100", "525600", -525600, 0)],
        id="position-older-than-any-window",
    ),
    pytest.param(
        # 90 s = 1.5 min; confidence only on the fill that has one: 60
        BTC, [buy("1", "50000", 0, conf="60"), buy("1", "50000", 0.5), sell("2", "50000", 1.5)],
        None, [closed_row("long", "2", "50000", "50000", "0", "0", "0", "0", "1.5", 0, 1.5, conf="60")],
        id="confidence-weights-only-fills-that-have-one",
    ),
    pytest.param(
        BTC, [buy("1", "50000", 0), sell("1", "45000", 1, category="full_liquidation")],
        None, [closed_row("long", "1", "50000", "45000", "-50", "0", "0", "-50", "1", 0, 1,
                          reason="liquidation")],
        id="liquidation-exit-reason",
    ),
    pytest.param(
        # avg (100 x 150.01 + 200 x 150.02) / 300 = 150.016666... (stored 150.01666667); gross from
        # the exact cost: 300 x 151 - (15001 + 30004) = 295 (from the rounded average: 294.999999)
        ONE, [buy("100", "150.01", 0), buy("200", "150.02", 1), sell("300", "151", 2)],
        None, [closed_row("long", "300", "150.01666667", "151", "295", "0", "0", "295", "2", 0, 2)],
        id="non-terminating-average-exact-gross",
    ),
    pytest.param(
        # avg (1 x 100 + 2 x 101) / 3 = 100.666... (stored 100.66666667); the partial close at the
        # rounded average: (102 - 100.66666667) x 1 = 1.33333333; the close: 306 - 302 = 4 exactly
        # (at the average: 1.33333333 + 2.66666666 = 3.99999999)
        ONE, [buy("1", "100", 0), buy("2", "101", 1), sell("1", "102", 2), sell("2", "102", 3)],
        None, [closed_row("long", "3", "100.66666667", "102", "4", "0", "0", "4", "3", 0, 3)],
        id="non-terminating-average-partial-then-close",
    ),
    pytest.param(
        # short at a third-cent average: 0.00000001 x 3 @ 1.00000001, 2.00000002, 3.00000003 -> the
        # products need 16 decimals; covered @ 1: 0.00000003 - 0.00000006000000060 -> gross
        # -(0.00000003 - 0.0000000600000006) x 1 = 0.0000000300000006 -> 0.00000003
        ONE, [sell("0.00000001", "1.00000001", 0), sell("0.00000001", "2.00000002", 1),
              sell("0.00000001", "3.00000003", 2), buy("0.00000003", "1", 3)],
        None, [closed_row("short", "0.00000003", "2.00000002", "1", "0.00000003", "0", "0",
                          "0.00000003", "3", 0, 3)],
        id="cost-products-of-sixteen-decimals",
    ),
    pytest.param(
        BTC, [sell("1", "50000", 0), buy("1", "51000", 1, category="adl")],
        None, [closed_row("short", "1", "50000", "51000", "-10", "0", "0", "-10", "1", 0, 1,
                          reason="adl")],
        id="adl-exit-reason",
    ),
]


@pytest.mark.parametrize(("instrument", "entries", "expected_open", "expected_closed"), CASES)
def test_fold(instrument: InstrumentSpec, entries: list[Entry], expected_open: dict[str, Any] | None,
              expected_closed: list[dict[str, Any]]) -> None:
    result = fold(entries, instrument)
    assert [picked(c, e) for c, e in zip(result.closed, expected_closed, strict=False)] == expected_closed
    assert len(result.closed) == len(expected_closed)
    if expected_open is None:
        assert result.position is None
    else:
        assert result.position is not None
        assert picked(result.position, expected_open) == expected_open
    assert result.anomalies == ()


HEDGED = [
    pytest.param(
        # long: (50500-50000) x 1 x 0.01 = 5; short: (49900-50100) x 2 x 0.01 x -1 = 4
        [buy("1", "50000", 0, slot="long"), sell("2", "50100", 1, slot="short"),
         sell("1", "50500", 2, slot="long"), buy("2", "49900", 3, slot="short")],
        {"long": closed_row("long", "1", "50000", "50500", "5", "0", "0", "5", "2", 0, 2),
         "short": closed_row("short", "2", "50100", "49900", "4", "0", "0", "4", "2", 1, 3)},
        id="long-short-open-close-both-sides",
    ),
]


@pytest.mark.parametrize(("entries", "expected"), HEDGED)
def test_long_short_mode_keeps_two_independent_positions(
    entries: list[LedgerFill], expected: dict[str, dict[str, Any]]
) -> None:
    for slot, row in expected.items():
        result = fold([e for e in entries if e.pos_side == slot], BTC)
        assert result.position is None
        assert [picked(c, row) for c in result.closed] == [row]
        assert result.closed[0].pos_side == slot


def test_long_short_over_close_is_an_anomaly_not_a_flip() -> None:
    opening, over = buy("1", "50000", 0, slot="long"), sell("2", "51000", 1, slot="long")
    result = fold([opening, over], BTC)
    assert result.position is not None and result.position.quantity == D("1")
    assert result.closed == ()
    assert [a.entry_id for a in result.anomalies] == [over.trade_id]
    assert "over-close" in result.anomalies[0].reason


def test_closing_a_long_short_slot_with_nothing_open_is_an_anomaly() -> None:
    result = fold([sell("1", "50000", 0, slot="long")], BTC)
    assert result.position is None and len(result.anomalies) == 1


def test_funding_with_no_open_position_is_an_anomaly() -> None:
    result = fold([funding("-1", 0)], BTC)
    assert result.position is None and result.anomalies[0].reason.startswith("funding -1")


def test_equal_times_sort_by_trade_id_and_funding_first() -> None:
    # Same instant: funding first (no position yet -> anomaly), then trade "a" opens, "b" closes:
    # short 1 @ 110 covered @ 100 -> (100 - 110) x 1 x 0.1 x -1 = +1.
    late_id = buy("1", "100", 0, trade_id="b")
    early_id = sell("1", "110", 0, trade_id="a")
    result = fold([late_id, funding("1", 0), early_id], ETH)
    assert result.closed[0].side == "short" and result.closed[0].gross_pnl_usdt == D("1")
    assert len(result.anomalies) == 1


def test_equal_times_sort_trade_ids_as_integers() -> None:
    # Same instant, trade 99 (buy 1) executed before trade 100 (sell 2): long 1 flips to short 1,
    # closed by 100 with gross (110 - 100) x 1 x 0.1 = 1. As text "100" < "99": no close at all.
    first, second = buy("1", "100", 0, trade_id="99"), sell("2", "110", 0, trade_id="100")
    result = fold([second, first], ETH)
    assert [c.closing_trade_id for c in result.closed] == ["100"]
    assert result.closed[0].gross_pnl_usdt == D("1")
    assert result.position is not None and result.position.side == "short"


def test_leverage_follows_opening_fills_and_is_carried_to_the_closed_row() -> None:
    result = fold([buy("1", "100", 0, lever="5"), buy("1", "100", 1, lever="10"),
                   sell("2", "100", 2, lever="3")], ETH)
    assert result.closed[0].leverage == D("10")


def test_a_fill_for_another_slot_is_refused() -> None:
    position = fold([buy("1", "100", 0)], ETH).position
    with pytest.raises(ValueError, match="slot long"):
        apply_fill(position, buy("1", "100", 1, slot="long"), ETH)


@pytest.mark.parametrize(("weight_sum", "quantity", "expected"), CONFIDENCE_CASES)
def test_a_closed_position_keeps_the_average_confidence_of_its_opening_fills(
    weight_sum: str, quantity: str, expected: str | None
) -> None:
    # The sums as the fold accumulated them; closing stores their ratio (shared.money)
    held = Position("net", "long", D(1), D(100), at(0), opened_quantity=D(1), opened_value=D(100),
                    confidence_weight_sum=D(weight_sum), confidence_quantity=D(quantity), fill_count=1)
    position, closed = apply_fill(held, sell("1", "100", 1), BTC)
    assert position is None and closed is not None
    assert closed.average_confidence == (None if expected is None else D(expected))
    assert held.average_confidence == closed.average_confidence  # what the open row's events carry


@pytest.mark.parametrize(("closing", "reason"), [
    pytest.param(sell("1", "49000", 1, leg="sl"), "stop_loss", id="the-stop-loss-leg-fired"),
    pytest.param(sell("1", "52000", 1, leg="tp", agent=True), "take_profit",
                 id="a-leg-says-more-than-the-orders-origin"),
    pytest.param(sell("1", "52000", 1), "external", id="no-algo-no-tool-call"),
    pytest.param(sell("1", "52000", 1, agent=True), "agent", id="an-agent-close"),
    pytest.param(sell("1", "45000", 1, leg="sl", category="full_liquidation"), "liquidation",
                 id="the-category-wins-over-a-leg"),
])
def test_the_exit_reason_of_a_close(closing: LedgerFill, reason: str) -> None:
    assert exit_reason(closing) == reason
    (closed,) = fold([buy("1", "50000", 0), closing], BTC).closed
    assert closed.exit_reason == reason
