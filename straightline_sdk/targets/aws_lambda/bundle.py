"""The AWS Lambda bundle: one deterministic zip a Lambda function runs from,
and the layer its dependencies travel in.

The function's zip (paths inside it):

    straightline_runtime/           the SDK's runtime folder (handler: lambda_handler.handler)
    straightline_function.pkl       the cloudpickled function
    cloudpickle/                    this client's cloudpickle, so the payload unpickles there

The dependencies' layer (one per dependency set, Python and architecture; Lambda
unpacks it under /opt, and /opt/python is on the runtime's import path):

    python/<dependencies>           the captured dependencies' wheels for Lambda's platform,
                                    unpacked as ``pip install --target`` would lay them out

So an edited function uploads its payload and the runtime, a few kilobytes; the
dependencies are published once per set (``layer_key`` names it).

Every entry has a fixed timestamp and mode and the entries are sorted, so the
same inputs give the same bytes and the same SHA-256. ``bundle_key`` names the
inputs without building anything: a function tagged with it is up to date.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass

import cloudpickle

from ...runtime.lambda_handler import PAYLOAD_FILE
from ...packaging.payload import FunctionPackage, content_hash

HANDLER = "straightline_runtime.lambda_handler.handler"
RUNTIME_PACKAGE = "straightline_runtime"
# zip's earliest date; any fixed value makes the bytes reproducible
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644 << 16
_EXEC_MODE = 0o100755 << 16
_SDK_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_RUNTIME_DIR = os.path.join(_SDK_DIR, "runtime")
_CLOUDPICKLE_DIR = os.path.dirname(os.path.abspath(cloudpickle.__file__))


def _python_files(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.endswith(".py"))


def _source_hash() -> str:
    """What the bundle's own code contributes to its identity."""
    parts: list = [cloudpickle.__version__]
    for folder in (_RUNTIME_DIR, _CLOUDPICKLE_DIR):
        for name in _python_files(folder):
            with open(os.path.join(folder, name), "rb") as f:
                parts += [name, f.read()]
    return content_hash(*parts)


def bundle_key(package: FunctionPackage, dependencies_hash: str, *, python: tuple[int, int],
               architecture: str) -> str:
    """The identity of the bundle these inputs make (cheap: nothing is built)."""
    return content_hash("lambda-zip-2", package.content_hash, dependencies_hash, _source_hash(),
                        "%d.%d" % python, architecture)


LAYER_PREFIX = "straightline-deps-"
LAYER_DIR = "python"            # Lambda's Python runtimes import from /opt/python


def layer_key(pins, *, python: tuple[int, int], architecture: str) -> str:
    """The identity of a dependency set's layer (the pinned distributions it holds)."""
    return content_hash("lambda-layer-1", *pins, "%d.%d" % python, architecture)


def layer_name(key: str) -> str:
    """The layer's name: content-addressed, so one name holds one content."""
    return f"{LAYER_PREFIX}{key[:24]}"


@dataclass(frozen=True)
class LambdaBundle:
    data: bytes = b""
    key: str = ""                 # bundle_key of the inputs
    unzipped_bytes: int = 0
    files: int = 0

    @property
    def sha256(self) -> str:
        """Base64 SHA-256 of the zip: what Lambda reports as CodeSha256."""
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode()

    @property
    def unzipped_mb(self) -> float:
        return self.unzipped_bytes / (1024 * 1024)

    def __repr__(self):
        return (f"<LambdaBundle {self.key[:12]} {len(self.data)} B zipped, "
                f"{self.unzipped_bytes} B unzipped, {self.files} files>")


class _Entry:
    __slots__ = ("arcname", "size", "mode", "read")

    def __init__(self, arcname, size, mode, read):
        self.arcname, self.size, self.mode, self.read = arcname, size, mode, read


def _file_entry(arcname: str, path: str) -> _Entry:
    def read(path=path):
        with open(path, "rb") as f:
            return f.read()
    return _Entry(arcname, os.path.getsize(path), _FILE_MODE, read)


def _wheel_arcname(name: str) -> str | None:
    """Where a wheel's member goes in the bundle, or None to leave it out.

    ``<dist>.data/purelib`` and ``platlib`` belong to the import path; scripts,
    headers and data files do not run on Lambda."""
    if name.endswith("/") or name.endswith(".pyc") or "/__pycache__/" in f"/{name}":
        return None
    top, _, rest = name.partition("/")
    if top.endswith(".data"):
        scheme, _, inner = rest.partition("/")
        return inner if scheme in ("purelib", "platlib") and inner else None
    return name


def _wheel_entries(path: str) -> list[_Entry]:
    entries = []
    with zipfile.ZipFile(path) as wheel:
        for info in wheel.infolist():
            arcname = _wheel_arcname(info.filename)
            if arcname is None or arcname.partition("/")[0] in ("cloudpickle", RUNTIME_PACKAGE):
                continue  # the client's cloudpickle is the one that matches the payload
            executable = (info.external_attr >> 16) & 0o111
            entries.append(_Entry(arcname, info.file_size, _EXEC_MODE if executable else _FILE_MODE,
                                  lambda path=path, member=info.filename: _read_member(path, member)))
    return entries


def _read_member(path: str, member: str) -> bytes:
    with zipfile.ZipFile(path) as wheel:
        return wheel.read(member)


def plan_bundle(package: FunctionPackage, wheels=()) -> list[_Entry]:
    """The bundle's entries, sorted, without reading any content: their sizes
    say whether the bundle fits before it is built. The first of two wheels
    (sorted by file name) that both ship a path wins."""
    entries: dict[str, _Entry] = {}
    for name in _python_files(_RUNTIME_DIR):
        entries[f"{RUNTIME_PACKAGE}/{name}"] = _file_entry(f"{RUNTIME_PACKAGE}/{name}",
                                                           os.path.join(_RUNTIME_DIR, name))
    for name in _python_files(_CLOUDPICKLE_DIR):
        entries[f"cloudpickle/{name}"] = _file_entry(f"cloudpickle/{name}",
                                                     os.path.join(_CLOUDPICKLE_DIR, name))
    payload = package.payload
    entries[PAYLOAD_FILE] = _Entry(PAYLOAD_FILE, len(payload), _FILE_MODE, lambda: payload)
    for wheel in sorted(wheels, key=os.path.basename):
        for entry in _wheel_entries(wheel):
            entries.setdefault(entry.arcname, entry)
    return [entries[name] for name in sorted(entries)]


def plan_layer(wheels) -> list[_Entry]:
    """The dependency layer's entries, sorted, under ``python/``; as ``plan_bundle``
    lays wheels out (the first of two wheels that ship a path wins)."""
    entries: dict[str, _Entry] = {}
    for wheel in sorted(wheels, key=os.path.basename):
        for entry in _wheel_entries(wheel):
            arcname = f"{LAYER_DIR}/{entry.arcname}"
            entries.setdefault(arcname, _Entry(arcname, entry.size, entry.mode, entry.read))
    return [entries[name] for name in sorted(entries)]


def unzipped_bytes(entries: list[_Entry]) -> int:
    return sum(e.size for e in entries)


def build_bundle(entries: list[_Entry], key: str) -> LambdaBundle:
    """Write the planned entries into a zip, reproducibly."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for entry in entries:
            info = zipfile.ZipInfo(entry.arcname, _FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3          # unix, so the mode bits below are honoured
            info.external_attr = entry.mode  # world-readable: Lambda runs code as another user
            zf.writestr(info, entry.read())
    return LambdaBundle(buffer.getvalue(), key, unzipped_bytes(entries), len(entries))


__all__ = ["HANDLER", "LAYER_PREFIX", "PAYLOAD_FILE", "LambdaBundle", "build_bundle", "bundle_key",
           "layer_key", "layer_name", "plan_bundle", "plan_layer", "unzipped_bytes"]
