"""Retention (shared.retention, shared.archive) on a real PostgreSQL: the plan a dry run shows,
export -> verify -> remove, restore back to identical rows, a damaged file refused, reruns."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from click.testing import CliRunner

from aitrader.cli import cli
from shared import archive, retention

NOW = datetime(2030, 6, 15, 12, tzinfo=UTC)  # far from the template's months: every one is made here
TABLES = ("fills", "mcp_tool_calls", "market_snapshots", "balance_snapshots", "equity_snapshots")
BIG = Decimal("1234567890123456.12345678")  # NUMERIC(24, 8) at its widest
TINY = Decimal("-0.00000001")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def seed(conn: asyncpg.Connection) -> UUID:
    """Rows inserted before their months' partitions exist (so in DEFAULT), then the months made."""
    account: UUID = await conn.fetchval(
        "INSERT INTO aitrader.accounts (external_id, mode) VALUES ('r', 'simulated') RETURNING id"
    )
    call = uuid4()
    await conn.execute(
        """INSERT INTO aitrader.mcp_tool_calls
               (id, account_id, tool_name, request_payload, response_payload, created_at)
           VALUES ($1, $2, 'execute_trade', '{"size": "0.01", "note": "é \\" ;"}', '[1, null]', $3)""",
        call,
        account,
        at("2029-05-02 08:00:00.123456"),
    )
    order = await conn.fetchval(
        """INSERT INTO aitrader.orders (account_id, symbol, side, order_type, size, status, tool_call_id)
           VALUES ($1, 'BTC-USDT-SWAP', 'buy', 'market', 1, 'filled', $2) RETURNING id""",
        account,
        call,
    )
    await conn.execute(
        """INSERT INTO aitrader.fills (account_id, order_id, symbol, side, price, size, "timestamp",
               exchange_trade_id) VALUES ($1, $2, 'BTC-USDT-SWAP', 'buy', 1, 1, $3, 't1')""",
        account,
        order,
        at("2029-05-02 08:00:01"),
    )
    await conn.executemany(
        """INSERT INTO aitrader.market_snapshots (symbol, timeframe, as_of, price, rsi14, open_interest)
           VALUES ('BTC-USDT-SWAP', '1m', $1, $2, 55.1234, 123.4567)""",
        [
            (at("2030-01-10 00:01"), Decimal("97000.00000001")),
            (at("2030-01-31 23:59:59.999999"), Decimal("1")),
            (at("2030-05-10 00:00"), Decimal("2")),
        ],
    )
    await conn.executemany(  # 2029-11-03: three (the last stays), 11-04: one (stays); 2030-05: hot
        """INSERT INTO aitrader.balance_snapshots
               (account_id, available_usdt, locked_usdt, equity_usdt, as_of)
           VALUES ($1, $2, $3, $3, $4)""",
        [
            (account, BIG, TINY, at("2029-11-03 01:00")),
            (account, Decimal("1"), TINY, at("2029-11-03 02:00")),
            (account, Decimal("2"), TINY, at("2029-11-03 23:59:59.999999")),
            (account, Decimal("3"), TINY, at("2029-11-04 00:00")),
            (account, Decimal("4"), TINY, at("2030-05-01")),
        ],
    )
    await conn.executemany(  # one 5-minute bucket of three points (the last stays), then another
        """INSERT INTO aitrader.equity_snapshots
               (account_id, equity, cash, net_position_value, unrealized_pnl, as_of)
           VALUES ($1, $2, $2, 0, $3, $4)""",
        [
            (account, BIG, TINY, at("2029-05-02 10:00")),
            (account, Decimal("9"), TINY, at("2029-05-02 10:01")),
            (account, Decimal("8"), TINY, at("2029-05-02 10:04:59.999999")),
            (account, Decimal("7"), TINY, at("2029-05-02 10:05")),
        ],
    )
    for table, month in [
        ("mcp_tool_calls", "2029-05-01"),
        ("fills", "2029-05-01"),
        ("market_snapshots", "2030-01-01"),
        ("market_snapshots", "2030-05-01"),
        ("balance_snapshots", "2029-11-01"),
        ("balance_snapshots", "2030-05-01"),
        ("equity_snapshots", "2029-05-01"),
    ]:
        await conn.execute(
            "SELECT aitrader.ensure_month_partition($1::regclass, $2::date)",
            f"aitrader.{table}",
            datetime.fromisoformat(month).date(),
        )
    return account


async def contents(conn: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
    return {t: await conn.fetch(f"SELECT * FROM aitrader.{t} ORDER BY id") for t in TABLES}


@pytest.fixture
async def conn(db_dsn: str):  # type: ignore[no-untyped-def]
    connection = await asyncpg.connect(db_dsn)
    try:
        yield connection
    finally:
        await connection.close()


def archived(steps: list[retention.Step]) -> list[tuple[str, str, int, int]]:
    """The steps that archive rows (the template's own months are empty and old here: dropped)."""
    return sorted((s.partition, s.action, s.rows, s.total) for s in steps if s.action != "create" and s.total)


EXPECTED = [
    ("balance_snapshots_p202911", "downsample", 2, 4),
    ("equity_snapshots_p202905", "downsample", 2, 4),
    ("market_snapshots_p203001", "drop", 2, 2),
    ("mcp_tool_calls_p202905", "drop", 1, 1),
]


async def test_the_plan_follows_the_rules_and_changes_nothing(conn: asyncpg.Connection) -> None:
    await seed(conn)
    defaults = [await conn.fetchval(f"SELECT count(*) FROM aitrader.{t}_default") for t in TABLES]
    assert defaults == [0] * 5  # the months' rows moved out of DEFAULT when their partition came
    before = await contents(conn)
    steps = await retention.plan(conn, NOW)
    assert archived(steps) == EXPECTED  # fills: kept for ever; hot months untouched
    creates = {s.partition for s in steps if s.action == "create"}
    assert creates == {f"{t}_p{m}" for t in TABLES for m in ("203006", "203007", "203008")}
    assert await contents(conn) == before


async def test_export_remove_restore_gives_back_the_same_rows(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    account = await seed(conn)
    before = await contents(conn)
    done = await retention.run(conn, NOW, tmp_path)
    files = sorted(p for _, p in done if p is not None)
    assert [p.relative_to(tmp_path).parts[0] for p in files] == [
        "balance_snapshots",
        "equity_snapshots",
        "market_snapshots",
        "mcp_tool_calls",
    ]
    after = await contents(conn)
    assert after["fills"] == before["fills"]
    assert [r["as_of"] for r in after["equity_snapshots"]] == [
        at("2029-05-02 10:04:59.999999"),
        at("2029-05-02 10:05"),
    ]
    assert [r["available_usdt"] for r in after["balance_snapshots"]] == [2, 3, 4]
    assert [r["as_of"] for r in after["market_snapshots"]] == [at("2030-05-10")]
    assert after["mcp_tool_calls"] == []
    assert await conn.fetchval("SELECT to_regclass('aitrader.market_snapshots_p203001')") is None
    # the order still names its (archived) call: the key stays
    assert await conn.fetchval("SELECT count(*) FROM aitrader.orders WHERE tool_call_id IS NOT NULL") == 1

    # A rerun finds nothing more to do and writes no file; a downsampled month is marked done.
    assert archived(await retention.plan(conn, NOW)) == []
    assert [p for _, p in await retention.run(conn, NOW, tmp_path) if p is not None] == []
    mark = "SELECT obj_description('aitrader.balance_snapshots_p202911'::regclass, 'pg_class')"
    assert await conn.fetchval(mark) == retention.DOWNSAMPLED

    for path in files:
        manifest, inserted = await archive.restore(conn, path)
        assert inserted == manifest.rows > 0
    assert await contents(conn) == before  # exact: NUMERIC, microseconds, JSON text
    assert await conn.fetchval(mark) is None  # the restored rows are seen by the next run
    assert [(await archive.restore(conn, p))[1] for p in files] == [0, 0, 0, 0]  # idempotent
    assert await contents(conn) == before
    assert account is not None


async def test_a_failed_export_removes_nothing(
    conn: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(conn)
    before = await contents(conn)

    def broken(*args: object) -> Path:
        raise archive.ArchiveError("disk full (simulated)")

    monkeypatch.setattr(archive, "write", broken)
    with pytest.raises(archive.ArchiveError):
        await retention.run(conn, NOW, tmp_path)
    assert await contents(conn) == before


def parquet_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.parquet"))


async def test_a_crash_after_the_file_keeps_the_rows_and_the_rerun_writes_the_same_file(
    conn: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(conn)
    before = await contents(conn)
    write = archive.write

    def write_then_die(*args: Any) -> Path:
        write(*args)
        raise ConnectionResetError("killed after the file was written (simulated)")

    monkeypatch.setattr(archive, "write", write_then_die)
    with pytest.raises(ConnectionResetError):
        await retention.run(conn, NOW, tmp_path)
    assert await contents(conn) == before
    (first,) = parquet_files(tmp_path)
    monkeypatch.undo()
    await retention.run(conn, NOW, tmp_path)
    files = parquet_files(tmp_path)
    assert first in files and len(files) == 4  # the same rows, the same file: no second copy


async def test_a_manifest_naming_what_the_table_lacks_is_refused(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await seed(conn)
    done = await retention.run(conn, NOW, tmp_path)
    path = next(p for s, p in done if p is not None and s.table == "market_snapshots")
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest["columns"]["price"] = "numeric(20,8); DROP TABLE aitrader.fills"
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(archive.ArchiveError, match="has no columns"):
        await archive.restore(conn, path)
    manifest["table"] = "nothing_here"
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(archive.ArchiveError, match="does not exist"):
        await archive.restore(conn, path)
    assert await conn.fetchval("SELECT count(*) FROM aitrader.market_snapshots") == 1


async def test_a_damaged_file_is_refused(conn: asyncpg.Connection, tmp_path: Path) -> None:
    await seed(conn)
    done = await retention.run(conn, NOW, tmp_path)
    path = next(p for s, p in done if p is not None and s.table == "market_snapshots")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(archive.ArchiveError, match="checksum mismatch"):
        await archive.restore(conn, path)
    assert await conn.fetchval("SELECT count(*) FROM aitrader.market_snapshots") == 1


def test_restore_says_why_it_refuses_a_file(db_dsn: str, tmp_path: Path) -> None:
    cols = {"id": "bigint", "as_of": "timestamp with time zone", "price": "numeric(20,8)"}
    data = archive.frame([(1, at("2030-01-01"), Decimal("1.00000001"))], cols)
    path = archive.write(tmp_path, "market_snapshots", at("2030-01-01").date(), "drop", data, cols)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    result = CliRunner().invoke(cli, ["archive", "restore", str(path)], env={"AITRADER_DATABASE_URL": db_dsn})
    assert result.exit_code == 1 and "checksum mismatch" in result.output, result.output
    path.with_suffix(".json").unlink()
    result = CliRunner().invoke(cli, ["archive", "restore", str(path)], env={"AITRADER_DATABASE_URL": db_dsn})
    assert result.exit_code == 1 and "no manifest" in result.output, result.output


def test_dry_run_prints_each_step(db_dsn: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["retention", "--dry-run"],
        env={"AITRADER_DATABASE_URL": db_dsn, "AITRADER_ARCHIVE_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    assert "dry run:" in result.output and "nothing changed" in result.output
    assert list(tmp_path.iterdir()) == []


async def test_downsampled_equity_keeps_the_all_time_sharpe(conn: asyncpg.Connection, tmp_path: Path) -> None:
    """The last point of each 5-minute bucket is the Sharpe ratio's sample: keeping only those
    (what the equity rule does past a year) gives the same all_time Sharpe."""
    import polars as pl

    from services.metrics.performance import sharpe

    account = await conn.fetchval(
        "INSERT INTO aitrader.accounts (external_id, mode) VALUES ('s', 'simulated') RETURNING id"
    )
    start = at("2029-05-02 10:00")
    await conn.executemany(  # 2 hours of 1-minute points, some seconds off the minute
        """INSERT INTO aitrader.equity_snapshots
               (account_id, equity, cash, net_position_value, unrealized_pnl, as_of)
           VALUES ($1, $2, $2, 0, 0, $3)""",
        [
            (account, Decimal(10_000 + (n * 37) % 101 - 50) / 7, start + timedelta(minutes=n, seconds=n % 13))
            for n in range(120)
        ],
    )
    await conn.execute("SELECT aitrader.ensure_month_partition('aitrader.equity_snapshots', '2029-05-01')")

    async def all_time() -> float:
        rows = await conn.fetch("SELECT account_id::text, id, as_of, equity FROM aitrader.equity_snapshots")
        equity = pl.DataFrame(
            [tuple(r) for r in rows],
            schema={
                "account_id": pl.String(),
                "id": pl.Int64(),
                "as_of": pl.Datetime("us", "UTC"),
                "equity": pl.Decimal(38, 8),
            },
            orient="row",
        )
        bounds = pl.DataFrame(
            {"account_id": [str(account)], "window": ["all_time"], "start": [start], "end": [NOW]}
        )
        value: float = sharpe(equity, bounds, NOW)["sharpe"][0]
        return value

    before = await all_time()
    await retention.run(conn, NOW, tmp_path)
    assert await conn.fetchval("SELECT count(*) FROM aitrader.equity_snapshots") == 24
    assert before is not None and await all_time() == before
