"""Moved: re-raising the far side's exceptions is part of the call protocol's
client side, protocol.py. These names stay importable from here."""

from .protocol import (DYNAMIC_CODE, CodeIndex, RemoteTraceback,  # noqa: F401
                       format_remote_traceback, rebuild_exception, rebuild_one)

__all__ = ["DYNAMIC_CODE", "CodeIndex", "RemoteTraceback", "format_remote_traceback",
           "rebuild_exception", "rebuild_one"]
