"""A remote call's output and exceptions, as a notebook user sees them, on the
local target (a real worker process); the other targets run the same checks in
their own modules (tests/support/checks.py)."""

from __future__ import annotations

import logging
import sys
import threading

import pytest

import straightline_sdk as straightline
from straightline_sdk import RemoteError
from straightline_sdk.protocol import RemoteTraceback
from straightline_sdk.runtime import capture, execute
from tests.support import checks, user_code


pytestmark = pytest.mark.local_only   # no failing over to Docker (tests/conftest.py)


def test_prints_warnings_and_log_records_come_back_tagged_in_order(capsys):
    h = straightline.deploy(user_code.scenario, target="local", name="scenario-out")
    checks.assert_output_comes_home(h, "local", capsys)


def test_a_maps_output_is_printed_once_per_item_tagged_by_index(capsys):
    h = straightline.deploy(user_code.scenario, target="local", name="scenario-map")
    checks.assert_map_output_tagged_by_index(h, "local", capsys)


def test_exceptions_keep_type_attributes_chain_and_file():
    checks.assert_exceptions_intact(straightline.deploy(user_code.scenario, target="local"), "local")


def test_every_check_in_one_deployment_then_logs_after_undeploy(capsys):
    checks.assert_all(straightline.deploy(user_code.scenario, target="local"), "local", capsys)


def test_a_long_calls_output_streams_while_it_runs(capsys, tmp_path):
    h = straightline.deploy(user_code.waits_for_release, target="local")
    checks.assert_output_streams_while_the_call_runs(h, "local", capsys, tmp_path / "go")


def test_the_remote_traceback_is_the_cause_of_the_chains_root():
    h = straightline.deploy(user_code.checked_mean, target="local")
    with pytest.raises(user_code.DataQualityError) as info:
        h([1, 2])
    root = info.value.__cause__
    assert isinstance(root.__cause__, RemoteTraceback)
    assert "KeyError: 'mean'" in str(root.__cause__)


def test_an_exception_whose_reduce_fails_still_comes_back_as_its_type():
    @straightline.deploy(sample=(0,))
    def fail(x):
        class Local(Exception):
            def __reduce__(self):
                raise TypeError("not today")
        if x:
            err = Local("inner detail")
            err.extra = {"k": 1}
            raise err
        return x

    with pytest.raises(Exception) as info:
        fail(1)
    assert type(info.value).__name__ == "Local" and str(info.value) == "inner detail"
    assert info.value.extra == {"k": 1}


def test_an_attribute_that_cannot_travel_arrives_as_its_repr():
    @straightline.deploy(target="local")
    def fail(x):
        err = ValueError("bad")
        err.lock = threading.Lock()
        err.n = x
        raise err

    with pytest.raises(ValueError) as info:
        fail(5)
    assert info.value.n == 5
    assert isinstance(info.value.lock, str) and "lock" in info.value.lock


def test_capture_output_false_prints_nothing_and_logs_keep_it(capsys):
    h = straightline.deploy(user_code.chatty, target="local", capture_output=False)
    capsys.readouterr()
    assert h(4) == 8
    out, err = capsys.readouterr()
    assert "out 4" not in out + err
    assert "out 4 one" in h.logs()


def test_output_over_the_limit_is_cut_with_a_note_and_the_rest_is_in_the_logs(capsys):
    @straightline.deploy(target="local")
    def loud(n):
        for i in range(n):
            print(f"line {i:07d} " + "x" * 100)
        print("the very end")
        return n

    capsys.readouterr()
    assert loud(15000) == 15000          # about 1.7 MB of output
    out, err = capsys.readouterr()
    assert len(out) < 1.2 * 1024 * 1024
    assert "line 0000000" in out and "the very end" not in out
    assert "were not brought back" in err and "h.logs()" in err
    assert "the very end" in loud.logs(tail=5)


def test_logs_survive_undeploy_for_the_process_lifetime():
    h = straightline.deploy(user_code.chatty, target="local")
    h(3)
    h.undeploy()
    assert "out 3 one" in h.logs()
    assert "out 3 one" in h.logs("local")


def test_concurrent_calls_on_one_worker_keep_their_own_output():
    """The worker runs calls on threads: each call's output is its own."""
    def noisy(x):
        for _ in range(200):
            print(f"item {x}")
        return x

    calls = [((x,), {}) for x in range(4)]
    results: dict[int, list] = {}

    def run(x):
        results[x] = execute.run_calls(noisy, [calls[x]], {"capture": True, "tee": False})

    threads = [threading.Thread(target=run, args=(x,)) for x in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x in range(4):
        ok, value, meta = results[x][0]
        text = "".join(t for _, t in meta["output"])
        assert ok and value == x
        assert text == f"item {x}\n" * 200
        assert meta["function_s"] >= 0


def test_capture_keeps_the_order_across_streams():
    def mixed():
        print("a")
        print("b", file=sys.stderr)
        logging.getLogger("mixed").warning("c")
        print("d")

    [(ok, _, meta)] = execute.run_calls(mixed, [((), {})],
                                        {"capture": True, "log_level": logging.WARNING, "tee": False})
    assert meta["output"] == [("out", "a\n"), ("err", "b\nWARNING:mixed: c\n"), ("out", "d\n")]


def test_an_old_runtimes_two_part_outcomes_still_work():
    from straightline_sdk import output
    assert output.split((True, 5)) == (True, 5, {})
    assert output.split((False, {"type": "X"}, {"function_s": 1.0}))[2] == {"function_s": 1.0}
    assert capture.DEFAULT_LIMIT == output.OUTPUT_LIMIT


def test_the_ray_entry_points_stream_and_do_not_echo_what_they_capture(capsys, tmp_path):
    """What a Ray actor runs, without a cluster: a running call's output is read
    through the actor's output(); captured output is not echoed into the worker's
    streams (Ray streams those to the driver, which would print it twice)."""
    from straightline_sdk import output
    from straightline_sdk.packaging import encode_request, package_function
    from straightline_sdk.runtime import ray_entry, wire
    from tests.conftest import wait_until

    package = package_function(user_code.waits_for_release, "waits")
    host = ray_entry.FunctionHost(package.content_hash, package.payload)
    flag = tmp_path / "go"
    options = output.request_options(True)
    options["stream_id"] = stream_id = output.new_stream_id()
    segments, _ = encode_request([((str(flag),), {})], options)
    answer: list = []
    call = threading.Thread(target=lambda: answer.append(host.run(b"".join(segments))))
    call.start()
    seen = wait_until(lambda: host.output(stream_id, 0)["chunks"], timeout=30)
    flag.write_text("go")
    call.join(60)
    assert seen == [("out", "started, waiting to be released\n")]
    [(ok, value, meta)] = wire.decode(answer[0])
    assert ok and value is True
    assert "".join(t for _, t in meta["output"]) == "started, waiting to be released\nreleased\n"
    assert host.output(stream_id, 0) == {"chunks": [], "offset": 0, "running": False}
    assert "released" not in capsys.readouterr().out
