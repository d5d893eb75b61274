"""The archive: rows that leave the hot tables, as Parquet files (polars) with a manifest.

A file is `<dir>/<table>/<yyyy-mm>-<sha12>.parquet`, named by its month and the first 12 hex
digits of its SHA-256, so a rerun that exports the same rows writes the same file and a
different export never overwrites one. Beside it, `<same name>.json` is its manifest: table,
month, action, rows, the full SHA-256 and the PostgreSQL type of every column. Values are
exact: NUMERIC(p, s) is a polars Decimal(p, s), timestamps are microseconds in UTC, UUID and
JSONB are their text. `restore` refuses a file whose checksum does not match its manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import polars as pl

from shared.db import Connection
from shared.errors import AitraderError

FORMAT = 1
_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_NATIVE: dict[str, pl.DataType] = {
    "text": pl.String(),
    "integer": pl.Int32(),
    "bigint": pl.Int64(),
    "boolean": pl.Boolean(),
    "timestamp with time zone": pl.Datetime("us", "UTC"),
}


class ArchiveError(AitraderError):
    """An archive file cannot be written, verified or loaded back; the message says why."""


@dataclass(frozen=True)
class Manifest:
    """What an archive file holds; `sha256` is the Parquet file's."""

    table: str
    month: str  # yyyy-mm
    action: str  # drop / downsample: why the rows left
    rows: int
    sha256: str
    columns: dict[str, str]  # column -> PostgreSQL type, in table order
    format: int = FORMAT


async def columns(conn: Connection, table: str) -> dict[str, str]:
    """Column -> PostgreSQL type (`format_type`) of `aitrader.<table>`, in table order."""
    rows = await conn.fetch(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
           WHERE a.attrelid = ('aitrader.' || quote_ident($1))::regclass AND a.attnum > 0
             AND NOT a.attisdropped ORDER BY a.attnum""",
        table,
    )
    return {r["attname"]: r["type"] for r in rows}


def dtype(pg_type: str) -> pl.DataType:
    """The polars type that holds a PostgreSQL type exactly (text for the others)."""
    if match := _NUMERIC.match(pg_type.replace(" ", "")):
        return pl.Decimal(int(match[1]), int(match[2]))
    return _NATIVE.get(pg_type, pl.String())


def select_list(cols: dict[str, str]) -> str:
    """The SELECT list that reads `cols` as `dtype` holds them (text for UUID, JSONB, ...)."""
    return ", ".join(
        f'"{c}"' if not isinstance(dtype(t), pl.String) or t == "text" else f'"{c}"::text AS "{c}"'
        for c, t in cols.items()
    )


def frame(rows: Sequence[Any], cols: dict[str, str]) -> pl.DataFrame:
    """Rows (records or tuples, in `cols` order) as an exact polars frame."""
    schema = {c: dtype(t) for c, t in cols.items()}
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _durable_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def manifest_path(parquet: Path) -> Path:
    return parquet.with_suffix(".json")


def write(
    directory: Path, table: str, month: date, action: str, data: pl.DataFrame, cols: dict[str, str]
) -> Path:
    """Write `data` as a Parquet file and its manifest, durably, and verify both by reading them
    back (same checksum, same values); return the file's path."""
    folder = directory / table
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{month:%Y-%m}.parquet.tmp"
    data.write_parquet(tmp, statistics=False)
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    sha = _sha256(tmp)
    path = folder / f"{month:%Y-%m}-{sha[:12]}.parquet"
    tmp.replace(path)
    manifest = Manifest(table, f"{month:%Y-%m}", action, data.height, sha, cols)
    _durable_write(manifest_path(path), json.dumps(asdict(manifest), indent=1).encode())
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    loaded, _ = read(path)
    if not loaded.equals(data):
        raise ArchiveError(f"{path}: read back, it differs from the rows exported; nothing removed")
    return path


def read(path: Path) -> tuple[pl.DataFrame, Manifest]:
    """An archive file and its manifest, after checking its SHA-256 against the manifest."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".parquet")
    mpath = manifest_path(path)
    try:
        manifest = Manifest(**json.loads(mpath.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ArchiveError(f"{mpath}: no manifest beside {path.name}; cannot check it") from None
    except (ValueError, TypeError) as exc:
        raise ArchiveError(f"{mpath}: not a manifest of this archive ({exc})") from None
    if manifest.format != FORMAT:
        raise ArchiveError(f"{mpath}: archive format {manifest.format}, this version reads {FORMAT}")
    try:
        sha = _sha256(path)
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such archive file") from None
    if sha != manifest.sha256:
        raise ArchiveError(
            f"{path}: checksum mismatch (file sha256 {sha[:16]}..., manifest {manifest.sha256[:16]}...): "
            "the file is damaged or not the one the manifest describes; nothing loaded"
        )
    data = pl.read_parquet(path)
    if data.height != manifest.rows or data.columns != list(manifest.columns):
        raise ArchiveError(f"{path}: {data.height} rows / columns {data.columns} do not match its manifest")
    return data, manifest


async def restore(conn: Connection, path: Path) -> tuple[Manifest, int]:
    """Load an archive file back into its table (its month's partition recreated if it was
    dropped); rows already there are left as they are. Return the manifest and rows inserted."""
    data, manifest = await asyncio.to_thread(read, path)
    cols = await _restorable(conn, manifest)
    names = ", ".join(f'"{c}"' for c in cols)
    typed = ", ".join(f'"{c}"::{t}' for c, t in cols.items())
    text_cols = ", ".join(
        f'"{c}" {"text" if isinstance(dtype(t), pl.String) else t}' for c, t in cols.items()
    )
    try:
        month = date.fromisoformat(f"{manifest.month}-01")
    except ValueError:
        raise ArchiveError(f"{path}: manifest month {manifest.month!r} is not yyyy-mm") from None
    async with conn.transaction():
        await conn.execute(
            "SELECT aitrader.ensure_month_partition(('aitrader.' || quote_ident($1))::regclass, $2)",
            manifest.table,
            month,
        )
        await conn.execute(f"CREATE TEMP TABLE archive_restore ({text_cols}) ON COMMIT DROP")
        await conn.copy_records_to_table("archive_restore", records=data.rows(), columns=list(cols))
        status = await conn.execute(
            f'INSERT INTO aitrader."{manifest.table}" ({names}) SELECT {typed} FROM archive_restore '
            "ON CONFLICT DO NOTHING"
        )
        # The month holds rows again: the retention run's "downsampled" mark goes.
        await conn.execute(f'COMMENT ON TABLE aitrader."{manifest.table}_p{month:%Y%m}" IS NULL')
    return manifest, int(status.rsplit(" ", 1)[1])


async def _restorable(conn: Connection, manifest: Manifest) -> dict[str, str]:
    """The manifest's columns, checked against the live table: each one must be a column of it
    with the same type (names and types in the SQL come from the catalog, not from the file)."""
    try:
        live = await columns(conn, manifest.table)
    except asyncpg.UndefinedTableError:
        raise ArchiveError(f"the archive's table aitrader.{manifest.table} does not exist") from None
    wrong = {c: t for c, t in manifest.columns.items() if live.get(c) != t}
    if wrong:
        raise ArchiveError(
            f"aitrader.{manifest.table} has no columns {wrong} (name and type) of this archive; "
            "nothing loaded"
        )
    return {c: live[c] for c in manifest.columns}
