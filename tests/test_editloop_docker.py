"""The edit-run loop on a real Docker engine: env and secrets reach the
container and are found in no image, label, state file or payload; a changed
secret restarts the container without a build; ``gc --unused`` prunes old
versions of one's own functions and keeps what a live deployment runs.

The engine is shared: every deployment here has a unique name, and gc is
always limited to those names."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import straightline_sdk as straightline
from straightline_sdk import cli

from .test_docker import _target, docker_sdk, engine  # noqa: F401  (the fixture)
from tests.conftest import need

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
    # nor in what was copied into the container: its function file
    archive, _ = container.get_archive("/opt/straightline/function.pkl")
    assert secret.encode() not in b"".join(archive)
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


def _unused_images(engine, name: str, salt: str) -> tuple[str, str]:
    """Two images no deployment uses, labelled as the SDK labels them: a
    dependency set's image (an invented base image ID gives it its own hash)
    and a per-function image such as earlier SDK versions built."""
    from straightline_sdk.local_state import owner_tag
    from straightline_sdk.packaging import dependencies, docker_context
    from straightline_sdk.targets.docker.records import (LABEL_DEPS, LABEL_HASH, LABEL_NAME,
                                                         LABEL_OWNER, LABEL_ROLE)
    labels = {LABEL_NAME: name, LABEL_OWNER: owner_tag()}
    context = docker_context.dependencies_context(
        dependencies.DependencySet(), [], base_image=docker_context.default_base_image(),
        base_image_id=f"sha256:test-{salt}", platform="linux/x86_64",
        labels={**labels, LABEL_ROLE: "dependencies"})
    list(engine.api.build(fileobj=context.tar(), custom_context=True, tag=context.tag,
                          labels=context.labels, rm=True, decode=True))
    old_tag = f"straightline/{name}:0ld{salt}"
    engine.images.build(fileobj=__import__("io").BytesIO(
        f"FROM {context.tag}\nLABEL old=1\n".encode()), tag=old_tag, rm=True,
        labels={**labels, LABEL_ROLE: "function", LABEL_HASH: "f" * 64,
                LABEL_DEPS: context.content_hash})
    return context.tag, old_tag


def test_gc_unused_removes_unused_images_and_keeps_the_one_in_use(engine, capsys):
    name = f"editloop-gc-{os.urandom(3).hex()}"
    salt = os.urandom(4).hex()
    live = straightline.deploy(_version(salt, 3), target="docker", name=name)
    assert live(5) == 15
    live_image = _target(live).image_tag
    unused_deps, old_function = _unused_images(engine, name, salt)

    assert cli.main(["ls", "--kind", "docker"]) == 0
    listing = capsys.readouterr().out
    assert "SIZE" in listing and "LAST USED" in listing and "USED BY" in listing
    assert unused_deps in listing and old_function in listing
    row = next(line for line in listing.splitlines() if live_image in line)
    assert name in row                      # the image names the deployments using it

    assert cli.main(["gc", "--kind", "docker", "--unused", "--name", name, "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert unused_deps in planned and old_function in planned and live_image not in planned
    engine.images.get(unused_deps)    # a dry run removes nothing

    # no terminal to ask (a notebook's !straightline, a script) and no --yes: it lists
    # them, removes nothing and says how to go on
    assert cli.main(["gc", "--kind", "docker", "--unused", "--name", name]) != 0
    out, err = capsys.readouterr()
    assert unused_deps in out and "--yes" in err and "removed" not in out
    engine.images.get(unused_deps)

    assert cli.main(["gc", "--kind", "docker", "--unused", "--name", name, "--yes"]) == 0
    out, err = capsys.readouterr()
    assert "will remove" in out and unused_deps in out and old_function in out, err
    for gone in (old_function, unused_deps):
        with pytest.raises(docker_sdk.errors.ImageNotFound):
            engine.images.get(gone)
    engine.images.get(live_image)     # the live deployment's image stays
    assert live(6) == 18


def _other(x):
    return ("other", x)


def test_two_functions_with_the_same_dependencies_run_on_one_image(engine):
    salt = os.urandom(4).hex()
    one = straightline.deploy(_version(salt, 2), target="docker", name=f"editloop-one-{salt}")
    two = straightline.deploy(_other, target="docker", name=f"editloop-two-{salt}")
    assert one(1) == 2 and two(1) == ("other", 1)
    first, second = _target(one), _target(two)
    assert first.image_tag == second.image_tag and first.image_tag.startswith("straightline/deps:")
    assert second.built == []
    assert first.container.id != second.container.id
    assert first.container.attrs["Image"] == second.container.attrs["Image"]
    # the containers are told apart by the function's hash, the image by its dependency set
    labels = [t.container.labels for t in (first, second)]
    assert labels[0]["straightline.hash"] != labels[1]["straightline.hash"]
    assert labels[0]["straightline.deps"] == labels[1]["straightline.deps"]
    # no image holds a function: only the container it was copied into
    image = engine.images.get(first.image_tag)
    assert image.labels["straightline.role"] == "dependencies"
    copies = [step["CreatedBy"] for step in image.history() if "COPY" in step["CreatedBy"]]
    assert copies and not [c for c in copies if "function.pkl" in c], copies


def _images_named(engine, name: str) -> set:
    """The images a deployment's builds would carry its name on (other tests may
    build their own on the shared engine meanwhile)."""
    return {i.id for i in engine.images.list(filters={"label": f"straightline.name={name}"})}


def test_an_edit_after_undeploy_builds_no_image_and_serves_the_new_code(engine):
    name = f"editloop-cold-{os.urandom(3).hex()}"
    salt = os.urandom(4).hex()
    old = straightline.deploy(_version(salt, 2), target="docker", name=name)
    assert old(5) == 10
    image = _target(old).image_tag
    old.undeploy()
    images = _images_named(engine, name)
    new = straightline.deploy(_version(salt, 9), target="docker", name=name)
    assert new(5) == 45
    target = _target(new)
    assert target.built == [] and target.image_tag == image and not target.adopted
    assert _images_named(engine, name) == images


_EDIT_SCRIPT = """
import json, sys
import straightline_sdk as straightline
name, salt, factor = sys.argv[1], sys.argv[2], int(sys.argv[3])
source = f"def scaled(x):\\n    salt = {salt!r}\\n    return x * {factor}\\n"
namespace = {}
exec(compile(source, "<cell>", "exec"), namespace)
h = straightline.deploy(namespace["scaled"], target="docker", name=name)
t = h.deployed_targets["docker"]
print(json.dumps({"result": h(5), "built": t.built, "adopted": t.adopted, "image": t.image_tag}))
"""


def test_an_edit_from_a_fresh_process_builds_no_image(engine, tmp_path):
    script = tmp_path / "cell.py"
    script.write_text(_EDIT_SCRIPT)
    name, salt = f"editloop-fresh-{os.urandom(3).hex()}", os.urandom(4).hex()

    def run(factor: int) -> dict:
        done = subprocess.run([sys.executable, str(script), name, salt, str(factor)],
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run(2)
    assert first["result"] == 10
    second = run(4)    # a new kernel, an edited cell: the same image, nothing built
    assert second["result"] == 20 and second["built"] == [] and not second["adopted"]
    assert second["image"] == first["image"]


def test_an_edit_on_a_warm_container_builds_no_image_and_serves_the_new_code(engine):
    name = f"editloop-swap-{os.urandom(3).hex()}"
    salt = os.urandom(4).hex()
    h = straightline.deploy(_version(salt, 2), target="docker", name=name)
    assert h(5) == 10
    container = _target(h).container.id
    built = list(_target(h).built)
    images = _images_named(engine, name)
    h2 = straightline.deploy(_version(salt, 7), target="docker", name=name)
    assert h2 is h and h(5) == 35
    target = _target(h)
    assert target.container.id == container and target.built == built   # nothing built since
    assert _images_named(engine, name) == images
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
    need(bool(address), "the container's bridge address is not reachable from here")
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
    assert h(0) == f"two-{salt}"   # not the payload it started with: the edit was sent again


def test_a_restart_by_the_engine_runs_the_edited_function(engine):
    """Not only this process's own restarts: the edit is in the container's file."""
    name = f"editloop-engine-restart-{os.urandom(3).hex()}"
    salt = os.urandom(4).hex()
    h = straightline.deploy(_sleeper(f"one-{salt}"), target="docker", name=name)
    assert h(0) == f"one-{salt}"
    assert straightline.deploy(_sleeper(f"two-{salt}"), target="docker", name=name) is h
    assert h(0) == f"two-{salt}"
    container = _target(h).container

    def stored() -> bool:
        archive, _ = container.get_archive("/opt/straightline/function.pkl")
        return b"two-" + salt.encode() in b"".join(archive)

    from .conftest import wait_until
    assert wait_until(stored, timeout=30, interval=0.1)
    container.restart(timeout=0)
    # the container's new worker: a fresh connection on the same published ports
    health = _target(h)
    assert wait_until(lambda: health.health()[0], timeout=60, interval=0.2)
    assert h(0) == f"two-{salt}"
    assert _target(h).container.id == container.id   # that container, not a fresh one
