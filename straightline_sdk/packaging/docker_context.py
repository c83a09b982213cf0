"""The Docker build context of a dependency set, and the function's payload
archive: images carry no function.

    straightline/deps:<hash12>       FROM the base image; the wheels, installed
                                     offline (pip --no-index) into /opt/straightline/deps;
                                     then the worker settings (ENV, CMD) and the
                                     runtime (as package straightline_runtime).
                                     One image per dependency set, base image,
                                     platform and runtime version; built once.

A deployment creates a container of that image, copies its cloudpickled
function into it (``payload_archive``, the engine's put-archive) before
starting it, and starts it: the file is part of the container's own
filesystem, so a restart runs it again, and an edited function is a new
archive (or a POST /function to the running worker), never an image build.
The engine holds one image per dependency set, not one per function version.

The dependencies image's content hash covers the dependency set, the base
image's ID, the platform and the runtime's files (an SDK upgrade builds anew;
the wheels' layer still comes from the cache). It tags the image and is
stored as its label ``straightline.hash``. A function's hash (the container's
``straightline.hash`` label) covers its payload and that image's hash.

Nothing here talks to the engine: the Docker target does, with these.
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

CONTEXT_VERSION = "docker-context-2"   # bump when the Dockerfile below changes meaning
APP_DIR = "/opt/straightline"
DEPS_DIR = f"{APP_DIR}/deps"
WORKER_PORT = 8080
FUNCTION_FILE = "function.pkl"
FUNCTION_PATH = f"{APP_DIR}/{FUNCTION_FILE}"   # copied into each container before it starts
_RUNTIME_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime")
_WHEELS_IN_IMAGE = "/tmp/straightline-wheels"
_SPOOL_BYTES = 16 * 1024 * 1024


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
    runtime = _runtime_files()
    return content_hash(CONTEXT_VERSION, "deps", deps.content_hash, base_image_id, platform,
                        *[part for item in runtime.items() for part in item])


def dependencies_tag(deps: DependencySet, base_image_id: str, platform: str) -> str:
    return f"straightline/deps:{dependencies_hash(deps, base_image_id, platform)[:12]}"


def dependencies_context(deps: DependencySet, wheels: list[str], *, base_image: str,
                         base_image_id: str, platform: str, labels: dict) -> BuildContext:
    """The dependencies image: the base image plus the wheels, installed with no
    network, then the worker's settings and the runtime; no function. ``--target``
    because Debian's python3 is "externally managed" (PEP 668) and it works
    unchanged in the official python images too. The runtime comes last: a new
    SDK version rebuilds only its layer."""
    digest = dependencies_hash(deps, base_image_id, platform)
    files = {f"wheels/{os.path.basename(path)}": path for path in wheels}
    files.update(_runtime_files())
    install = ""
    if deps.pins:
        names = " ".join(f"'{pin}'" for pin in deps.pins)
        install = (
            f"COPY wheels/ {_WHEELS_IN_IMAGE}/\n"
            f"RUN python3 -m pip install --no-index --find-links {_WHEELS_IN_IMAGE} "
            f"--target {DEPS_DIR} --root-user-action=ignore --disable-pip-version-check "
            f"--no-warn-script-location {names} && rm -rf {_WHEELS_IN_IMAGE}\n")
    dockerfile = (
        f"FROM {base_image}\n{install}"
        f"ENV PYTHONPATH={DEPS_DIR}:{APP_DIR} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\\n"
        f"    {wire.HOST_ENV}=0.0.0.0 {wire.PORT_ENV}={WORKER_PORT} \\\n"
        f"    {wire.FUNCTION_ENV}={FUNCTION_PATH}\n"
        f"EXPOSE {WORKER_PORT}\n"
        f"WORKDIR /tmp\n"
        f'CMD ["python3", "-m", "straightline_runtime.worker"]\n'
        f"COPY straightline_runtime/ {APP_DIR}/straightline_runtime/\n"
    )
    return BuildContext(dockerfile, dependencies_tag(deps, base_image_id, platform), digest,
                        {**labels, "straightline.hash": digest, "straightline.deps": digest}, files)


def function_hash(package: FunctionPackage, deps_hash: str) -> str:
    """The content a container runs: its payload on its dependencies image."""
    return content_hash(CONTEXT_VERSION, "function", package.content_hash, deps_hash)


def payload_archive(package: FunctionPackage):
    """The function's payload as a tar for the engine's put-archive into
    ``APP_DIR``: one file, readable by the worker, fixed time and owner. Bytes
    for a small payload; a temporary file (at offset 0) for a large one, so that
    it is not held twice in memory."""
    out = tempfile.TemporaryFile() if len(package.payload) > _SPOOL_BYTES else io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(FUNCTION_FILE)
        info.size = len(package.payload)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(package.payload))
    if isinstance(out, io.BytesIO):
        return out.getvalue()
    out.seek(0)
    return out


__all__ = ["APP_DIR", "BuildContext", "FUNCTION_PATH", "WORKER_PORT", "base_image",
           "default_base_image", "dependencies_context", "dependencies_hash", "dependencies_tag",
           "function_hash", "image_name", "payload_archive"]
