"""Turning a function into something a target can run: the cloudpickle payload
(payload.py), its third-party dependencies (dependencies.py), and the
target-specific bundles built from them (the Docker context, the Lambda zip).
Everything is content-hashed so an unchanged re-run reuses what exists.
"""

from .payload import FunctionPackage, content_hash, encode_request, package_function

__all__ = ["FunctionPackage", "content_hash", "encode_request", "package_function"]
