"""Hard constraints: a target that cannot take a request is never chosen.

Each check returns the reason in words, or None when the target can take it.
The limits themselves are each target kind's own (a Probe's ``limits``; Lambda's
quotas in targets/aws_lambda/limits.py).
"""

from __future__ import annotations

import re

from .features import MB, Features, Limits, human_bytes

def violation(features: Features, limits: Limits) -> str | None:
    """The first constraint ``limits`` cannot meet for ``features``, in words."""
    if limits.max_request_bytes is not None and features.request_bytes * features.batch > limits.max_request_bytes:
        return (f"request {human_bytes(features.request_bytes * features.batch)} > payload limit "
                f"{human_bytes(limits.max_request_bytes)}")
    if limits.max_result_bytes is not None and features.result_bytes * features.batch > limits.max_result_bytes:
        return (f"result {human_bytes(features.result_bytes * features.batch)} > payload limit "
                f"{human_bytes(limits.max_result_bytes)}")
    if features.gpus and features.gpus > limits.gpus:
        return f"needs {features.gpus} GPU(s), target has {limits.gpus}"
    if limits.pythons is not None and features.python not in limits.pythons:
        have = ", ".join("%d.%d" % v for v in sorted(limits.pythons))
        return f"Python {features.python[0]}.{features.python[1]} not offered (offers {have})"
    if limits.max_timeout_s is not None and features.timeout_s and features.timeout_s > limits.max_timeout_s:
        return f"timeout {features.timeout_s:.0f} s > limit {limits.max_timeout_s:.0f} s"
    if limits.max_timeout_s is not None and features.runtime_s > limits.max_timeout_s:
        return f"profiled runtime {features.runtime_s:.0f} s > limit {limits.max_timeout_s:.0f} s"
    if features.memory_mb is not None:
        if limits.max_memory_mb is not None and features.memory_mb > limits.max_memory_mb:
            return f"needs {features.memory_mb} MB memory > {limits.max_memory_mb} MB available"
    if limits.cpus is not None and features.cpus and features.cpus > limits.cpus:
        return f"needs {features.cpus:g} CPUs > {limits.cpus:g} available"
    if limits.max_package_mb is not None and features.package_mb > limits.max_package_mb:
        return f"bundle {features.package_mb:.0f} MB unzipped > limit {limits.max_package_mb:.0f} MB"
    if limits.max_env_bytes is not None and features.env_bytes > limits.max_env_bytes:
        return (f"environment (env + secrets) {human_bytes(features.env_bytes)} > limit "
                f"{human_bytes(limits.max_env_bytes)}")
    reserved = sorted(n for n in features.env_names if n in limits.reserved_env)
    if reserved:
        return (f"environment variable name(s) {', '.join(reserved)} reserved by the target "
                f"(it sets them itself and refuses them in a function's configuration)")
    if limits.env_name_pattern is not None:
        refused = sorted(n for n in features.env_names
                         if not re.fullmatch(limits.env_name_pattern, n))
        if refused:
            return (f"environment variable name(s) {', '.join(refused)} not accepted by the "
                    f"target (names there match {limits.env_name_pattern})")
    if features.generator and not limits.streams:
        return ("a generator function: this target answers a call only once it has returned, "
                "so its items cannot stream back as they are produced")
    return None


def memory_for(features: Features) -> int:
    """Memory to provision when none was asked for: the profile's peak with headroom."""
    if features.memory_mb:
        return features.memory_mb
    return max(128, int(features.peak_memory_mb * 2 + 128))


__all__ = ["MB", "violation", "memory_for"]
