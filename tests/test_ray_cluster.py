"""The Ray target on a real two-node cluster (issue 12): a map spreads over both
nodes, the function and its local module reach the second node through the
cluster (the object store and the runtime environment, not a shared folder or
PYTHONPATH), and killing the second node mid-map loses no call.

The map runs in a separate driver process: Ray connects a process to one
cluster at a time, and the test run's own cluster (tests/support/ray_cluster.py)
may be connected in this one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support.ray_two_nodes import two_node_cluster  # noqa: F401  (the fixture)

DRIVER = textwrap.dedent('''
    import json, os, shutil, sys, threading, time
    address, module_dir, marks, kill_file = sys.argv[1:5]
    sys.path.insert(0, module_dir)
    import shipped_helper            # lives only in module_dir, on this driver's path
    import ray
    import straightline_sdk as straightline

    def where(x, delay):
        import ray, time
        import straightline_sdk.runtime.ray_entry as entry   # the runtime serving this call
        time.sleep(delay)
        node = ray.get_runtime_context().get_node_id()
        open(os.path.join(marks, f"{x}-{node}-{delay}"), "w").close()
        return shipped_helper.double(x), node, os.getcwd(), entry.__file__

    # both nodes share this machine's Python packages: no pip runtime environment (no
    # network in CI); the SDK's runtime still travels as a py_module, and the function
    # with its local module by value in the object store
    straightline.configure(progress=False, options={"ray": {"address": address,
                                                            "ship_packages": False}})
    import ray as _ray
    _ray.init(address=address, namespace="straightline", logging_level="ERROR")
    deadline = time.monotonic() + 120
    while sum(1 for n in _ray.nodes() if n["Alive"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    h = straightline.deploy(where, target="ray")
    shipped = h.deployed_targets["ray"].describe()["shipped"]
    # the local module's only file is gone: from here on it can only come through the cluster
    shutil.rmtree(module_dir)
    head = ray.get_runtime_context().get_node_id()
    second = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "second_node" in n["Resources"]][0]
    assert head != second, "the driver attached to the node the test kills"

    first = h.map(range(8), kwargs={"delay": 0.3}, chunksize=1)

    def kill_when_second_node_works():   # mid-map: once the second node has finished an item
        while not any(name.endswith(f"{second}-1.0") for name in os.listdir(marks)):
            time.sleep(0.05)
        open(kill_file, "w").close()     # the test process kills the node's process group
    threading.Thread(target=kill_when_second_node_works, daemon=True).start()
    second_map = h.map(range(12), kwargs={"delay": 1.0}, chunksize=1)
    after = h(5, 0.0)
    print(json.dumps({"head": head, "second": second, "first": first, "second_map": second_map,
                      "after": after, "stats": h.stats(), "ship": shipped}))
    h.undeploy()
''')


@pytest.mark.ray
@pytest.mark.ray_two_nodes
@pytest.mark.timeout(900)   # two `ray start`s on a busy machine take minutes
def test_a_map_spreads_over_two_nodes_and_survives_losing_one(two_node_cluster, tmp_path):
    cluster = two_node_cluster
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "shipped_helper.py").write_text("def double(x):\n    return 2 * x\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    kill_file = tmp_path / "kill"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, cluster.address, str(module_dir), str(marks), str(kill_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    killed = False
    deadline = time.monotonic() + 480   # a hung map fails with the driver's output, not silently
    try:
        while driver.poll() is None and time.monotonic() < deadline:
            if not killed and kill_file.exists():
                cluster.kill_second_node()
                killed = True
            try:
                driver.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        if driver.poll() is None:
            driver.kill()
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, (out[-1000:], err[-3000:])
    got = json.loads(out.strip().splitlines()[-1])
    assert killed
    # the first map ran on both nodes, the module's code with it
    assert not module_dir.exists()
    assert [value for value, _, _, _ in got["first"]] == [2 * x for x in range(8)]
    nodes = {node for _, node, _, _ in got["first"]}
    assert nodes == {got["head"], got["second"]}
    on_second = [cwd for _, node, cwd, _ in got["first"] if node == got["second"]]
    assert on_second and all(cwd != str(module_dir) for cwd in on_second)
    # the SDK's runtime came as a py_module from the GCS (into Ray's runtime_resources),
    # not from this checkout or the installed package
    runtimes = {runtime for _, _, _, runtime in got["first"]}
    assert all("runtime_resources" in runtime for runtime in runtimes), runtimes
    # the second map lost its second node midway and still returned every item, in order
    assert [value for value, _, _, _ in got["second_map"]] == [2 * x for x in range(12)]
    assert got["second_map"][-1][1] == got["head"]
    assert got["after"][0] == 10          # and the deployment still answers
    assert "py_modules" in got["ship"]     # the runtime reached the second node through the cluster


LATE_DRIVER = textwrap.dedent('''
    import json, os, shutil, sys, time
    address, module_dir, joined = sys.argv[1:4]
    sys.path.insert(0, module_dir)
    import shipped_helper            # lives only in module_dir, on this driver's path
    import ray
    import straightline_sdk as straightline

    def where(x):
        import ray, time
        import straightline_sdk.runtime.ray_entry as entry
        time.sleep(0.5)
        return shipped_helper.double(x), ray.get_runtime_context().get_node_id(), entry.__file__

    def alive():
        return [n for n in ray.nodes() if n["Alive"]]

    def wait_for(test, what):
        deadline = time.monotonic() + 180
        while not test():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.5)

    straightline.configure(progress=False, options={"ray": {"address": address,
                                                            "ship_packages": False}})
    ray.init(address=address, namespace="straightline", logging_level="ERROR", log_to_driver=False)
    wait_for(lambda: len(alive()) == 1, "the cluster to be the head alone")
    h = straightline.deploy(where, target="ray")
    target = h.deployed_targets["ray"]
    at_deploy = {"shipped": target.describe()["shipped"], "concurrency": target.concurrency}
    shutil.rmtree(module_dir)        # from here on the module comes only through the cluster
    print("DEPLOYED", flush=True)
    wait_for(lambda: os.path.exists(joined), "the test to start the second node")
    wait_for(lambda: len(alive()) == 2, "the second node to join")
    second = [n["NodeID"] for n in alive() if "second_node" in n["Resources"]][0]
    results = h.map(range(12), chunksize=1)
    print(json.dumps({"at_deploy": at_deploy, "second": second, "results": results,
                      "shipped": target.describe()["shipped"], "concurrency": target.concurrency}))
    h.undeploy()
''')


@pytest.mark.ray
@pytest.mark.ray_two_nodes
@pytest.mark.timeout(900)
def test_a_node_that_joins_after_deploy_gets_the_runtime_and_the_maps_work(two_node_cluster,
                                                                            tmp_path):
    """A cluster that was this machine alone at deploy ships no runtime environment;
    a node that joins later (an autoscaler's) must still run the map's tasks: the
    SDK's runtime and the function's local module reach it through the cluster, and
    the map's fan-out grows with the cluster's CPUs."""
    cluster = two_node_cluster
    cluster.kill_second_node()
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "shipped_helper.py").write_text("def double(x):\n    return 2 * x\n")
    joined = tmp_path / "joined"
    driver = subprocess.Popen(
        [sys.executable, "-c", LATE_DRIVER, cluster.address, str(module_dir), str(joined)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        first = ""
        for line in driver.stdout:       # Ray may print its own lines (a node marked dead) first
            if line.strip() == "DEPLOYED":
                first = "DEPLOYED"
                cluster.start_second_node()
                joined.touch()
                break
        out, err = driver.communicate(timeout=480)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert first == "DEPLOYED" and driver.returncode == 0, (first, out[-1000:], err[-3000:])
    got = json.loads(out.strip().splitlines()[-1])
    assert got["at_deploy"] == {"shipped": [], "concurrency": 1}   # the head alone: nothing shipped
    assert [value for value, _, _ in got["results"]] == [2 * x for x in range(12)]
    on_second = [runtime for _, node, runtime in got["results"] if node == got["second"]]
    assert on_second, "no item ran on the node that joined"
    assert all("runtime_resources" in runtime for runtime in on_second), on_second
    assert "py_modules" in got["shipped"] and got["concurrency"] == 2
