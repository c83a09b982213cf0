"""The embedded placement core: pure functions, no I/O, on every call's hot path.

- tiers.py        the tiers the policy ranks, and which target kinds implement each
- features.py     what a request and a target look like to the policy
- constraints.py  the hard constraints (what a target's limits cannot take)
- policy.py       the StraightLine algorithm and the Decision it returns
- rate.py         the request rate f_t over a sliding window
- calibration.py  thresholds F and D as crossovers of measured cost curves
"""

from .constraints import violation
from .features import MB, Features, Limits, TargetState, Thresholds, human_bytes, human_rate
from .policy import DEFAULT_THRESHOLDS, ORDERS, Decision, Plan, branch_of, decide
from .rate import RateEstimator
from .tiers import CLUSTER, CONTAINER, LOCAL, SERVERLESS, TIERS, kinds_of, register_kind, tier_of


def __getattr__(name):
    # LAMBDA_LIMITS moved to the Lambda target's package (a kind's limits are the
    # kind's business); still importable from here for code written before.
    if name == "LAMBDA_LIMITS":
        from ..targets.aws_lambda.limits import LAMBDA_LIMITS
        return LAMBDA_LIMITS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLUSTER", "CONTAINER", "LOCAL", "MB", "SERVERLESS", "TIERS", "kinds_of", "register_kind",
    "tier_of",
    "Features", "Limits", "TargetState", "Thresholds", "Decision", "DEFAULT_THRESHOLDS",
    "ORDERS", "Plan", "RateEstimator", "branch_of", "decide", "violation", "human_bytes", "human_rate",
]
