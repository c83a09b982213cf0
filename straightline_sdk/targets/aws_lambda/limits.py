"""What AWS Lambda can take: its quotas, as the placement core's Limits."""

from __future__ import annotations

from ...placement import Limits

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
    max_env_bytes=4 * 1024,
    streams=False,
    sources=("AWS Lambda quotas: payload 6 MB, timeout 900 s, memory 128-10,240 MB, "
             "package 250 MB unzipped, environment variables 4 KB in all; runtimes "
             "python3.10-3.13; no GPU; a synchronous invocation answers once, when the "
             "function has returned",),
)


__all__ = ["LAMBDA_LIMITS", "LAMBDA_PAYLOAD_BYTES"]
