"""Whether a stop-loss rested when a position closed (services.metrics.exits), one named case
each: a position closed an hour ago (entered 3 h ago), and the algo orders with a stop leg."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.metrics.performance import metric_frames
from services.metrics.rows import stored_rows
from tests.metrics.frames import NOW, ago, algo, closed, inputs

SECOND = 1 / 3600


@pytest.mark.parametrize(
    ("algos", "reason", "resting"),
    [
        pytest.param([algo(ago(3), None)], "agent", True, id="live-stop"),
        pytest.param([algo(ago(3), ago(1))], "agent", True, id="canceled-at-the-close"),
        pytest.param([algo(ago(3), ago(1.5))], "agent", False, id="canceled-before-the-close"),
        pytest.param([algo(ago(0.5), None)], "agent", False, id="placed-after-the-close"),
        # the newest stop created before the close ended early; an older one still rested
        pytest.param(
            [algo(ago(10), ago(0.5)), algo(ago(3), ago(2))], "agent", True, id="an-older-stop-still-rests"
        ),
        pytest.param(
            [algo(ago(3), ago(1 + SECOND), fired=True)], "stop_loss", True, id="the-stop-fired-and-closed-it"
        ),
        pytest.param(
            [algo(ago(3), ago(1 + SECOND), fired=True)],
            "take_profit",
            True,
            id="the-oco-took-profit-its-stop-rested",
        ),
        pytest.param(
            [algo(ago(3), ago(1 + SECOND), fired=True)], "agent", False, id="fired-a-part-then-closed-by-hand"
        ),
        pytest.param(
            [algo(ago(5), ago(4), fired=True)], "stop_loss", False, id="fired-before-the-position-opened"
        ),
        pytest.param([algo(ago(3), None, side="buy")], "agent", False, id="opening-side"),
        pytest.param([algo(ago(3), None, symbol="ETH-USDT-SWAP")], "agent", False, id="other-symbol"),
        pytest.param([], "stop_loss", False, id="no-algo"),
    ],
)
def test_stop_resting_at_the_close(algos: list[dict[str, object]], reason: str, resting: bool) -> None:
    position = closed(ago(1), "5", entry_time=ago(3), exit_reason=reason)
    rows = stored_rows(metric_frames(inputs(closed_rows=[position], algos=algos), NOW))
    daily = next(r for r in rows.performance if r.window == "daily")
    assert daily.stop_loss_resting_ratio == Decimal(1 if resting else 0)
    exits = {(r.exit_reason, r.closed_positions) for r in rows.exits if r.window == "daily"}
    assert (reason, 1) in exits and len(exits) == 7


def test_ratio_and_reasons_by_window() -> None:
    positions = [
        closed(ago(1), "-3.5", entry_time=ago(2), exit_reason="stop_loss"),
        closed(ago(2), "1.25", entry_time=ago(3)),
        closed(ago(30), "4", entry_time=ago(31)),  # weekly only
    ]
    algos = [
        algo(ago(1.9), ago(1 + SECOND), fired=True)
    ]  # the stop of the first, placed after the second closed
    rows = stored_rows(metric_frames(inputs(closed_rows=positions, algos=algos), NOW))
    ratio = {r.window: r.stop_loss_resting_ratio for r in rows.performance}
    assert ratio == {"daily": Decimal("0.5"), "weekly": Decimal("0.3333"), "all_time": Decimal("0.3333")}
    by_reason = {
        (r.window, r.exit_reason): (r.closed_positions, r.realized_pnl_usdt)
        for r in rows.exits
        if r.closed_positions
    }
    assert by_reason == {
        ("daily", "stop_loss"): (1, Decimal("-3.5")),
        ("daily", "agent"): (1, Decimal("1.25")),
        ("weekly", "stop_loss"): (1, Decimal("-3.5")),
        ("weekly", "agent"): (2, Decimal("5.25")),
        ("all_time", "stop_loss"): (1, Decimal("-3.5")),
        ("all_time", "agent"): (2, Decimal("5.25")),
    }
