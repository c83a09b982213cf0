"""The panel in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven
by playwright, the placement notebook run top to bottom, and the rendered panel
checked for the targets and the call counts. The panel's screenshot is kept in
test-artifacts/panel.png, its decision-space plot's in test-artifacts/decision-space.png.

Chromium comes from scripts/setup-browser.sh (no browser can be downloaded here).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import secrets

import pytest
import requests

from tests.conftest import need, wait_until

pytestmark = pytest.mark.browser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
# slow, fast and large phases of notebooks/placement.ipynb: 8 + 300 + 3 calls
EXPECTED_CALLS = 311
START_S = 90
RUN_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with a token, its own config and a root
    dir holding a copy of the placement notebook; yields (url, token)."""
    need(shutil.which("jupyter") is not None or _has_module("jupyterlab"), "jupyterlab is not installed")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(os.path.join(ROOT, "notebooks", "placement.ipynb"), root / "placement.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "STRAIGHTLINE_PROGRESS": "0",
    })
    # no "Would you like to get notified about Jupyter news?" toast over the panel
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    log = open(tmp_path / "jupyterlab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.allow_root=True",  # CI runs as root
         # window.jupyterapp: the test runs cells through JupyterLab's own commands
         "--LabApp.expose_app_in_browser=True",
         # nothing reaches the network: no extension manager index, no update check
         "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready():
        try:
            return requests.get(f"{url}/api/status", params={"token": token}, timeout=2).ok
        except requests.ConnectionError:
            return proc.poll() is not None  # exited: stop waiting
    try:
        if not wait_until(ready, START_S, interval=0.25) or proc.poll() is not None:
            pytest.fail(f"JupyterLab did not start in {START_S} s:\n{_tail(tmp_path / 'jupyterlab.log')}")
        yield url, token
    finally:
        try:  # shuts the kernels down too, which stops their workers
            requests.post(f"{url}/api/shutdown", params={"token": token}, timeout=10)
            proc.wait(timeout=30)
        except (requests.RequestException, subprocess.TimeoutExpired):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
        log.close()


def _has_module(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


def _tail(path, lines: int = 40) -> str:
    with open(path, "rb") as f:
        return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")


NOTEBOOK_STATE = """() => {
    const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!nb || !nb.content || !nb.content.model || !nb.sessionContext.session) return null;
    const cells = nb.content.model.cells, errors = [];
    let pending = 0;
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        if (cell.executionCount === null) pending++;
        for (const out of cell.outputs.toJSON())
            if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
    }
    const kernel = nb.sessionContext.session.kernel;
    return {pending, errors, kernel: kernel ? kernel.status : 'none'};
}"""


def test_the_placement_notebook_shows_a_live_panel_with_targets_and_call_counts(jupyterlab):
    need(os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run scripts/setup-browser.sh")
    from playwright.sync_api import sync_playwright

    url, token = jupyterlab
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(f"{url}/lab/tree/placement.ipynb?token={token}")
            page.wait_for_function(
                "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                " return w && w.sessionContext && w.sessionContext.session"
                " && w.sessionContext.session.kernel"
                " && w.sessionContext.session.kernel.status === 'idle'; }",
                timeout=START_S * 1000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

            state = wait_until(lambda: _finished(page.evaluate(NOTEBOOK_STATE)), RUN_S, interval=1.0)
            assert state, f"the notebook did not finish in {RUN_S} s: {page.evaluate(NOTEBOOK_STATE)}"
            assert state["errors"] == [], state["errors"]

            panel = page.locator(".straightline-panel").first
            calls = panel.locator("tr[data-target='local'] td[data-field='calls']")
            docker_calls = panel.locator("tr[data-target='docker'] td[data-field='calls']")
            # the panel redraws from its own thread: wait for the last phase to show
            page.wait_for_function(
                "n => { const cells = document.querySelectorAll("
                "'.straightline-panel tr[data-target] td[data-field=calls]');"
                " let total = 0; cells.forEach(c => total += Number(c.textContent)); return total === n; }",
                arg=EXPECTED_CALLS, timeout=30_000)
            panel.scroll_into_view_if_needed()
            panel.screenshot(path=os.path.join(ARTIFACTS, "panel.png"))
            plot = panel.locator("[data-part='decision-space']")
            page.wait_for_function(
                "n => document.querySelectorAll(\"[data-part='decision-space'] [data-point]\").length >= n",
                arg=min(EXPECTED_CALLS, 300), timeout=30_000)
            plot.scroll_into_view_if_needed()
            plot_png = os.path.join(ARTIFACTS, "decision-space.png")
            plot.screenshot(path=plot_png)
            print(f"decision-space screenshot: {plot_png}")
            lines = plot.locator("[data-line]").evaluate_all("ls => ls.map(l => l.dataset.line)")
            assert sorted(lines) == ["D", "F"]
            assert plot.locator("[data-point][data-target='local']").count() > 0
            assert plot.locator("svg").bounding_box()["width"] > 300   # drawn, not an empty box
            shares = panel.locator("[data-part='shares'] [data-share='local']")
            assert int(shares.get_attribute("data-share-calls")) >= 308

            rows = panel.locator("tr[data-target]")
            assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.target)")) == ["docker", "local"]
            local, docker = int(calls.inner_text()), int(docker_calls.inner_text())
            assert local + docker == EXPECTED_CALLS
            assert local >= 308  # the slow and fast phases always run locally
            assert "lambda" in panel.locator("[data-field='not-allowed']").inner_text()
            assert panel.locator("[data-field='legend'] [data-target='local']").count() == 1
            assert "→" in panel.locator("[data-field='reasons']").inner_text()
            assert "undeployed" in panel.locator("[data-part='title']").inner_text()
        finally:
            browser.close()


def _finished(state):
    if state and state["pending"] == 0 and state["kernel"] == "idle":
        return state
    if state and state["errors"]:
        return state  # stop waiting: a cell failed
    return None
