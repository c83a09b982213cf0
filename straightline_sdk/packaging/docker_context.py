"""The Docker build contexts of a function: two images, layered for the cache.

    straightline/deps:<hash12>       FROM the base image; the wheels, installed
                                     offline (pip --no-index) into /opt/straightline/deps.
                                     Shared by every function with the same dependency
                                     set, base image and platform; built once.
    straightline/<name>:<hash12>     FROM that image; worker settings (ENV, CMD), then
                                     the runtime (as package straightline_runtime), then
                                     the cloudpickled function, last.

Editing only the function body changes only the last layer: every step before
it is a cache hit, and the context sent to the engine is a few kilobytes (the
wheels travel once, with the dependencies image). The content hash covers the
runtime, the payload, the dependency set and the base image's ID, and tags the
image; it is also stored as the label ``straightline.hash``.

Nothing here talks to the engine: the Docker target does, with these contexts.
"""

from __future__ import annotations

import io
import os
import re
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field

from .dependencies import DependencySet
from ..runtime import wire
from .payload import FunctionPackage, content_hash

CONTEXT_VERSION = "docker-context-1"   # bump when the Dockerfiles below change meaning
APP_DIR = "/opt/straightline"
DEPS_DIR = f"{APP_DIR}/deps"
WORKER_PORT = 8080
_RUNTIME_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime")
_WHEELS_IN_IMAGE = "/tmp/straightline-wheels"


def default_base_image(python: tuple[int, int] = sys.version_info[:2]) -> str:
    return f"python:{python[0]}.{python[1]}-slim"


def base_image(options: dict) -> str:
    """The deployment's ``base_image`` option, else configure()'s / the environment's
    (both arrive in ``options``), else python:<major>.<minor>-slim."""
    return options.get("base_image") or default_base_image()


def image_name(name: str) -> str:
    """A repository name Docker accepts, from a deployment name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60].strip("-")
    return f"straightline/{slug or 'function'}"


@dataclass(frozen=True)
class BuildContext:
    """A Dockerfile and the files beside it, tagged by their content hash."""

    dockerfile: str
    tag: str
    content_hash: str
    labels: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)   # path in context -> bytes, or a local file path

    def tar(self):
        """The context as a tar stream (file object at offset 0); fixed times and
        owners, so the engine's cache sees only contents."""
        out = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
        with tarfile.open(fileobj=out, mode="w") as tar:
            entries = {"Dockerfile": self.dockerfile.encode(), **self.files}
            for path in sorted(entries):
                data = entries[path]
                if isinstance(data, (bytes, bytearray)):
                    info = tarfile.TarInfo(path)
                    info.size = len(data)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))
                else:
                    info = tar.gettarinfo(data, arcname=path)
                    info.mtime = info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = 0o644
                    with open(data, "rb") as f:
                        tar.addfile(info, f)
        out.seek(0)
        return out


def _runtime_files() -> dict[str, bytes]:
    files = {}
    for filename in sorted(os.listdir(_RUNTIME_DIR)):
        if filename.endswith(".py"):
            with open(os.path.join(_RUNTIME_DIR, filename), "rb") as f:
                files[f"straightline_runtime/{filename}"] = f.read()
    return files


def dependencies_hash(deps: DependencySet, base_image_id: str, platform: str) -> str:
    return content_hash(CONTEXT_VERSION, "deps", deps.content_hash, base_image_id, platform)


def dependencies_tag(deps: DependencySet, base_image_id: str, platform: str) -> str:
    return f"straightline/deps:{dependencies_hash(deps, base_image_id, platform)[:12]}"


def dependencies_context(deps: DependencySet, wheels: list[str], *, base_image: str,
                         base_image_id: str, platform: str, labels: dict) -> BuildContext:
    """The dependencies image: the base image plus the wheels, installed with no
    network. ``--target`` because Debian's python3 is "externally managed" (PEP
    668) and it works unchanged in the official python images too."""
    digest = dependencies_hash(deps, base_image_id, platform)
    files = {f"wheels/{os.path.basename(path)}": path for path in wheels}
    install = ""
    if deps.pins:
        names = " ".join(f"'{pin}'" for pin in deps.pins)
        install = (
            f"COPY wheels/ {_WHEELS_IN_IMAGE}/\n"
            f"RUN python3 -m pip install --no-index --find-links {_WHEELS_IN_IMAGE} "
            f"--target {DEPS_DIR} --root-user-action=ignore --disable-pip-version-check "
            f"--no-warn-script-location {names} && rm -rf {_WHEELS_IN_IMAGE}\n")
    dockerfile = f"FROM {base_image}\n{install}"
    return BuildContext(dockerfile, dependencies_tag(deps, base_image_id, platform), digest,
                        {**labels, "straightline.hash": digest}, files)


def function_hash(package: FunctionPackage, deps_hash: str) -> str:
    runtime = _runtime_files()
    return content_hash(CONTEXT_VERSION, "function", package.content_hash, deps_hash,
                        *[part for item in runtime.items() for part in item])


def function_context(package: FunctionPackage, *, deps_tag: str, deps_hash: str,
                     labels: dict) -> BuildContext:
    """The function's image, FROM its dependencies image; the payload last."""
    digest = function_hash(package, deps_hash)
    dockerfile = (
        f"FROM {deps_tag}\n"
        f"ENV PYTHONPATH={DEPS_DIR}:{APP_DIR} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\\n"
        f"    {wire.HOST_ENV}=0.0.0.0 {wire.PORT_ENV}={WORKER_PORT} \\\n"
        f"    {wire.FUNCTION_ENV}={APP_DIR}/function.pkl\n"
        f"EXPOSE {WORKER_PORT}\n"
        f"WORKDIR /tmp\n"
        f'CMD ["python3", "-m", "straightline_runtime.worker"]\n'
        f"COPY straightline_runtime/ {APP_DIR}/straightline_runtime/\n"
        f"COPY function.pkl {APP_DIR}/function.pkl\n"
    )
    files = {**_runtime_files(), "function.pkl": package.payload}
    return BuildContext(dockerfile, f"{image_name(package.name)}:{digest[:12]}", digest,
                        {**labels, "straightline.hash": digest, "straightline.deps": deps_hash}, files)


__all__ = ["APP_DIR", "BuildContext", "WORKER_PORT", "base_image", "default_base_image",
           "dependencies_context", "dependencies_hash", "dependencies_tag", "function_context",
           "function_hash", "image_name"]
