"""What the SDK keeps on this machine between processes: the user's cache
folder (wheels, worker tokens), and who owns a deployment (a process, named so
that a later process can tell whether it is still alive).
"""

from __future__ import annotations

import getpass
import os
import socket


CACHE_DIR_ENV = "STRAIGHTLINE_CACHE_DIR"


def cache_root() -> str:
    """``$STRAIGHTLINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/straightline`` (default ``~/.cache``)."""
    return os.environ.get(CACHE_DIR_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "straightline")


def cache_dir(*parts: str) -> str:
    """``<cache root>/<parts>`` (see cache_root), created readable by this user
    only: it holds worker tokens."""
    path = os.path.join(cache_root(), *parts)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def write_private(path: str, data: bytes) -> None:
    """Write a file only this user can read (0600), atomically."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), so a reused pid is not
    mistaken for the owner; None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(b")", 1)[1].split()[19].decode()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container run with a bare uid
        return str(os.getuid())


def owner_tag(pid: int | None = None) -> str:
    """``user@host:pid:start`` of this process."""
    pid = pid or os.getpid()
    return f"{_user()}@{socket.gethostname()}:{pid}:{_process_start(pid) or 0}"


def owner_alive(tag: str) -> bool | None:
    """Whether the process an owner tag names still runs; None when it ran on
    another machine (that cannot be told from here) or the tag is unreadable."""
    parts = tag.rsplit(":", 2)
    if len(parts) != 3:
        return None
    where, pid, start = parts
    host = where.rpartition("@")[2]
    if host != socket.gethostname():
        return None
    try:
        pid_number = int(pid)
    except ValueError:
        return None
    now = _process_start(pid_number)
    if now is not None:
        return start == "0" or now == start
    try:  # no /proc: fall back to "a process with that pid exists"
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
