"""Hard constraints: a target that cannot take a request is never chosen.

Each check returns the reason in words, or None when the target can take it.
The static limits of each kind, with their sources, live here too.
"""

from __future__ import annotations

from .features import MB, Features, Limits, human_bytes

# AWS Lambda quotas: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
# (synchronous invocation payload 6 MB each way, timeout 900 s, memory 128-10,240 MB,
# deployment package 250 MB unzipped), and runtimes:
# https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html (no GPUs offered).
LAMBDA_PAYLOAD_BYTES = 6 * 1000 * 1000  # AWS counts 6 MB as 6,291,456 B; we stay below both
LAMBDA_LIMITS = Limits(
    max_request_bytes=LAMBDA_PAYLOAD_BYTES * 3 // 4,  # base64 inside the JSON event: 4/3 larger
    max_result_bytes=LAMBDA_PAYLOAD_BYTES * 3 // 4,
    max_timeout_s=900.0,
    min_memory_mb=128,
    max_memory_mb=10240,
    gpus=0,
    pythons=frozenset({(3, 10), (3, 11), (3, 12), (3, 13)}),
    max_package_mb=250.0,
    sources=("AWS Lambda quotas: payload 6 MB, timeout 900 s, memory 128-10,240 MB, "
             "package 250 MB unzipped; runtimes python3.10-3.13; no GPU",),
)


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
    return None


def memory_for(features: Features) -> int:
    """Memory to provision when none was asked for: the profile's peak with headroom."""
    if features.memory_mb:
        return features.memory_mb
    return max(128, int(features.peak_memory_mb * 2 + 128))


__all__ = ["LAMBDA_LIMITS", "LAMBDA_PAYLOAD_BYTES", "MB", "violation", "memory_for"]
