"""Retention of the partitioned tables (seed 001 §8; docs/retention.md): the one table of rules,
the plan it gives for a moment, and the run that carries it out.

Per month partition wholly older than its rule's bound: `drop` exports every row, then drops
the partition; `downsample` exports the rows that leave (all but the last of each account per
`grain`), then deletes them. Either happens in one transaction that first locks the partition
against writes, and deletes only after the Parquet file is written, synced and read back equal
(shared.archive): a crash at any point leaves the rows in the table, and the rerun exports the
same rows to the same file. Months ahead are created (with the DEFAULT partition's rows of
them moved in) so that new rows land in their month.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

from shared import archive
from shared.db import Connection
from shared.definitions import SHARPE_BUCKET

Action = Literal["keep", "drop", "downsample"]


@dataclass(frozen=True)
class Rule:
    """How long a table's rows stay hot, and what happens after."""

    table: str
    time_column: str  # the partition key
    keep_days: int | None  # None: for ever (partitioned only)
    action: Action
    grain: str | None = None  # downsample: keep the last row per account and this interval
    why: str = ""


# Seed 001 §8. Orders and positions are not partitioned: kept for ever like the fills.
RULES: tuple[Rule, ...] = (
    Rule("fills", "timestamp", None, "keep", why="the ledger: kept for ever, partitioned only"),
    Rule("market_snapshots", "as_of", 90, "drop", why="market snapshots: 90 days hot, then archived"),
    Rule(
        "balance_snapshots",
        "as_of",
        180,
        "downsample",
        "1 day",
        why="balances: 180 days in full, then the last per account and day",
    ),
    # Performance history: the equity the metrics are computed from. The last point of each
    # Sharpe bucket (5 minutes) is the Sharpe ratio's sample, so all_time Sharpe does not change.
    Rule(
        "equity_snapshots",
        "as_of",
        365,
        "downsample",
        f"{SHARPE_BUCKET.total_seconds():.0f} seconds",  # the Sharpe bucket: one home
        why="equity (performance history): 1 year in full, then the last per account and 5 minutes",
    ),
    Rule(
        "mcp_tool_calls",
        "created_at",
        365,
        "drop",
        why="tool calls (strategy records, audit): 1 year hot, then archived",
    ),
)
MONTHS_AHEAD = 2  # partitions kept ready beyond the current month
LOCK_KEY = 0x41495452_5245  # "AITRRE": one retention run at a time
LOCK_TIMEOUT = "10s"  # how long a run waits to lock a partition it archives
# A downsampled month is marked (its table comment) and not scanned again; a restore into it
# clears the mark, so the next run sees the restored rows.
DOWNSAMPLED = "aitrader retention: downsampled"
_PARTITION = re.compile(r"_p(\d{4})(\d{2})$")


@dataclass(frozen=True)
class Step:
    """One thing the run does: create a month's partition, or archive rows of one."""

    table: str
    partition: str
    month: date
    action: Literal["create", "drop", "downsample"]
    rows: int  # rows that leave the table (0 for create)
    total: int = 0  # rows in the partition now


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def months_ahead(now: datetime) -> Iterator[date]:
    month = month_start(now)
    for _ in range(MONTHS_AHEAD + 1):
        yield month
        month = next_month(month)


async def partitions(conn: Connection, table: str) -> list[tuple[str, date, bool]]:
    """The month partitions of `aitrader.<table>` (name, month, downsampled already), oldest first."""
    rows = await conn.fetch(
        """SELECT c.relname, obj_description(c.oid, 'pg_class') IS NOT DISTINCT FROM $2 AS done
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = ('aitrader.' || quote_ident($1))::regclass""",
        table,
        DOWNSAMPLED,
    )
    found = [(r["relname"], _PARTITION.search(r["relname"]), r["done"]) for r in rows]
    return sorted((name, date(int(m[1]), int(m[2]), 1), done) for name, m, done in found if m)


def _leaving(rule: Rule, partition: str) -> str:
    """SQL of the rows of `partition` that leave under `rule` (all of them for drop)."""
    if rule.action == "drop":
        return f'SELECT * FROM aitrader."{partition}"'
    return f"""SELECT * FROM (SELECT p.*, row_number() OVER (
                   PARTITION BY p.account_id, date_bin('{rule.grain}', p."{rule.time_column}",
                                                       timestamptz '2000-01-01 00:00:00+00')
                   ORDER BY p."{rule.time_column}" DESC, p.id DESC) AS keep_rank
               FROM aitrader."{partition}" p) AS ranked WHERE keep_rank > 1"""


async def plan(conn: Connection, now: datetime) -> list[Step]:
    """What a run at `now` would do, table by table and partition by partition."""
    steps: list[Step] = []
    for rule in RULES:
        existing = await partitions(conn, rule.table)
        names = {name for name, _, _ in existing}
        # The months ahead, and any month whose rows wait in DEFAULT: in their own partition
        # they are found and archived like the others.
        waiting = await conn.fetch(
            f"""SELECT DISTINCT date_trunc('month', "{rule.time_column}" AT TIME ZONE 'UTC')::date AS m
                FROM aitrader."{rule.table}_default" """
        )
        for month in sorted({*months_ahead(now), *(r["m"] for r in waiting)}):
            name = f"{rule.table}_p{month:%Y%m}"
            if name not in names:
                steps.append(Step(rule.table, name, month, "create", 0))
        if rule.keep_days is None or rule.action == "keep":
            continue
        bound = now - timedelta(days=rule.keep_days)
        for name, month, done in existing:
            if done or datetime.combine(next_month(month), datetime.min.time(), now.tzinfo) > bound:
                continue  # downsampled already (not scanned again every day), or not old enough
            total = await conn.fetchval(f'SELECT count(*) FROM aitrader."{name}"')
            leaving = (
                total
                if rule.action == "drop"
                else await conn.fetchval(f"SELECT count(*) FROM ({_leaving(rule, name)}) AS l")
            )
            if rule.action == "drop" or leaving:
                steps.append(Step(rule.table, name, month, rule.action, leaving, total))
    return steps


def rule_of(table: str) -> Rule:
    return next(r for r in RULES if r.table == table)


async def create(conn: Connection, step: Step) -> None:
    """Create the step's month partition (moving the DEFAULT partition's rows of it in)."""
    await conn.execute(
        "SELECT aitrader.ensure_month_partition(('aitrader.' || quote_ident($1))::regclass, $2)",
        step.table,
        step.month,
    )


async def archive_step(conn: Connection, step: Step, directory: Path) -> Path | None:
    """Export the step's leaving rows, verify the file, then remove them, all under a lock on
    the partition (nothing changes between export and removal); return the file written."""
    rule = rule_of(step.table)
    cols = await archive.columns(conn, step.table)
    leaving = _leaving(rule, step.partition)
    async with conn.transaction():
        # Writers of an old month wait for the export, a few seconds; never wait long behind a
        # long reader of it ourselves: the next run tries again.
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute(f'LOCK TABLE aitrader."{step.partition}" IN SHARE MODE')
        rows = await conn.fetch(
            f'SELECT {archive.select_list(cols)} FROM ({leaving}) AS l ORDER BY "{rule.time_column}", id'
        )
        path = None
        if rows:  # file work off the event loop: the metrics service's consumers keep running
            data = await asyncio.to_thread(archive.frame, rows, cols)
            path = await asyncio.to_thread(
                archive.write, directory, step.table, step.month, step.action, data, cols
            )
        if step.action == "drop":
            await conn.execute(f'DROP TABLE aitrader."{step.partition}"')
        else:
            await conn.execute(
                f"""DELETE FROM aitrader."{step.partition}" p USING ({leaving}) AS l
                    WHERE p.id = l.id AND p."{rule.time_column}" = l."{rule.time_column}" """
            )
            await conn.execute(f"COMMENT ON TABLE aitrader.\"{step.partition}\" IS '{DOWNSAMPLED}'")
    return path


async def run(conn: Connection, now: datetime, directory: Path | None) -> list[tuple[Step, Path | None]]:
    """Carry out the plan at `now`: each step and the file it wrote. Without an archive
    directory only the partitions ahead are created: no row leaves without somewhere to go.
    One run at a time (a session advisory lock): another one running, this one does nothing."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
        return []
    try:
        done: list[tuple[Step, Path | None]] = []
        for step in await plan(conn, now):
            if step.action == "create":
                await create(conn, step)
                done.append((step, None))
        # Autovacuum never analyzes a partitioned parent: the planner's view of the whole table.
        for rule in RULES:
            await conn.execute(f'ANALYZE aitrader."{rule.table}"')
        if directory is None:
            return done
        # Planned again: a month just created from rows waiting in DEFAULT may be old already.
        for step in await plan(conn, now):
            if step.action != "create":
                done.append((step, await archive_step(conn, step, directory)))
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
