"""The README's first command runs the quickstart example; it must keep working."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_example_runs_on_the_local_target(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAIGHTLINE_")}
    env["STRAIGHTLINE_CACHE_DIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "quickstart.py")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "result: {'mean': 5.0, 'spread': 2.0}" in run.stdout
    assert "placement: local, because" in run.stdout
    assert "map: 100 results" in run.stdout
