"""Tests that skip for missing shared data say so loudly, and fail the run where the data must be there."""

import os
import subprocess
import sys

from conftest import REPO


def _pytest(env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DEAR_REQUIRE_SHARED_DATA"}
    env.update({"DEAR_SHARED_DATA": str(REPO / "no-such-shared-data"), **env_extra})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_infer_metrics.py"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_missing_shared_data_is_one_loud_line_and_still_passes_on_a_fresh_clone():
    proc = _pytest({})
    assert proc.returncode == 0, proc.stdout[-2000:]
    loud = [line for line in proc.stdout.splitlines() if "SKIPPED because the shared data is missing" in line]
    assert len(loud) == 1
    skipped = int(loud[0].split("!!! ")[1].split()[0])
    assert skipped >= 2 and f"{skipped} skipped" in proc.stdout


def test_ci_fails_when_shared_data_skips():
    proc = _pytest({"DEAR_REQUIRE_SHARED_DATA": "1"})
    assert proc.returncode == 1 and "SKIPPED because the shared data is missing" in proc.stdout
