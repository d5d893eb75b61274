"""`aitrader migrate`: ordered, recorded, idempotent, safe under concurrency, refuses edits."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import asyncpg
import pytest

from aitrader.migrate import discover, migrate, migrations_dir, status
from shared.errors import MigrationError


@pytest.fixture
def own_migrations(tmp_path: Path) -> Path:
    """A private copy of migrations/ plus a second migration, free to be edited."""
    directory = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), directory)
    (directory / "9001_probe.sql").write_text("CREATE TABLE aitrader.probe (id INTEGER);\n")
    return directory


async def recorded(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, checksum FROM aitrader.schema_migrations ORDER BY 1")
        return [(r["version"], r["checksum"]) for r in rows]
    finally:
        await conn.close()


async def test_applies_in_order_and_records_checksums(empty_dsn: str, own_migrations: Path) -> None:
    applied = await migrate(empty_dsn, own_migrations)
    assert [m.version for m in applied] == [m.version for m in discover(own_migrations)]
    assert await recorded(empty_dsn) == [(m.version, m.checksum) for m in discover(own_migrations)]


async def test_second_run_is_a_no_op(empty_dsn: str, own_migrations: Path) -> None:
    await migrate(empty_dsn, own_migrations)
    before = await recorded(empty_dsn)
    assert await migrate(empty_dsn, own_migrations) == []
    assert await recorded(empty_dsn) == before


async def test_two_concurrent_runs_apply_once(empty_dsn: str, own_migrations: Path) -> None:
    first, second = await asyncio.gather(
        migrate(empty_dsn, own_migrations), migrate(empty_dsn, own_migrations)
    )
    assert sorted([len(first), len(second)]) == [0, len(discover(own_migrations))]
    assert len(await recorded(empty_dsn)) == len(discover(own_migrations))


async def test_an_edited_applied_migration_is_refused(empty_dsn: str, own_migrations: Path) -> None:
    await migrate(empty_dsn, own_migrations)
    probe = own_migrations / "9001_probe.sql"
    probe.write_text(probe.read_text() + "-- sneaky edit\n")
    with pytest.raises(MigrationError, match=r"9001_probe\.sql was edited after it was applied"):
        await migrate(empty_dsn, own_migrations)


async def test_a_new_migration_is_applied_after_the_others(empty_dsn: str, own_migrations: Path) -> None:
    await migrate(empty_dsn, own_migrations)
    (own_migrations / "9002_more.sql").write_text("ALTER TABLE aitrader.probe ADD COLUMN x TEXT;\n")
    applied = await migrate(empty_dsn, own_migrations)
    assert [m.name for m in applied] == ["more"]


def test_a_badly_named_file_is_refused(own_migrations: Path) -> None:
    (own_migrations / "latest.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover(own_migrations)


async def test_status_lists_each_migration_and_changes_nothing(empty_dsn: str, own_migrations: Path) -> None:
    assert {s.state for s in await status(empty_dsn, own_migrations)} == {"pending"}
    (own_migrations / "9002_more.sql").write_text("ALTER TABLE aitrader.probe ADD COLUMN x TEXT;\n")
    await migrate(empty_dsn, own_migrations)
    (own_migrations / "9003_later.sql").write_text("SELECT 1;\n")
    probe = own_migrations / "9001_probe.sql"
    probe.write_text(probe.read_text() + "-- edited\n")
    (own_migrations / "9002_more.sql").unlink()
    before = await recorded(empty_dsn)
    states = {(s.version, s.state) for s in await status(empty_dsn, own_migrations)}
    assert {(9001, "edited"), (9002, "missing"), (9003, "pending"), (1, "applied")} <= states
    assert await recorded(empty_dsn) == before


REPO = Path(__file__).resolve().parents[2]


def installed_wheel(target: Path) -> dict[str, str]:
    """Build the product's wheel from a copy of its sources and install it (no dependencies)
    into `target`; the environment that runs it from there, with this venv's libraries but
    not its (editable) copy of the product."""
    source = target.parent / "source"
    for name in ("aitrader", "services", "shared"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(target.parent / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((target.parent / "dist").glob("aitrader-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=120)
    libraries = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), *sorted(libraries)])
    return env


def test_the_installed_wheel_migrates_from_outside_the_repo(empty_dsn: str, tmp_path: Path) -> None:
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    env = installed_wheel(target)
    elsewhere.mkdir()

    def aitrader(*args: str) -> subprocess.CompletedProcess[str]:
        # -S: no site hooks, so this venv's editable install of the repo cannot be found.
        return subprocess.run([sys.executable, "-S", "-m", "aitrader.cli", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    where = aitrader("--version")
    assert where.returncode == 0, where.stderr
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert where.stdout.strip() == f"aitrader {version}"
    probe = "import aitrader.migrate as m; print(m.migrations_dir())"
    located = subprocess.run([sys.executable, "-S", "-c", probe], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=60, check=True)
    shipped = Path(located.stdout.strip())
    assert shipped.is_relative_to(target) and shipped.is_dir(), shipped
    names = [m.path.stem for m in discover()]
    pending = aitrader("migrate", "--status", "--database-url", empty_dsn)
    assert pending.stdout.splitlines() == [f"{name} pending" for name in names], pending.stderr
    applied = aitrader("migrate", "--database-url", empty_dsn)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [f"applied {name}.sql" for name in names]
    status_lines = aitrader("migrate", "--status", "--database-url", empty_dsn).stdout.splitlines()
    assert [line.rsplit(" ", 2)[:2] for line in status_lines] == [[name, "applied"] for name in names]


async def test_a_role_that_may_not_create_the_schema_is_one_line(pg_admin_dsn: str, empty_dsn: str) -> None:
    role = f"aitrader_ro_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        dsn = empty_dsn.replace("postgres@", f"{role}@", 1)
        if role not in dsn:
            pytest.skip("the admin DSN does not name the role postgres")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "aitrader.cli", "migrate", "--database-url", dsn],
            env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == ("aitrader: migration error: cannot record migrations in "
                                         "aitrader.schema_migrations: permission denied for database "
                                         f"{empty_dsn.rsplit('/', 1)[1]}")
    finally:
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()
