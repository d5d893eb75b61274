"""Performance metrics pinned by hand-computed cases (definitions: docs/metrics.md)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.metrics.performance import PerformanceInputs, metric_frames
from services.metrics.rows import CalibrationRow, PerformanceRow, largest_remainder, stored_rows
from shared.definitions import DEFINITIONS_VERSION
from tests.metrics.frames import NOW, ago, closed, inputs, opened, order


def compute(data: PerformanceInputs) -> dict[str, PerformanceRow]:
    performance = stored_rows(metric_frames(data, NOW)).performance
    return {row.window: row for row in performance}


def calibrate(data: PerformanceInputs, window: str) -> dict[str, CalibrationRow]:
    rows = stored_rows(metric_frames(data, NOW)).calibration
    return {row.bucket: row for row in rows if row.window == window}


# ------------------------------------------------------------------------------------ Sharpe
@pytest.mark.parametrize(
    ("equity", "expected"),
    [
        # returns +10 %, -10 %, +10 %: mean 1/30, sample std sqrt(0.02667 / 2) = 0.11547;
        # mean / std = 1 / (2 sqrt 3); x sqrt(105120) = sqrt(8760) = 93.5948716...
        # (NOW = 12:00: the points sit in the buckets 11:40, 11:45, 11:50 and 11:55)
        pytest.param([(19, 100.0), (14, 110.0), (9, 99.0), (4, 108.9)], Decimal("93.594872"),
                     id="known-series"),
        # the last point of a bucket is its sample: the earlier 90 and 200 are ignored
        pytest.param([(19.5, 90.0), (19, 100.0), (14.5, 200.0), (14, 110.0), (9, 99.0),
                      (4, 108.9)], Decimal("93.594872"), id="last-point-per-bucket"),
        # bucket 3 has no point: it repeats 100 (a zero return). Returns 0, +10 %, +10 %:
        # mean 1/15, std sqrt(1/150) -> ratio 2 / sqrt 3; x sqrt(105120) = 2 sqrt(35040)
        pytest.param([(19, 100.0), (9, 110.0), (4, 121.0)], Decimal("374.379487"),
                     id="empty-bucket-is-a-zero-return"),
        pytest.param([(9, 100.0), (4, 110.0)], None, id="one-return-is-null"),
        pytest.param([(14, 100.0), (9, 100.0), (4, 100.0)], None, id="zero-std-is-null"),
        pytest.param([(14, 100.0), (9, 0.0), (4, 50.0)], None, id="non-positive-equity-is-null"),
        pytest.param([], None, id="no-equity-is-null"),
    ],
)
def test_sharpe(equity: list[tuple[float, float]], expected: Decimal | None) -> None:
    points = [(ago(minutes=minutes), value) for minutes, value in equity]
    rows = compute(inputs(equity=points))
    assert rows["daily"].sharpe_ratio == expected
    assert rows["all_time"].sharpe_ratio == expected


def test_sharpe_uses_only_points_inside_the_window() -> None:
    old = [(ago(hours=30), 50.0), (ago(hours=29), 500.0)]  # before the daily window
    recent = [(ago(minutes=m), v) for m, v in [(19, 100.0), (14, 110.0), (9, 99.0), (4, 108.9)]]
    rows = compute(inputs(equity=old + recent))
    assert rows["daily"].sharpe_ratio == Decimal("93.594872")
    assert rows["weekly"].sharpe_ratio != Decimal("93.594872")


# --------------------------------------------------------------------- trades and orders
# ------------------------------------------------------------------------------ max drawdown
@pytest.mark.parametrize(
    ("equity", "expected"),
    [
        # peaks 1000, 1200, 1250; falls 1000 -> 950 = 5 %, 1200 -> 1020 = 15 %,
        # 1250 -> 1100 = 12 %: the deepest in percent is 180 / 1200 = 15 %. (In USDT the
        # largest fall is 180 as well; the next case separates the two.)
        pytest.param(["1000", "950", "1200", "1020", "1250", "1100"], Decimal("15.0000"),
                     id="deepest-of-three"),
        # 100 -> 80 is 20 USDT = 20 %; 1000 -> 850 is 150 USDT = 15 %: percent decides
        pytest.param(["100", "80", "1000", "850"], Decimal("20.0000"), id="percent-not-usdt"),
        # 3 / 7 x 100 = 42.857142... -> 42.8571; the later rise to 8 is no new fall
        pytest.param(["7", "4", "8"], Decimal("42.8571"), id="rounded-to-4-decimals"),
        # 200 -> 199.9999: 0.0001 / 200 x 100 = 0.00005 exactly: half-even -> 0.0000
        pytest.param(["200", "199.9999"], Decimal("0.0000"), id="a-tie-rounds-half-even"),
        # the peak 100 is the running maximum, -50 is 150 below it: 150 %
        pytest.param(["-10", "100", "-50"], Decimal("150.0000"), id="below-zero"),
        pytest.param(["100", "101", "103"], Decimal("0.0000"), id="never-fell"),
        pytest.param(["0", "-5"], None, id="no-positive-peak-is-null"),
        pytest.param([], None, id="no-equity-is-null"),
    ],
)
def test_max_drawdown(equity: list[str], expected: Decimal | None) -> None:
    points = [(ago(minutes=60 - i), value) for i, value in enumerate(equity)]
    rows = compute(inputs(equity=points))
    assert rows["daily"].max_drawdown_pct == expected
    assert rows["all_time"].max_drawdown_pct == expected


def test_max_drawdown_runs_its_peak_from_the_windows_first_point() -> None:
    old = [(ago(hours=30), "2000")]  # before the daily window: its peak does not count there
    recent = [(ago(hours=2), "1000"), (ago(hours=1), "900"), (ago(minutes=1), "950")]
    rows = compute(inputs(equity=old + recent))
    assert rows["daily"].max_drawdown_pct == Decimal("10.0000")  # 1000 -> 900
    assert rows["all_time"].max_drawdown_pct == Decimal("55.0000")  # 2000 -> 900


def test_points_of_one_time_fall_in_the_order_they_were_written() -> None:
    at = ago(minutes=5)  # same as_of: the row id orders them, 1000 then 800
    rows = compute(inputs(equity=[(at, "1000"), (at, "800")]))
    assert rows["daily"].max_drawdown_pct == Decimal("20.0000")


def test_win_rate_counts_break_even_as_not_a_win() -> None:
    trades = [closed(ago(hours=h), pnl) for h, pnl in [(1, "10"), (2, "0"), (3, "-5"), (4, "2.5")]]
    row = compute(inputs(closed_rows=trades))["daily"]
    assert row.win_rate == Decimal("0.5000")  # 2 wins of 4; the 0 is not a win
    assert row.closed_positions == 4
    assert row.biggest_win_usdt == Decimal("10")
    assert row.biggest_loss_usdt == Decimal("-5")
    assert row.realized_pnl_usdt == Decimal("7.5")


def test_closed_positions_belong_to_windows_by_exit_time() -> None:
    trades = [
        closed(ago(hours=2), "3", entry_time=ago(hours=100)),   # entered long ago: daily
        closed(ago(hours=25), "-1", entry_time=ago(hours=26)),  # weekly, not daily
        closed(ago(hours=24 * 8), "7"),                          # all_time only
    ]
    rows = compute(inputs(closed_rows=trades))
    assert [rows[w].closed_positions for w in ("daily", "weekly", "all_time")] == [1, 2, 3]
    assert rows["weekly"].win_rate == Decimal("0.5000")
    assert rows["all_time"].realized_pnl_usdt == Decimal("9")
    assert rows["all_time"].biggest_win_usdt == Decimal("7")


def test_biggest_loss_is_the_minimum_even_when_every_trade_won() -> None:
    row = compute(inputs(closed_rows=[closed(ago(1), "4"), closed(ago(2), "1.5")]))["daily"]
    assert (row.biggest_win_usdt, row.biggest_loss_usdt) == (Decimal("4"), Decimal("1.5"))


def test_average_leverage_and_confidence_over_orders_filled_in_the_window() -> None:
    orders = [
        order(ago(hours=1), "5", "60"),
        order(ago(hours=2), "10", "75"),
        order(ago(hours=3), "20", None),   # placed outside the product: no confidence
        order(ago(hours=30), "100", "5"),  # filled before the daily window
    ]
    rows = compute(inputs(orders=orders))
    assert rows["daily"].average_leverage == Decimal("11.6667")  # 35 / 3
    assert rows["daily"].average_confidence == Decimal("67.50")  # (60 + 75) / 2
    assert rows["weekly"].average_leverage == Decimal("33.7500")  # 135 / 4
    assert rows["weekly"].average_confidence == Decimal("46.67")  # 140 / 3


# ------------------------------------------------------------------------------ hold ratios
@pytest.mark.parametrize(
    ("closed_rows", "open_rows", "expected"),
    [
        # BTC long 1000 from -24h to -12h, ETH short -400 from -18h to -6h: net +600 while
        # both are open -> long 12 h, short 6 h, flat 6 h of 24
        pytest.param(
            [closed(ago(12), "1", entry_time=ago(24), notional="1000"),
             closed(ago(6), "1", entry_time=ago(18), notional="-400")], [],
            ("0.5000", "0.2500", "0.2500"), id="long-short-flat-overlap-net-long"),
        # the same with the short bigger (-1500): the overlap is net short
        pytest.param(
            [closed(ago(12), "1", entry_time=ago(24), notional="1000"),
             closed(ago(6), "1", entry_time=ago(18), notional="-1500")], [],
            ("0.2500", "0.5000", "0.2500"), id="overlap-net-short"),
        # an exact hedge is flat
        pytest.param(
            [closed(ago(12), "1", entry_time=ago(24), notional="1000.00000001"),
             closed(ago(12), "1", entry_time=ago(24), notional="-1000.00000001")], [],
            ("0.0000", "0.0000", "1.0000"), id="exact-hedge-is-flat"),
        # a position from -36h to -12h: the daily window sees its second half only
        pytest.param([closed(ago(12), "1", entry_time=ago(36), notional="5")], [],
                     ("0.5000", "0.0000", "0.5000"), id="window-cuts-position-in-half"),
        # still open since -6h: held up to now
        pytest.param([], [opened(ago(6), "-20")], ("0.0000", "0.2500", "0.7500"),
                     id="open-position-until-now"),
        # thirds: Hamilton rounding keeps the sum at exactly 1
        pytest.param(
            [closed(ago(16), "1", entry_time=ago(24), notional="3"),
             closed(ago(8), "1", entry_time=ago(16), notional="-3")], [],
            ("0.3334", "0.3333", "0.3333"), id="thirds-sum-to-one"),
    ],
)
def test_hold_ratios_daily(
    closed_rows: list[dict[str, object]], open_rows: list[dict[str, object]],
    expected: tuple[str, str, str],
) -> None:
    row = compute(inputs(closed_rows=closed_rows, open_rows=open_rows))["daily"]
    held = (row.hold_ratio_long, row.hold_ratio_short, row.hold_ratio_flat)
    assert held == tuple(Decimal(x) for x in expected)
    assert sum(held) == 1  # type: ignore[arg-type]


def test_weekly_window_cuts_position_too() -> None:
    position = closed(ago(12), "1", entry_time=ago(36), notional="5")
    row = compute(inputs(closed_rows=[position]))["weekly"]
    # long 24 h of 168: 0.142857 -> 0.1429; flat 144 / 168 = 0.857143 -> 0.8571
    assert (row.hold_ratio_long, row.hold_ratio_short, row.hold_ratio_flat) == (
        Decimal("0.1429"), Decimal("0"), Decimal("0.8571"))


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        pytest.param([1, 1, 1], ["0.3334", "0.3333", "0.3333"], id="thirds"),
        pytest.param([2, 1, 0], ["0.6667", "0.3333", "0"], id="two-thirds"),
        pytest.param([0, 0, 5], ["0", "0", "1"], id="all-flat"),
        pytest.param([0, 0, 0], None, id="empty-window"),
    ],
)
def test_largest_remainder(parts: list[int], expected: list[str] | None) -> None:
    result = largest_remainder(parts)
    assert result == (None if expected is None else [Decimal(x) for x in expected])


# ------------------------------------------------------------------------- empty account
def test_account_with_no_trades_gets_nulls_and_is_flat() -> None:
    rows = compute(inputs(created_at=ago(hours=48)))
    assert set(rows) == {"daily", "weekly", "all_time"}
    for row in rows.values():
        assert row.definitions_version == DEFINITIONS_VERSION
        assert row.window_end == NOW
        assert (row.sharpe_ratio, row.win_rate, row.average_leverage, row.average_confidence,
                row.biggest_win_usdt, row.biggest_loss_usdt, row.realized_pnl_usdt,
                row.stop_loss_resting_ratio) == (None,) * 8
        assert row.closed_positions == 0
        assert (row.hold_ratio_long, row.hold_ratio_short, row.hold_ratio_flat) == (
            Decimal(0), Decimal(0), Decimal(1))
    assert rows["daily"].window_start == ago(hours=24)
    assert rows["weekly"].window_start == ago(hours=24 * 7)
    assert rows["all_time"].window_start == ago(hours=48)  # the account's creation


def test_all_time_starts_at_the_first_trace_before_creation() -> None:
    data = inputs(created_at=ago(hours=1), closed_rows=[closed(ago(3), "1", entry_time=ago(5))])
    assert compute(data)["all_time"].window_start == ago(hours=5)


# --------------------------------------------------------------------------- calibration
def test_confidence_calibration_buckets() -> None:
    trades = [
        closed(ago(1), "10", confidence=40.0),
        closed(ago(1), "-4", confidence=50.0),     # 50 opens the 50-70 bucket
        closed(ago(1), "6", confidence=69.99),
        closed(ago(1), "0", confidence=70.0),      # break-even: not a win
        closed(ago(1), "3", confidence=100.0),     # 100 is in 85-100
        closed(ago(1), "99", confidence=None),     # no confidence: in no bucket
    ]
    buckets = calibrate(inputs(closed_rows=trades), "daily")
    summary = {b: (r.closed_positions, r.win_rate, r.mean_pnl_usdt) for b, r in buckets.items()}
    assert summary == {
        "0-50": (1, Decimal("1.0000"), Decimal("10.00000000")),
        "50-70": (2, Decimal("0.5000"), Decimal("1.00000000")),
        "70-85": (1, Decimal("0.0000"), Decimal("0E-8")),
        "85-100": (1, Decimal("1.0000"), Decimal("3.00000000")),
    }


def test_calibration_of_an_empty_account_has_all_buckets_empty() -> None:
    buckets = calibrate(inputs(), "all_time")
    assert {b: (r.closed_positions, r.win_rate, r.mean_pnl_usdt) for b, r in buckets.items()} == {
        b: (0, None, None) for b in ("0-50", "50-70", "70-85", "85-100")
    }
