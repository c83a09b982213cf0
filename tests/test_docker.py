"""The Docker target against a real engine (scripts/setup-docker.sh makes one
and the python:3.11-slim base image), and dependency capture with real pip."""

from __future__ import annotations

import http.client
import json
import os
import site
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import straightline_sdk as straightline
from straightline_sdk import Resources, TargetFailure
from straightline_sdk.errors import PackagingError
from straightline_sdk.packaging import dependencies, docker_context, package_function
from straightline_sdk.targets.docker import LABEL_ROLE, DockerTarget
from straightline_sdk.targets.http import PeerNotVerified, WorkerClient

from .conftest import need, wait_until

try:
    import docker as docker_sdk
except ImportError:
    docker_sdk = None


def _engine():
    if docker_sdk is None:
        return None
    try:
        client = docker_sdk.from_env(timeout=30)
        client.ping()
        return client
    except Exception:
        return None


@pytest.fixture
def engine():
    client = _engine()
    need(client is not None, "a Docker engine must answer (run: bash scripts/setup-docker.sh)")
    base = docker_context.default_base_image()
    try:
        client.images.get(base)
        have_base = True
    except docker_sdk.errors.ImageNotFound:
        have_base = False
    need(have_base, f"the base image {base} must exist (run: bash scripts/setup-docker.sh)")
    return client


def _target(h) -> DockerTarget:
    return h.deployed_targets["docker"]


def _images_of(client, prefixes: tuple[str, ...]) -> dict[str, str]:
    """tag -> image id of the SDK's images whose tags start with one of ``prefixes``
    (other engineers' and benchmarks' images on a shared engine must not count)."""
    return {tag: image.id for image in client.images.list(filters={"label": LABEL_ROLE})
            for tag in image.tags if tag.startswith(prefixes)}


# -- a notebook-style function: closures over an array and a fitted model ----------------

def _make_predictor():
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(7)
    features = rng.random((300, 4))
    model = Ridge(alpha=0.5).fit(features, features @ np.array([1.5, -2.0, 0.5, 3.0]) + 0.1)
    centre = features.mean(axis=0)

    def predict(batch):
        return model.predict(np.asarray(batch) - centre)

    return predict


# -- dependency capture and wheels (no engine needed) ------------------------------------

def test_capture_finds_closure_globals_and_body_imports():
    predict = _make_predictor()
    deps = dependencies.capture(predict, package_function(predict, "predict"))
    names = {pin.split("==")[0].lower() for pin in deps.pins}
    # the model's class, its transitive requirements, and the runtime's cloudpickle
    assert {"scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl", "cloudpickle"} <= names
    import sklearn
    assert f"scikit-learn=={sklearn.__version__}" in deps.pins
    assert list(deps.pins) == sorted(deps.pins, key=str.lower)

    def uses_json_only(x):
        import json as j   # stdlib: never shipped
        return j.dumps(x)

    plain = dependencies.capture(uses_json_only, package_function(uses_json_only, "j"))
    assert [p.split("==")[0] for p in plain.pins] == ["cloudpickle"]

    def imports_inside(x):
        import numpy
        return numpy.sum(x)

    inside = dependencies.capture(imports_inside, package_function(imports_inside, "i"))
    assert any(p.startswith("numpy==") for p in inside.pins)
    # loading the function from its payload gives the same answer
    assert dependencies.capture(None, package_function(predict, "predict")).pins == deps.pins


def test_requirements_add_and_override():
    def f(x):
        return x

    package = package_function(f, "f")
    deps = dependencies.capture(f, package, ["numpy", "cloudpickle==3.0.0"])
    assert f"numpy=={np.__version__}" in deps.pins
    assert "cloudpickle==3.0.0" in deps.pins
    assert deps.content_hash != dependencies.capture(f, package).content_hash
    with pytest.raises(PackagingError, match="Pin an exact version"):
        dependencies.capture(f, package, ["surely-not-installed-here>=1"])


def test_wheels_are_cached_and_missing_wheels_are_named(monkeypatch):
    deps = dependencies.DependencySet(("joblib==1.6.0", "threadpoolctl==3.8.0"))
    try:
        first = dependencies.download_wheels(deps, "linux/aarch64")
    except PackagingError as exc:
        need(False, f"pip must reach a package index: {exc}")
    assert [os.path.basename(p).split("-")[0] for p in first] == ["joblib", "threadpoolctl"]

    def no_pip(*args, **kwargs):
        raise AssertionError("a cached wheel was downloaded again")

    monkeypatch.setattr(dependencies, "_pip_download", no_pip)
    assert dependencies.download_wheels(deps, "linux/aarch64") == first
    monkeypatch.undo()
    # psycopg2 publishes source only: no wheel for any platform
    with pytest.raises(PackagingError, match=r"psycopg2==2\.9\.9 has no wheel for linux/x86_64"):
        dependencies.download_wheels(dependencies.DependencySet(("psycopg2==2.9.9",)), "linux/x86_64")


# -- the engine -----------------------------------------------------------------------------

@pytest.mark.docker
def test_probe_reports_capacity_and_a_missing_engine(engine, monkeypatch, tmp_path):
    probe = DockerTarget.probe({})
    assert probe.available, probe.reason
    assert probe.capacity["cpus"] >= 1 and probe.capacity["memory_mb"] > 0
    down = DockerTarget.probe({"docker_host": "tcp://127.0.0.1:9"})
    assert not down.available and "tcp://127.0.0.1:9" in down.reason and "DOCKER_HOST" in down.hint
    # a local engine that is not running: asked over its socket, without the SDK
    stopped = DockerTarget.probe({"docker_host": f"unix://{tmp_path}/docker.sock"})
    assert not stopped.available and f"{tmp_path}/docker.sock" in stopped.reason
    assert "setup-docker.sh" in stopped.hint
    monkeypatch.setitem(sys.modules, "docker", None)   # what an install without the extra sees
    missing = DockerTarget.probe({})
    assert not missing.available and "straightline-sdk[docker]" in missing.hint


@pytest.mark.docker
def test_notebook_function_with_model_runs_in_container_like_locally(engine):
    predict = _make_predictor()
    h = straightline.deploy(predict, target="docker", name="docker-predict")
    batch = np.random.default_rng(1).random((8, 4))
    assert np.allclose(h(batch), h.local(batch), rtol=1e-12, atol=1e-12)
    batches = [np.random.default_rng(i).random((5, 4)) for i in range(12)]
    remote = h.map(batches)
    assert len(remote) == 12
    for got, batch in zip(remote, batches):
        assert np.allclose(got, predict(batch), rtol=1e-12, atol=1e-12)
    target = _target(h)
    container = engine.containers.get(target.container.id)
    assert container.attrs["HostConfig"]["Init"] is True
    bindings = container.attrs["HostConfig"]["PortBindings"][f"{docker_context.WORKER_PORT}/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert container.labels["straightline.name"] == "docker-predict"
    assert "STRAIGHTLINE_WORKER_READY" in h.logs()
    assert "token" not in repr(target.describe()).lower()
    h.undeploy()
    with pytest.raises(docker_sdk.errors.NotFound):
        engine.containers.get(container.id)
    engine.images.get(target.image_tag)   # the image stays, for the next deploy


@pytest.mark.docker
def test_a_long_calls_output_streams_from_the_container_while_it_runs(engine, capsys):
    from tests.support import checks, user_code
    h = straightline.deploy(user_code.waits_for_release, target="docker")
    flag = "/tmp/straightline-release"
    container = _target(h).container
    checks.assert_output_streams_while_the_call_runs(
        h, "docker", capsys, flag, release=lambda: container.exec_run(["touch", flag]))


@pytest.mark.docker
def test_the_base_image_can_be_set_per_deployment(engine):
    """docs/targets-docker.md: the base image per deployment (options=)."""
    from straightline_sdk.errors import StraightLineError
    absent = "straightline-test/no-such-base:0"

    def seven():
        return 7

    with pytest.raises(StraightLineError, match="base image straightline-test/no-such-base:0 is not on the Docker engine"):
        straightline.deploy(seven, target="docker", options={"docker": {"base_image": absent}},
                            name="absent-base")


@pytest.mark.docker
def test_output_and_exceptions_come_back_from_docker(engine, capsys):
    from tests.support import checks, user_code
    checks.assert_all(straightline.deploy(user_code.scenario, target="docker"), "docker", capsys)


_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import straightline_sdk as straightline
    mode, name = sys.argv[1], sys.argv[2]
    weights = np.arange(5.0)

    def score(x):
        return float(np.dot(weights, x))

    h = straightline.deploy(score, target="docker", keep=(mode == "keep"), name=name)
    assert h(np.ones(5)) == 10.0
    sdk_imported = "docker" in sys.modules   # before anything below looks at the container
    t = h.deployed_targets["docker"]
    print(json.dumps({"container": t.container.id, "image": t.image_tag, "built": t.built,
                      "adopted": t.adopted, "sdk_imported": sdk_imported}), flush=True)
    if mode == "orphan":
        os._exit(0)   # as a killed kernel: no exit hooks run
""")


def _run_script(tmp_path, mode: str, name: str) -> dict:
    script = tmp_path / "notebook.py"
    script.write_text(_SCRIPT)
    done = subprocess.run([sys.executable, str(script), mode, name], capture_output=True,
                          text=True, timeout=240, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.docker
def test_unchanged_redeploy_after_a_kernel_restart_builds_and_starts_nothing(engine, tmp_path):
    first = _run_script(tmp_path, "keep", "docker-redeploy")
    try:
        deps_hash = engine.images.get(first["image"]).labels["straightline.deps"]
        ours = ("straightline/docker-redeploy:", f"straightline/deps:{deps_hash[:12]}")
        images_before = _images_of(engine, ours)
        started_ns = time.time_ns()
        since = int(time.time()) - 1
        second = _run_script(tmp_path, "keep", "docker-redeploy")
        until = int(time.time()) + 1
        assert second["container"] == first["container"] and second["adopted"]
        assert second["built"] == []
        assert first["sdk_imported"] and not second["sdk_imported"]   # the recorded shortcut
        assert _images_of(engine, ours) == images_before and first["image"] in images_before
        events = [e for e in engine.events(
                      since=since, until=until, decode=True,
                      filters={"label": ["straightline.role=worker",
                                         "straightline.name=docker-redeploy"]})
                  if e["timeNano"] >= started_ns]
        assert [e for e in events if e.get("Action") in ("create", "start")] == []
        tagged = [e for e in engine.events(since=since, until=until, decode=True,
                                           filters={"type": "image", "event": "tag"})
                  if e["timeNano"] >= started_ns and any(p in json.dumps(e) for p in ours)]
        assert tagged == []
    finally:
        engine.containers.get(first["container"]).remove(force=True)


@pytest.mark.docker
def test_a_stale_record_or_changed_packages_take_the_full_path(engine, tmp_path):
    first = _run_script(tmp_path, "keep", "docker-record")
    containers = [first["container"]]
    folder = next(p for p in site.getsitepackages() if os.path.isdir(p))
    stat = os.stat(folder)
    try:
        # a package installed or removed since: the shortcut is not trusted, the
        # full path (dependency capture, labels) finds the same content and adopts it
        os.utime(folder, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        changed = _run_script(tmp_path, "keep", "docker-record")
        assert changed["sdk_imported"] and changed["adopted"]
        assert changed["container"] == first["container"]
        # the recorded container removed behind the SDK's back: a new one is started
        engine.containers.get(first["container"]).remove(force=True)
        again = _run_script(tmp_path, "keep", "docker-record")
        containers.append(again["container"])
        assert again["container"] != first["container"] and not again["adopted"]
    finally:
        os.utime(folder, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        for container in containers:
            try:
                engine.containers.get(container).remove(force=True)
            except docker_sdk.errors.NotFound:
                pass


@pytest.mark.docker
def test_a_call_past_its_time_limit_restarts_the_container(engine):
    @straightline.deploy(target="docker", resources=Resources(timeout_s=1), name="docker-timeout")
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    assert nap(0) == 0
    container_id = _target(nap).container.id
    started = engine.containers.get(container_id).attrs["State"]["StartedAt"]
    with pytest.raises(straightline.CallTimeout, match="1 s time limit.*container was restarted"):
        nap(60)
    state = engine.containers.get(container_id).attrs["State"]
    assert state["Running"] and state["StartedAt"] != started   # the runaway call is gone
    assert nap(0) == 0                                           # the same container serves on
    assert _target(nap).container.id == container_id
    nap.undeploy()


def _edited(i):
    return i + 1


@pytest.mark.docker
def test_a_new_runtime_rebuilds_only_its_layer_of_the_dependencies_image(engine, monkeypatch):
    """Images carry the runtime: an SDK upgrade (another runtime) is another image,
    whose wheels step still comes from the cache."""
    one = straightline.deploy(_edited, target="docker", name="docker-runtime")
    assert one(1) == 2
    old = engine.images.get(_target(one).image_tag)
    one.undeploy()
    runtime_files = docker_context._runtime_files
    marker = f"# {os.urandom(8).hex()}\n".encode()
    monkeypatch.setattr(docker_context, "_runtime_files",
                        lambda: {**runtime_files(), "straightline_runtime/zz_marker.py": marker})
    two = straightline.deploy(_edited, target="docker", name="docker-runtime")
    assert two(1) == 2
    target = _target(two)
    new = engine.images.get(target.image_tag)
    assert new.id != old.id and target.built == [target.image_tag]
    old_layers, new_layers = old.attrs["RootFS"]["Layers"], new.attrs["RootFS"]["Layers"]
    assert len(new_layers) == len(old_layers)
    assert new_layers[:-1] == old_layers[:-1] and new_layers[-1] != old_layers[-1]
    copy_runtime = next(i for i, (step, _) in enumerate(target.build_steps)
                        if step.partition(" : ")[2].startswith("COPY straightline_runtime/"))
    assert all(cached for _, cached in target.build_steps[1:copy_runtime])
    assert not target.build_steps[copy_runtime][1]
    two.undeploy()
    engine.images.remove(new.id)


def _slow_echo(x):
    import time as t
    t.sleep(0.2)
    return x


@pytest.mark.docker
def test_killing_the_container_mid_map_loses_nothing(engine):
    h = straightline.deploy(_slow_echo, target="docker", name="docker-kill")
    target = _target(h)
    outcome: dict = {}

    def run_map():
        try:
            outcome["result"] = h.map(range(200), chunksize=1)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    mapper = threading.Thread(target=run_map)
    mapper.start()
    probe = target.client   # thread-safe: the map's own connections are separate
    assert wait_until(lambda: probe.get("/health").json()["calls"] >= 3, timeout=30, interval=0.05), \
        "the map never reached the container"
    killed = target.container.id
    engine.containers.get(killed).kill()
    mapper.join(timeout=60)
    assert not mapper.is_alive(), "the map hung after the container was killed"
    # the calls in flight ran again on a fresh container (the deployment is idempotent)
    assert outcome.get("result") == list(range(200)), outcome.get("error")
    failed = [r.detail for r in h.calls if r.outcome == "failed"]
    assert failed and all("stopped" in d and "exit code 137" in d for d in failed), failed
    assert _target(h).container.id != killed


def _hog(megabytes):
    block = b"x" * (megabytes * 1024 * 1024)
    return len(block)


@pytest.mark.docker
def test_out_of_memory_container_reports_oomkilled(engine):
    h = straightline.deploy(_hog, target="docker", name="docker-oom",
                            resources=Resources(memory_mb=64))
    assert h(1) == 1024 * 1024
    with pytest.raises(TargetFailure, match="OOMKilled"):
        h(400)


@pytest.mark.docker
def test_worker_refuses_calls_without_or_with_a_wrong_token(engine):
    h = straightline.deploy(_hog, target="docker", name="docker-token")
    assert h(1) == 1024 * 1024
    host, port = _target(h).client.host, _target(h).client.port
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", "/invoke", body=b"x")
    assert conn.getresponse().status == 401
    conn.close()
    wrong = WorkerClient(host, port, "not-the-token", target="docker")
    with pytest.raises(PeerNotVerified):    # neither side proves a key the other holds
        wrong.request("POST", "/invoke", [b"x"], 1)
    wrong.close()
    key = {"Authorization": f"Bearer {h.spec.token}"}   # the key is never a credential on the wire
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", "/invoke", body=b"x", headers=key)
    assert conn.getresponse().status == 403
    conn.close()
    door = h.endpoint                                  # outside programs: JSON calls only
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", "/json", body=json.dumps({"args": [1]}), headers=door.headers)
    assert json.loads(conn.getresponse().read()) == {"result": 1024 * 1024}
    conn.request("POST", "/invoke", body=b"x", headers=door.headers)
    assert conn.getresponse().status == 403
    conn.close()


@pytest.mark.docker
def test_gc_removes_orphans_and_nothing_else(engine, tmp_path, capsys):
    from straightline_sdk import cli
    orphan = _run_script(tmp_path, "orphan", "docker-gc-orphan")
    kept = _run_script(tmp_path, "keep", "docker-gc-kept")
    live = straightline.deploy(_slow_echo, target="docker", name="docker-gc-live")
    assert live(1) == 1
    stranger = engine.containers.run(docker_context.default_base_image(), ["sleep", "300"],
                                     detach=True, labels={"made-by": "someone else"})
    try:
        assert cli.main(["ls", "--kind", "docker"]) == 0
        listing = capsys.readouterr().out
        assert orphan["container"][:12] in listing and kept["container"][:12] in listing
        assert stranger.id[:12] not in listing

        assert cli.main(["gc", "--kind", "docker", "--dry-run"]) == 0
        assert f"would remove docker container {orphan['container'][:12]}" in capsys.readouterr().out
        engine.containers.get(orphan["container"])   # a dry run removes nothing

        assert cli.main(["gc", "--kind", "docker"]) == 0
        out = capsys.readouterr().out
        with pytest.raises(docker_sdk.errors.NotFound):
            engine.containers.get(orphan["container"])
        # built by the dead process, but one image serves a dependency set: the kept
        # deployment (the same dependencies) runs on it, so it stays
        assert orphan["image"] == kept["image"]
        for survivor in (kept["container"], stranger.id, _target(live).container.id):
            assert engine.containers.get(survivor).status == "running", out
        engine.images.get(kept["image"])
        engine.images.get(_target(live).image_tag)
        engine.images.get(docker_context.default_base_image())
        assert live(2) == 2
    finally:
        stranger.remove(force=True)
        engine.containers.get(kept["container"]).remove(force=True)


def _length(x):
    return len(x)


@pytest.mark.docker
def test_argument_modules_from_the_sample_travel_and_a_missing_one_is_named(engine):
    with_sample = straightline.deploy(_length, sample=(np.ones(3),), target="docker",
                                      name="docker-arg-sample")
    assert with_sample(np.ones(1000)) == 1000      # numpy is in the image: the sample said so
    without = straightline.deploy(_length, target="docker", name="docker-arg-none")
    with pytest.raises(TargetFailure, match="No module named 'numpy'.*requirements"):
        without(np.ones(10))                       # pinned: the reason, not a hang or a crash
    assert without([1, 2]) == 2                    # the container survived the bad request


def _echo_after_10_ms(x):
    import time as t
    t.sleep(0.01)
    return x


@pytest.mark.docker
def test_a_container_killed_mid_map_loses_no_call_when_local_can_take_over(engine):
    straightline.configure(size_threshold=1)    # every request is "large": Docker first
    h = straightline.deploy(_echo_after_10_ms, sample=(0,), targets=["docker", "local"],
                            name="docker-failover")
    target = _target(h)
    outcome: dict = {}

    def run_map():
        outcome["result"] = h.map(range(1000), chunksize=5)

    mapper = threading.Thread(target=run_map)
    mapper.start()
    assert wait_until(lambda: sum(r.target == "docker" for r in h.calls) >= 5, timeout=60), \
        "the map never reached the container"
    engine.containers.get(target.container.id).kill()
    mapper.join(timeout=120)
    assert not mapper.is_alive(), "the map hung after the container was killed"
    assert outcome["result"] == list(range(1000))          # complete, in order
    records = h.calls
    assert any(r.target == "docker" and r.outcome == "failed" for r in records)
    assert any(r.target == "local" and r.fell_back for r in records)
    assert sum(r.items for r in records if r.outcome == "ok") == 1000
