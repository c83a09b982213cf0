"""Moved: re-raising the far side's exceptions is part of the call protocol's
client side, protocol.py. These names stay importable from here."""

from .protocol import (DYNAMIC_CODE, RemoteTraceback, format_remote_traceback,  # noqa: F401
                       rebuild_exception)

__all__ = ["DYNAMIC_CODE", "RemoteTraceback", "format_remote_traceback", "rebuild_exception"]
