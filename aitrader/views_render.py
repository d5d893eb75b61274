"""The CLI views' tables (rich) and equity sparkline: pure, from the console's rows to renderables.

Each table has core columns that fit an 80-column terminal and extra ones shown from WIDE
columns up. Times are UTC; money is formatted from Decimal (aitrader.summary's formats).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

from rich.table import Table

from aitrader.summary import NA, fixed, held, percent, price, share, usdt

WIDE: Final = 110
SPARKS: Final = "▁▂▃▄▅▆▇█"
Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Row], str]
    right: bool = False
    wide: bool = False  # shown only on a wide terminal


def when(value: datetime | None, seconds: bool = False) -> str:
    if value is None:
        return NA
    return value.astimezone(UTC).strftime("%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M")


def _day(value: datetime | None) -> str:
    return NA if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _plan_leg(leg: Literal["take_profit", "stop_loss"]) -> Callable[[Row], str]:
    def cell(row: Row) -> str:
        plan = row.get("exit_plan") or {}
        return str(plan.get(leg)) if plan.get(leg) is not None else "-"

    return cell


def _key(name: str, form: Callable[[Any], str] = price) -> Callable[[Row], str]:
    return lambda row: form(row.get(name))


def _signed(name: str) -> Callable[[Row], str]:
    return lambda row: usdt(row.get(name), signed=True)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


ACCOUNTS: Final = (
    Column("account", _key("external_id", str)),
    Column("mode", _key("mode", str)),
    Column("status", _key("status", str)),
    Column("equity", _key("equity_usdt", usdt), right=True),
    Column("uPnL", _signed("unrealized_pnl_usdt"), right=True),
    Column("open", _key("open_positions", str), right=True),
    Column("reconciled", _key("last_reconciled_at", _day)),
    Column("created", _key("created_at", _day), wide=True),
)
OPEN: Final = (
    Column("symbol", _key("symbol", str)),
    Column("side", _key("side", str)),
    Column("qty", _key("quantity"), right=True),
    Column("entry", _key("avg_entry_price"), right=True),
    Column("mark", _key("mark_price"), right=True),
    Column("uPnL", _signed("unrealized_pnl_usdt"), right=True),
    Column("lev", _key("leverage", lambda v: fixed(v, 0, "x") if v is not None else NA), right=True),
    Column("SL", _plan_leg("stop_loss"), right=True),
    Column("SL rests", lambda row: "yes" if row.get("stop_loss_resting") else "no", wide=True),
    Column("TP", _plan_leg("take_profit"), right=True, wide=True),
    Column("liq.", _key("liquidation_price"), right=True, wide=True),
    Column("conf.", _key("average_confidence"), right=True, wide=True),
    Column("opened", _key("opened_at", when), wide=True),
)
TRADES: Final = (
    Column("exit (UTC)", _key("exit_time", when)),
    Column("symbol", _key("symbol", str)),
    Column("side", _key("side", str)),
    Column("qty", _key("quantity"), right=True, wide=True),
    Column("entry", _key("entry_price"), right=True),
    Column("exit", _key("exit_price"), right=True),
    Column("net PnL", _signed("realized_pnl_usdt"), right=True),
    Column("fees", _key("fee_usdt", lambda v: usdt(-v if v is not None else None)), right=True, wide=True),
    Column("held", _key("holding_minutes", held), right=True, wide=True),
    Column("conf.", _key("average_confidence"), right=True, wide=True),
    Column("reason", _key("exit_reason", str)),
)
CALLS: Final = (
    Column("time (UTC)", _key("created_at", lambda v: when(v, seconds=True))),
    Column("tool", _key("tool", str)),
    Column("status", _key("status", str)),
    Column("ms", _key("latency_ms", lambda v: NA if v is None else str(v)), right=True),
    Column("transport", _key("transport", lambda v: v or "-"), wide=True),
    Column("request", _key("request", _compact), wide=True),
    Column("error", _key("error", lambda v: v or "")),
)
EXITS: Final = (
    Column("exit reason", _key("exit_reason", str)),
    Column("closed", _key("closed_positions", str), right=True),
    Column("realized PnL", _signed("realized_pnl_usdt"), right=True),
)
CALIBRATION: Final = (
    Column("confidence", _key("bucket", str)),
    Column("closed", _key("closed_positions", str), right=True),
    Column("win rate", _key("win_rate", share), right=True),
    Column("mean PnL", _signed("mean_pnl_usdt"), right=True),
)


def table(title: str, columns: Sequence[Column], rows: Sequence[Row], width: int) -> Table:
    """A borderless table of `rows`; the wide-only columns from WIDE terminal columns up."""
    shown = [c for c in columns if width >= WIDE or not c.wide]
    grid = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    for column in shown:
        last = column is shown[-1]
        grid.add_column(
            column.header,
            justify="right" if column.right else "left",
            no_wrap=not last,
            overflow="ellipsis" if last else "fold",
        )
    for row in rows:
        grid.add_row(*(column.cell(row) for column in shown))
    if not rows:
        grid.caption = "none"
    return grid


def performance_table(perf: Row) -> Table:
    """The window's figures, two columns: what and how much."""
    grid = Table(title=f"Performance ({perf['window']})", title_justify="left", box=None, show_header=False)
    grid.add_column(no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    items = [
        ("closed positions", str(perf["closed_positions"])),
        ("realized PnL (USDT)", usdt(perf["realized_pnl_usdt"], signed=True)),
        ("win rate", share(perf["win_rate"])),
        ("sharpe ratio", fixed(perf["sharpe_ratio"])),
        ("max drawdown (%)", fixed(perf["max_drawdown_pct"])),
        ("biggest win (USDT)", usdt(perf["biggest_win_usdt"], signed=True)),
        ("biggest loss (USDT)", usdt(perf["biggest_loss_usdt"], signed=True)),
        ("average leverage", fixed(perf["average_leverage"], suffix="x")),
        ("average confidence", price(perf["average_confidence"])),
        ("time long / short / flat", " / ".join(share(perf[k]) for k in _HOLDS)),
        ("stop resting at close", share(perf["stop_loss_resting_ratio"])),
        ("window", f"{_day(perf['window_start'])} .. {_day(perf['window_end'])}"),
        ("computed", f"{_day(perf['updated_at'])} (definitions v{perf['definitions_version']})"),
    ]
    for name, value in items:
        grid.add_row(name, value)
    return grid


_HOLDS: Final = ("hold_ratio_long", "hold_ratio_short", "hold_ratio_flat")


def sparkline(values: Sequence[Decimal], width: int = 60) -> str:
    """One line of block characters, the last value of each of `width` chunks, low to high."""
    if not values:
        return ""
    chunk = max(1, -(-len(values) // width))  # ceiling division: at most `width` marks
    picked = [values[min(i + chunk, len(values)) - 1] for i in range(0, len(values), chunk)]
    low, high = min(picked), max(picked)
    if high == low:
        return SPARKS[0] * len(picked)
    steps = len(SPARKS) - 1
    return "".join(SPARKS[int((v - low) / (high - low) * steps)] for v in picked)


def equity_line(values: Sequence[Decimal], width: int) -> str:
    """`equity 9990.00 ▁▃▅█ 10012.35 (+0.22 %)`, or why there is none."""
    if len(values) < 2:
        return "equity: too few samples to draw"
    first, last = values[0], values[-1]
    change = (last - first) / first * 100 if first > 0 else None
    marks = sparkline(values, max(10, min(60, width - 40)))
    return f"equity {usdt(first)} {marks} {usdt(last)} ({percent(change, signed=True)})"
