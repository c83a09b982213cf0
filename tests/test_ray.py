"""The Ray target on a real local Ray cluster (one for the whole run), and the
placement rule that brings Ray in. The policy tests need no Ray."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import straightline_sdk as straightline
from straightline_sdk import TargetFailure
from straightline_sdk.placement import (DEFAULT_THRESHOLDS, MB, Features, Limits, Plan,
                                        TargetState)
from straightline_sdk.protocol import RemoteTraceback
from tests.conftest import need, wait_until
from tests.support.ray_cluster import ray_cluster  # noqa: F401  (the session fixture)


def use_cluster(address: str, **more) -> None:
    straightline.configure(options={"ray": {"address": address, **more}})


class Boom(Exception):
    def __init__(self, code):
        super().__init__(f"boom {code}")
        self.code = code


# -- the target on a real cluster --------------------------------------------------

@pytest.mark.ray
def test_pinned_call_runs_on_the_warm_actor(ray_cluster):
    use_cluster(ray_cluster)

    @straightline.deploy(target="ray")
    def add_one(x):
        return x + 1, os.getpid()

    target = add_one.deployed_targets["ray"]
    value, pid = add_one(41)
    assert value == 42
    assert pid == target.describe()["actor_pid"] != os.getpid()
    assert add_one.placement.target == "ray"
    assert add_one.stats()["ray"]["calls"] == 1


@pytest.mark.ray
def test_logs_return_what_the_actor_printed(ray_cluster):
    use_cluster(ray_cluster)

    @straightline.deploy(target="ray")
    def chatty(x):
        print(f"chatty saw {x}", flush=True)
        print(f"chatty warns {x}", file=sys.stderr, flush=True)
        return x

    assert chatty(7) == 7
    assert wait_until(lambda: "chatty saw 7" in chatty.logs() and "chatty warns 7" in chatty.logs())


@pytest.mark.ray
def test_output_and_exceptions_come_back_from_ray(ray_cluster, capsys):
    from tests.support import checks, user_code
    use_cluster(ray_cluster)
    checks.assert_all(straightline.deploy(user_code.scenario, target="ray"), "ray", capsys)


@pytest.mark.ray
def test_a_long_calls_output_streams_from_the_actor_while_it_runs(ray_cluster, capsys, tmp_path):
    from tests.support import checks, user_code
    use_cluster(ray_cluster)
    h = straightline.deploy(user_code.waits_for_release, target="ray")
    checks.assert_output_streams_while_the_call_runs(h, "ray", capsys, str(tmp_path / "go"))


@pytest.mark.ray
def test_the_warm_actor_leaves_every_cpu_to_map_tasks(ray_cluster):
    """Ray holds a CPU for an actor's whole life once any resource is named on it
    (even num_gpus=0): the cluster's map tasks would then get one CPU fewer, and a
    one-CPU node none (on a two-node cluster of one CPU each, a map hung there)."""
    import ray
    use_cluster(ray_cluster)
    free_before = wait_until(lambda: ray.available_resources().get("CPU"), timeout=30)

    @straightline.deploy(target="ray")
    def add_one(x):
        return x + 1

    assert add_one(1) == 2
    assert wait_until(lambda: ray.available_resources().get("CPU") == free_before, timeout=10), \
        f"the actor holds {free_before - ray.available_resources().get('CPU', 0):g} CPU"
    add_one.undeploy()


@pytest.mark.ray
def test_map_fans_out_to_tasks_and_keeps_order(ray_cluster):
    use_cluster(ray_cluster)

    @straightline.deploy(target="ray")
    def square(x):
        import numpy as np
        return x * x, os.getpid(), np.arange(3)

    actor_pid = square.deployed_targets["ray"].describe()["actor_pid"]
    results = square.map(range(200), chunksize=7)
    assert [value for value, _, _ in results] == [x * x for x in range(200)]
    assert actor_pid not in {pid for _, pid, _ in results}   # tasks, not the actor
    array = results[0][2]
    array[0] = 5                                            # results are writable, as on every target
    assert square.stats()["ray"]["calls"] == 200


@pytest.mark.ray
def test_user_exception_keeps_its_type_and_remote_traceback(ray_cluster):
    use_cluster(ray_cluster)

    @straightline.deploy(target="ray")
    def explode(code):
        raise Boom(code)

    with pytest.raises(Boom) as info:
        explode(7)
    assert info.value.code == 7
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "Traceback on the ray target" in str(cause)
    assert "raise Boom(code)" in str(cause) and __file__ in str(cause)
    # the same through a map (tasks)
    results = explode.map([1, 2], return_exceptions=True)
    assert [type(r) for r in results] == [Boom, Boom] and [r.code for r in results] == [1, 2]
    assert explode.stats()["ray"]["failures"] == 0


def kill_actor(h) -> None:
    import ray
    target = h.deployed_targets["ray"]
    ray.kill(target._actor)
    assert wait_until(lambda: not target.health()[0], timeout=20), "the killed actor still answers"


@pytest.mark.ray
def test_killed_actor_fails_over_to_local(ray_cluster):
    use_cluster(ray_cluster)
    # Inputs above D are "large": Docker is not allowed, so Ray comes first, then local.
    straightline.configure(size_threshold=256)
    payload = b"x" * 4096

    @straightline.deploy(targets=("ray", "local"), sample=(payload,))
    def size(data):
        return len(data)

    assert size.placement.target == "ray"
    assert size(payload) == 4096
    kill_actor(size)
    assert size(payload) == 4096                  # failed on Ray, answered by local
    stats = size.stats()
    assert stats["ray"]["failures"] == 1 and stats["local"]["calls"] == 1
    last = size.calls[-1]
    assert last.target == "local" and last.fell_back
    failed = [r for r in size.calls if r.outcome == "failed"]
    assert failed and "was lost during the call" in failed[0].detail


@pytest.mark.ray
def test_killed_actor_when_pinned_is_recorded_and_the_call_runs_on_a_new_actor(ray_cluster):
    use_cluster(ray_cluster)

    @straightline.deploy(target="ray")
    def add_one(x):
        return x + 1

    assert add_one(1) == 2
    kill_actor(add_one)
    # idempotent (the default) and no other target: the call runs once more on a fresh actor
    assert add_one(1) == 2
    assert add_one.stats()["ray"]["failures"] == 1
    detail = [r for r in add_one.calls if r.outcome == "failed"][-1].detail
    assert "Ray actor serving" in detail and "killed" in detail
    assert add_one(2) == 3


@pytest.mark.ray
def test_undeploy_kills_the_actor_and_leaves_the_cluster_running(ray_cluster):
    import ray
    use_cluster(ray_cluster)

    @straightline.deploy(target="ray")
    def ident(x):
        return x

    target = ident.deployed_targets["ray"]
    actor = target._actor
    ident.undeploy()

    def gone():   # ray.kill is asynchronous: a ping sent at once may still be answered
        try:
            ray.get(actor.ping.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            return True
        return False

    assert wait_until(gone, timeout=20)
    assert ray.is_initialized()


@pytest.mark.ray
def test_probe_reports_the_cluster_capacity(ray_cluster):
    from straightline_sdk.targets.ray import RayTarget
    probe = RayTarget.probe({"address": ray_cluster})
    assert probe.available
    assert probe.limits.cpus == 2 and probe.limits.gpus == 0
    assert probe.limits.pythons == frozenset({sys.version_info[:2]})
    assert probe.capacity["cpus"] == 2 and probe.capacity["nodes"] == 1
    assert 0 <= probe.capacity["available"]["cpus"] <= 2


@pytest.mark.ray
def test_resources_the_cluster_cannot_meet_are_excluded_before_deploying(ray_cluster):
    use_cluster(ray_cluster)
    with pytest.raises(straightline.PlacementError, match="needs 1 GPU"):
        @straightline.deploy(target="ray", resources=straightline.Resources(gpus=1))
        def on_gpu(x):
            return x


def probe_in_fresh_interpreter(body: str) -> dict:
    """Run probe code in a new Python (not connected to Ray, no RAY_ADDRESS); its last
    output line is JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "STRAIGHTLINE_RAY_ADDRESS")}
    script = "import json, sys\nimport straightline_sdk as straightline\n" \
             "from straightline_sdk.targets.ray import RayTarget\n" + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_ray_installed_the_target_is_unavailable_with_the_install_hint():
    # sys.modules["ray"] = None is how Python itself hides an absent module from imports
    out = probe_in_fresh_interpreter("""
        sys.modules["ray"] = None
        p = RayTarget.probe({"address": "127.0.0.1:6379"})
        print(json.dumps([p.available, p.reason, p.hint]))
    """)
    assert out == [False, "Ray is not installed", "pip install 'straightline-sdk[ray]'"]


@pytest.mark.ray
def test_without_a_cluster_the_target_is_unavailable_with_how_to_connect():
    """No address and no start_local: unavailable, saying how; and neither that
    probe nor the start_local one imports or starts Ray."""
    need(importlib.util.find_spec("ray") is not None, "Ray is not installed")
    out = probe_in_fresh_interpreter("""
        out = {}
        p = RayTarget.probe({})
        out["no_address"] = [p.available, p.reason, p.hint]
        p = RayTarget.probe({"start_local": True})
        out["start_local"] = [p.available, p.limits.cpus]
        out["ray_imported"] = "ray" in sys.modules
        try:
            straightline.deploy(lambda x: x, target="ray")
        except straightline.PlacementError as exc:
            out["deploy"] = str(exc)
        print(json.dumps(out))
    """)
    available, reason, hint = out["no_address"]
    assert not available and reason == "no Ray cluster is configured"
    assert "RAY_ADDRESS" in hint and "start_local" in hint
    assert out["start_local"][0] is True and out["start_local"][1] >= 1
    assert out["ray_imported"] is False
    assert "ray: no Ray cluster is configured" in out["deploy"] and "RAY_ADDRESS" in out["deploy"]


@pytest.mark.ray
def test_start_local_starts_a_cluster_only_when_asked_and_stops_it_at_exit():
    import psutil
    need(importlib.util.find_spec("ray") is not None, "Ray is not installed")
    out = probe_in_fresh_interpreter("""
        straightline.configure(options={"ray": {"start_local": True, "num_cpus": 1}})
        h = straightline.deploy(lambda x: x + 1, target="ray", name="inc")
        import ray
        print(json.dumps({"result": h(1), "cluster": h.deployed_targets["ray"].describe()["cluster"],
                          "session": ray._private.worker._global_node.get_session_dir_path()}))
    """)
    assert out["result"] == 2 and out["cluster"] == "started by this process"
    session = os.path.basename(out["session"])

    def cluster_processes():
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if any(session in part for part in proc.info["cmdline"] or ()):
                found.append(proc.pid)
        return found

    assert wait_until(lambda: not cluster_processes(), timeout=30), cluster_processes()


@pytest.mark.ray
def test_an_address_other_than_the_connected_cluster_is_refused(ray_cluster):
    from straightline_sdk.targets.ray import RayTarget
    port = int(ray_cluster.rpartition(":")[2])
    assert RayTarget.probe({"address": f"localhost:{port}"}).available   # the same cluster, by another name
    probe = RayTarget.probe({"address": f"127.0.0.1:{port + 1}"})
    assert not probe.available
    assert "already connected to the Ray cluster at" in probe.reason and "ray.shutdown()" in probe.hint


@pytest.mark.ray
def test_a_call_over_its_time_limit_is_stopped_by_replacing_the_actor(ray_cluster):
    import psutil
    use_cluster(ray_cluster)

    @straightline.deploy(target="ray", resources=straightline.Resources(timeout_s=0.5))
    def slow(seconds):
        time.sleep(seconds)
        return seconds

    assert slow(0) == 0
    pid = slow.deployed_targets["ray"].describe()["actor_pid"]
    with pytest.raises(straightline.CallTimeout,
                       match="0.5 s time limit on the ray target.*actor was replaced"):
        slow(30)
    assert wait_until(lambda: not psutil.pid_exists(pid) or
                      psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)   # the runaway is gone
    assert slow(0) == 0
    assert slow.deployed_targets["ray"].describe()["actor_pid"] != pid


@pytest.mark.ray
def test_keep_leaves_a_named_actor_the_cli_can_list(ray_cluster):
    from straightline_sdk.targets.ray import RayTarget
    use_cluster(ray_cluster)

    @straightline.deploy(target="ray", keep=True, name="kept_ident")
    def ident(x):
        return x

    assert ident(3) == 3
    kept = [item for item in RayTarget.inventory({}) if item["owner"] == "kept_ident"]
    assert len(kept) == 1 and kept[0]["orphan"] is False
    ident.undeploy()
    assert wait_until(lambda: not [i for i in RayTarget.inventory({}) if i["owner"] == "kept_ident"])


@pytest.mark.ray
def test_a_cluster_on_this_machine_alone_gets_no_runtime_env(ray_cluster):
    """The local cluster shares this Python environment: nothing to pip-install."""
    import ray
    use_cluster(ray_cluster)

    @straightline.deploy(target="ray")
    def ident(x):
        return x

    assert ident.deployed_targets["ray"]._runtime_env(ray) is None


@pytest.mark.ray
def test_a_cluster_of_other_machines_gets_pinned_dependencies_and_the_runtime(ray_cluster):
    """What a remote cluster would install (computed, not installed: tests pip-install nothing)."""
    import numpy as np
    import ray
    from straightline_sdk.targets import DeploySpec
    from straightline_sdk.targets.ray import RayTarget
    from straightline_sdk.packaging import package_function

    def total(x):
        return float(np.sum(x))

    spec = DeploySpec(package_function(total, "total"), options={"ship_dependencies": True})
    env = RayTarget(spec)._runtime_env(ray)
    assert f"numpy=={np.__version__}" in env["pip"]
    assert any(pin.startswith("cloudpickle==") for pin in env["pip"])
    # uploaded to the cluster's GCS and named by URI: an actor's or task's runtime_env
    # takes no local path (Ray uploads those only for ray.init's job-level one)
    [runtime_uri] = env["py_modules"]
    assert runtime_uri.startswith("gcs://") and runtime_uri.endswith(".zip")


@pytest.mark.ray
def test_shipping_the_runtime_works_on_a_connected_cluster(ray_cluster):
    """The SDK's runtime as a py_module at the actor's and the tasks' level (what a cluster
    of other machines gets) deploys, calls and maps; before, Ray refused the local path."""
    use_cluster(ray_cluster, ship_dependencies=True, ship_packages=False)

    @straightline.deploy(target="ray")
    def triple(x):
        return 3 * x, os.environ.get("PYTHONPATH", "")

    value, path = triple(2)
    assert value == 6
    assert "py_modules_files" in path   # the worker has the runtime Ray fetched from the GCS
    assert [v for v, _ in triple.map(range(4), chunksize=1)] == [0, 3, 6, 9]
    assert triple.deployed_targets["ray"].describe()["shipped"] == ["py_modules"]
    triple.undeploy()


# -- the placement rule (pure: no Ray) -------------------------------------------------

def states(local_busy: bool, **limits) -> dict[str, TargetState]:
    made = {kind: TargetState(kind, True, limits=limits.get(kind, Limits()), concurrency=2)
            for kind in ("local", "docker", "ray")}
    made["local"].in_flight = 2 if local_busy else 0
    return made


def test_batch_work_beyond_local_capacity_goes_to_ray_before_docker():
    plan = Plan(Features(), states(local_busy=True))
    th = DEFAULT_THRESHOLDS
    chunk = plan.decide(1.0, 1000, th, batch=8)
    assert chunk.target == "ray"
    assert any("beyond local capacity → ray before docker" in r for r in chunk.reasons)
    assert plan.decide(1.0, 1000, th, batch=1).target == "docker"   # single calls: the paper's order
    frequent = plan.decide(500.0, 1000, th, batch=8)                # frequent-small, no serverless allowed
    assert frequent.branch == "frequent-small" and frequent.target == "ray"
    large = plan.decide(1.0, 8 * MB, th, batch=8)                    # large data keeps Docker first
    assert large.target == "docker"


def test_batch_work_stays_local_while_local_has_room():
    plan = Plan(Features(), states(local_busy=False))
    assert plan.decide(1.0, 1000, DEFAULT_THRESHOLDS, batch=8).target == "local"


def test_batch_rule_keeps_serverless_first_for_frequent_small_work():
    all_states = states(local_busy=True)
    all_states["lambda"] = TargetState("lambda", True, concurrency=10)
    plan = Plan(Features(), all_states)
    assert plan.decide(500.0, 1000, DEFAULT_THRESHOLDS, batch=8).target == "lambda"


def test_a_gpu_need_only_ray_meets_goes_to_ray():
    plan = Plan(Features(gpus=1), states(local_busy=False, ray=Limits(gpus=4)))
    decision = plan.decide(1.0, 1000, DEFAULT_THRESHOLDS)
    assert decision.target == "ray"
    excluded = dict(decision.excluded)
    assert excluded["local"] == excluded["docker"] == "needs 1 GPU(s), target has 0"
