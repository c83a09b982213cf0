"""The Lambda target's options (``configure(options={"lambda": {...}})``,
``STRAIGHTLINE_LAMBDA_<OPTION>``, ``[tool.straightline.options.lambda]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..options import OptionError, TargetOptions

ARCHITECTURES = {"x86_64": "linux/x86_64", "arm64": "linux/aarch64"}


@dataclass(frozen=True)
class LambdaOptions(TargetOptions):
    kind: ClassVar[str] = "lambda"

    region: str | None = None             # default AWS_REGION / AWS_DEFAULT_REGION / ~/.aws/config
    role: str | None = None               # execution role ARN or name; default: the SDK's minimal role
    create_role: bool = True              # make that minimal role when none is given
    architecture: str = "x86_64"          # or arm64
    concurrency: int = 10                 # calls at once before the router sends the overflow on
    memory_mb: int = 512                  # unless Resources(memory_mb=) says
    timeout_s: float = 60.0               # unless Resources(timeout_s=) says
    bucket: str | None = None             # S3 bucket for bundles over the direct upload limit
    direct_upload_limit_mb: float = 50.0  # bundles above this go through S3
    max_attempts: int = 6                 # tries of a throttled call before it counts as failed

    def check(self) -> None:
        super().check()
        if self.concurrency < 1:
            raise OptionError(f"lambda option 'concurrency' must be at least 1 (got {self.concurrency})")


Options = LambdaOptions
