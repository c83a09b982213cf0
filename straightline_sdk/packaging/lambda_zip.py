"""Moved: the Lambda bundle is built in targets/aws_lambda/bundle.py. This name
stays importable for code written before the move."""

from ..targets.aws_lambda.bundle import *  # noqa: F401,F403
from ..targets.aws_lambda.bundle import HANDLER, build_bundle, bundle_key, plan_bundle, unzipped_bytes  # noqa: F401
