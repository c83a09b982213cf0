"""One real local Ray cluster for the whole test run (starting Ray costs seconds
and ~450 MiB, so tests share it). Import the fixture into a test module:

    from tests.support.ray_cluster import ray_cluster  # noqa: F401

The cluster is a ``ray start --head`` process (2 CPUs) with its own temp folder
and ports, started as tests/support/ray_start.py explains (a plain ``ray.init()``
aborts on a busy machine when its agents are slow to start), and this process
connects to it. It is stopped by pid at the end, never with ``ray stop``.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile

import pytest

from tests.conftest import need
from tests.support.ray_start import (free_port, head_args, kill_group, kill_leftovers,
                                     node_environment, start_node, this_ip)


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """The address of a running local Ray cluster (2 CPUs), shut down at the end."""
    need(importlib.util.find_spec("ray") is not None,
         "Ray is not installed: pip install 'straightline-sdk[ray]'")
    import ray

    if ray.is_initialized():    # connected already (by the user of this test run)
        yield ray.get_runtime_context().gcs_address
        return
    port = free_port()
    address = f"{this_ip()}:{port}"
    temp = tempfile.mkdtemp(prefix="rs")     # short: Ray's socket paths must fit 107 bytes
    head = None
    try:
        head = start_node(head_args(port, temp, num_cpus=2), node_environment(),
                          cleanup_marker=temp)
        ray.init(address=address, namespace="straightline", logging_level="ERROR")
        yield ray.get_runtime_context().gcs_address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if head is not None:
            kill_group(head)
        kill_leftovers(temp)
        shutil.rmtree(temp, ignore_errors=True)
