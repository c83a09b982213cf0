"""Issue 17's Docker findings against the real engine: a paused container is a
target failure and not a hang; an engine outage (a DOCKER_HOST socket this test
owns and closes; the shared dockerd is never touched) is a StraightLineError,
the kind is marked down and re-probed, calls go to the warm local target, and
the kind is used again as soon as the engine answers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import straightline_sdk as straightline
from straightline_sdk import StraightLineError
from tests.conftest import in_thread, wait_until
from tests.support.engine_proxy import EngineProxy
from tests.support.run_log import RunLog

from .test_docker import engine  # noqa: F401  (the fixture)

pytestmark = pytest.mark.docker


def _total(x):
    return float(np.sum(x))


def test_a_paused_container_fails_over_instead_of_hanging(engine):  # noqa: F811
    h = straightline.deploy(_total, sample=(np.ones(3),), targets=["docker", "local"],
                            target="docker", name="docker-paused")
    assert h(np.ones(4)) == 4.0
    container = engine.containers.get(h.deployed_targets["docker"].container.id)
    h.prewarm(["local"])
    h.pin(None)
    straightline.configure(size_threshold=1)          # every request is "large": docker first
    container.pause()
    try:
        finished, value = in_thread(lambda: h(np.ones(5)), timeout=120)
        assert finished, "the call hung on a paused container"
        assert value == 5.0                            # failed over to the warm local worker
        failed = [r for r in h.calls if r.outcome == "failed"]
        assert failed and "paused" in failed[-1].detail
    finally:
        try:
            container.unpause()
        except Exception:
            pass


def test_an_engine_outage_is_a_target_failure_and_recovers(engine, tmp_path):  # noqa: F811
    proxy = EngineProxy(str(tmp_path / "docker.sock")).open()
    straightline.configure(options={"docker": {"docker_host": proxy.url}}, size_threshold=1)
    h = straightline.deploy(_total, sample=(np.ones(3),), targets=["docker", "local"],
                            target="local", name="docker-outage")
    h.pin(None)
    proxy.close()                                      # the engine is gone
    try:
        # docker is the policy's first choice for large data; it cannot deploy:
        # the call goes to the local target, with no foreign exception
        assert h(np.ones(6)) == 6.0
        overview = h.target_overview()
        assert overview["docker"]["state"] == "down"
        h.pin("docker")
        with pytest.raises(StraightLineError):
            h(np.ones(2))
        proxy.open()                                   # the engine is back
        assert wait_until(lambda: _try(h, np.ones(7)) == 7.0, timeout=30, interval=0.2)
        assert "docker" in h.deployed_targets
    finally:
        proxy.close()
        h.undeploy()


def _try(h, x):
    try:
        return h(x)
    except StraightLineError:
        return None


def test_a_container_lost_during_an_engine_outage_fails_over(engine, tmp_path):  # noqa: F811
    proxy = EngineProxy(str(tmp_path / "docker.sock")).open()
    straightline.configure(options={"docker": {"docker_host": proxy.url}}, size_threshold=1)
    h = straightline.deploy(_total, sample=(np.ones(3),), targets=["docker", "local"],
                            target="docker", name="docker-outage-kill")
    try:
        assert h(np.ones(4)) == 4.0
        container_id = h.deployed_targets["docker"].container.id
        h.prewarm(["local"])
        h.pin(None)
        proxy.close()                                  # the engine is gone ...
        engine.containers.get(container_id).kill()     # ... and so is the container
        finished, value = in_thread(lambda: [h(np.ones(i)) for i in range(1, 6)], timeout=120)
        assert finished and value == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert h.target_overview()["docker"]["state"] in ("down", "not deployed")
        proxy.open()
        h.pin("docker")
        assert wait_until(lambda: _try(h, np.ones(7)) == 7.0, timeout=60, interval=0.2)
    finally:
        proxy.close()
        h.undeploy()
        try:
            engine.containers.get(container_id).remove(force=True)
        except Exception:
            pass


def test_a_worker_port_on_the_network_needs_insecure_and_says_so(engine):  # noqa: F811
    straightline.configure(options={"docker": {"publish_host": "0.0.0.0", "direct": False}},
                           size_threshold=1)
    h = straightline.deploy(_total, sample=(np.ones(3),), targets=["docker", "local"],
                            name="docker-exposed")
    assert h(np.ones(4)) == 4.0
    reasons = " ".join(h.placement.reasons)
    assert h.placement.target == "local" and "publish_host=0.0.0.0" in reasons
    assert "insecure" in reasons and "docker" not in h.deployed_targets
    h.undeploy()

    straightline.configure(options={"docker": {"insecure": True}})
    h = straightline.deploy(_total, sample=(np.ones(3),), targets=["docker", "local"],
                            name="docker-exposed-ok")
    try:
        assert h(np.ones(5)) == 5.0 and h.placement.target == "docker"
        assert any("insecure=True" in r for r in h.placement.reasons)
        assert "insecure=True" in h.target_overview()["docker"]["transport"]
        from straightline_sdk.panel import Panel
        panel = Panel(h)
        try:
            panel.refresh()
            html = panel._targets_html(h.target_overview(), h.stats(), False)
            assert "insecure=True" in html      # the panel shows it, row by row
        finally:
            panel.stop()
    finally:
        h.undeploy()


_OWNER = """
import os, sys, time
import numpy as np
import straightline_sdk as straightline
straightline.configure(options={"docker": {"lease_s": 6}})
h = straightline.deploy(lambda x: float(np.sum(x)), sample=(np.ones(2),), target="docker",
                        name=sys.argv[1])
print(h.deployed_targets["docker"].container.id, flush=True)
time.sleep(600)
"""


def test_a_container_that_is_not_kept_ends_with_its_killed_process(engine, tmp_path):  # noqa: F811
    import os
    import signal
    import subprocess
    import sys
    script = tmp_path / "owner.py"
    script.write_text(_OWNER)
    proc = subprocess.Popen([sys.executable, str(script), "docker-lease"], stdout=subprocess.PIPE,
                            text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        container_id = proc.stdout.readline().strip()
        assert container_id, "the owner did not deploy"
        container = engine.containers.get(container_id)
        assert container.status == "running"
        assert not wait_until(lambda: _status(engine, container_id) != "running", timeout=8)
        os.kill(proc.pid, signal.SIGKILL)           # the notebook kernel dies
        proc.wait(timeout=10)
        assert wait_until(lambda: _status(engine, container_id) != "running", timeout=60, interval=0.5)
    finally:
        proc.kill()
        try:
            engine.containers.get(container_id).remove(force=True)
        except Exception:
            pass


def _status(engine, container_id):  # noqa: F811
    try:
        return engine.containers.get(container_id).status
    except Exception:
        return "gone"


def test_a_record_outlives_no_container_removed_outside_the_sdk(engine, tmp_path):  # noqa: F811
    import os
    from straightline_sdk.targets.docker.records import record_path as _record_path
    from .test_docker import _run_script
    first = _run_script(tmp_path, "keep", "docker-records")
    assert os.path.exists(_record_path(first["container"]))
    engine.containers.get(first["container"]).remove(force=True)   # outside the SDK
    second = _run_script(tmp_path, "keep", "docker-records")
    try:
        assert second["container"] != first["container"]
        assert not os.path.exists(_record_path(first["container"]))  # its token is dropped
    finally:
        engine.containers.get(second["container"]).remove(force=True)


def _noting(address):
    def run(x):
        import socket
        import time
        # one connection per process and log, kept where pickling the function cannot see it
        conns = socket.__dict__.setdefault("_straightline_run_logs", {})
        sock = conns.get(address)
        if sock is None:
            sock = conns[address] = socket.create_connection(address)
        sock.sendall(b"%d\n" % x)
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        return 2 * x
    return run


def test_a_container_killed_mid_map_reruns_only_the_calls_in_flight(engine):  # noqa: F811
    items = 1000
    log = RunLog(engine)
    straightline.configure(options={"docker": {"processes": 2, "threads": 1}})
    h = straightline.deploy(_noting(log.address), sample=(-1,), targets=["docker"],
                            name="docker-map-kill")
    try:
        assert h(-2) == -4                                # the container answers
        in_flight = h.deployed_targets["docker"].concurrency
        container_id = h.deployed_targets["docker"].container.id
        box = {}

        def run():
            try:
                box["value"] = h.map(range(items), progress=False)
            except BaseException as exc:   # noqa: BLE001 - inspected below
                box["value"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert wait_until(lambda: len([x for x in log.items() if x >= 0]) >= items // 5,
                          timeout=120, interval=0.005)
        engine.containers.get(container_id).kill()     # docker kill
        thread.join(300)
        assert not thread.is_alive(), "the map hung after docker kill"
        assert box["value"] == [2 * x for x in range(items)]
        ran = [x for x in log.items() if x >= 0]
        assert sorted(set(ran)) == list(range(items))
        assert h.stats()["docker"]["failures"] >= 1, "the kill came after the map"
        assert len(ran) - items <= in_flight, (f"{len(ran) - items} calls ran twice; at most the "
                                               f"{in_flight} in flight at the kill may")
    finally:
        h.undeploy()
        log.close()
        try:
            engine.containers.get(container_id).remove(force=True)
        except Exception:
            pass


_KEEP_ON_LOOPBACK = """
import json, sys
import straightline_sdk as straightline
straightline.configure(options={"docker": {"direct": False}})   # recorded at 127.0.0.1:<port>
h = straightline.deploy(lambda s: s.upper(), sample=("a",), target="docker", keep=True,
                        name=sys.argv[1])
assert h(sys.argv[2]) == sys.argv[2].upper()
t = h.deployed_targets["docker"]
print(json.dumps({"container": t.container.id if t.container else t._container_id,
                  "adopted": t.adopted, "host": t.client.host, "port": t.client.port}), flush=True)
"""


def _start_impostor(host: str, port: int, tmp_path):
    import os
    import subprocess
    import sys
    record, marker = tmp_path / "received.bin", tmp_path / "pwned"
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "support",
                                                          "impostor.py"),
                             host, str(port), str(record), str(marker)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "LISTENING"
    return proc, record, marker


def test_a_redeploy_does_not_adopt_an_impostor_at_the_recorded_address(engine, tmp_path):  # noqa: F811
    """Finding 1 on Docker: the record of a kept container names its address; the
    container is removed and another program answers there. An unchanged redeploy
    in a new process sends it a handshake only (no key, no argument), unpickles
    nothing it says, and starts a container of its own."""
    import json
    import os
    import subprocess
    import sys
    script = tmp_path / "notebook.py"
    script.write_text(_KEEP_ON_LOOPBACK)
    root = os.path.dirname(os.path.dirname(__file__))

    def run(argument):
        done = subprocess.run([sys.executable, str(script), "docker-impostor", argument],
                              capture_output=True, text=True, timeout=240, cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run("warm")
    second = None
    engine.containers.get(first["container"]).remove(force=True)   # gone, outside the SDK
    impostor, record, marker = _start_impostor(first["host"], first["port"], tmp_path)
    try:
        second = run("secret-argument-5c1e")
        assert second["container"] != first["container"] and not second["adopted"]
        received = record.read_bytes() if record.exists() else b""
        assert received.startswith(b"POST /auth ")     # it was asked: only for its proof
        assert b"/invoke" not in received and b"Bearer" not in received
        assert b"secret-argument-5c1e" not in received
        assert not marker.exists()                     # nothing it said was unpickled
    finally:
        impostor.kill()
        impostor.wait()
        if second is not None:
            engine.containers.get(second["container"]).remove(force=True)
