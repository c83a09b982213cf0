"""The edit-run loop on a real Docker engine: env and secrets reach the
container and are found in no image, label, state file or payload; a changed
secret restarts the container without a build; ``gc --unused`` prunes old
versions of one's own functions and keeps what a live deployment runs.

The engine is shared: every deployment here has a unique name, and gc is
always limited to those names."""

from __future__ import annotations

import os
import subprocess

import pytest

import straightline_sdk as straightline
from straightline_sdk import cli

from .test_docker import _target, docker_sdk, engine  # noqa: F401  (the fixture)

pytestmark = pytest.mark.docker


def _environment():
    import os as _os
    return _os.environ.get("MODE"), _os.environ.get("EDITLOOP_DOCKER_KEY"), _os.getpid()


def test_env_and_secrets_reach_the_container_and_nothing_stores_them(engine, monkeypatch):
    secret = "dk-" + os.urandom(16).hex()
    name = f"editloop-secret-{os.urandom(3).hex()}"
    monkeypatch.setenv("EDITLOOP_DOCKER_KEY", secret)
    h = straightline.deploy(_environment, target="docker", name=name, env={"MODE": "slow"},
                            secrets=["EDITLOOP_DOCKER_KEY"])
    mode, value, _ = h()
    assert (mode, value) == ("slow", secret)
    target = _target(h)
    image = engine.images.get(target.image_tag)
    container = target.container
    # not in any image layer: the whole image, as `docker save` writes it
    saved = subprocess.run(["docker", "save", target.image_tag], capture_output=True, check=True).stdout
    assert secret.encode() not in saved
    # nor in labels, the image's configuration, the payload, the state files, reprs
    assert secret not in repr(image.labels) and secret not in repr(container.labels)
    assert secret not in repr(image.attrs["Config"])
    assert secret.encode() not in h.spec.package.payload
    for folder, _, files in os.walk(os.path.expanduser("~/.cache/straightline")):
        for filename in files:
            with open(os.path.join(folder, filename), "rb") as f:
                assert secret.encode() not in f.read(), filename
    for text in (repr(h), str(h), repr(target), repr(target.describe()), repr(h.target_overview())):
        assert secret not in text


def test_a_changed_secret_restarts_the_container_without_building(engine, monkeypatch):
    name = f"editloop-rotate-{os.urandom(3).hex()}"
    monkeypatch.setenv("EDITLOOP_DOCKER_KEY", "first-" + os.urandom(4).hex())
    h = straightline.deploy(_environment, target="docker", name=name, secrets=["EDITLOOP_DOCKER_KEY"])
    _, first, _ = h()
    first_container = _target(h).container.id
    second_value = "second-" + os.urandom(4).hex()
    monkeypatch.setenv("EDITLOOP_DOCKER_KEY", second_value)
    h2 = straightline.deploy(_environment, target="docker", name=name,
                             secrets=["EDITLOOP_DOCKER_KEY"])
    _, second, _ = h2()
    assert second == second_value and first != second
    target = _target(h2)
    assert target.container.id != first_container and target.built == []
    with pytest.raises(docker_sdk.errors.NotFound):
        engine.containers.get(first_container)


def _version(salt: str, factor: int):
    source = f"def scaled(x):\n    salt = {salt!r}\n    return x * {factor}\n"
    namespace: dict = {}
    exec(compile(source, "<cell>", "exec"), namespace)
    return namespace["scaled"]


def test_gc_unused_removes_an_old_version_and_keeps_the_one_in_use(engine, capsys):
    name = f"editloop-gc-{os.urandom(3).hex()}"
    salt = os.urandom(4).hex()
    old = straightline.deploy(_version(salt, 2), target="docker", name=name)
    assert old(5) == 10
    old_image = _target(old).image_tag
    old.undeploy()   # (a warm deployment would take the edit in place, building nothing)
    new = straightline.deploy(_version(salt, 3), target="docker", name=name)
    assert new(5) == 15
    new_image = _target(new).image_tag
    assert old_image != new_image

    assert cli.main(["ls", "--kind", "docker"]) == 0
    listing = capsys.readouterr().out
    assert "SIZE" in listing and "LAST USED" in listing and old_image in listing

    assert cli.main(["gc", "--kind", "docker", "--unused", "--name", name, "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert old_image in planned and new_image not in planned
    engine.images.get(old_image)    # a dry run removes nothing

    assert cli.main(["gc", "--kind", "docker", "--unused", "--name", name, "--yes"]) == 0
    out, err = capsys.readouterr()
    assert "will remove" in out and old_image in out, err
    with pytest.raises(docker_sdk.errors.ImageNotFound):
        engine.images.get(old_image)
    engine.images.get(new_image)    # the live deployment's image stays
    assert new(6) == 18


def test_an_edit_on_a_warm_container_builds_no_image_and_serves_the_new_code(engine):
    name = f"editloop-swap-{os.urandom(3).hex()}"
    salt = os.urandom(4).hex()
    h = straightline.deploy(_version(salt, 2), target="docker", name=name)
    assert h(5) == 10
    container = _target(h).container.id
    built = list(_target(h).built)
    images = {i.id for i in engine.images.list(filters={"label": "straightline.role"})}
    h2 = straightline.deploy(_version(salt, 7), target="docker", name=name)
    assert h2 is h and h(5) == 35
    target = _target(h)
    assert target.container.id == container and target.built == built   # nothing built since
    assert {i.id for i in engine.images.list(filters={"label": "straightline.role"})} <= images
    assert engine.containers.get(container).status == "running"


def _first_then_wait(marker_port):
    import socket as _socket
    yield "first"
    # wait (bounded) until the test, holding "first", connects back
    server = _socket.create_server(("0.0.0.0", marker_port))
    server.settimeout(60)
    server.accept()[0].close()
    server.close()
    yield "second"


def test_a_generator_streams_from_the_container(engine):
    h = straightline.deploy(_first_then_wait, target="docker",
                            name=f"editloop-gen-{os.urandom(3).hex()}")
    target = _target(h)
    address = target.container.attrs["NetworkSettings"]["IPAddress"]
    if not address:
        pytest.skip("the container's bridge address is not reachable from here")
    import socket
    items = h(7788)
    assert next(items) == "first"     # while the generator waits inside the container
    for _ in range(300):              # bounded: until its listener is up
        try:
            socket.create_connection((address, 7788), timeout=1).close()
            break
        except OSError:
            import time
            time.sleep(0.05)
    assert list(items) == ["second"]


def _sleeper(version: str):
    source = (f"def sleeper(seconds):\n    import time\n    time.sleep(seconds)\n"
              f"    return {version!r}\n")
    namespace: dict = {}
    exec(compile(source, "<cell>", "exec"), namespace)
    return namespace["sleeper"]


def test_a_container_restarted_after_a_time_out_keeps_the_edited_function(engine):
    name = f"editloop-restart-{os.urandom(3).hex()}"
    limits = straightline.Resources(timeout_s=3)
    salt = os.urandom(4).hex()
    h = straightline.deploy(_sleeper(f"one-{salt}"), target="docker", name=name, resources=limits)
    assert h(0) == f"one-{salt}"
    assert straightline.deploy(_sleeper(f"two-{salt}"), target="docker", name=name,
                               resources=limits) is h
    with pytest.raises(straightline.CallTimeout):
        h(30)
    assert h(0) == f"two-{salt}"   # not the image's payload: the edit was sent again
