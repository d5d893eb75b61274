"""The demo's closing summary, as a trader reads it: pure, from the figures to the text.

Money is Decimal throughout; a figure that is unknown reads "n/a", never "None". Fee and
funding amounts carry OKX's sign (negative = paid), and are shown as amounts paid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import plotext

from shared import drawdown
from shared.money import plain_decimal

NA = "n/a"
CHART_WIDTH, CHART_HEIGHT = 76, 16


@dataclass(frozen=True)
class ClosedTrade:
    """A closed position (`positions_closed`)."""

    symbol: str
    side: str
    contracts: Decimal
    entry_price: Decimal | None
    exit_price: Decimal | None
    net_pnl_usdt: Decimal | None  # gross + fees + funding
    fee_usdt: Decimal
    funding_usdt: Decimal
    holding_minutes: Decimal | None
    confidence: Decimal | None
    exit_reason: str


@dataclass(frozen=True)
class OpenPosition:
    """An open position as `get_account_state` values it."""

    symbol: str
    side: str
    contracts: Decimal
    entry_price: Decimal | None
    mark_price: Decimal | None
    unrealized_pnl_usdt: Decimal | None


@dataclass(frozen=True)
class EquityPoint:
    as_of: datetime
    equity_usdt: Decimal


@dataclass(frozen=True)
class Performance:
    """The metrics service's all-time figures (`get_performance_metrics`); None = not computed."""

    win_rate: Decimal | None
    sharpe_ratio: Decimal | None
    average_leverage: Decimal | None
    average_confidence: Decimal | None
    hold_ratio_long: Decimal | None
    hold_ratio_short: Decimal | None
    hold_ratio_flat: Decimal | None


PERFORMANCE_FIELDS = tuple(f.name for f in fields(Performance))


@dataclass(frozen=True)
class Summary:
    closed: Sequence[ClosedTrade]
    open: Sequence[OpenPosition]
    equity: Sequence[EquityPoint]  # in time order
    fee_usdt: Decimal  # every fill's fee, OKX sign
    funding_usdt: Decimal  # every funding payment, OKX sign
    performance: Performance | None


# ------------------------------------------------------------------------------ figures
def max_drawdown(points: Sequence[EquityPoint]) -> tuple[Decimal, Decimal] | None:
    """The largest fall from a running peak in percent of it (the metrics' `max_drawdown_pct`,
    `shared.drawdown`) and that fall in USDT; None without a point above 0."""
    found = drawdown.max_drawdown([p.equity_usdt for p in points])
    return None if found is None else (found.pct, found.fall)


def return_pct(points: Sequence[EquityPoint]) -> Decimal | None:
    """From the first equity point to the last, in percent; None without two points."""
    if len(points) < 2 or points[0].equity_usdt <= 0:
        return None
    first, last = points[0].equity_usdt, points[-1].equity_usdt
    return (last - first) / first * 100


def biggest(trades: Sequence[ClosedTrade], wins: bool) -> ClosedTrade | None:
    """The biggest win (net PnL > 0) or loss (< 0); None when there is no such trade."""
    found = [t for t in trades if (_pnl(t) > 0 if wins else _pnl(t) < 0)]
    if not found:
        return None
    return max(found, key=_pnl) if wins else min(found, key=_pnl)


def _pnl(trade: ClosedTrade) -> Decimal:
    return trade.net_pnl_usdt if trade.net_pnl_usdt is not None else Decimal(0)


# ------------------------------------------------------------------------------ formats
def fixed(value: Decimal | None, places: int = 2, suffix: str = "", signed: bool = False) -> str:
    """`places` decimals (half even), a zero never written "-0.00"; n/a for an unknown value."""
    if value is None:
        return NA
    rounded = value.quantize(Decimal(1).scaleb(-places))
    if rounded == 0:
        rounded = abs(rounded)
    return f"{rounded:+f}{suffix}" if signed else f"{rounded:f}{suffix}"


def usdt(value: Decimal | None, signed: bool = False) -> str:
    return fixed(value, 2, signed=signed)


def price(value: Decimal | None) -> str:
    return NA if value is None else plain_decimal(value)


def percent(value: Decimal | None, places: int = 2, signed: bool = False) -> str:
    return fixed(value, places, " %", signed)


def share(value: Decimal | None) -> str:
    """A 0..1 ratio as a percentage."""
    return NA if value is None else percent(value * 100, places=1)


def held(minutes: Decimal | None) -> str:
    if minutes is None:
        return NA
    if minutes < 60:
        return f"{minutes:.1f} min"
    whole = int(minutes)
    return f"{whole // 60}h {whole % 60:02d}m"


def paid(value: Decimal) -> str:
    """An amount with OKX's sign (negative = paid) as what was paid, or received."""
    if value > 0:
        return f"{usdt(value)} USDT received"
    return f"{usdt(-value)} USDT"


def shown(value: Any) -> str:
    """A tool's value for a progress line: its text, or n/a."""
    return "n/a" if value is None else str(value)


def plan_text(plan: dict[str, Any] | None) -> str:
    """An exit plan in words: "TP 51985.6, SL 49947, invalid if: 1m close below EMA50"."""
    if not plan:
        return "none"
    parts = [
        f"TP {plan['take_profit']}" if plan.get("take_profit") else "",
        f"SL {plan['stop_loss']}" if plan.get("stop_loss") else "",
        f"invalid if: {plan['invalidation_condition']}" if plan.get("invalidation_condition") else "",
    ]
    return ", ".join(part for part in parts if part) or "none"


# ------------------------------------------------------------------------------ sections
def render(summary: Summary) -> str:
    """The whole summary, sections separated by a blank line."""
    sections = [
        closed_section(summary.closed),
        open_section(summary.open),
        result_section(summary),
        performance_section(summary.performance, summary.closed),
        equity_section(summary.equity),
    ]
    return "\n\n".join(sections)


def closed_section(trades: Sequence[ClosedTrade]) -> str:
    if not trades:
        return "Closed trades\n  none"
    lines = ["Closed trades"]
    lines.append(
        f"  {'symbol':<14} {'side':<5} {'contracts':>9} {'entry':>10} {'exit':>10} {'held':>9} "
        f"{'conf.':>6} {'fees':>7} {'funding':>7} {'net PnL':>9}  exit"
    )
    for t in trades:
        lines.append(
            f"  {t.symbol:<14} {t.side:<5} {price(t.contracts):>9} {price(t.entry_price):>10} "
            f"{price(t.exit_price):>10} {held(t.holding_minutes):>9} {price(t.confidence):>6} "
            f"{usdt(-t.fee_usdt):>7} {usdt(-t.funding_usdt):>7} {usdt(t.net_pnl_usdt, True):>9}  "
            f"{t.exit_reason}"
        )
    known = [t.net_pnl_usdt for t in trades if t.net_pnl_usdt is not None]
    wins = sum(1 for p in known if p > 0)
    losses = sum(1 for p in known if p < 0)
    lines.append(
        f"  net PnL {usdt(sum(known, Decimal(0)), True)} USDT over {len(trades)} trades "
        f"({wins} won, {losses} lost); fees and funding are included in it"
    )
    return "\n".join(lines)


def open_section(positions: Sequence[OpenPosition]) -> str:
    if not positions:
        return "Open positions\n  none"
    lines = [
        "Open positions",
        f"  {'symbol':<14} {'side':<5} {'contracts':>9} {'entry':>10} {'mark':>10} {'uPnL':>9}",
    ]
    for p in positions:
        lines.append(
            f"  {p.symbol:<14} {p.side:<5} {price(p.contracts):>9} {price(p.entry_price):>10} "
            f"{price(p.mark_price):>10} {usdt(p.unrealized_pnl_usdt, True):>9}"
        )
    return "\n".join(lines)


def result_section(summary: Summary) -> str:
    points = summary.equity
    drawdown = max_drawdown(points)
    lines = [
        "Result",
        f"  {'start equity':<18} {usdt(points[0].equity_usdt) if points else NA} USDT",
        f"  {'end equity':<18} {usdt(points[-1].equity_usdt) if points else NA} USDT",
        f"  {'return':<18} {percent(return_pct(points), places=3, signed=True)}",
        f"  {'max drawdown':<18} "
        + (f"{percent(drawdown[0], places=3)} ({usdt(drawdown[1])} USDT)" if drawdown else NA),
        f"  {'fees paid':<18} {paid(summary.fee_usdt)}",
        f"  {'funding paid':<18} {paid(summary.funding_usdt)}",
    ]
    return "\n".join(lines)


def performance_section(perf: Performance | None, trades: Sequence[ClosedTrade]) -> str:
    win, loss = biggest(trades, wins=True), biggest(trades, wins=False)
    lines = ["Performance (all time)"]
    if perf is None:
        lines.append("  not computed yet by the metrics service")
    else:
        lines += [
            f"  {'win rate':<18} {share(perf.win_rate)}",
            f"  {'sharpe ratio':<18} {fixed(perf.sharpe_ratio)}",
            f"  {'average leverage':<18} {fixed(perf.average_leverage, suffix='x')}",
            f"  {'average confidence':<18} {price(perf.average_confidence)}",
            f"  {'time long':<18} {share(perf.hold_ratio_long)}",
            f"  {'time short':<18} {share(perf.hold_ratio_short)}",
            f"  {'time flat':<18} {share(perf.hold_ratio_flat)}",
        ]
    lines.append(f"  {'biggest win':<18} {_trade_pnl(win)}")
    lines.append(f"  {'biggest loss':<18} {_trade_pnl(loss)}")
    return "\n".join(lines)


def _trade_pnl(trade: ClosedTrade | None) -> str:
    if trade is None:
        return "none"
    return f"{usdt(trade.net_pnl_usdt, True)} USDT ({trade.symbol} {trade.side})"


def equity_section(points: Sequence[EquityPoint]) -> str:
    title = f"Equity curve (USDT, {len(points)} samples)"
    if len(points) < 2:
        return f"{title}\n  too few samples to draw"
    return f"{title}\n{equity_chart(points)}"


def equity_chart(points: Sequence[EquityPoint]) -> str:
    """A colourless terminal line chart: equity over seconds since the first sample."""
    start = points[0].as_of
    xs = [(p.as_of - start).total_seconds() for p in points]
    ys = [float(p.equity_usdt) for p in points]  # drawing only: the figures above are Decimal
    figure = plotext.figure  # plotext draws on one module-level figure: reset it every time
    figure.clear()
    figure.plot_size(CHART_WIDTH, CHART_HEIGHT)
    figure.theme("clear")
    figure.draw(figure.signal(xs, ys).lines())
    figure.label("seconds since the first sample", "x")
    text: str = figure.build().string(colorless=True)
    return "\n".join(line.rstrip() for line in text.splitlines())
