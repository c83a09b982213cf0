"""Assertions shared by every target's tests: what a notebook user sees of a
remote call's output and exceptions is the same wherever it ran. ``h`` is a
deployment of ``user_code.scenario``."""

from __future__ import annotations

import logging

import pytest

from straightline_sdk import RemoteError
from tests.support import user_code


def assert_output_comes_home(h, kind: str, capsys) -> None:
    """Prints, stderr, warnings and log records (at the root logger's level here)
    come back tagged with the target, in order; debug records below it do not."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.INFO)
    try:
        capsys.readouterr()
        assert h("chatty", 21) == 42
        out, err = capsys.readouterr()
    finally:
        root.setLevel(old)
    assert out.splitlines() == [f"[{kind}] out 21 one", f"[{kind}] out 21 two"], out
    err_lines = err.splitlines()
    assert err_lines[0] == f"[{kind}] err 21", err
    # the warning names the file of the code that warned, not "<dynamic-code>"
    assert f"[{kind}] {user_code.__file__}:" in err and "UserWarning: warned 21" in err, err
    assert f"[{kind}] INFO:user.chatty: info 21" in err_lines, err
    assert "debug 21" not in err


def assert_map_output_tagged_by_index(h, kind: str, capsys) -> None:
    capsys.readouterr()
    assert h.map(["chatty"] * 3, [1, 2, 3], chunksize=1) == [2, 4, 6]
    out, _ = capsys.readouterr()
    for i, x in enumerate([1, 2, 3]):
        assert out.count(f"[{kind} #{i}] out {x} one\n") == 1, out
        assert out.count(f"[{kind} #{i}] out {x} two\n") == 1, out
    assert out.count(" one\n") == 3, out   # each item's output printed once


def assert_exceptions_intact(h, kind: str) -> None:
    """A two-argument constructor, a chain with a cause, a helper module's frame,
    and a type that exists only on the far side."""
    with pytest.raises(user_code.DataQualityError) as info:
        h("normalise", [1, -2, 3, -4])
    exc = info.value
    assert type(exc) is user_code.DataQualityError
    assert exc.bad_rows == [1, 3] and str(exc) == "2 bad rows"
    text = exc.remote_traceback
    assert f"Traceback on the {kind} target" in text
    assert f'File "{user_code.__file__}"' in text, text
    assert 'raise DataQualityError(f"{len(bad)} bad rows", bad_rows=bad)' in text, text
    assert "<dynamic-code>" not in text, text

    with pytest.raises(user_code.DataQualityError) as info:
        h("chained", [1, 2])
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.__cause__.args == ("mean",)
    assert "The above exception was the direct cause" in info.value.remote_traceback

    with pytest.raises(RemoteError) as info:
        h("far", "inner detail")
    err = info.value
    assert err.type_name == "straightline_far_side_only.FarError"
    assert err.remote_message == "inner detail" and err.attributes == {"rows": "3"}
    assert "inner detail" in str(err) and "rows=3" in str(err)


def assert_all(h, kind: str, capsys) -> None:
    assert_output_comes_home(h, kind, capsys)
    assert_map_output_tagged_by_index(h, kind, capsys)
    assert_exceptions_intact(h, kind)
    # a target's log may lag its answers (Docker's log driver reads the container's
    # stdout on its own time)
    from tests.conftest import wait_until
    assert wait_until(lambda: "out 21 one" in h.logs(kind, tail=500)), h.logs(kind, tail=500)
    h.undeploy()
    assert "out 21 one" in h.logs(kind, tail=500)   # kept for the process's lifetime


def assert_output_streams_while_the_call_runs(h, kind: str, capsys, flag_path, release=None) -> None:
    """The call prints, then waits until this test has seen that line: it is
    released (``release()``, by default: create ``flag_path`` here) only if its
    output reached here while it ran."""
    import threading
    from tests.conftest import wait_until
    capsys.readouterr()
    seen: list[str] = []
    result: list = []
    call = threading.Thread(target=lambda: result.append(h(str(flag_path))))
    call.start()

    def line_arrived():
        seen.append(capsys.readouterr().out)
        return f"[{kind}] started, waiting to be released\n" in "".join(seen)

    arrived = wait_until(line_arrived, timeout=45.0, interval=0.1)
    if arrived:
        (release or (lambda: open(flag_path, "w").close()))()
    call.join(90)
    seen.append(capsys.readouterr().out)
    text = "".join(seen)
    assert arrived, text
    assert result == [True]
    # each line printed once: the streamed part is not printed again at the end
    assert text.count("started, waiting to be released") == 1, text
    assert text.endswith(f"[{kind}] released\n"), text
