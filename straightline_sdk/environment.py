"""A deployment's environment: plain ``env`` settings and ``secrets``.

``deploy(..., env={"MODE": "fast"}, secrets=["API_KEY"])``. Secrets are read
at deploy time from this process's environment, else from a ``.env`` file (the
working directory's, or the nearest parent's), and handed to the target when
it starts: the worker process's environment, the container's environment, the
Lambda function's configuration, the Ray actors' runtime environment. They are
never pickled into the payload, written into an image, a label or the SDK's
state files, and never shown: ``repr`` lists their names only, and
``redact`` replaces their values in logs and error messages.

A secret's fingerprint (to notice that its value changed, so the target is
restarted) is an HMAC under a key made fresh in each process: it is never
written anywhere, and says nothing about the value outside this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets as _random
import sys
import warnings
from collections.abc import Mapping

from .errors import StraightLineError

_PROCESS_KEY = _random.token_bytes(32)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: shorter values are not searched for in text (they would blank out ordinary words)
MIN_REDACTED_LENGTH = 4


class SecretMissing(StraightLineError):
    """A secret named in ``deploy(secrets=[...])`` is set nowhere."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(f"{message}\n  What to do: {hint}" if hint else message)
        self.hint = hint


class SecretValues(Mapping):
    """Secret names and values. Its repr, str and pickle never show a value."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str] | None = None):
        self._values = dict(values or {})

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<secrets {', '.join(sorted(self._values)) or '(none)'}: values not shown>"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("secrets are not serialized: they are handed to the target at start")

    def __eq__(self, other) -> bool:
        return isinstance(other, SecretValues) and hmac.compare_digest(
            self.fingerprint(), other.fingerprint())

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def fingerprint(self) -> str:
        """Changes when any value changes; meaningful in this process only."""
        mac = hmac.new(_PROCESS_KEY, digestmod=hashlib.sha256)
        for name in sorted(self._values):
            for part in (name, self._values[name]):
                data = part.encode()
                mac.update(len(data).to_bytes(8, "little") + data)
        return mac.hexdigest()

    def redact(self, text: str) -> str:
        """``text`` with every secret's value replaced by ``[secret NAME]``."""
        for name, value in sorted(self._values.items(), key=lambda item: -len(item[1])):
            if len(value) >= MIN_REDACTED_LENGTH and value in text:
                text = text.replace(value, f"[secret {name}]")
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        for name, value in self._values.items():
            if len(value) >= MIN_REDACTED_LENGTH:
                data = data.replace(value.encode(), f"[secret {name}]".encode())
        return data


def _parse_dotenv(path: str) -> dict[str, str]:
    """KEY=VALUE lines (``export`` prefix, quotes, # comments) of a .env file."""
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip()
            if key.startswith("export "):
                key = key[len("export "):].strip()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            elif " #" in value:
                value = value.split(" #", 1)[0].rstrip()
            if _NAME.match(key):
                values[key] = value
    return values


def find_dotenv(start: str | None = None) -> str | None:
    """The ``.env`` file of ``start`` (default: the working directory) or its nearest parent."""
    folder = os.path.abspath(start or os.getcwd())
    while True:
        candidate = os.path.join(folder, ".env")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


#: the SDK's own settings of its worker (runtime/wire.py): never the user's to set
RESERVED_PREFIX = "STRAIGHTLINE_"


def _check_not_reserved(name: str, what: str) -> None:
    if name.upper().startswith(RESERVED_PREFIX):
        raise ValueError(f"{what} name {name!r}: names starting with {RESERVED_PREFIX} are the "
                         f"SDK's own settings of its worker; choose another name")


def check_env(env) -> tuple[tuple[str, str], ...]:
    """``env`` as sorted (name, value) pairs; a clear error for anything else."""
    if env is None:
        return ()
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a dict of names to strings, e.g. env={{'MODE': 'fast'}}; "
                        f"got a {type(env).__qualname__}")
    pairs = []
    for name, value in env.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"env name {name!r} is not a valid environment variable name "
                             f"(letters, digits and _, not starting with a digit)")
        _check_not_reserved(name, "env")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TypeError(f"env[{name!r}] must be a string (or a number), not a "
                            f"{type(value).__qualname__}: environment variables hold text")
        pairs.append((name, str(value)))
    return tuple(sorted(pairs))


def resolve_secrets(secrets, dotenv: str | None = None) -> SecretValues:
    """The values of the named secrets: this process's environment first, then
    the .env file. A missing one raises SecretMissing saying where it looked."""
    if secrets is None:
        return SecretValues()
    if isinstance(secrets, SecretValues):
        return secrets
    if isinstance(secrets, str):
        raise TypeError(f"secrets is a list of names, e.g. secrets=[{secrets!r}]")
    if isinstance(secrets, Mapping):   # given values directly: kept, never shown
        values = {}
        for name, value in secrets.items():
            if not isinstance(name, str) or not _NAME.match(name) or not isinstance(value, str):
                raise TypeError("secrets given as a dict map names to string values")
            _check_not_reserved(name, "secret")
            values[name] = value
        return _checked(SecretValues(values))
    names = list(secrets)
    values: dict[str, str] = {}
    file_values: dict[str, str] | None = None
    path = dotenv or None
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"secret name {name!r} is not a valid environment variable name")
        _check_not_reserved(name, "secret")
        if os.environ.get(name):
            values[name] = os.environ[name]
            continue
        if file_values is None:
            path = path or find_dotenv()
            file_values = _parse_dotenv(path) if path and os.path.isfile(path) else {}
        if file_values.get(name):
            values[name] = file_values[name]
            continue
        where = f"{path}" if path else f"a .env file in {os.getcwd()} or a parent folder"
        empty = [place for place, found in (("this process's environment", name in os.environ),
                                            (str(path), name in file_values)) if found]
        raise SecretMissing(
            f"the secret {name!r} is empty in {' and in '.join(empty)}" if empty else
            f"the secret {name!r} is not set: it is not in this process's environment nor in {where}",
            hint=f"export {name}=... in the shell that starts Jupyter (then restart the kernel), "
                 f"set os.environ[{name!r}] in the notebook from a safe source, or add a line "
                 f"{name}=... to a .env file beside the notebook (and keep .env out of git)")
    return _checked(SecretValues(values))


def _checked(secrets: SecretValues) -> SecretValues:
    """Says so when a value is too short to be taken out of output (it would blank out
    ordinary words): such a secret may show where the function prints it."""
    short = sorted(name for name, value in secrets.items() if 0 < len(value) < MIN_REDACTED_LENGTH)
    if short:
        warnings.warn(f"secret(s) {', '.join(short)}: values shorter than {MIN_REDACTED_LENGTH} "
                      f"characters are not redacted from printed output, logs or errors",
                      stacklevel=3)
    return secrets


class _RedactingStream:
    """sys.stdout or sys.stderr with the secrets' values taken out of each write."""

    def __init__(self, original, secrets: SecretValues):
        self._original = original
        self._secrets = secrets

    def write(self, text):
        if isinstance(text, str):
            text = self._secrets.redact(text)
        return self._original.write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):   # flush, encoding, fileno, isatty, ...
        return getattr(self._original, name)


class _RedactingFilter(logging.Filter):
    """Takes the secrets' values out of a log record's message (root handlers
    that hold their own stream, not sys.stderr)."""

    def __init__(self, secrets: SecretValues):
        super().__init__()
        self._secrets = secrets

    def filter(self, record) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = self._secrets.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


@contextlib.contextmanager
def _redacted_output(secrets: SecretValues):
    """What the function prints or logs here has no secret's value in it."""
    streams = sys.stdout, sys.stderr
    handlers = list(logging.getLogger().handlers)
    redacting = _RedactingFilter(secrets)
    ours = sys.stdout, sys.stderr = tuple(_RedactingStream(s, secrets) for s in streams)
    for handler in handlers:
        handler.addFilter(redacting)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redacting)
        # only our own: a stream replaced meanwhile (another run's) is left as it is
        if sys.stdout is ours[0]:
            sys.stdout = streams[0]
        if sys.stderr is ours[1]:
            sys.stderr = streams[1]


@contextlib.contextmanager
def applied(env: tuple[tuple[str, str], ...], secrets: SecretValues):
    """This process's environment with ``env`` and ``secrets`` set, for a run of
    the function here (the sample's profile run) to see what the target sees;
    restored after. What it prints or logs meanwhile is redacted, as a remote
    call's output is."""
    values = {**dict(env), **secrets}
    if not values:
        yield
        return
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        if secrets:
            with _redacted_output(secrets):
                yield
        else:
            yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def environment_bytes(env: tuple[tuple[str, str], ...], secrets: SecretValues) -> int:
    """How AWS counts an environment's size: the names and values, as text."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in (*env, *secrets.items()))


__all__ = ["MIN_REDACTED_LENGTH", "SecretMissing", "SecretValues", "check_env", "environment_bytes",
           "find_dotenv", "resolve_secrets"]
