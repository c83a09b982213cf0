"""The edit-run loop as a new notebook user tries it (local target, real worker
processes): classes defined in the notebook, lambdas, partials and closures made
in a loop, awaited generators, secrets in exception messages."""

from __future__ import annotations

import asyncio
import os
import functools
import textwrap

import pytest

import straightline_sdk as straightline
from tests.conftest import wait_until
from straightline_sdk.packaging.identity import meaning_hash

pytestmark = pytest.mark.local_only   # no failing over to Docker (tests/conftest.py)


def _run_cell(source: str, namespace: dict | None = None) -> dict:
    """Run ``source`` as a notebook cell (again: pass the namespace of the last run)."""
    namespace = namespace if namespace is not None else {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return namespace


CLASS_CELL = """
class Scaler:
    factor = 3

    def scale(self, x):
        return x * self.factor

def use_scaler(x):
    return Scaler().scale(x)
"""


def test_re_running_a_cell_that_defines_a_class_changes_no_meaning():
    # cloudpickle tags a notebook class with an id that is random per class object
    first = _run_cell(CLASS_CELL)
    again = _run_cell(CLASS_CELL)
    moved = _run_cell("# a comment\n\n" + CLASS_CELL)
    for name in ("use_scaler",):
        assert meaning_hash(first[name]) == meaning_hash(again[name]) == meaning_hash(moved[name])
    assert meaning_hash(first["Scaler"]().scale) == meaning_hash(again["Scaler"]().scale)
    edited = _run_cell(CLASS_CELL.replace("factor = 3", "factor = 4"))
    assert meaning_hash(edited["use_scaler"]) != meaning_hash(first["use_scaler"])


def test_a_function_using_a_notebook_class_is_not_redeployed_when_its_cell_runs_again():
    first = _run_cell(CLASS_CELL)
    h = straightline.deploy(first["use_scaler"], target="local")
    assert h(2) == 6
    key = h.deploy_key
    again = _run_cell(CLASS_CELL)
    assert straightline.deploy(again["use_scaler"], target="local") is h
    assert h.deploy_key == key and h(2) == 6


def test_two_lambdas_are_two_deployments_and_each_is_found_again():
    add_one = straightline.deploy(lambda x: x + 1, target="local")
    times_ten = straightline.deploy(lambda x: x * 10, target="local")
    assert add_one is not times_ten and add_one.name != times_ten.name
    assert add_one(3) == 4 and times_ten(3) == 30
    assert "<lambda>" in add_one.name and "0x" not in add_one.name
    assert straightline.deploy(lambda x: x + 1, target="local") is add_one


def _scale(x, factor):
    return x * factor


def test_partials_of_one_function_with_other_arguments_live_side_by_side():
    double = straightline.deploy(functools.partial(_scale, factor=2), target="local")
    # said once: a re-run with other arguments meant as a replacement leaves the first running
    with pytest.warns(straightline.VariantDeployedWarning, match="name='_scale-partial'"):
        triple = straightline.deploy(functools.partial(_scale, factor=3), target="local")
    assert double is not triple
    assert double(5) == 10 and triple(5) == 15
    assert double.name == "_scale-partial" and triple.name.startswith("_scale-partial-")
    # the same partial again (a cell re-run) finds its deployment
    assert straightline.deploy(functools.partial(_scale, factor=3), target="local") is triple
    assert straightline.deploy(functools.partial(_scale, factor=2), target="local") is double
    # a name given: the new arguments take that deployment's place (the tweak-and-rerun loop)
    tweaked = straightline.deploy(functools.partial(_scale, factor=5), target="local",
                                  name="_scale-partial")
    assert tweaked is double and double(5) == 25 and triple(5) == 15


@pytest.mark.filterwarnings("ignore::straightline_sdk.api.VariantDeployedWarning")
def test_closures_made_by_one_factory_in_a_loop_are_separate_deployments():
    cell_source = """
    def make_adder(k):
        def add(x):
            return x + k
        return add
    """
    cell = _run_cell(cell_source)
    adders = [straightline.deploy(cell["make_adder"](k), target="local") for k in (1, 2, 3)]
    assert [a(10) for a in adders] == [11, 12, 13]
    assert len({a.name for a in adders}) == 3
    assert straightline.deploy(cell["make_adder"](2), target="local") is adders[1]
    rerun = _run_cell(textwrap.dedent(cell_source))   # the factory's cell run again, unchanged
    assert [straightline.deploy(rerun["make_adder"](k), target="local") for k in (3, 1)] == \
        [adders[2], adders[0]]
    assert [a(10) for a in adders] == [11, 12, 13]
    # an edit of the factory (its cell run again) still swaps the first one in place
    edited = _run_cell("""
    def make_adder(k):
        def add(x):
            return x + 100 * k
        return add
    """)
    assert straightline.deploy(edited["make_adder"](1), target="local") is adders[0]
    assert adders[0](10) == 110


def _countdown(n):
    for i in range(n, 0, -1):
        yield i


def test_an_awaited_generator_call_gives_its_items():
    h = straightline.deploy(_countdown, target="local")

    async def main():
        one = await h.aio(3)
        many = await h.amap([2, 1])
        streamed = [r async for r in h.amap_iter([1, 2])]
        return one, many, streamed

    assert asyncio.run(main()) == ([3, 2, 1], [[2, 1], [1]], [[1], [2, 1]])


SECRET_CELL = """
import os

class RejectedKey(Exception):
    def __init__(self, message, key):
        super().__init__(message)
        self.key = key

def check_key(kind):
    key = os.environ["CASES_KEY"]
    if kind == "value":
        raise ValueError(f"bad key {key}")
    if kind == "custom":
        raise RejectedKey(f"rejected {key}", key)
    try:
        int(key)
    except ValueError as exc:
        raise KeyError(key) from exc
"""


def test_an_exception_quoting_a_secret_keeps_its_type_without_the_value(monkeypatch):
    secret = "cases-" + "9f3a7c21d4e8b6"
    monkeypatch.setenv("CASES_KEY", secret)
    cell = _run_cell(SECRET_CELL)
    h = straightline.deploy(cell["check_key"], target="local", secrets=["CASES_KEY"])
    with pytest.raises(ValueError) as value_error:
        h("value")
    assert "[secret CASES_KEY]" in str(value_error.value) and secret not in str(value_error.value)
    with pytest.raises(cell["RejectedKey"]) as custom:
        h("custom")
    assert secret not in str(custom.value) and secret not in repr(vars(custom.value))
    with pytest.raises(KeyError) as key_error:
        h("chained")
    assert secret not in str(key_error.value) and secret not in str(key_error.value.__cause__)
    assert isinstance(key_error.value.__cause__, ValueError)


def _hold(started, release):
    """Mark that it started, then wait (bounded) until ``release`` exists."""
    import os as _os
    import time as _t
    if started:
        open(started, "w").close()
    for _ in range(3000):
        if not release or _os.path.exists(release):
            return "done"
        _t.sleep(0.01)
    return "gave up"


def test_a_call_after_a_cancelled_one_waits_for_the_slot_it_still_holds(tmp_path):
    # the abandoned call still runs on the worker: the next call is refused as
    # "saturated" there, and must wait for the slot rather than fail unrun
    started, release = tmp_path / "started", tmp_path / "release"
    h = straightline.deploy(_hold, target="local", options={"concurrency": 1})
    assert h(None, None) == "done"

    async def cancel_one():
        task = asyncio.ensure_future(h.aio(str(started), str(release)))
        for _ in range(1500):   # bounded: until the worker has started the call
            if started.exists():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_one())
    assert wait_until(lambda: h.router.plan().states["local"].in_flight == 0)
    following = h.submit(None, None)
    assert wait_until(lambda: h.stats()["local"]["rejected"] >= 1 or following.done())
    release.touch()
    assert following.result(timeout=60) == "done"


INSTANCES_CELL = """
class Multiplier:
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x):
        return x * self.factor

    def apply(self, x):
        return x * self.factor
"""


@pytest.mark.filterwarnings("ignore::straightline_sdk.api.VariantDeployedWarning")
def test_two_instances_of_one_class_are_two_deployments():
    cell = _run_cell(INSTANCES_CELL)
    two, three = cell["Multiplier"](2), cell["Multiplier"](3)
    by_two = straightline.deploy(two, target="local")
    by_three = straightline.deploy(three, target="local")
    assert by_two is not by_three and (by_two(5), by_three(5)) == (10, 15)
    apply_two = straightline.deploy(two.apply, target="local")
    apply_three = straightline.deploy(three.apply, target="local")
    assert apply_two is not apply_three and (apply_two(5), apply_three(5)) == (10, 15)
    # the class's cell run again, with the same state: the same deployments
    again = _run_cell(INSTANCES_CELL)
    assert straightline.deploy(again["Multiplier"](2), target="local") is by_two
    assert straightline.deploy(again["Multiplier"](3).apply, target="local") is apply_three
    assert straightline.deploy(again["Multiplier"](2).apply, target="local") is apply_two
    assert (apply_two(5), apply_three(5), by_two(5), by_three(5)) == (10, 15, 10, 15)


def _prints_key(x):
    import os as _os
    import sys as _sys
    print("key is", _os.environ["CASES_KEY"])
    print(f"err {_os.environ['CASES_KEY']}", file=_sys.stderr)
    if x < 0:
        raise ValueError(f"refused {_os.environ['CASES_KEY']}")
    return x


def test_the_sample_run_here_shows_no_secret(monkeypatch, capsys):
    # the sample (and, without one, the first call) runs in this process: its
    # prints and its error must be as redacted as a remote call's
    secret = "cases-" + "51d0e3b7a9c2f4"
    monkeypatch.setenv("CASES_KEY", secret)
    h = straightline.deploy(_prints_key, sample=(1,), secrets=["CASES_KEY"])
    assert h(2) == 2
    with pytest.raises(ValueError) as sample_error:
        straightline.deploy(_prints_key, sample=(-1,), secrets=["CASES_KEY"], name="sample-fails")
    unprofiled = straightline.deploy(_prints_key, secrets=["CASES_KEY"], name="first-call-fails")
    with pytest.raises(ValueError) as first_call_error:
        unprofiled(-1)
    out, err = capsys.readouterr()
    for text in (out, err, str(sample_error.value), str(first_call_error.value)):
        assert secret not in text
    assert "key is [secret CASES_KEY]" in out and "err [secret CASES_KEY]" in err
    assert "[secret CASES_KEY]" in str(first_call_error.value)


async def _doubled(x):
    await asyncio.sleep(0)
    return 2 * x


async def _tens(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield 10 * i


def test_async_functions_profile_here_by_running_to_the_end():
    # without a sample the first call is run here to profile it: an async def
    # function's result is its value, not a coroutine, an async generator's its items
    doubled = straightline.deploy(_doubled)
    assert doubled(4) == 8 and doubled(5) == 10
    tens = straightline.deploy(_tens)
    assert list(tens(3)) == [0, 10, 20] and list(tens(2)) == [0, 10]
    # a sample, inside a running loop (as in a notebook cell)

    async def in_a_cell():
        h = straightline.deploy(_doubled, sample=(1,), name="doubled-sampled")
        return h.profile, await h.aio(6)

    profile, value = asyncio.run(in_a_cell())
    assert value == 12 and profile.result_bytes > 0


def test_lambda_is_excluded_by_environment_names_it_reserves(monkeypatch):
    from straightline_sdk.placement import Features
    from straightline_sdk.placement.constraints import violation
    from straightline_sdk.targets.aws_lambda import LAMBDA_LIMITS
    # a notebook's AWS keys handed to a Docker container are fine; Lambda refuses them
    reason = violation(Features(env_names=("AWS_SECRET_ACCESS_KEY", "MODE")), LAMBDA_LIMITS)
    assert "AWS_SECRET_ACCESS_KEY" in reason and "reserved" in reason and "MODE" not in reason
    assert "_private" in violation(Features(env_names=("_private",)), LAMBDA_LIMITS)
    assert violation(Features(env_names=("API_KEY", "MODE")), LAMBDA_LIMITS) is None
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-key-0123")
    h = straightline.deploy(_doubled, target="local", env={"MODE": "a"},
                            secrets=["AWS_SECRET_ACCESS_KEY"])
    assert set(h.features().env_names) == {"MODE", "AWS_SECRET_ACCESS_KEY"}
    assert "AWS_SECRET_ACCESS_KEY" in violation(h.features(), LAMBDA_LIMITS)


def test_env_and_secret_names_of_the_sdks_own_settings_are_refused(monkeypatch):
    monkeypatch.setenv("STRAIGHTLINE_TOKEN", "abcdefgh")
    for kwargs in ({"env": {"STRAIGHTLINE_MAX_BODY": "1"}}, {"secrets": ["STRAIGHTLINE_TOKEN"]}):
        with pytest.raises(ValueError, match="SDK's own"):
            straightline.deploy(_doubled, target="local", **kwargs)
    assert straightline.deployments() == []


class _Model:
    def __init__(self):
        self.weights = bytes(20 * 1024 * 1024)

    def predict(self, i):
        return self.weights[i]


def test_the_large_capture_warning_names_an_instances_attribute_and_a_default_argument():
    from straightline_sdk.packaging import package_function
    from straightline_sdk.packaging.payload import LargeCaptureWarning
    blob = bytes(20 * 1024 * 1024)
    with pytest.warns(LargeCaptureWarning, match="attribute 'weights' of the _Model instance"):
        package_function(_Model().predict, "cases-model")
    with pytest.warns(LargeCaptureWarning, match="default of argument 'table'"):
        package_function(lambda i, table=blob: table[i], "cases-default")


CACHED_CELL = """
import functools

@functools.lru_cache(maxsize=None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

@functools.cache
def square(n):
    return n * n
"""


def test_a_notebook_function_under_lru_cache_deploys_and_its_edits_count(monkeypatch):
    import sys
    cell = _run_cell(CACHED_CELL)
    for name in ("fib", "square"):   # a notebook's globals live in __main__
        monkeypatch.setattr(sys.modules["__main__"], name, cell[name], raising=False)
    fib = straightline.deploy(cell["fib"], target="local")
    assert fib(30) == 832040 and straightline.deploy(cell["square"], target="local")(9) == 81
    edited = _run_cell(CACHED_CELL.replace("return n * n", "return n * n + 1"))
    again = _run_cell(CACHED_CELL)
    assert meaning_hash(edited["square"]) != meaning_hash(cell["square"])
    assert meaning_hash(again["fib"]) == meaning_hash(cell["fib"])


_TWO_PROCESSES = """
import json, sys
sys.path.insert(0, {root!r})
from straightline_sdk.packaging.identity import default_name, distinct_name, meaning_hash

class Point:
    def __init__(self, x):
        self.x = x

def make_point(x):
    return Point(x)

shift = lambda x: x + 1
print(json.dumps({{
    "lambda": distinct_name(default_name(shift), shift, meaning_hash(shift)),
    "class user": meaning_hash(make_point),
    "method": meaning_hash(Point(1).__init__),
}}))
"""


def test_lambda_names_and_class_users_meanings_are_the_same_in_two_processes():
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = _TWO_PROCESSES.format(root=root)
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True,
                                      text=True, check=True, cwd=root).stdout)
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0]["lambda"].startswith("<lambda>-")


def test_a_secret_too_short_to_redact_is_warned_about(monkeypatch):
    monkeypatch.setenv("CASES_PIN", "42")
    with pytest.warns(UserWarning, match="CASES_PIN.*not redacted"):
        straightline.deploy(_doubled, target="local", secrets=["CASES_PIN"])


def test_an_empty_secret_is_missing_and_the_dotenv_value_stands_in_for_an_empty_one(
        monkeypatch, tmp_path):
    from straightline_sdk.environment import SecretMissing
    (tmp_path / ".env").write_text("CASES_TEMPLATE=\nCASES_FILLED='from-dotenv-7f3e'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CASES_TEMPLATE", raising=False)
    monkeypatch.setenv("CASES_FILLED", "")
    with pytest.raises(SecretMissing, match="CASES_TEMPLATE.*empty in .*\\.env"):
        straightline.deploy(_doubled, target="local", secrets=["CASES_TEMPLATE"])
    assert straightline.deployments() == []
    h = straightline.deploy(_doubled, target="local", secrets=["CASES_FILLED"])
    assert h.spec.secrets["CASES_FILLED"] == "from-dotenv-7f3e"


HELPER_CELL = """
def check(x):
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x

def scaled(x):
    return 10 * check(x)
"""


def test_a_traceback_through_a_moved_helper_points_at_its_lines_now(tmp_path):
    # a notebook's cells: each run is a new file name (ipykernel names it by its content)
    import linecache

    def run(source: str, filename: str, namespace: dict) -> dict:
        path = str(tmp_path / filename)
        with open(path, "w") as f:
            f.write(source)
        linecache.checkcache(path)
        exec(compile(source, path, "exec"), namespace)
        return namespace

    namespace = run(HELPER_CELL, "cell_1.py", {"__name__": "__main__"})
    h = straightline.deploy(namespace["scaled"], target="local")
    assert h(2) == 20
    key = h.deploy_key
    moved = "# notes\n\n\n" + HELPER_CELL
    run(moved, "cell_2.py", namespace)   # the same namespace, as a kernel's
    assert straightline.deploy(namespace["scaled"], target="local") is h and h.deploy_key == key
    with pytest.raises(ValueError) as info:
        h(-1)
    text = info.value.remote_traceback
    lines = moved.splitlines()
    raise_line = next(i for i, line in enumerate(lines, 1) if "raise ValueError" in line)
    call_line = next(i for i, line in enumerate(lines, 1) if "10 * check" in line)
    assert f'cell_2.py", line {raise_line}, in check' in text, text
    assert f'cell_2.py", line {call_line}, in scaled' in text, text
    assert "dynamic-code" not in text


def test_a_traceback_through_an_edited_local_module_shows_its_current_source(tmp_path,
                                                                             monkeypatch):
    import importlib
    import sys
    module_name = "cases_helpers_" + os.urandom(3).hex()
    path = tmp_path / f"{module_name}.py"
    path.write_text("def helper(x):\n    raise ValueError(x)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(module_name)
    cell = _run_cell(f"import {module_name} as helpers\n\ndef calls_helper(x):\n"
                     f"    return helpers.helper(x)\n")
    h = straightline.deploy(cell["calls_helper"], target="local")
    with pytest.raises(ValueError) as first:
        h(1)
    assert "raise ValueError(x)" in first.value.remote_traceback   # the file is read (cached)
    path.write_text("# moved down\n\n\ndef helper(x):\n    raise ValueError(x + 1)\n")
    importlib.reload(module)
    h = straightline.deploy(cell["calls_helper"], target="local")
    with pytest.raises(ValueError) as second:
        h(1)
    text = second.value.remote_traceback
    assert "line 5, in helper" in text and "raise ValueError(x + 1)" in text, text
    sys.modules.pop(module_name, None)


def _three_then_fail(n):
    for i in range(n):
        yield i
    raise KeyError("after the items")


def test_a_generator_answered_at_once_gives_its_items_before_its_error():
    # targets that answer a call once (Ray, or a stream that could not start) carry
    # the items the generator gave before it raised, ahead of the error
    from straightline_sdk.runtime.execute import encode_outcomes, run_calls
    from straightline_sdk.runtime import wire
    (ok, info, _), = run_calls(_three_then_fail, [((3,), {})])
    assert not ok and info["items_before"] == [0, 1, 2] and info["type"] == "KeyError"
    (ok, value, _), = run_calls(_three_then_fail, [((0,), {})])
    assert not ok and "items_before" not in value
    import threading
    segments, _ = encode_outcomes([(False, {**info, "items_before": [threading.Lock()]}, {})])
    (ok, sent, _), = wire.decode(b"".join(bytes(s) for s in segments))
    assert not ok and sent["type"] == "KeyError" and "items_before" not in sent
