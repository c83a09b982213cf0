"""Shared test set-up.

Components (Docker engine, moto, Ray, Chromium) are real. Outside CI a test
whose component is missing skips with the reason; under CI=true it fails,
because CI's own scripts must have started everything.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

import straightline_sdk as straightline

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip (or, under CI=true, fail) when a component a test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Wait for a condition, bounded (never a fixed sleep); returns the predicate's
    last value: truthy when it came true in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()



def in_thread(fn, timeout: float = 60.0):
    """Run fn in a thread, bounded: (finished, its result or the exception it raised),
    so a call that hangs fails the test instead of hanging the run."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:   # noqa: BLE001 - the test inspects it
            box["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), box.get("value")

@pytest.fixture(autouse=True)
def _clean_deployments(request):
    """Every test starts with default settings and leaves nothing deployed; a test
    marked local_only runs on the local target alone (no failing over to Docker)."""
    straightline.configure(reset=True)
    if request.node.get_closest_marker("local_only"):
        straightline.configure(targets=["local"])
    yield
    for dep in straightline.deployments():
        dep.undeploy()
    straightline.configure(reset=True)
