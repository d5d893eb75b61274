"""The service runner's process-wide settings."""

from __future__ import annotations

import subprocess
import sys


def test_tune_gc_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    # In a child process: the setting is process-wide and must not leak into the test run.
    code = (
        "import gc; from shared.runner import GC_GEN0_THRESHOLD, tune_gc; tune_gc(); "
        "print(gc.get_freeze_count() > 1000, gc.get_threshold()[0] == GC_GEN0_THRESHOLD)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["True", "True"]
