"""The benchmarks still run end to end (``--dry-run``: local target only, a handful of
calls), so the scripts do not rot. No numbers are checked: benchmarks are not tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("script", ["placement", "overhead", "deploy", "paper", "sklearn_joblib"])
def test_benchmark_dry_run_writes_its_results(script, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAIGHTLINE_")}
    env["STRAIGHTLINE_CACHE_DIR"] = str(tmp_path / "cache")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "bench", f"{script}.py"), "--quick",
                          "--dry-run", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    with open(tmp_path / f"{script}.json") as f:
        result = json.load(f)
    assert result["benchmark"] == script
    assert result["rows"], "the dry run measured nothing"
    assert result["machine"]["nproc"] >= 1
    assert (tmp_path / f"{script}.png").exists() or (tmp_path / f"{script}.svg").exists()
    assert "dry run" in " ".join(result["notes"])
