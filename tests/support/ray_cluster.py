"""One real local Ray cluster for the whole test run (``ray.init`` costs seconds
and ~450 MiB, so tests share it). Import the fixture into a test module:

    from tests.support.ray_cluster import ray_cluster  # noqa: F401
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import need


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """The address of a running local Ray cluster (2 CPUs), shut down at the end."""
    need(importlib.util.find_spec("ray") is not None,
         "Ray is not installed: pip install 'straightline-sdk[ray]'")
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, namespace="straightline")
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()
