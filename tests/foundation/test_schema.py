"""The schema honours seed 000's contract: every table and column, with a compatible type."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

SEED = Path(__file__).resolve().parents[2] / "docs" / "seeds" / "000_6562362acbf3d4c5.txt"
_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS aitrader\.(\w+) \((.*?)\n\);", re.S)
_COLUMN = re.compile(r"^\s*(\w+)\s+([A-Z]+(?:\s*\(\s*\d+\s*,\s*\d+\s*\))?)", re.M)
_NOT_COLUMNS = {"UNIQUE", "PRIMARY", "CONSTRAINT", "CHECK", "FOREIGN"}


def seed_tables() -> dict[str, dict[str, str]]:
    """{table: {column: declared type}} from the seed's CREATE TABLE blocks."""
    sql = SEED.read_text(encoding="utf-8").split("```sql", 1)[1]
    tables: dict[str, dict[str, str]] = {}
    for name, body in _TABLE.findall(sql):
        columns = {col: typ.replace(" ", "") for col, typ in _COLUMN.findall(body) if col not in _NOT_COLUMNS}
        tables[name] = columns
    return tables


def test_the_seed_parses_into_all_its_tables() -> None:
    tables = seed_tables()
    assert set(tables) == {
        "accounts",
        "balance_snapshots",
        "deepseek_credentials",
        "orders",
        "fills",
        "positions_open",
        "positions_closed",
        "mcp_tool_calls",
        "market_snapshots",
        "performance_snapshots",
    }
    assert tables["performance_snapshots"]["window"] == "TEXT"
    assert tables["fills"]["price"] == "NUMERIC(20,8)"


_BASE = {
    "UUID": "uuid",
    "TEXT": "text",
    "TIMESTAMPTZ": "timestamp with time zone",
    "JSONB": "jsonb",
    "INTEGER": "integer",
    "BIGSERIAL": "bigint",
    "NUMERIC": "numeric",
}


def compatible(declared: str, row: asyncpg.Record) -> bool:
    match = re.match(r"([A-Z]+)(?:\((\d+),(\d+)\))?", declared)
    assert match, declared
    base, precision, scale = match.groups()
    if row["data_type"] != _BASE[base]:
        return False
    if base != "NUMERIC" or precision is None:
        return True
    # Room for at least as many integer digits and exactly as many decimals (or more).
    ours_int = row["numeric_precision"] - row["numeric_scale"]
    return ours_int >= int(precision) - int(scale) and row["numeric_scale"] >= int(scale)


@pytest.mark.parametrize("table", sorted(seed_tables()))
async def test_every_seed_column_exists_with_a_compatible_type(db_pool: asyncpg.Pool, table: str) -> None:
    rows = await db_pool.fetch(
        """SELECT column_name, data_type, numeric_precision, numeric_scale
           FROM information_schema.columns WHERE table_schema = 'aitrader' AND table_name = $1""",
        table,
    )
    actual = {r["column_name"]: r for r in rows}
    assert actual, f"table aitrader.{table} is missing"
    for column, declared in seed_tables()[table].items():
        assert column in actual, f"aitrader.{table}.{column} is missing"
        assert compatible(declared, actual[column]), (
            f"aitrader.{table}.{column}: seed says {declared}, database has "
            f"{actual[column]['data_type']}({actual[column]['numeric_precision']},"
            f"{actual[column]['numeric_scale']})"
        )


async def test_ledger_unique_keys_make_fills_idempotent(db_pool: asyncpg.Pool) -> None:
    """fills is partitioned by fill time (0018): its trade key is the key table's primary key,
    claimed by a trigger on every insert (tests/foundation/test_partitions.py runs it)."""
    keys = await db_pool.fetch(
        """SELECT t.relname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
           JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
           WHERE n.nspname = 'aitrader' AND t.relname = 'fill_keys' AND c.contype = 'p'"""
    )
    assert [k["def"] for k in keys] == ["PRIMARY KEY (account_id, symbol, exchange_trade_id)"]
    assert await db_pool.fetchval(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'aitrader.fills'::regclass"
        " AND tgname = 'fills_claim_key'"
    ) == 1


async def test_no_extension_is_needed(db_pool: asyncpg.Pool) -> None:
    extensions = await db_pool.fetch("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")
    assert extensions == []
