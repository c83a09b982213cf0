"""env and secrets on Ray (the actors' and tasks' runtime environment) and on
Lambda (the function's configuration, never the bundle or its tags)."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

import straightline_sdk as straightline
from tests.support.ray_cluster import ray_cluster  # noqa: F401  (the session fixture)
from tests.test_lambda import aws, lambda_client, moto  # noqa: F401  (the fixtures)


def _environment(_=None):
    import os as _os
    return _os.environ.get("MODE"), _os.environ.get("EDITLOOP_KEY")


@pytest.mark.ray
def test_env_and_secrets_reach_the_ray_actor_and_its_tasks(ray_cluster, monkeypatch):
    secret = "ray-" + os.urandom(12).hex()
    monkeypatch.setenv("EDITLOOP_KEY", secret)
    straightline.configure(options={"ray": {"address": ray_cluster}})
    h = straightline.deploy(_environment, target="ray", name="editloop-ray-env",
                            env={"MODE": "cluster"}, secrets=["EDITLOOP_KEY"])
    assert h() == ("cluster", secret)                              # the actor
    assert h.map(range(4), chunksize=1) == [("cluster", secret)] * 4   # tasks
    assert secret not in repr(h) and secret.encode() not in h.spec.package.payload


def _version(factor: int):
    namespace: dict = {}
    exec(compile(f"def scaled(x):\n    import os\n    return x * {factor}, os.getpid()\n",
                 "<cell>", "exec"), namespace)
    return namespace["scaled"]


@pytest.mark.ray
def test_an_edit_reaches_the_warm_actor_and_the_map_tasks(ray_cluster):
    straightline.configure(options={"ray": {"address": ray_cluster}})
    h = straightline.deploy(_version(2), target="ray", name="editloop-ray-swap")
    value, pid = h(5)
    assert value == 10
    assert straightline.deploy(_version(3), target="ray", name="editloop-ray-swap") is h
    value, same_pid = h(5)
    assert value == 15 and same_pid == pid                     # the same actor, new code
    assert [v for v, _ in h.map(range(3), chunksize=1)] == [0, 3, 6]   # tasks: new payload


@pytest.mark.aws
def test_env_and_secrets_reach_lambda_and_not_its_bundle_or_tags(aws, monkeypatch):
    secret = "lam-" + os.urandom(12).hex()
    monkeypatch.setenv("EDITLOOP_KEY", secret)
    from straightline_sdk.targets.aws_lambda import bundle as lambda_zip
    built = []
    original = lambda_zip.build_bundle
    monkeypatch.setattr(lambda_zip, "build_bundle",
                        lambda *a, **k: built.append(original(*a, **k)) or built[-1])
    h = straightline.deploy(_environment, target="lambda", name="editloop-lambda-env",
                            env={"MODE": "serverless"}, secrets=["EDITLOOP_KEY"])
    assert h() == ("serverless", secret)
    client = lambda_client()
    function = h.deployed_targets["lambda"].function_name
    described = client.get_function(FunctionName=function)
    assert secret not in repr(described.get("Tags"))
    assert len(built) == 1   # the bundle uploaded
    with zipfile.ZipFile(io.BytesIO(built[0].data)) as archive:
        for name in archive.namelist():
            assert secret.encode() not in archive.read(name), name
    # a new value reaches the function
    monkeypatch.setenv("EDITLOOP_KEY", secret + "-2")
    h2 = straightline.deploy(_environment, target="lambda", name="editloop-lambda-env",
                             env={"MODE": "serverless"}, secrets=["EDITLOOP_KEY"])
    assert h2() == ("serverless", secret + "-2")
    for bundle in built:
        with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
            assert all(secret.encode() not in archive.read(n) for n in archive.namelist())


def _items_then_error(n):
    for i in range(n):
        yield i
    raise KeyError("after the items")


@pytest.mark.ray
def test_a_generator_on_ray_gives_its_items_then_its_error(ray_cluster):
    h = straightline.deploy(_items_then_error, target="ray", name="editloop-ray-gen-error")
    got = []
    with pytest.raises(KeyError):
        for item in h(3):
            got.append(item)
    assert got == [0, 1, 2]
    h.undeploy()
