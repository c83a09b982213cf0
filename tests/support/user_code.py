"""A user's own helper module, as a notebook imports it: it travels by value to
every target, and its frames must point back at this file."""

from __future__ import annotations

import logging
import sys
import warnings


class DataQualityError(Exception):
    """A constructor that takes more than it passes to Exception.__init__."""

    def __init__(self, message, bad_rows):
        super().__init__(message)
        self.bad_rows = bad_rows


def normalise(rows):
    bad = [i for i, r in enumerate(rows) if r < 0]
    if bad:
        raise DataQualityError(f"{len(bad)} bad rows", bad_rows=bad)
    top = max(rows)
    return [r / top for r in rows]


def checked_mean(rows):
    """Raises DataQualityError from a KeyError: a chain with a cause."""
    try:
        return {"rows": normalise(rows)}["mean"]
    except KeyError as exc:
        raise DataQualityError("no mean", bad_rows=[]) from exc


def far_side_only_error(detail):
    """Raises an exception whose type exists only where it runs."""
    import types
    module = types.ModuleType("straightline_far_side_only")
    exec("class FarError(Exception):\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    exc = module.FarError(detail)
    exc.rows = 3
    raise exc


def chatty(x):
    """Writes to every channel a notebook user uses, in a known order."""
    print(f"out {x} one")
    print(f"err {x}", file=sys.stderr)
    warnings.warn(f"warned {x}")
    logging.getLogger("user.chatty").info(f"info {x}")
    logging.getLogger("user.chatty").debug(f"debug {x}")
    print(f"out {x} two")
    return x * 2


def scenario(what, arg):
    """One deployment for every check on targets that are slow to deploy."""
    return {"chatty": chatty, "normalise": normalise, "chained": checked_mean,
            "far": far_side_only_error}[what](arg)


def waits_for_release(flag_path, timeout_s=60.0):
    """Prints, then waits until the caller, having seen that line while the call
    runs, creates ``flag_path``. Returns whether it was released."""
    import os
    import time
    print("started, waiting to be released", flush=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if os.path.exists(flag_path):
            print("released")
            return True
        time.sleep(0.05)
    return False


class Boom(Exception):
    """An exception whose constructor takes a code, not a message."""

    def __init__(self, code):
        super().__init__(f"boom {code}")
        self.code = code
