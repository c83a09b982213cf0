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


def test_a_remote_print_shows_in_its_notebook_cell():
    """The quickstart notebook in a real kernel: the cell that calls the deployed
    function shows what the function printed and warned on the worker."""
    import nbformat
    from nbclient import NotebookClient

    path = os.path.join(ROOT, "notebooks", "quickstart.ipynb")
    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAIGHTLINE_")}
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path)}}).execute(env=env)
    [cell] = [c for c in nb.cells if "remote-print" in c.metadata.get("tags", [])]
    streams = {o.name: o.text for o in cell.outputs if o.output_type == "stream"}
    assert "[local] adding 3 values\n" in streams.get("stdout", ""), cell.outputs
    assert "UserWarning: negative values are counted as zero" in streams.get("stderr", ""), cell.outputs
    [result] = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert result.data["text/plain"] == "4.0"


def test_getting_starteds_own_code_example_stays_local_with_an_engine_running(tmp_path):
    """docs/getting-started.md says its examples run on the local target; the
    example is run as written (an engine may be running: Docker must stay unused)."""
    import re
    text = open(os.path.join(ROOT, "docs", "getting-started.md")).read()
    block = re.search(r"The same in your own code.*?```python\n(.*?)```", text, re.S).group(1)
    check = block + ("\nimport json\nprint('STATS ' + json.dumps(sorted(square.stats())))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAIGHTLINE_")}
    env["STRAIGHTLINE_CACHE_DIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'STATS ["local"]' in run.stdout, run.stdout + run.stderr
    assert "docker" not in run.stderr
