"""The demo summary's pure formatting: figures (drawdown, return, biggest win/loss) and text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from aitrader.summary import (
    ClosedTrade,
    EquityPoint,
    OpenPosition,
    Performance,
    Summary,
    biggest,
    fixed,
    held,
    max_drawdown,
    paid,
    plan_text,
    render,
    return_pct,
)

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def curve(*values: str) -> list[EquityPoint]:
    return [EquityPoint(T0 + timedelta(seconds=5 * i), D(v)) for i, v in enumerate(values)]


def trade(symbol: str, side: str, pnl: str | None, fee: str = "-1.5", funding: str = "0") -> ClosedTrade:
    return ClosedTrade(
        symbol,
        side,
        D("3"),
        D("50000.10000000"),
        D("50010"),
        None if pnl is None else D(pnl),
        D(fee),
        D(funding),
        D("0.25"),
        D("74.67"),
        "agent",
    )


PERF = Performance(D("0.5"), None, D("4.3333"), D("62.67"), D("0.6773"), D("0.0027"), D("0.32"))


@pytest.mark.parametrize(
    ("value", "places", "signed", "text"),
    [
        pytest.param(D("1.005"), 2, False, "1.00", id="half-even"),
        pytest.param(D("-0.001"), 2, True, "+0.00", id="tiny-loss-is-no-negative-zero"),
        pytest.param(D("-1.14218250"), 2, True, "-1.14", id="signed-loss"),
        pytest.param(D("0.6586965"), 3, True, "+0.659", id="signed-gain"),
        pytest.param(None, 2, False, "n/a", id="unknown"),
    ],
)
def test_fixed(value: D | None, places: int, signed: bool, text: str) -> None:
    assert fixed(value, places, signed=signed) == text


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        pytest.param(curve("100", "101", "103"), (D(0), D(0)), id="only-up"),
        # peak 110, trough 99: 11 USDT, 10 % of the peak; the earlier dip 100 -> 95 is smaller
        pytest.param(curve("100", "95", "110", "99", "120"), (D(10), D(11)), id="deepest-from-a-later-peak"),
        # 100 -> 80 (20 USDT, 20 %) is deeper than 1000 -> 850 (150 USDT, 15 %): percent decides,
        # as the stored max_drawdown_pct does
        pytest.param(curve("100", "80", "1000", "850"), (D(20), D(20)), id="deepest-in-percent"),
        pytest.param(curve("100"), (D(0), D(0)), id="one-point"),
        pytest.param(curve("0", "-5"), None, id="no-positive-peak"),
        pytest.param([], None, id="no-points"),
    ],
)
def test_max_drawdown(points: list[EquityPoint], expected: tuple[D, D] | None) -> None:
    assert max_drawdown(points) == expected


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        pytest.param(curve("10000", "9998.06"), D("-0.0194"), id="loss"),
        pytest.param(curve("200", "150", "250"), D("25"), id="first-to-last"),
        pytest.param(curve("10000"), None, id="one-point"),
    ],
)
def test_return_pct(points: list[EquityPoint], expected: D | None) -> None:
    assert return_pct(points) == expected


@pytest.mark.parametrize(
    ("pnls", "win", "loss"),
    [
        pytest.param(["-0.66", "-1.14"], None, "-1.14", id="all-losses-no-win"),
        pytest.param(["2.5", "0.4"], "2.5", None, id="all-wins-no-loss"),
        pytest.param(["0", None, "-0.1", "3"], "3", "-0.1", id="zero-and-unknown-are-neither"),
        pytest.param([], None, None, id="no-trades"),
    ],
)
def test_biggest_win_is_positive_and_loss_negative(
    pnls: list[str | None], win: str | None, loss: str | None
) -> None:
    trades = [trade("BTC-USDT-SWAP", "long", p) for p in pnls]
    found_win, found_loss = biggest(trades, wins=True), biggest(trades, wins=False)
    assert (found_win and found_win.net_pnl_usdt) == (win and D(win))
    assert (found_loss and found_loss.net_pnl_usdt) == (loss and D(loss))


@pytest.mark.parametrize(
    ("plan", "text"),
    [
        pytest.param(
            {
                "take_profit": "51985.6",
                "stop_loss": "49947",
                "invalidation_condition": "1m close below EMA50",
            },
            "TP 51985.6, SL 49947, invalid if: 1m close below EMA50",
            id="full",
        ),
        pytest.param(
            {"take_profit": None, "stop_loss": "3576.4", "invalidation_condition": None},
            "SL 3576.4",
            id="stop-only",
        ),
        pytest.param(None, "none", id="no-plan"),
    ],
)
def test_plan_text(plan: dict[str, str | None] | None, text: str) -> None:
    assert plan_text(plan) == text


def test_paid_amounts_and_holding_time() -> None:
    assert paid(D("-2.58087900")) == "2.58 USDT"
    assert paid(D("0.75")) == "0.75 USDT received"
    assert paid(D("0E-8")) == "0.00 USDT"
    assert (held(D("0.25")), held(D("125.5")), held(None)) == ("0.2 min", "2h 05m", "n/a")


def test_summary_of_two_losing_trades_reads_without_none_or_reprs() -> None:
    summary = Summary(
        closed=[trade("BTC-USDT-SWAP", "long", "-1.1421825"), trade("ETH-USDT-SWAP", "short", "-0.6586965")],
        open=[OpenPosition("SOL-USDT-SWAP", "long", D("2"), D("150.5"), None, None)],
        equity=curve("10000", "9999.5", "10000.4", "9998.2"),
        fee_usdt=D("-2.58087900"),
        funding_usdt=D("0"),
        performance=PERF,
    )
    text = render(summary)
    assert "None" not in text and "{" not in text and "Decimal" not in text
    heads = [line for line in text.splitlines() if line and not line.startswith((" ", "\u2502"))]
    assert heads[:5] == [
        "Closed trades",
        "Open positions",
        "Result",
        "Performance (all time)",
        "Equity curve (USDT, 4 samples)",
    ]
    assert "net PnL -1.80 USDT over 2 trades (0 won, 2 lost)" in text
    lines = {
        line.split("  ")[1].strip(): line.split("  ")[-1].strip()
        for line in text.splitlines()
        if line.startswith("  ") and "  " in line[2:]
    }
    assert lines["return"] == "-0.018 %" and lines["max drawdown"] == "0.022 % (2.20 USDT)"
    assert lines["fees paid"] == "2.58 USDT" and lines["sharpe ratio"] == "n/a"
    assert lines["biggest win"] == "none"
    assert lines["biggest loss"] == "-1.14 USDT (BTC-USDT-SWAP long)"
    assert lines["win rate"] == "50.0 %" and lines["average leverage"] == "4.33x"
    assert "SOL-USDT-SWAP  long          2      150.5        n/a       n/a" in text
    assert "seconds since the first sample" in text  # the chart is drawn


def test_summary_without_trades_or_metrics() -> None:
    text = render(
        Summary(closed=[], open=[], equity=curve("10000"), fee_usdt=D(0), funding_usdt=D(0), performance=None)
    )
    assert "Closed trades\n  none" in text and "Open positions\n  none" in text
    assert "not computed yet" in text and "too few samples to draw" in text
    assert "biggest win        none" in text and "return             n/a" in text
