"""The embedded placement core: pure functions, no I/O, on every call's hot path.

- features.py     what a request and a target look like to the policy
- constraints.py  what each target kind cannot take, with sources
- policy.py       the StraightLine algorithm and the Decision it returns
- rate.py         the request rate f_t over a sliding window
- calibration.py  thresholds F and D as crossovers of measured cost curves
"""

from .constraints import LAMBDA_LIMITS, violation
from .features import (CLUSTER, CONTAINER, KINDS, LOCAL, MB, SERVERLESS, Features, Limits,
                       TargetState, Thresholds, human_bytes, human_rate)
from .policy import DEFAULT_THRESHOLDS, ORDERS, Decision, Plan, branch_of, decide
from .rate import RateEstimator

__all__ = [
    "CLUSTER", "CONTAINER", "KINDS", "LOCAL", "MB", "SERVERLESS", "LAMBDA_LIMITS",
    "Features", "Limits", "TargetState", "Thresholds", "Decision", "DEFAULT_THRESHOLDS",
    "ORDERS", "Plan", "RateEstimator", "branch_of", "decide", "violation", "human_bytes", "human_rate",
]
