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
    # https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html: the runtime's
    # own variables cannot be set, and a key starts with a letter and has two characters or more
    reserved_env=frozenset({
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ"}),
    env_name_pattern=r"[a-zA-Z][a-zA-Z0-9_]+",
    streams=False,
    sources=("AWS Lambda quotas: payload 6 MB, timeout 900 s, memory 128-10,240 MB, "
             "package 250 MB unzipped, environment variables 4 KB in all (not the runtime's own "
             "names); runtimes "
             "python3.10-3.13; no GPU; a synchronous invocation answers once, when the "
             "function has returned",),
)


__all__ = ["LAMBDA_LIMITS", "LAMBDA_PAYLOAD_BYTES"]
