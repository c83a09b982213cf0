"""The AWS Lambda target kind (tier: serverless), all of it in this folder.

- target.py   LambdaTarget: session and clients, role, bundle upload, create or
              update the function, invoke, error mapping, inventory
- options.py  LambdaOptions: the options it takes, typed, with their defaults
- limits.py   LAMBDA_LIMITS: AWS's quotas, as the placement core's Limits
- bundle.py   the deterministic zip the function runs from
- errors.py   its error codes in tables: retryable, and what to do about each

The far-side entry point stays in runtime/lambda_handler.py: the runtime folder
ships on its own (it is copied into the zip as ``straightline_runtime`` and must
import nothing from the client), so it cannot live in a client-side package.
"""

from .limits import LAMBDA_LIMITS, LAMBDA_PAYLOAD_BYTES
from .options import ARCHITECTURES, LambdaOptions, Options
from .target import (DEFAULT_CONCURRENCY, DEFAULT_MEMORY_MB, DEFAULT_ROLE_NAME, DEFAULT_TIMEOUT_S,
                     DIRECT_UPLOAD_LIMIT_MB, FUNCTION_PREFIX, KIND, TAG_KEEP, TAG_KEY, TAG_MANAGED,
                     TAG_NAME, TAG_OWNER, LambdaTarget, function_name_for, wheel_glibc_minor)

__all__ = ["ARCHITECTURES", "DEFAULT_CONCURRENCY", "DEFAULT_MEMORY_MB", "DEFAULT_ROLE_NAME",
           "DEFAULT_TIMEOUT_S", "DIRECT_UPLOAD_LIMIT_MB", "FUNCTION_PREFIX", "KIND", "LAMBDA_LIMITS",
           "LAMBDA_PAYLOAD_BYTES", "LambdaOptions", "LambdaTarget", "Options", "TAG_KEEP", "TAG_KEY",
           "TAG_MANAGED", "TAG_NAME", "TAG_OWNER", "function_name_for", "wheel_glibc_minor"]
