"""Which installed distributions a set of objects' modules come from, as requirements.

For deployments whose function does not name what its calls carry: a joblib batch
of scikit-learn fits, an executor's call on a pandas DataFrame. The targets that
build an environment (Docker, Lambda, Ray) then install those distributions,
pinned to the versions installed here, as they would for ``requirements=``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys

from .payload import _is_local_module

# Tooling that is on a notebook's stack or in its globals but that calls never need on
# the far side (an image would install it for nothing).
NOT_SHIPPED = frozenset({
    "IPython", "ipykernel", "ipywidgets", "jupyter_client", "jupyter_core", "traitlets",
    "tornado", "zmq", "comm", "debugpy", "nbmake", "tqdm",
    "straightline_sdk", "straightline_runtime",
})


def third_party_top(name: str | None) -> str | None:
    """The installed, third-party top-level package of a module name, else None
    (the standard library, the user's own files, which travel by value, the SDK)."""
    if not name or not isinstance(name, str):
        return None
    top = name.partition(".")[0]
    if (top in NOT_SHIPPED or top in sys.stdlib_module_names or top in sys.builtin_module_names
            or top == "__main__"):
        return None
    module = sys.modules.get(top)
    if not getattr(module, "__file__", None):
        return None   # a namespace package or a built-in: nothing to install
    return None if _is_local_module(module) else top


def modules_of_values(values) -> set[str]:
    """Third-party top-level packages of the values' types."""
    found = set()
    for value in values:
        top = third_party_top(type(value).__module__)
        if top:
            found.add(top)
    return found


@functools.lru_cache(maxsize=1)
def _distributions() -> dict:
    return importlib.metadata.packages_distributions()   # ~0.25 s: read once


def requirements_of(modules) -> tuple[str, ...]:
    """The installed distributions that provide ``modules`` (top-level names), as
    requirements ("scikit-learn"): capture pins each to the version installed here."""
    names = set()
    for top in modules:
        names.update(_distributions().get(top, ()))
    return tuple(sorted(names, key=str.lower))
