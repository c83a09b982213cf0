"""Errors on the local target: the user's exceptions come back as their own
types pointing at their code; what cannot be serialized is named; local modules
travel by value. Every test runs a real worker process."""

from __future__ import annotations

import os
import textwrap
import threading

import pytest

import straightline_sdk as straightline
from straightline_sdk import PackagingError, RemoteError
from tests.support.user_code import Boom


pytestmark = pytest.mark.local_only   # no failing over to Docker (tests/conftest.py)


# -- remote errors ------------------------------------------------------------------

def test_remote_exception_keeps_its_type_and_points_at_user_code():
    @straightline.deploy(sample=(2,))
    def divide(x):
        denominator = x - 1
        return x / denominator

    with pytest.raises(ZeroDivisionError) as err:
        divide(1)
    tb = err.value.remote_traceback
    assert __file__ in tb
    assert "return x / denominator" in tb
    assert "straightline_sdk" not in tb.split("Traceback on the local target")[1]
    assert err.value.__cause__ is not None and "denominator" in str(err.value.__cause__)


def test_custom_exception_attributes_survive():
    @straightline.deploy(sample=(0,))
    def fail(code):
        if code:
            raise Boom(code)
        return code

    with pytest.raises(Boom) as err:
        fail(7)
    assert err.value.code == 7


def test_exception_that_cannot_be_rebuilt_becomes_remote_error():
    """Its type exists only on the far side (tests/test_output.py has the rest)."""
    from tests.support.user_code import far_side_only_error
    h = straightline.deploy(far_side_only_error, target="local")
    with pytest.raises(RemoteError) as err:
        h("inner detail")
    assert err.value.type_name.endswith("FarError") and "inner detail" in str(err.value)


# -- serialization errors -------------------------------------------------------------

LOCK = threading.Lock()


def test_unpicklable_global_is_named():
    def uses_lock(x):
        with LOCK:
            return x

    with pytest.raises(PackagingError, match=r"global 'LOCK' \(a lock\)"):
        straightline.deploy(uses_lock, sample=(1,))


def test_unpicklable_closure_cell_is_named():
    numbers = (i for i in range(10))

    def take(x):
        return next(numbers) + x

    with pytest.raises(PackagingError, match="closure variable 'numbers' \\(a generator\\)"):
        straightline.deploy(take, sample=(1,))


def test_unpicklable_argument_is_named_and_nothing_is_lost():
    @straightline.deploy(sample=(1,))
    def ident(x, y=None):
        return x

    with pytest.raises(PackagingError, match="keyword argument 'y'.*generator"):
        ident(1, y=(i for i in range(3)))
    assert ident(2) == 2  # the deployment still works


def test_unpicklable_result_is_a_packaging_error():
    @straightline.deploy(sample=(0,))
    def make_lock(x):
        return threading.Lock() if x else None

    with pytest.raises(PackagingError, match="cannot be serialized"):
        make_lock(1)


# -- local modules ------------------------------------------------------------------

def test_functions_from_local_modules_travel_by_value(tmp_path, monkeypatch):
    (tmp_path / "mylib_helpers.py").write_text("def triple(x):\n    return 3 * x\n")
    (tmp_path / "mylib_main.py").write_text(textwrap.dedent("""
        import mylib_helpers
        OFFSET = 1
        def compute(x):
            return mylib_helpers.triple(x) + OFFSET
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import mylib_main

    h = straightline.deploy(mylib_main.compute, sample=(1,))
    assert set(h.spec.package.local_modules) == {"mylib_helpers", "mylib_main"}
    assert h(2) == 7
    h.undeploy()
    # the worker could not import them now: by value, they still work
    os.remove(tmp_path / "mylib_helpers.py")
    os.remove(tmp_path / "mylib_main.py")
    h2 = straightline.deploy(mylib_main.compute, sample=(1,), name="by-value")
    assert h2(5) == 16
