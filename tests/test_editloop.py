"""The notebook's edit-run loop on the local target (real worker processes):
edits that move lines only, default names, env and secrets, async calls and
their cancellation, generators, large closures."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import straightline_sdk as straightline
from straightline_sdk.environment import SecretMissing
from straightline_sdk.packaging import package_function
from straightline_sdk.packaging.payload import LargeCaptureWarning
from straightline_sdk.placement import Features
from straightline_sdk.placement.constraints import violation
from straightline_sdk.targets.aws_lambda import LAMBDA_LIMITS
from tests.conftest import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "sk-test-" + os.urandom(12).hex()


pytestmark = pytest.mark.local_only   # no failing over to Docker (tests/conftest.py)


def _cell(tmp_path, source: str, filename: str = "cell.py"):
    """Run ``source`` as a notebook cell would (its own file, so tracebacks read it)."""
    path = tmp_path / filename
    path.write_text(textwrap.dedent(source))
    namespace: dict = {"__name__": "__main__"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace, path


# -- edits that move lines only ---------------------------------------------------------

VERSION_ONE = """
def fragile(x):
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * 10
"""

VERSION_MOVED = """
# a comment above the def, and blank lines


def fragile(x):
    # a comment inside
    if x < 0:

        raise ValueError(f"negative: {x}")
    return x * 10
"""


def test_a_comment_above_the_def_redeploys_nothing_and_tracebacks_follow_the_lines(tmp_path):
    one, _ = _cell(tmp_path, VERSION_ONE, "one.py")
    h = straightline.deploy(one["fragile"], target="local", name="edit-moved")
    assert h(2) == 20
    pid = h.deployed_targets["local"].pid
    moved, path = _cell(tmp_path, VERSION_MOVED, "two.py")
    again = straightline.deploy(moved["fragile"], target="local", name="edit-moved")
    assert again is h and h.deployed_targets["local"].pid == pid   # nothing restarted
    with pytest.raises(ValueError, match="negative: -1") as info:
        h(-1)
    text = info.value.remote_traceback
    raise_line = VERSION_MOVED.splitlines().index('        raise ValueError(f"negative: {x}")') + 1
    assert f'File "{path}", line {raise_line}, in fragile' in text
    assert 'raise ValueError(f"negative: {x}")' in text


def test_an_edit_of_the_body_is_swapped_into_the_running_worker(tmp_path):
    one, _ = _cell(tmp_path, VERSION_ONE, "one.py")
    h = straightline.deploy(one["fragile"], target="local", name="edit-body")
    assert h(2) == 20
    pid = h.deployed_targets["local"].pid
    changed, path = _cell(tmp_path, VERSION_ONE.replace("x * 10", "x * 100"), "two.py")
    h2 = straightline.deploy(changed["fragile"], target="local", name="edit-body")
    assert h2 is h and not h.closed and h(2) == 200
    assert h.deployed_targets["local"].pid == pid          # the same worker, no restart
    assert h.stats()["local"]["calls"] == 2                # the telemetry carries on
    with pytest.raises(ValueError) as info:                # tracebacks read the edited cell
        h(-1)
    assert f'File "{path}"' in info.value.remote_traceback


def test_an_edit_that_changes_the_settings_redeploys(tmp_path):
    one, _ = _cell(tmp_path, VERSION_ONE, "one.py")
    h = straightline.deploy(one["fragile"], target="local", name="edit-settings")
    changed, _ = _cell(tmp_path, VERSION_ONE.replace("x * 10", "x * 100"), "two.py")
    h2 = straightline.deploy(changed["fragile"], target="local", name="edit-settings",
                             env={"MODE": "other"})
    assert h2 is not h and h.closed and h2(2) == 200


# -- default names -----------------------------------------------------------------------

_NAMES_SCRIPT = """
import functools, json, sys
sys.path.insert(0, {root!r})
from straightline_sdk.packaging import package_function
from straightline_sdk.packaging.identity import default_name

def scale(x, factor):
    return x * factor

class Scaler:
    def __call__(self, x):
        return x * 2

table = [1, 2, 3]
def lookup(i):
    return table[i]

print(json.dumps({{
    "partial": default_name(functools.partial(scale, factor=3)),
    "nested": default_name(functools.partial(functools.partial(scale, 1), factor=3)),
    "object": default_name(Scaler()),
    "lambda": default_name(lambda x: x),
    "meaning": package_function(lookup, "lookup").meaning_hash,
}}))
"""


def test_default_names_and_meaning_are_the_same_in_two_processes():
    script = _NAMES_SCRIPT.format(root=ROOT)
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True,
                                      text=True, check=True, cwd=ROOT).stdout)
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0]["partial"] == "scale-partial" and runs[0]["nested"] == "scale-partial"
    assert runs[0]["object"] == "Scaler" and "0x" not in json.dumps(runs[0])


def test_a_partial_deploys_under_its_functions_name():
    h = straightline.deploy(functools.partial(pow, exp=2), target="local")
    assert h.name == "pow-partial" and h(5) == 25


# -- env and secrets -----------------------------------------------------------------------

def _read_env(names):
    import os as _os
    print("the key is", _os.environ.get("EDITLOOP_KEY"))
    return {n: _os.environ.get(n) for n in names}


def _fail_with_secret():
    import os as _os
    raise RuntimeError(f"rejected key {_os.environ['EDITLOOP_KEY']}")


def test_env_and_secrets_reach_the_worker_and_are_never_shown(monkeypatch, tmp_path):
    monkeypatch.setenv("EDITLOOP_KEY", SECRET)
    h = straightline.deploy(_read_env, target="local", name="env-secrets", env={"MODE": "fast"},
                            secrets=["EDITLOOP_KEY"])
    assert h(["MODE", "EDITLOOP_KEY"]) == {"MODE": "fast", "EDITLOOP_KEY": SECRET}
    # nowhere to be seen: the payload, reprs, the summary, the logs
    assert SECRET.encode() not in h.spec.package.payload
    for text in (repr(h), str(h), repr(h.spec), repr(h.spec.secrets), repr(h.deployed_targets),
                 json.dumps(h.target_overview(), default=str)):
        assert SECRET not in text
    wait_until(lambda: "the key is" in h.logs())
    assert SECRET not in h.logs() and "[secret EDITLOOP_KEY]" in h.logs()
    # nor in the SDK's state files
    cache = os.path.expanduser("~/.cache/straightline")
    for folder, _, files in os.walk(cache):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                assert SECRET.encode() not in f.read(), os.path.join(folder, name)
    # nor in an error raised with it
    failing = straightline.deploy(_fail_with_secret, target="local", name="env-secrets-error",
                                  secrets=["EDITLOOP_KEY"])
    with pytest.raises(Exception) as info:
        failing()
    assert SECRET not in str(info.value) and SECRET not in info.value.remote_traceback
    assert "[secret EDITLOOP_KEY]" in str(info.value)


def _key():
    import os as _os
    return _os.environ["EDITLOOP_KEY"], _os.getpid()


def test_a_changed_secret_restarts_the_worker_and_the_same_one_does_not(monkeypatch):
    monkeypatch.setenv("EDITLOOP_KEY", "first-value")
    h = straightline.deploy(_key, target="local", name="secret-change", secrets=["EDITLOOP_KEY"])
    value, pid = h()
    assert value == "first-value"
    assert straightline.deploy(_key, target="local", name="secret-change",
                               secrets=["EDITLOOP_KEY"]) is h
    monkeypatch.setenv("EDITLOOP_KEY", "second-value")
    h2 = straightline.deploy(_key, target="local", name="secret-change", secrets=["EDITLOOP_KEY"])
    value2, pid2 = h2()
    assert h2 is not h and value2 == "second-value" and pid2 != pid


def test_a_secret_comes_from_a_dotenv_file_and_a_missing_one_says_where_it_looked(
        monkeypatch, tmp_path):
    monkeypatch.delenv("EDITLOOP_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SecretMissing, match="EDITLOOP_KEY") as info:
        straightline.deploy(_key, target="local", name="dotenv", secrets=["EDITLOOP_KEY"])
    assert ".env" in str(info.value)
    (tmp_path / ".env").write_text(f"# settings\nexport EDITLOOP_KEY='{SECRET}'\nOTHER=1\n")
    h = straightline.deploy(_key, target="local", name="dotenv", secrets=["EDITLOOP_KEY"])
    assert h()[0] == SECRET


def test_bad_env_is_refused_clearly():
    with pytest.raises(TypeError, match="env must be a dict"):
        straightline.deploy(_key, target="local", env=["A=1"])
    with pytest.raises(ValueError, match="not a valid environment variable name"):
        straightline.deploy(_key, target="local", env={"1BAD": "x"})
    with pytest.raises(TypeError, match="list of names"):
        straightline.deploy(_key, target="local", secrets="EDITLOOP_KEY")


def test_lambda_is_excluded_by_an_environment_over_4_kb_and_by_generators():
    assert "environment" in violation(Features(env_bytes=5000), LAMBDA_LIMITS)
    assert violation(Features(env_bytes=100), LAMBDA_LIMITS) is None
    assert "generator" in violation(Features(generator=True), LAMBDA_LIMITS)


# -- async -------------------------------------------------------------------------------------

def _square(x):
    return x * x


def _stamp(x):
    import time as _t
    start = _t.time()
    _t.sleep(0.2)
    return start, _t.time()


def test_aio_amap_and_amap_iter_under_asyncio_run():
    h = straightline.deploy(_square, target="local", name="aio")

    async def main():
        one = await h.aio(7)
        many = await h.amap(range(10))
        streamed = [r async for r in h.amap_iter(range(6))]
        unordered = sorted([r async for r in h.amap_iter(range(6), ordered=False)])
        return one, many, streamed, unordered

    one, many, streamed, unordered = asyncio.run(main())
    assert one == 49 and many == [x * x for x in range(10)]
    assert streamed == unordered == [x * x for x in range(6)]


def test_awaited_calls_are_bounded_like_map():
    straightline.configure(options={"local": {"concurrency": 2}})
    h = straightline.deploy(_stamp, target="local", name="aio-bounded")
    bound = h.router.map_concurrency()

    async def main():
        return await h.amap(range(3 * bound))

    spans = asyncio.run(main())
    most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most <= bound


def _slow_counted(path):
    import time as _t
    with open(path, "a") as f:
        f.write("started\n")
    _t.sleep(30)
    return "finished"


def test_cancelling_the_awaiting_task_cancels_the_call_and_does_not_rerun_it(tmp_path):
    marker = tmp_path / "runs.txt"
    h = straightline.deploy(_slow_counted, target="local", name="aio-cancel")

    async def cancel_then_call():
        task = asyncio.ensure_future(h.aio(str(marker)))
        for _ in range(1500):   # bounded: until the worker has started the call
            if marker.exists():
                break
            await asyncio.sleep(0.02)
        assert marker.exists()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_then_call())
    assert marker.read_text().count("started") == 1   # abandoned, not run again elsewhere
    # the call's thread let go of it (its connection dropped), and no failure was counted
    assert wait_until(lambda: h.router.plan().states["local"].in_flight == 0)
    assert h.stats().get("local", {}).get("failures", 0) == 0


def test_aio_works_inside_an_already_running_loop_like_jupyters():
    """In Jupyter the cell runs inside the kernel's loop; a helper that calls
    h.aio from code already running on a loop must neither block nor nest loops."""
    h = straightline.deploy(_square, target="local", name="aio-running")

    async def cell():
        assert asyncio.get_running_loop().is_running()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        beat = asyncio.ensure_future(ticker())
        result = await h.aio(12)
        beat.cancel()
        return result, ticks

    result, ticks = asyncio.run(cell())
    assert result == 144 and ticks >= 1   # the loop kept running while the call was awaited


# -- generators -------------------------------------------------------------------------------

def _squares(n):
    for i in range(n):
        yield i * i


def _endless(start):
    i = start
    while True:
        yield i
        i += 1


def test_a_generator_deploys_and_its_calls_give_its_items():
    h = straightline.deploy(_squares, target="local", name="gen")
    assert h.spec.package.is_generator
    assert list(h(5)) == [0, 1, 4, 9, 16]


def _chatty(n):
    for i in range(n):
        print(f"making {i}")
        yield i
    print("all made")
    if n > 2:
        print("about to fail")
        raise ValueError("no more")


def test_a_streamed_generators_prints_reach_the_cell_with_its_items(capsys):
    h = straightline.deploy(_chatty, target="local", name="gen-chatty")
    items = h(2)
    assert next(items) == 0
    assert "[local] making 0" in capsys.readouterr().out   # with the first item, not at the end
    assert list(items) == [1]
    out = capsys.readouterr().out
    assert "[local] making 1" in out and "[local] all made" in out   # after the last item too
    failing = h(3)
    with pytest.raises(ValueError, match="no more"):
        list(failing)
    out = capsys.readouterr().out
    assert "making 2" in out and "[local] about to fail" in out   # what came before the error


def test_the_sample_run_of_a_generator_consumes_only_a_few_items():
    h = straightline.deploy(_endless, sample=(3,), targets=["local"], name="gen-endless")
    assert h.profile is not None and h.placement.target == "local"


def test_without_a_sample_the_first_call_of_a_generator_yields_every_item():
    h = straightline.deploy(_squares, name="gen-first")
    assert list(h(4)) == [0, 1, 4, 9]
    assert list(h(3)) == [0, 1, 4]


# -- large closures -----------------------------------------------------------------------------

def _make_big(size):
    big_blob = os.urandom(size)

    def checksum(i):
        return big_blob[i]

    return checksum


def test_a_large_capture_warns_once_naming_the_variable():
    fn = _make_big(20 * 1024 * 1024)
    with pytest.warns(LargeCaptureWarning, match=r"closure variable 'big_blob' \(20 MB\)") as caught:
        package_function(fn, "large-capture")
    assert "argument" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LargeCaptureWarning)
        package_function(fn, "large-capture")   # the same deployment: said once
    small = _make_big(1024)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LargeCaptureWarning)
        package_function(small, "small-capture")


def test_packaging_a_large_capture_holds_at_most_one_extra_copy():
    import tracemalloc

    import numpy as np
    from sklearn.linear_model import Ridge

    from straightline_sdk.packaging.dependencies import (_scanned_modules, _unpickled_modules,
                                                         needed_modules)
    size = 48 * 1024 * 1024
    weights = np.ones(size // 8)
    model = Ridge().fit(np.random.rand(8, 2), np.random.rand(8))

    def predict(x):
        return model.predict(x) * weights[:1]

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LargeCaptureWarning)
            package = package_function(predict, "one-copy")
        modules = needed_modules(None, package)   # what Docker, Lambda and Ray deploys do
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 1.5 * size    # the payload, and no second copy of the array
    assert {"numpy", "sklearn"} <= modules
    assert _scanned_modules(package.payload) == _unpickled_modules(package.payload)[1]
    text = "x" * (2 * 1024 * 1024)   # a large str is read through, not cut short

    def uses_text(x):
        return len(text) + model.predict(x)[0]

    mixed = package_function(uses_text, "mixed")
    assert _scanned_modules(mixed.payload) == _unpickled_modules(mixed.payload)[1]


def _first_then_wait(marker):
    import os as _os
    import time as _t
    yield "first"
    deadline = _t.monotonic() + 60
    while not _os.path.exists(marker):   # bounded: the test creates it once it holds "first"
        if _t.monotonic() > deadline:
            raise TimeoutError("the first item was not received while the generator ran")
        _t.sleep(0.01)
    yield "second"
    yield "third"


def test_a_generator_streams_its_first_item_before_it_finishes(tmp_path):
    marker = str(tmp_path / "got-first")
    h = straightline.deploy(_first_then_wait, target="local", name="gen-stream")
    items = h(marker)
    assert next(items) == "first"          # while the generator waits for the marker
    open(marker, "w").close()
    assert list(items) == ["second", "third"]
    assert h.stats()["local"]["calls"] == 1 and h.router.plan().states["local"].in_flight == 0


def _counting(n, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"item {i} failed")
        yield i


def test_a_streamed_error_arrives_after_the_items_before_it_and_leaving_early_frees_the_slot():
    h = straightline.deploy(_counting, target="local", name="gen-error")
    got = []
    with pytest.raises(ValueError, match="item 3 failed") as info:
        for item in h(10, fail_at=3):
            got.append(item)
    assert got == [0, 1, 2] and "_counting" in info.value.remote_traceback
    for item in h(10**9):   # an endless-looking stream, left at once
        break
    assert wait_until(lambda: h.router.plan().states["local"].in_flight == 0)
    worker = h.deployed_targets["local"].client   # and on the worker: its generator was stopped
    assert wait_until(lambda: worker.get("/health").json()["in_flight"] == 0)
    assert list(h(3)) == [0, 1, 2]


def _uses_ray_and_sklearn(x):
    import ray  # noqa: F401
    import sklearn  # noqa: F401
    return x


def test_the_dependency_sets_unzipped_size_excludes_lambda_before_any_upload():
    h = straightline.deploy(_uses_ray_and_sklearn, targets=["local", "lambda"], name="big-deps")
    features = h.features()
    assert features.package_mb > 250   # ray, scikit-learn, scipy, numpy as installed here
    assert "bundle" in violation(features, LAMBDA_LIMITS) and "250 MB" in violation(features, LAMBDA_LIMITS)
    small = straightline.deploy(_square, targets=["local", "lambda"], name="small-deps")
    assert small.features().package_mb < 250
    assert straightline.deploy(_square, target="local", name="no-lambda").features().package_mb < 1


def _print_secret_then_die():
    import os as _os
    import signal as _signal
    print("about to fail with", _os.environ["EDITLOOP_KEY"], flush=True)
    # a crash (os._exit is the user's exit since issue 17's faults: raised in the cell)
    _os.kill(_os.getpid(), _signal.SIGKILL)


def test_a_target_failure_quoting_the_functions_output_shows_no_secret(monkeypatch):
    monkeypatch.setenv("EDITLOOP_KEY", SECRET)
    h = straightline.deploy(_print_secret_then_die, target="local", name="secret-in-failure",
                            secrets=["EDITLOOP_KEY"])
    with pytest.raises(straightline.TargetFailure) as info:
        h()
    assert "about to fail with" in str(info.value)   # the worker's last output is quoted
    assert SECRET not in str(info.value) and "[secret EDITLOOP_KEY]" in str(info.value)


def test_the_panel_shows_no_secret(monkeypatch):
    from tests.test_panel import all_widget_text, panel_of
    monkeypatch.setenv("EDITLOOP_KEY", SECRET)
    h = straightline.deploy(_read_env, target="local", name="panel-secret", env={"MODE": "x"},
                            secrets=["EDITLOOP_KEY"])
    assert h(["EDITLOOP_KEY"]) == {"EDITLOOP_KEY": SECRET}
    panel_of(h).refresh()
    assert SECRET not in all_widget_text(h.panel)


# -- an edit reaches every process of a worker pool (issue 12's pools) --------------------

POOLED = """
import os, time

def which(x):
    t0 = time.thread_time()
    while time.thread_time() - t0 < 0.02:   # CPU work: the pool spreads the map
        pass
    return os.getpid(), VERSION
"""


def test_an_edit_reaches_every_process_of_the_pool_and_a_process_forked_again(tmp_path):
    import signal

    import psutil

    straightline.configure(options={"local": {"processes": 2}})
    one, _ = _cell(tmp_path, "VERSION = 1\n" + POOLED, "one.py")
    h = straightline.deploy(one["which"], target="local", name="edit-pool")
    local = h.deployed_targets["local"]
    assert local.processes == 2
    before = h.map(range(24))
    assert {version for _, version in before} == {1}
    two, _ = _cell(tmp_path, "VERSION = 2\n" + POOLED, "two.py")
    h2 = straightline.deploy(two["which"], target="local", name="edit-pool")
    assert h2 is h and h.deployed_targets["local"].pid == local.pid   # swapped, not restarted
    supervisor = psutil.Process(local.pid)
    children = {c.pid for c in supervisor.children()}
    after = h.map(range(24))
    assert {version for _, version in after} == {2}              # no process kept the old code
    assert {pid for pid, _ in after} <= children and len({pid for pid, _ in after}) == 2
    # a process that dies is forked again from the supervisor: it serves the edit too
    victim = supervisor.children()[0]
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_until(lambda: len(supervisor.children()) == 2 and victim.pid not in
                      {c.pid for c in supervisor.children()})
    again = h.map(range(24))
    assert {version for _, version in again} == {2}
    h.undeploy()


def _print_secret():
    import os as _os
    print("the key is", _os.environ["EDITLOOP_KEY"])
    return 1


def test_what_a_call_prints_is_shown_in_the_cell_without_the_secret(monkeypatch, capsys):
    monkeypatch.setenv("EDITLOOP_KEY", SECRET)
    h = straightline.deploy(_print_secret, target="local", name="secret-printed",
                            secrets=["EDITLOOP_KEY"])
    assert h() == 1
    out = capsys.readouterr().out
    assert "the key is [secret EDITLOOP_KEY]" in out and SECRET not in out
