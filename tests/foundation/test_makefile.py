"""`make up` installs only what the product runs on; the [test] extra comes with `make test`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def planned(target: str, venv: Path) -> str:
    """What `make <target>` would run on a machine without a virtualenv (dry run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=REPO, capture_output=True,
                            text=True, timeout=30, check=True)
    return result.stdout


@pytest.mark.parametrize("target", ["up", "install", "demo"])
def test_running_the_product_installs_no_test_dependencies(target: str, tmp_path: Path) -> None:
    plan = planned(target, tmp_path / "venv")
    assert '-c constraints.txt -e .\n' in plan
    assert "[test]" not in plan


@pytest.mark.parametrize("target", ["test", "lint"])
def test_testing_installs_the_test_extra(target: str, tmp_path: Path) -> None:
    assert '-e ".[test]"' in planned(target, tmp_path / "venv")
