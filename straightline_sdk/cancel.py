"""Abandoning a call in flight from another thread (an awaiting task was cancelled).

A call runs on a worker thread, blocked reading its reply. Cancelling it does
what Ctrl-C does on the calling thread: the connection is dropped (never reused)
and the call is given up; the router does not run it elsewhere. The HTTP
client registers each connection it waits on with the thread's current scope.
"""

from __future__ import annotations

import socket
import threading

from .errors import StraightLineError


class CallCancelled(StraightLineError):
    """The call was cancelled (its awaiting task was); it was abandoned mid-flight."""


_current = threading.local()


class CancelScope:
    """One call's cancellation: ``cancel()`` from any thread."""

    def __init__(self):
        self.cancelled = False
        self._socks: set = set()
        self._lock = threading.Lock()

    def __enter__(self):
        self._previous = getattr(_current, "scope", None)
        _current.scope = self
        return self

    def __exit__(self, *exc):
        _current.scope = self._previous
        return False

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes the thread blocked reading the reply
            except OSError:
                pass

    def watch(self, sock) -> None:
        with self._lock:
            if self.cancelled:
                raise CallCancelled("the call was cancelled before it was sent")
            self._socks.add(sock)

    def unwatch(self, sock) -> None:
        with self._lock:
            self._socks.discard(sock)


def current() -> CancelScope | None:
    return getattr(_current, "scope", None)


def watch(sock) -> None:
    """Register a socket the current thread is about to wait on (no scope: nothing)."""
    scope = current()
    if scope is not None:
        scope.watch(sock)


def unwatch(sock) -> None:
    scope = current()
    if scope is not None:
        scope.unwatch(sock)


def check() -> None:
    """Raise CallCancelled if the current thread's call was cancelled."""
    scope = current()
    if scope is not None and scope.cancelled:
        raise CallCancelled("the call was cancelled while in flight; the connection was dropped "
                            "(the function may still finish on the target, its result is discarded)")
