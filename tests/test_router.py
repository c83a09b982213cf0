"""The router on its own: what it records for each call comes from that call.

The targets here are in-process (tests/support/inprocess.py): real frames through
the real runtime, no transport, so the router's bookkeeping is the subject.
"""

from __future__ import annotations

import threading

import straightline_sdk as straightline
from straightline_sdk.runtime import execute
from straightline_sdk.targets.base import Reply
from tests.support.inprocess import InProcessTarget, install


class ColdThenWarm(InProcessTarget):
    """The first call is a cold start that answers only after a second, warm call
    was answered: the order in which concurrent calls finish on e.g. Lambda."""

    def __init__(self, spec, progress=None):
        super().__init__(spec, progress)
        self.warm_answered = threading.Event()
        self.cold_started = threading.Event()

    def invoke(self, segments, total, timeout):
        with self._lock:
            self.calls += 1
            number = self.calls
        out, _ = execute.handle_frame(self.fn, b"".join(bytes(s) for s in segments))
        reply = Reply(b"".join(bytes(s) for s in out), cold=number == 1)
        if number == 1:   # its answer is in hand; it returns after the warm call was answered
            self.cold_started.set()
            assert self.warm_answered.wait(10), "the warm call never came"
        else:
            self.warm_answered.set()
        return reply


def test_concurrent_calls_each_record_their_own_cold_start(monkeypatch):
    cls = install(monkeypatch, "docker", base=ColdThenWarm)

    def ident(x):
        return x

    h = straightline.deploy(ident, target="docker", name="ident_cold_race")
    try:
        target = cls.instances[0]
        first = h.submit("cold")
        assert target.cold_started.wait(10)
        second = h.submit("warm")
        assert (first.result(10), second.result(10)) == ("cold", "warm")
        # the warm call finished first: records in order of finishing
        assert [r.cold for r in h.calls] == [False, True]
        assert h.stats()["docker"]["cold_starts"] == 1
    finally:
        h.undeploy()


def test_a_fresh_target_counts_one_cold_start_however_many_calls_race_for_it(monkeypatch):
    install(monkeypatch, "docker")

    def ident(x):
        return x

    h = straightline.deploy(ident, target="docker", name="ident_first_answer")
    try:
        assert h.map(range(64), chunksize=1, concurrency=16) == list(range(64))
        assert h.stats()["docker"]["cold_starts"] == 1
        assert sum(r.cold for r in h.calls) == 1
    finally:
        h.undeploy()
