"""Running the notebooks under ``pytest --nbmake``.

docker.ipynb needs a Docker engine. lambda.ipynb needs an AWS API: when
AWS_ENDPOINT_URL is not set, this set-up starts a moto server
(tests/support/moto_lambda.py) for that notebook alone and points its kernel at
it with dummy credentials, so a test run never touches real AWS. A notebook
whose component is missing is skipped with the reason, as tests/conftest.py's
``need`` does; under CI=true it runs anyway and fails with its own error,
because CI's set-up must have made everything. The markers (docker, aws) let
``-m`` select or deselect notebooks like tests.
"""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.conftest import IN_CI  # noqa: E402

MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
MARKERS = {"docker.ipynb": "docker", "lambda.ipynb": "aws"}


def _notebook(item) -> str:
    return os.path.basename(str(item.fspath))


def _docker_missing() -> str | None:
    from straightline_sdk import targets
    probe = targets.probe("docker", {})
    if probe.available:
        return None
    return f"the docker target is not usable here: {probe.reason}" + (f" ({probe.hint})" if probe.hint else "")


def _moto_missing() -> str | None:
    if os.environ.get("AWS_ENDPOINT_URL"):
        return None  # the caller's own endpoint
    from tests.support.moto_lambda import docker_images_present, moto_installed
    if not moto_installed():
        return "moto is not installed (pip install 'moto[server,awslambda]')"
    ok, why = docker_images_present()
    return None if ok else f"moto's Lambda needs Docker: {why}"


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = MARKERS.get(_notebook(item))
        if marker is None:
            continue
        item.add_marker(getattr(pytest.mark, marker))
        if not IN_CI:
            why = _docker_missing() if marker == "docker" else _moto_missing()
            if why is not None:
                item.add_marker(pytest.mark.skip(reason=why))


_moto = None
_saved_env: dict = {}


def pytest_runtest_setup(item):
    """Start moto for lambda.ipynb; the kernel nbmake starts inherits this environment."""
    global _moto
    if _notebook(item) != "lambda.ipynb" or os.environ.get("AWS_ENDPOINT_URL"):
        return
    from tests.support.moto_lambda import MotoServer
    _moto = MotoServer().start()
    env = dict(MOTO_ENV, AWS_ENDPOINT_URL=_moto.url)
    _saved_env.update({key: os.environ.get(key) for key in env})
    os.environ.update(env)


def pytest_runtest_teardown(item):
    global _moto
    if _moto is None or _notebook(item) != "lambda.ipynb":
        return
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env.clear()
    _moto, server = None, _moto
    server.stop()
