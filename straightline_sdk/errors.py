"""The SDK's exceptions: one small hierarchy under StraightLineError.

A function that raises on the far side is re-raised as its own exception type
(see ``remote.rebuild_exception``); RemoteError is used only when that type
cannot be rebuilt here.
"""

from __future__ import annotations


class StraightLineError(Exception):
    """Base class of every error the SDK raises on its own account."""


class PackagingError(StraightLineError):
    """The function, an argument or a result could not be serialized."""


class PlacementError(StraightLineError):
    """No allowed target satisfies the request's constraints."""

    def __init__(self, message: str, exclusions: dict[str, str] | None = None):
        super().__init__(message)
        self.exclusions = dict(exclusions or {})


class TargetUnavailable(StraightLineError):
    """A target cannot be reached or used; the message says what to do."""

    def __init__(self, message: str, *, target: str | None = None, hint: str | None = None):
        text = message if not hint else f"{message}\n  What to do: {hint}"
        super().__init__(text)
        self.target = target
        self.hint = hint


class TargetFailure(TargetUnavailable):
    """A call failed for a reason of the target's (connection refused, container
    gone, 5xx, throttling after retries, transport timeout), not of the user's code.

    ``may_have_run`` says whether the function may already have started on the
    target: the router retries such calls elsewhere only when the deployment
    allows at-least-once delivery (see docs/concepts.md, "Failover").
    ``completed``: the outcomes of a map chunk's first calls that finished and came
    back before the target failed (in order); only the rest is run again.
    """

    def __init__(self, message: str, *, target: str | None = None, hint: str | None = None,
                 may_have_run: bool = False):
        super().__init__(message, target=target, hint=hint)
        self.may_have_run = may_have_run
        self.completed: list = []


class TargetSaturated(TargetFailure):
    """The target refused the call because every slot was busy (a worker's 503,
    Lambda throttling after its retries). The call did not run; the router counts
    it as *rejected*, not as a failure of the target, and places it again.
    ``retried``: the target already waited and asked again (Lambda's own backoff),
    so when no other target is left the router gives up instead of waiting more."""

    def __init__(self, message: str, *, target: str | None = None, hint: str | None = None,
                 retried: bool = False):
        super().__init__(message, target=target, hint=hint, may_have_run=False)
        self.retried = retried


class PayloadTooLarge(PlacementError):
    """A request or result exceeds what the chosen target accepts."""


class CallTimeout(StraightLineError, TimeoutError):
    """The function ran longer than its time limit on the target."""


class RemoteError(StraightLineError):
    """The remote function raised an exception whose type cannot be rebuilt here."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = "",
                 attributes: dict | None = None):
        shown = ", ".join(f"{k}={v}" for k, v in (attributes or {}).items())
        super().__init__(f"{type_name}: {message}" + (f" ({shown})" if shown else "")
                         + f"\n  ({type_name} could not be rebuilt in this process, e.g. its "
                           f"module exists only on the target; catch RemoteError, or make the "
                           f"module importable here to catch the type itself)")
        self.type_name = type_name
        self.remote_message = message
        self.remote_traceback = remote_traceback
        #: the exception's attributes on the far side, as reprs
        self.attributes = dict(attributes or {})
