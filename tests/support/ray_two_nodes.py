"""A real two-node Ray cluster on this machine: a head and a second node, each its
own ``ray start --block`` process (one CPU each) in its own process group, the
second node in a different working directory and without PYTHONPATH. Nothing
here runs ``ray stop``, which would stop every Ray process on the machine
(tests/support/ray_start.py).

    from tests.support.ray_two_nodes import two_node_cluster  # noqa: F401
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import tempfile

import pytest

from tests.conftest import need
from tests.support.ray_start import (common_args, free_port, head_args, kill_group,
                                     kill_leftovers, node_environment, start_node, this_ip)


@dataclasses.dataclass
class Cluster:
    address: str
    head: subprocess.Popen
    second: subprocess.Popen | None
    second_cwd: str
    env: dict

    def kill_second_node(self) -> None:
        if self.second is not None:
            kill_group(self.second)

    def start_second_node(self) -> None:
        """A (new) second node joins: its own working directory, and no PYTHONPATH,
        so what the function needs must come through the cluster."""
        self.kill_second_node()
        self.second = start_node([f"--address={self.address}", '--resources={"second_node": 1}',
                                  *common_args(num_cpus=1)], self.env, self.second_cwd)


@pytest.fixture(scope="module")
def two_node_cluster():
    need(importlib.util.find_spec("ray") is not None,
         "Ray is not installed: pip install 'straightline-sdk[ray]'")
    port = free_port()
    address = f"{this_ip()}:{port}"
    temp = tempfile.mkdtemp(prefix="rp")          # short: Ray's socket paths must fit 107 bytes
    second_cwd = tempfile.mkdtemp(prefix="ray-node2-cwd-")
    env = node_environment()
    head = cluster = None
    try:
        head = start_node(head_args(port, temp, num_cpus=1), env, cleanup_marker=temp)
        second_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        cluster = Cluster(address, head, None, second_cwd, second_env)
        cluster.start_second_node()
        yield cluster
    finally:
        if cluster is not None:
            cluster.kill_second_node()
        if head is not None:
            kill_group(head)
        kill_leftovers(temp)      # the second node's processes use the head's temp folder too
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(second_cwd, ignore_errors=True)
