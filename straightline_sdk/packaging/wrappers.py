"""cloudpickle, plus what it would pickle by a name the far side cannot find.

A function the notebook decorates with ``functools.lru_cache`` or
``functools.cache`` is a C object, not a function: cloudpickle writes it as
"``__main__.fib``", which a worker, container or Lambda does not have. Here it
travels as the cache wrapper's type (importable everywhere) around the wrapped
function, which cloudpickle ships by value; a recursive call through the
notebook global finds the same wrapper again (pickle's memo), so the cache
works there too. Starts empty on the far side, as any cache does.
"""

from __future__ import annotations

import functools

import cloudpickle

_LRU_WRAPPER = getattr(functools, "_lru_cache_wrapper", None)
_CACHE_INFO = getattr(functools, "_CacheInfo", None)


def _by_reference(obj) -> bool:
    """Whether cloudpickle would write ``obj`` as an importable name."""
    check = getattr(getattr(cloudpickle, "cloudpickle", None), "_should_pickle_by_reference", None)
    if check is None:
        return getattr(obj, "__module__", "__main__") != "__main__"
    try:
        return check(obj)
    except Exception:
        return False


def reduce_wrapper(obj):
    """A reduce tuple for a notebook's lru_cache wrapper, or NotImplemented."""
    if _LRU_WRAPPER is None or _CACHE_INFO is None or type(obj) is not _LRU_WRAPPER:
        return NotImplemented
    if _by_reference(obj) or not hasattr(obj, "__wrapped__"):
        return NotImplemented
    parameters = obj.cache_parameters() if hasattr(obj, "cache_parameters") else {}
    state = {k: v for k, v in vars(obj).items() if k != "cache_parameters"}
    return (_LRU_WRAPPER, (obj.__wrapped__, parameters.get("maxsize", 128),
                           parameters.get("typed", False), _CACHE_INFO), state)


class PayloadPickler(cloudpickle.Pickler):
    """cloudpickle with the notebook's cache wrappers shipped by value."""

    def reducer_override(self, obj):
        reduced = reduce_wrapper(obj)
        if reduced is not NotImplemented:
            return reduced
        return super().reducer_override(obj)


def dumps(obj, protocol: int = 5) -> bytes:
    import io
    buffer = io.BytesIO()
    PayloadPickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()
