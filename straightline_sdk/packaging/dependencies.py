"""The third-party distributions a function needs, pinned, and their wheels.

``capture`` finds the top-level modules a function needs, from four places:
the modules its code, globals, closure cells and defaults refer to
(``FunctionPackage.module_names``), the ``import`` statements in its body and
in the functions it reaches, the classes its payload unpickles (a fitted model
inside a dict still names ``sklearn``), and the modules cloudpickle re-imports
by name. It maps them to installed distributions
(``importlib.metadata.packages_distributions``), adds their runtime
requirements transitively, and pins everything to the versions installed here.
The standard library, the user's local modules (they travel inside the payload)
and the SDK itself are left out; cloudpickle is always in (the runtime needs it).

``download_wheels`` fetches one wheel per pin for a target platform with pip,
on this machine, into a per-user cache keyed by pin and platform, so a re-run
downloads nothing and the far side installs with no network.
"""

from __future__ import annotations

import dis
import functools
import importlib.metadata as metadata
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from ..errors import PackagingError
from ..local_state import cache_dir
from .payload import FunctionPackage, _is_local_module, content_hash, referenced_objects

log = logging.getLogger("straightline")

#: platforms ``download_wheels`` knows: "os/machine", as Docker reports them
PLATFORMS = ("linux/x86_64", "linux/aarch64")
#: newest glibc the wheels may need: Debian bookworm's, which python:3.x-slim is built on
MAX_GLIBC_MINOR = 36
_NEVER_SHIPPED = {"straightline-sdk"}   # the client side; the far side has its own runtime


@dataclass(frozen=True)
class DependencySet:
    """Pinned distributions, ``("name==version", ...)`` sorted by name."""

    pins: tuple[str, ...] = ()

    @property
    def content_hash(self) -> str:
        return content_hash("dependencies-1", *self.pins)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(pin.partition("==")[0] for pin in self.pins)

    def __len__(self):
        return len(self.pins)

    def __iter__(self):
        return iter(self.pins)


def installed_size_bytes(deps: DependencySet) -> int:
    """The unzipped size of the dependency set as installed here (from each
    distribution's RECORD): what a Lambda bundle or layer of it would hold, known
    before anything is downloaded or uploaded. A pin not installed here counts 0."""
    total = 0
    for name in deps.names:
        try:
            files = metadata.distribution(name).files or ()
        except metadata.PackageNotFoundError:
            continue
        for f in files:
            total += f.size or 0
    return total


# -- which modules -------------------------------------------------------------------

def _imports_in_code(code: types.CodeType, found: set[str]) -> None:
    for instruction in dis.get_instructions(code):
        if instruction.opname == "IMPORT_NAME" and isinstance(instruction.argval, str):
            found.add(instruction.argval.partition(".")[0])
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _imports_in_code(const, found)


def _imported_modules(fn, depth: int = 3) -> set[str]:
    """Top-level names of ``import`` statements in fn and the functions and
    classes it reaches (absolute imports only: relative ones are the user's)."""
    found: set[str] = set()
    seen: set[int] = set()

    def visit(obj, level: int) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, type):
            for value in list(vars(obj).values()):
                visit(getattr(value, "__func__", value), level)
            return
        code = getattr(obj, "__code__", None)
        if not isinstance(code, types.CodeType):
            return
        _imports_in_code(code, found)
        if level < depth:
            for value in referenced_objects(obj).values():
                if isinstance(value, type) or isinstance(getattr(value, "__code__", None), types.CodeType):
                    visit(value, level + 1)

    visit(fn, 0)
    found.discard("")
    return found


class _RecordingUnpickler(pickle.Unpickler):
    """Loads a payload, noting every module a class or function comes from and
    every module cloudpickle re-imports by name (``subimport``)."""

    def __init__(self, file, found: set[str]):
        super().__init__(file)
        self.found = found

    def find_class(self, module, name):
        self.found.add(module.partition(".")[0])
        obj = super().find_class(module, name)
        if name == "subimport" and module.startswith("cloudpickle"):
            def recording_subimport(module_name, _real=obj):
                self.found.add(module_name.partition(".")[0])
                return _real(module_name)
            return recording_subimport
        return obj


def _unpickled_modules(payload: bytes):
    """(the function, the modules its payload needs); (None, set()) if it does not load."""
    import io
    found: set[str] = set()
    try:
        fn = _RecordingUnpickler(io.BytesIO(payload), found).load()
    except Exception as exc:  # the other sources still give a useful answer
        log.debug("could not load the payload to list its modules: %s", exc)
        return None, set()
    return fn, found


#: over this a payload is not loaded again to list its modules (that would hold a
#: second copy of everything it captured): its opcodes are read instead
_SCAN_ABOVE = 16 * 1024 * 1024


class _Skipped:
    """Stands in for a large bytes argument that was skipped, not read."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


class _SkippingReader:
    """The payload as a file for pickletools: large byte strings are skipped."""

    def __init__(self, data: bytes):
        self._data = data
        self._view = memoryview(data)
        self._pos = 0
        self._last_op = b""

    # BINBYTES, BINBYTES8, BYTEARRAY8: raw data nobody needs to see (a large str is read)
    _SKIPPABLE = (b"B", b"\x8e", b"\x96")

    def read(self, n: int = -1):
        left = len(self._data) - self._pos
        n = left if n is None or n < 0 else min(n, left)
        if n >= 64 * 1024 and self._last_op in self._SKIPPABLE:
            self._pos += n
            return _Skipped(n)
        chunk = self._view[self._pos:self._pos + n].tobytes()
        self._pos += n
        if n == 1:
            self._last_op = chunk   # an opcode (or a one-byte argument: never before big data)
        return chunk

    def readline(self) -> bytes:
        end = self._data.find(b"\n", self._pos)
        end = len(self._data) if end < 0 else end + 1
        chunk = self._view[self._pos:end].tobytes()
        self._pos = end
        return chunk

    def tell(self) -> int:
        return self._pos


def _scanned_modules(payload: bytes) -> set[str]:
    """The modules a payload's classes and functions come from, and those
    cloudpickle re-imports by name, read from its opcodes without loading it
    (what _RecordingUnpickler notes, with no copy of the captured data)."""
    import pickletools
    found: set[str] = set()
    memo: dict = {}
    recent: list = [None, None]     # the last two values pushed (strings, else None)
    subimport_next = False
    string_ops = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                  "BINSTRING", "SHORT_BINSTRING"}
    try:
        for opcode, arg, _ in pickletools.genops(_SkippingReader(payload)):
            name = opcode.name
            if name in string_ops:
                value = arg if isinstance(arg, str) else None
                recent = [recent[-1], value]
                if subimport_next and value:
                    found.add(value.partition(".")[0])
                    subimport_next = False
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1]
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = recent[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent = [recent[-1], memo.get(arg)]
            elif name in ("STACK_GLOBAL", "GLOBAL"):
                module, attr = (recent[-2], recent[-1]) if name == "STACK_GLOBAL" \
                    else (arg.split(" ", 1) + [""])[:2]
                if module:
                    found.add(module.partition(".")[0])
                    subimport_next = attr == "subimport" and module.startswith("cloudpickle")
                recent = [recent[-1], None]
            elif name not in ("FRAME", "PROTO", "MARK"):
                recent = [recent[-1], None]
                if name == "REDUCE":
                    subimport_next = False
    except Exception as exc:   # an unreadable stretch: what was found still helps
        log.debug("could not read the payload's opcodes: %s", exc)
    found.discard("")
    return found


def needed_modules(fn, package: FunctionPackage) -> set[str]:
    """Top-level module names the function needs at run time (any origin)."""
    if len(package.payload) > _SCAN_ABOVE:
        names = _scanned_modules(package.payload)
        loaded = package.function
    else:
        loaded, names = _unpickled_modules(package.payload)
    fn = fn if fn is not None else loaded
    names |= set(package.module_names)
    if fn is not None:
        names |= _imported_modules(fn)
        names |= {getattr(m, "__name__", "").partition(".")[0]
                  for m in referenced_objects(fn).values() if isinstance(m, types.ModuleType)}
    return names


# -- which distributions --------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _module_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()   # ~0.25 s: it reads every installed RECORD


def _is_third_party(top: str) -> bool:
    if not top or top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return False
    if top in ("__main__", "straightline_sdk", "straightline_runtime"):
        return False
    module = sys.modules.get(top)
    return not (module is not None and _is_local_module(module))


def _marker_environment(platform: str | None) -> dict:
    env = default_environment()
    if platform:
        system, _, machine = platform.partition("/")
        env.update(platform_machine=machine, sys_platform=system,
                   platform_system=system.capitalize(), os_name="posix")
    return env


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _add_with_requirements(start: list[tuple[str, frozenset]], env: dict,
                           pins: dict[str, tuple[str, str]]) -> None:
    """Pin each installed distribution in ``start`` and, transitively, the ones it requires."""
    queue = list(start)
    done: set[tuple[str, frozenset]] = set()
    while queue:
        name, extras = queue.pop()
        key = canonicalize_name(name)
        if (key, extras) in done or key in _NEVER_SHIPPED:
            continue
        done.add((key, extras))
        dist = _installed(name)
        if dist is None:
            log.debug("%s is required but not installed here; it is left out", name)
            continue
        pins.setdefault(key, (dist.metadata["Name"] or name, dist.version))
        for line in dist.requires or ():
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            wanted = [""] + sorted(extras)
            if req.marker is not None and not any(
                    req.marker.evaluate({**env, "extra": extra}) for extra in wanted):
                continue
            queue.append((req.name, frozenset(req.extras)))


def _exact_version(req: Requirement) -> str | None:
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def capture(fn, package: FunctionPackage, requirements=(), *,
            platform: str | None = None) -> DependencySet:
    """The distributions ``fn`` needs, pinned to the versions installed here.

    ``fn`` may be None: the function is then loaded from ``package.payload``.
    ``requirements`` ("pkg==1.2", "pkg", "pkg>=1") add distributions or override
    a captured pin; one that is not installed here must be pinned exactly, and
    its own dependencies listed too (they cannot be known without installing
    it). ``platform`` ("linux/aarch64") evaluates requirement markers for the
    target instead of this machine.
    """
    env = _marker_environment(platform)
    distributions = _module_distributions()
    start: list[tuple[str, frozenset]] = [("cloudpickle", frozenset())]
    for top in sorted(needed_modules(fn, package)):
        if not _is_third_party(top):
            continue
        names = distributions.get(top)
        if not names:
            log.debug("module %r comes from no installed distribution; it is not shipped", top)
            continue
        start += [(name, frozenset()) for name in names]
    pins: dict[str, tuple[str, str]] = {}
    _add_with_requirements(start, env, pins)

    for text in requirements or ():
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise PackagingError(f"requirements: {text!r} is not a valid requirement: {exc}") from None
        if req.url:
            raise PackagingError(
                f"requirements: {text!r} names a URL; only released versions can be shipped as "
                f"wheels. Use 'name==version' for a release on the package index.")
        key = canonicalize_name(req.name)
        exact = _exact_version(req)
        dist = _installed(req.name)
        if exact is not None and (dist is None or dist.version != exact):
            pins[key] = (req.name, exact)   # its own dependencies: the caller lists them
            continue
        if dist is None or (req.specifier and not req.specifier.contains(dist.version, prereleases=True)):
            have = f"{dist.version} is installed here" if dist else "it is not installed here"
            raise PackagingError(
                f"requirements: {text!r} cannot be pinned ({have}). Pin an exact version, "
                f"e.g. requirements=['{req.name}==X.Y'], or install it here.")
        pins.pop(key, None)
        _add_with_requirements([(req.name, frozenset(req.extras))], env, pins)
    return DependencySet(tuple(sorted((f"{name}=={version}" for name, version in pins.values()),
                                      key=str.lower)))


# -- wheels ---------------------------------------------------------------------------

def _platform_tags(platform: str) -> list[str]:
    if platform not in PLATFORMS:
        raise PackagingError(f"no wheels for platform {platform!r}: supported are {list(PLATFORMS)}")
    machine = platform.partition("/")[2]
    # manylinux2014 makes pip accept manylinux2010 and manylinux1 too; the PEP 600
    # tags it does not expand, so each glibc version is listed.
    return [f"manylinux2014_{machine}"] + [
        f"manylinux_2_{minor}_{machine}" for minor in range(17, MAX_GLIBC_MINOR + 1)]


def _pin_dir(pin: str, platform: str, python: tuple[int, int]) -> str:
    name, _, version = pin.partition("==")
    where = f"{platform.replace('/', '-')}-cp{python[0]}{python[1]}-glibc2.{MAX_GLIBC_MINOR}"
    return cache_dir("wheels", where, f"{canonicalize_name(name)}=={version}")


def _cached_wheel(folder: str) -> str | None:
    wheels = [f for f in os.listdir(folder) if f.endswith(".whl")]
    return os.path.join(folder, wheels[0]) if len(wheels) == 1 else None


def _missing_from_pip_output(output: str) -> str | None:
    match = re.search(r"No matching distribution found for (\S+)", output)
    return match.group(1) if match else None


def download_wheels(deps: DependencySet, platform: str, python: tuple[int, int] = (3, 11),
                    dest: str | None = None, *, progress=None) -> list[str]:
    """One wheel per pin for ``platform`` ("linux/x86_64" or "linux/aarch64") and
    CPython ``python``: the paths, in ``deps`` order (in ``dest`` when given,
    else in the cache). Only what the cache lacks is downloaded, by one pip run.
    PackagingError names a distribution that has no wheel for the platform.
    """
    tags = _platform_tags(platform)
    folders = {pin: _pin_dir(pin, platform, python) for pin in deps.pins}
    missing = [pin for pin, folder in folders.items() if _cached_wheel(folder) is None]
    if missing:
        if progress is not None:
            progress.step(f"downloading wheels for {platform}: {', '.join(missing)}")
        _pip_download(missing, folders, tags, python, platform)
    paths = []
    for pin in deps.pins:
        wheel = _cached_wheel(folders[pin])
        if dest is not None:
            os.makedirs(dest, exist_ok=True)
            target = os.path.join(dest, os.path.basename(wheel))
            if not os.path.exists(target):
                try:
                    os.link(wheel, target)
                except OSError:
                    shutil.copyfile(wheel, target)
            wheel = target
        paths.append(wheel)
    return paths


def _pip_download(pins: list[str], folders: dict[str, str], tags: list[str],
                  python: tuple[int, int], platform: str) -> None:
    py = f"{python[0]}{python[1]}"
    scratch = tempfile.mkdtemp(prefix="download-", dir=cache_dir("wheels"))
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
               "--disable-pip-version-check", "--no-input", "--dest", scratch,
               "--python-version", f"{python[0]}.{python[1]}", "--implementation", "cp",
               "--abi", f"cp{py}", "--abi", "abi3", "--abi", "none",
               *[arg for tag in tags for arg in ("--platform", tag)], *pins]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:
            output = done.stdout + done.stderr
            culprit = _missing_from_pip_output(output)
            if culprit:
                raise PackagingError(
                    f"{culprit} has no wheel for {platform} (CPython {python[0]}.{python[1]}, "
                    f"manylinux up to glibc 2.{MAX_GLIBC_MINOR}) on the package index, so it "
                    f"cannot be installed in the image without building it. Pin a version "
                    f"that publishes such wheels with requirements=['name==version'], or use "
                    f"a base image that already has it.")
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise PackagingError(f"pip could not download wheels for {platform} "
                                 f"({' '.join(pins)}):\n{tail}")
        by_pin = {}
        for filename in os.listdir(scratch):
            if filename.endswith(".whl"):
                name, version, _, _ = parse_wheel_filename(filename)
                by_pin[(name, str(version))] = filename
        for pin in pins:
            name, _, version = pin.partition("==")
            filename = by_pin.get((canonicalize_name(name), version))
            if filename is None:  # e.g. "1.0" asked and "1.0.0" named: match by name alone
                filename = next((f for (n, _), f in by_pin.items() if n == canonicalize_name(name)), None)
            if filename is None:
                raise PackagingError(f"pip reported success but left no wheel for {pin} "
                                     f"({platform}); files: {sorted(os.listdir(scratch))}")
            os.replace(os.path.join(scratch, filename), os.path.join(folders[pin], filename))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["DependencySet", "PLATFORMS", "capture", "download_wheels", "needed_modules"]
