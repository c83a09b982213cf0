"""Turning a function into something a target can run: the cloudpickle payload
(payload.py), its third-party dependencies (dependencies.py), and the
target-specific bundles built from them (the Docker context, the Lambda zip).
Everything is content-hashed so an unchanged re-run reuses what exists.
"""

from .payload import FunctionPackage, content_hash, package_function


def __getattr__(name):
    # encode_request moved to protocol.py; importable from here as before
    if name == "encode_request":
        from ..protocol import encode_request
        return encode_request
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FunctionPackage", "content_hash", "package_function"]
