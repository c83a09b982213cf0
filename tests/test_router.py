"""The router on its own: what it records for each call comes from that call.

The targets here are the public fake (straightline_sdk.testing): real frames
through the real runtime, no transport, so the router's bookkeeping is the subject.
"""

from __future__ import annotations

import threading

import straightline_sdk as straightline
from straightline_sdk.runtime import execute
from straightline_sdk.targets.base import Reply
from straightline_sdk import targets
from straightline_sdk.placement import SERVERLESS
from straightline_sdk.errors import TargetFailure, TargetUnavailable
from straightline_sdk.testing import FakeTarget, fake_target
from tests.conftest import wait_until


class ColdThenWarm(FakeTarget):
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


def test_concurrent_calls_each_record_their_own_cold_start():
    def ident(x):
        return x

    with fake_target("docker", base=ColdThenWarm) as cls, \
            straightline.deploy(ident, target="docker", name="ident_cold_race") as h:
        target = cls.instances[0]
        first = h.submit("cold")
        assert target.cold_started.wait(10)
        second = h.submit("warm")
        assert (first.result(10), second.result(10)) == ("cold", "warm")
        # the warm call finished first: records in order of finishing
        assert [r.cold for r in h.calls] == [False, True]
        assert h.stats()["docker"]["cold_starts"] == 1


def test_a_fresh_target_counts_one_cold_start_however_many_calls_race_for_it():
    def ident(x):
        return x

    with fake_target("docker"), \
            straightline.deploy(ident, target="docker", name="ident_first_answer") as h:
        assert h.map(range(64), chunksize=1, concurrency=16) == list(range(64))
        assert h.stats()["docker"]["cold_starts"] == 1
        assert sum(r.cold for r in h.calls) == 1


def test_a_fake_target_stands_in_for_a_kind_and_the_real_one_comes_back():
    real = targets.REGISTRY["lambda"]
    with fake_target("lambda") as fake:
        assert targets.target_class("lambda") is fake and targets.tier_of("lambda") == SERVERLESS
        assert targets.probe("lambda").available
    assert targets.REGISTRY["lambda"] is real and targets.target_class("lambda").__name__ == "LambdaTarget"


def test_a_new_kind_registered_with_a_tier_is_placed_by_it():
    def ident(x):
        return x

    straightline.configure(rate_threshold=0)   # every small request is "frequent, small"
    with fake_target("faas", tier=SERVERLESS):
        straightline.configure(targets=["local", "faas"])
        with straightline.deploy(ident, sample=(1,), rate=10, name="ident_faas") as h:
            assert h.placement.target == "faas"
            assert h(2) == 2 and h.stats()["faas"]["calls"] == 1
    assert "faas" not in targets.kinds()



def _wait_for_file(x, gate):
    import os
    import time
    deadline = time.monotonic() + 30
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return x


def test_a_plan_rebuilt_while_requests_wait_keeps_their_count_and_frees_every_slot(tmp_path):
    """Pinning (or a profile, an edit) rebuilds the plan while a call runs and another
    waits for its slot: the target's state is the one they count themselves out of,
    so the overview still shows the waiting request, and nothing is left in flight."""
    gate = str(tmp_path / "gate")
    with fake_target("local", slots=1), \
            straightline.deploy(_wait_for_file, target="local", name="gate_refresh") as h:
        running = h.submit(1, gate)
        assert wait_until(lambda: h.target_overview()["local"]["in_flight"] == 1)
        waiting = h.submit(2, gate)
        assert wait_until(lambda: h.target_overview()["local"]["waiting"] == 1)
        h.pin("local")                       # rebuilds the plan
        overview = h.target_overview()["local"]
        assert (overview["in_flight"], overview["waiting"]) == (1, 1)
        open(gate, "w").close()
        assert (running.result(10), waiting.result(10)) == (1, 2)
        overview = h.target_overview()["local"]
        assert (overview["in_flight"], overview["waiting"]) == (0, 0)
        assert h(3, gate) == 3               # its one slot is free again


class CannotComeBack(FakeTarget):
    """Its first instance serves; any later deploy (a redeploy after it failed) fails."""

    def deploy(self):
        if len(type(self).instances) > 1:
            raise TargetUnavailable("the engine is gone", target=self.kind)
        super().deploy()


def test_a_target_marked_down_stays_down_when_the_plan_is_rebuilt():
    """A target whose redeploy failed is out of placement for a while; a plan
    rebuilt meanwhile (a pin, a profile arriving) must not read its probe as
    "available" again and send the next call into another failed deploy."""
    def size(data):
        return len(data)

    large = bytes(5 * 1024 * 1024)    # over D: Docker's, the local worker its fallback
    with fake_target("docker", base=CannotComeBack) as cls, \
            straightline.deploy(size, targets=["docker", "local"], target="docker",
                                name="down_stays_down") as h:
        h.pin(None)
        first = cls.instances[0]
        first.healthy = False
        first.fail_next.append(TargetFailure("boom", target="docker", may_have_run=False))
        for _ in range(3):   # the failing call goes to the local worker; a later one redeploys
            assert h(large) == len(large)
            if len(cls.instances) == 2:
                break
        assert len(cls.instances) == 2 and h.placement.target == "local"   # redeploy failed
        assert h.target_overview()["docker"]["state"] == "down"
        h.pin(None)                                        # the plan is rebuilt
        assert h.target_overview()["docker"]["state"] == "down"
        assert h(large) == len(large) and h.placement.target == "local"
        assert len(cls.instances) == 2                     # no second failed deploy
