"""The console's own figures, where the metrics service stores none (docs/console.md): return
from the equity history (`equity_snapshots`) and fees from the fills, over a window that ends
now. Everything else the leaderboard shows — max drawdown included — is the metrics service's
stored row (`performance_snapshots`, docs/metrics.md).

return_pct = (last − first) / first × 100, the window's first and last equity points by
(as_of, id), NUMERIC rounded to 4 decimals (PostgreSQL's round: half away from zero); null with
fewer than two points or a first point ≤ 0. Two index probes per account, whatever the history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from services.console.json_sql import object_sql, utc_sql
from services.console.view_models import Standing, Step
from shared.definitions import WINDOW_LENGTHS
from shared.types import Window

# best return first, ties by external id: {t} the table of return_pct, {a} of external_id
LEADERBOARD_ORDER: Final = "{t}return_pct DESC NULLS LAST, {a}external_id"


def since(window: Window) -> str:
    """The window's start as SQL: now() − its length, or -infinity for all_time."""
    length = WINDOW_LENGTHS[window]
    if length is None:
        return "'-infinity'::timestamptz"
    return f"now() - interval '{int(length.total_seconds())} seconds'"


def return_join(account: str, start: str, alias: str = "r") -> str:
    """A LEFT JOIN LATERAL giving `<alias>.return_pct` of the account column `account`."""
    points = f"FROM aitrader.equity_snapshots WHERE account_id = {account} AND as_of >= {start}"
    return f"""LEFT JOIN LATERAL (
        SELECT CASE WHEN f.id <> l.id AND f.equity > 0
                    THEN round((l.equity - f.equity) / f.equity * 100, 4) END AS return_pct
        FROM (SELECT id, equity {points} ORDER BY as_of, id LIMIT 1) f,
             (SELECT id, equity {points} ORDER BY as_of DESC, id DESC LIMIT 1) l
    ) {alias} ON true"""


def leaderboard_sql(window: Window) -> str:
    """The token's accounts ($1) with their figures for the window, best return first."""
    start = since(window)
    return f"""
SELECT a.external_id, a.mode, e.equity_usdt, r.return_pct, ps.max_drawdown_pct,
       ps.sharpe_ratio, ps.win_rate, ps.closed_positions AS trades, fz.fees_usdt,
       ps.average_leverage, ps.average_confidence, ps.realized_pnl_usdt
FROM aitrader.accounts a
JOIN aitrader.account_equity_now e ON e.account_id = a.id
LEFT JOIN aitrader.performance_snapshots ps ON ps.account_id = a.id AND ps."window" = $2
{return_join("a.id", start)}
LEFT JOIN LATERAL (
    SELECT COALESCE(sum(fl.fee_usdt), 0) AS fees_usdt FROM aitrader.fills fl
    WHERE fl.account_id = a.id AND fl."timestamp" >= {start}
) fz ON true
WHERE a.id = ANY($1::uuid[])
ORDER BY {LEADERBOARD_ORDER.format(t="r.", a="a.")}
"""


def leaderboard_json_sql(window: Window) -> str:
    """The whole `Leaderboard` answer of `leaderboard_sql` as JSON text written by PostgreSQL
    (json_sql.py), `as_of` the transaction's now(): one statement, one row."""
    item = object_sql(Standing, "l")
    return (
        f"SELECT json_build_object('window', $2::text, 'as_of', {utc_sql('now()')}, 'items', "
        f"COALESCE(json_agg({item} ORDER BY {LEADERBOARD_ORDER.format(t='l.', a='l.')}), '[]'))::text "
        f"FROM ({leaderboard_sql(window)}) l"
    )


EQUITY_START: Final = "SELECT min(as_of) FROM aitrader.equity_snapshots WHERE account_id = $1"
# The last point of each UTC-aligned bucket of $2 in [$3, $4), labelled by the bucket's start.
EQUITY_SERIES: Final = """
SELECT DISTINCT ON (1) date_bin($2::interval, as_of, 'epoch'::timestamptz) AS time,
       equity AS equity_usdt
FROM aitrader.equity_snapshots
WHERE account_id = $1 AND as_of >= $3 AND as_of < $4
ORDER BY 1, as_of DESC, id DESC
"""

PERFORMANCE: Final = """
SELECT sharpe_ratio, win_rate, average_leverage, average_confidence, biggest_win_usdt,
       biggest_loss_usdt, hold_ratio_long, hold_ratio_short, hold_ratio_flat, closed_positions,
       realized_pnl_usdt, stop_loss_resting_ratio, max_drawdown_pct, window_start, window_end,
       updated_at, definitions_version
FROM aitrader.performance_snapshots WHERE account_id = $1 AND "window" = $2
"""
# As get_performance_metrics shows them: the reasons that closed a position, most first.
EXIT_ATTRIBUTION: Final = """
SELECT exit_reason, closed_positions, realized_pnl_usdt FROM aitrader.exit_attribution
WHERE account_id = $1 AND "window" = $2 AND closed_positions > 0
ORDER BY closed_positions DESC, exit_reason
"""
CALIBRATION: Final = """
SELECT bucket, closed_positions, win_rate, mean_pnl_usdt FROM aitrader.confidence_calibration
WHERE account_id = $1 AND "window" = $2 ORDER BY split_part(bucket, '-', 1)::int
"""
# The newest $3 candles of a series, returned oldest first.
CANDLES: Final = """
SELECT * FROM (
    SELECT as_of AS time, open, high, low, price AS close, volume, ema20, ema50, macd, rsi7, rsi14
    FROM aitrader.market_snapshots WHERE symbol = $1 AND timeframe = $2
    ORDER BY as_of DESC LIMIT $3
) c ORDER BY time
"""


# The equity series' buckets: one rule for the endpoint and the CLI.
MAX_POINTS: Final = 2000
STEPS: Final[dict[Step, timedelta]] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_count(start: datetime, end: datetime, step: timedelta) -> int:
    """The UTC-aligned buckets of `step` that [start, end) touches."""
    if end <= start:
        return 0
    first = start - (start - _EPOCH) % step
    return (end - first - timedelta(microseconds=1)) // step + 1


def choose_step(start: datetime, end: datetime, step: Step | None) -> Step:
    """The step asked for, or the finest that gives at most MAX_POINTS buckets; ValueError when
    the span needs more."""
    if step is not None:
        count = bucket_count(start, end, STEPS[step])
        if count > MAX_POINTS:
            raise ValueError(f"{count} points of {step}: at most {MAX_POINTS}, take a longer step")
        return step
    for name, length in STEPS.items():
        if bucket_count(start, end, length) <= MAX_POINTS:
            return name
    raise ValueError(f"the span needs more than {MAX_POINTS} points of 1d")
