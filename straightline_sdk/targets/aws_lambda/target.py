"""The AWS Lambda target: the function as a Lambda function, called synchronously.

boto3 with the standard credential chain and region (AWS_ENDPOINT_URL is
honoured, which is how the tests point it at moto). Deploy builds a zip bundle
(bundle.py: the payload, the runtime, cloudpickle) and creates or updates the
function; the captured dependencies go in a layer named by the dependency
set's hash, published once per set and attached to every function that needs
it, so an edit uploads the payload alone. The bundle's content key travels in
the function's tags, so an unchanged redeploy, from this process or a later
one, uploads nothing. Invoke sends the request frame
base64 in the JSON event and returns the response frame.

Options: options.py (``LambdaOptions``: names, types, defaults). Docs: docs/targets-lambda.md.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import json
import logging
import math
import os
import re
import sys
import threading
import time

from tenacity import (RetryError, Retrying, retry_if_exception, retry_if_exception_type,
                      stop_after_attempt, stop_after_delay, wait_exponential, wait_random)

from ...errors import (CallTimeout, PayloadTooLarge, TargetFailure, TargetSaturated,
                        TargetUnavailable)
from ...local_state import owner_alive, owner_tag
from ..base import Probe, Reply, Target
from .errors import RETRYABLE_CODES, Retryable, client_error_code, hint_for, role_not_ready
from .limits import LAMBDA_LIMITS
from .options import ARCHITECTURES, LambdaOptions

log = logging.getLogger("straightline")

KIND = "lambda"
INSTALL_HINT = "pip install 'straightline-sdk[aws]'"
ROLE_HINT = ("configure(options={'lambda': {'role': 'arn:aws:iam::<account>:role/<name>'}}) or set "
             "STRAIGHTLINE_LAMBDA_ROLE; the role must trust lambda.amazonaws.com")
FUNCTION_PREFIX = "straightline-"
DEFAULT_ROLE_NAME = "straightline-lambda-execution"
BASIC_EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html: a .zip uploaded
# through the API may be 50 MB; larger ones go through S3 (up to the 250 MB unzipped limit).
DIRECT_UPLOAD_LIMIT_MB = LambdaOptions.direct_upload_limit_mb   # the defaults live in options.py
DEFAULT_MEMORY_MB = LambdaOptions.memory_mb
DEFAULT_TIMEOUT_S = int(LambdaOptions.timeout_s)
DEFAULT_CONCURRENCY = LambdaOptions.concurrency

# The glibc of the OS each Lambda Python runtime runs on (Amazon Linux 2: 2.26 for
# python3.10 and 3.11; Amazon Linux 2023: 2.34 for python3.12 and 3.13), from
# https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
LAMBDA_GLIBC_MINOR = {(3, 10): 26, (3, 11): 26, (3, 12): 34, (3, 13): 34}
_LEGACY_MANYLINUX = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}

TAG_MANAGED = "straightline-sdk"            # value: "1"; marks what the SDK created
TAG_NAME = "straightline:name"              # the deployment's name
TAG_KEY = "straightline:bundle"             # the bundle's content key
TAG_OWNER = "straightline:owner"            # host:pid:start of the deploying process
TAG_KEEP = "straightline:keep"              # "true": outlives its process

def function_name_for(name: str) -> str:
    """A valid Lambda function name (letters, digits, - and _, at most 64) for a
    deployment name; long names keep a hash of the full name so they stay distinct."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_") or "function"
    full = FUNCTION_PREFIX + safe
    if len(full) <= 64:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{full[:64 - 9]}-{digest}"


def wheel_glibc_minor(filename: str) -> int | None:
    """The oldest glibc (2.N) a wheel runs on, from its platform tags; None when it
    is not a manylinux wheel (pure Python wheels run anywhere)."""
    platforms = filename[:-len(".whl")].split("-")[-1].split(".")
    needed = []
    for platform in platforms:
        match = re.match(r"manylinux_2_(\d+)_", platform)
        if match:
            needed.append(int(match.group(1)))
        elif platform.partition("_")[0] in _LEGACY_MANYLINUX:
            needed.append(_LEGACY_MANYLINUX[platform.partition("_")[0]])
    return min(needed) if needed else None


# -- boto3 ----------------------------------------------------------------------------

def _boto3():
    try:
        import boto3
        import botocore  # noqa: F401  (boto3 without botocore is a broken install)
    except ImportError:
        return None
    return boto3


class LambdaTarget(Target):
    kind = KIND

    def __init__(self, spec, progress=None):
        super().__init__(spec, progress)
        self.options = LambdaOptions.parse(spec.options)
        self.concurrency = self.options.concurrency
        self.function_name = function_name_for(spec.name)
        self.architecture = self.options.architecture
        self.arn: str | None = None
        self.region: str | None = None
        self.uploaded = False           # whether the last deploy sent code
        self.bundle_key: str | None = None
        self.layers: list[str] | None = None   # layer version ARNs this deploy attached (None: left as they were)
        self.layer_published = False    # whether the last deploy published a dependencies layer
        self.cold_starts = 0
        self.calls = 0
        self._session = None
        self._control = None            # the Lambda client for everything but Invoke
        self._invoker = None            # the Lambda client for Invoke: no botocore retries
        self._quick_client = None       # one brief try: health and reachability checks
        self._tails: collections.deque = collections.deque(maxlen=20)
        self._lock = threading.Lock()
        self._gone = False              # the function was deleted under us

    # -- clients ---------------------------------------------------------------

    @classmethod
    def _make_session(cls, options: LambdaOptions):
        boto3 = _boto3()
        # botocore reads AWS_DEFAULT_REGION but not AWS_REGION, which the other AWS SDKs use
        region = options.region or os.environ.get("AWS_REGION") or None
        return boto3.session.Session(region_name=region)

    def _client(self, service: str, **config):
        from botocore.config import Config
        return self._session.client(service, config=Config(**config))

    @property
    def memory_mb(self) -> int:
        memory = self.spec.resources.memory_mb or self.options.memory_mb
        return max(LAMBDA_LIMITS.min_memory_mb, min(LAMBDA_LIMITS.max_memory_mb, int(memory)))

    @property
    def timeout_s(self) -> int:
        timeout = self.spec.resources.timeout_s or self.options.timeout_s
        return max(1, min(int(LAMBDA_LIMITS.max_timeout_s), math.ceil(timeout)))

    # -- probe -----------------------------------------------------------------

    @classmethod
    def probe(cls, options) -> Probe:
        options = LambdaOptions.parse(options)
        if _boto3() is None:
            return Probe(False, "boto3 is not installed", hint=INSTALL_HINT, limits=LAMBDA_LIMITS)
        session = cls._make_session(options)
        if session.region_name is None:
            return Probe(False, "no AWS region is configured", limits=LAMBDA_LIMITS,
                         hint="set AWS_REGION (or AWS_DEFAULT_REGION, or region in ~/.aws/config), "
                              "or configure(options={'lambda': {'region': 'eu-west-1'}})")
        try:
            credentials = session.get_credentials()
        except Exception as exc:  # e.g. a profile that names a missing source
            return Probe(False, f"the AWS credentials cannot be loaded: {type(exc).__name__}: {exc}",
                         limits=LAMBDA_LIMITS, hint="check AWS_PROFILE and ~/.aws/config")
        if credentials is None:
            return Probe(False, "no AWS credentials found", limits=LAMBDA_LIMITS,
                         hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
                              "or run `aws configure` / `aws sso login`")
        architecture = options.architecture
        if architecture not in ARCHITECTURES:
            return Probe(False, f"unknown Lambda architecture {architecture!r}", limits=LAMBDA_LIMITS,
                         hint=f"use one of {sorted(ARCHITECTURES)}")
        # The client's Python is checked by the placement core against LAMBDA_LIMITS.pythons
        # (a deployment on an unsupported version excludes Lambda with that reason).
        return Probe(True, limits=LAMBDA_LIMITS, capacity={
            "memory_mb": LAMBDA_LIMITS.max_memory_mb, "gpus": 0, "region": session.region_name,
            "concurrency": options.concurrency})

    # -- deploy ------------------------------------------------------------------

    def _step(self, text: str) -> None:
        if self.progress is not None:
            self.progress.step(text)

    def deploy(self) -> None:
        probe = self.probe(self.options)
        if not probe.available:
            raise TargetUnavailable(f"AWS Lambda is not usable here: {probe.reason}",
                                    target=KIND, hint=probe.hint)
        python = sys.version_info[:2]
        if python not in LAMBDA_LIMITS.pythons:
            offered = ", ".join("%d.%d" % v for v in sorted(LAMBDA_LIMITS.pythons))
            raise TargetUnavailable(f"AWS Lambda does not offer Python {python[0]}.{python[1]} "
                                    f"(it offers {offered})", target=KIND,
                                    hint="run the client on an offered Python version, or use "
                                         "the local, docker or ray target")
        from botocore.exceptions import BotoCoreError, ClientError
        self._session = self._make_session(self.options)
        self.region = self._session.region_name
        self._control = self._client("lambda", retries={"mode": "standard", "max_attempts": 5},
                                     connect_timeout=10, read_timeout=60)
        self._check_reachable()
        try:
            self._deploy()
        except ClientError as exc:
            code, _ = client_error_code(exc)
            raise TargetUnavailable(f"deploying {self.function_name!r} to AWS Lambda failed: {exc}",
                                    target=KIND, hint=hint_for(code)) from exc
        except BotoCoreError as exc:
            raise TargetUnavailable(f"deploying {self.function_name!r} to AWS Lambda failed: {exc}",
                                    target=KIND, hint="check the network and AWS_ENDPOINT_URL") from exc
        from botocore.config import Config
        self._invoker = self._session.client("lambda", config=Config(
            # botocore would retry a 500 or a broken connection, and that re-runs the
            # function: invocations are retried here, only when Lambda did not run them.
            retries={"total_max_attempts": 1}, connect_timeout=10,
            read_timeout=self.timeout_s + 60, tcp_keepalive=True,
            max_pool_connections=max(10, self.concurrency)))

    def _deploy(self) -> None:
        from botocore.exceptions import ClientError
        from . import bundle as lambda_zip
        lam = self._control
        self._step(f"checking Lambda function {self.function_name} in {self.region}")
        try:
            current = lam.get_function(FunctionName=self.function_name)
        except ClientError as exc:
            if client_error_code(exc)[0] != "ResourceNotFoundException":
                raise
            current = None
        tags = (current or {}).get("Tags") or {}
        if current is not None:
            self._check_ours(tags)
        shipped, deps_hash = self._dependencies()
        key = lambda_zip.bundle_key(self.spec.package, deps_hash, python=sys.version_info[:2],
                                    architecture=self.architecture)
        self.bundle_key = key
        config = current["Configuration"] if current else None
        unchanged = (config is not None and tags.get(TAG_KEY) == key
                     and config.get("Architectures", ["x86_64"]) == [self.architecture])
        if config is not None and not unchanged:
            self._check_not_in_use(tags)
        if unchanged:
            self._step("code unchanged: nothing to upload")
            self.uploaded = False
            self.arn = config["FunctionArn"]
            self.layers = [layer.get("Arn") for layer in config.get("Layers") or []]
            self._wait("function_updated_v2")
            self._update_configuration(config)
        else:
            wheels = self._wheels(shipped)
            bundle = self._bundle(wheels, key)   # the size of both checked before any upload
            self.layers = [self._layer(shipped, wheels)] if wheels else []
            code = self._code_location(bundle)
            try:
                if config is None:
                    self._create(code)
                else:
                    self._update_code(code, config)
            finally:
                self._drop_upload(code)
            self.uploaded = True
        self._wait("function_active_v2")
        self._wait("function_updated_v2")
        lam.tag_resource(Resource=self.arn, Tags=self._tags(key))
        self._gone = False
        self._step(f"{self.function_name} is active ({self.memory_mb} MB, {self.timeout_s} s)")

    def _check_ours(self, tags: dict) -> None:
        if tags.get(TAG_MANAGED) != "1":
            raise TargetUnavailable(
                f"a Lambda function named {self.function_name!r} exists in {self.region} and was not "
                f"created by straightline-sdk; it is left alone", target=KIND,
                hint="deploy under another name: @straightline.deploy(name=...)")

    def _check_not_in_use(self, tags: dict) -> None:
        """Refuse to replace the code a live process on this machine is calling."""
        owner = tags.get(TAG_OWNER, "")
        if owner and owner != owner_tag() and owner_alive(owner):
            raise TargetUnavailable(
                f"the Lambda function {self.function_name!r} serves deployment "
                f"{tags.get(TAG_NAME, '?')!r} of another running process here (pid "
                f"{owner.rsplit(':', 2)[1]}) with different code; replacing it would change what "
                f"that process runs", target=KIND,
                hint="undeploy it in that process first, or deploy this one under another name "
                     "(@straightline.deploy(name=...))")

    def _dependencies(self):
        """The captured dependencies to ship as wheels, and the hash of the whole set."""
        from ...packaging import dependencies
        platform = ARCHITECTURES[self.architecture]
        deps = dependencies.capture(None, self.spec.package, self.spec.requirements, platform=platform)
        # The bundle carries this client's own cloudpickle (the one the payload was made
        # with), so a function with no other dependencies deploys without the network.
        shipped = dependencies.DependencySet(
            tuple(p for p in deps.pins if not p.lower().startswith("cloudpickle==")))
        return shipped, deps.content_hash

    def _wheels(self, shipped) -> list[str]:
        """Wheels for Lambda's platform (from the per-user cache, downloaded when missing)."""
        from ...errors import PackagingError
        from ...packaging import dependencies
        if not shipped.pins:
            return []
        platform = ARCHITECTURES[self.architecture]
        self._step(f"wheels for {platform}: {', '.join(shipped.pins)}")
        try:
            wheels = dependencies.download_wheels(shipped, platform, python=sys.version_info[:2],
                                                  progress=self.progress)
        except PackagingError as exc:
            raise TargetUnavailable(f"the dependencies cannot be bundled for AWS Lambda: {exc}",
                                    target=KIND) from exc
        self._check_glibc(wheels)
        return list(wheels)

    def _check_glibc(self, wheels: list[str]) -> None:
        """Lambda's Python runtimes run on Amazon Linux: a wheel built for a newer glibc
        would fail there at import, so say so now."""
        have = LAMBDA_GLIBC_MINOR.get(sys.version_info[:2])
        if have is None:
            return
        too_new = []
        for wheel in wheels:
            needed = wheel_glibc_minor(os.path.basename(wheel))
            if needed is not None and needed > have:
                too_new.append(f"{os.path.basename(wheel)} needs glibc 2.{needed}")
        if too_new:
            raise TargetUnavailable(
                f"AWS Lambda's python{sys.version_info[0]}.{sys.version_info[1]} runtime has glibc "
                f"2.{have}, but {'; '.join(too_new)}", target=KIND,
                hint="pin a version with manylinux2014 wheels in requirements=[...], or use the "
                     "docker or ray target")

    def _bundle(self, wheels: list[str], key: str):
        """The function's zip (no dependencies: they go in the layer); Lambda's
        unzipped limit holds for the function and its layers together."""
        from . import bundle as lambda_zip
        entries = lambda_zip.plan_bundle(self.spec.package)
        size = lambda_zip.unzipped_bytes(entries) + lambda_zip.unzipped_bytes(lambda_zip.plan_layer(wheels))
        if size / (1024 * 1024) > LAMBDA_LIMITS.max_package_mb:
            raise TargetUnavailable(
                f"the Lambda bundle of {self.spec.name!r} would be {size / (1024 * 1024):.0f} MB "
                f"unzipped, over Lambda's {LAMBDA_LIMITS.max_package_mb:.0f} MB limit", target=KIND,
                hint="trim requirements=, or use the docker or ray target (no such limit)")
        self._step(f"building the bundle ({len(entries)} files, {size / (1024 * 1024):.1f} MB unzipped)")
        return lambda_zip.build_bundle(entries, key)

    def _layer(self, shipped, wheels: list[str]) -> str:
        """The ARN of the dependency set's layer version: found by its name and
        description (both from the set's hash), else published now, once."""
        from botocore.exceptions import ClientError
        from . import bundle as lambda_zip
        runtime = "python%d.%d" % sys.version_info[:2]
        key = lambda_zip.layer_key(shipped.pins, python=sys.version_info[:2],
                                   architecture=self.architecture)
        name, description = lambda_zip.layer_name(key), f"straightline-sdk dependencies {key}"
        try:
            versions = self._control.list_layer_versions(LayerName=name).get("LayerVersions", [])
        except ClientError as exc:
            if client_error_code(exc)[0] != "ResourceNotFoundException":
                raise
            versions = []
        for version in versions:
            if version.get("Description") == description:
                self._step(f"dependencies layer {name}: published already")
                self.layer_published = False
                return version["LayerVersionArn"]
        entries = lambda_zip.plan_layer(wheels)
        size = lambda_zip.unzipped_bytes(entries)
        self._step(f"building the dependencies layer {name} ({len(entries)} files, "
                   f"{size / (1024 * 1024):.1f} MB unzipped)")
        layer = lambda_zip.build_bundle(entries, key)
        content = self._code_location(layer, s3_key=f"straightline/layers/{name}.zip")
        try:
            published = self._control.publish_layer_version(
                LayerName=name, Description=description, Content=content,
                CompatibleRuntimes=[runtime], CompatibleArchitectures=[self.architecture])
        finally:
            self._drop_upload(content)
        self.layer_published = True
        return published["LayerVersionArn"]

    def _code_location(self, bundle, s3_key: str = "") -> dict:
        limit_mb = self.options.direct_upload_limit_mb
        if len(bundle.data) <= limit_mb * 1024 * 1024:
            self._step(f"uploading {len(bundle.data) / (1024 * 1024):.1f} MB")
            return {"ZipFile": bundle.data}
        s3 = self._client("s3", retries={"mode": "standard"})
        bucket = self._bucket(s3)
        key = s3_key or f"straightline/{self.function_name}/{bundle.key}.zip"
        self._step(f"uploading {len(bundle.data) / (1024 * 1024):.1f} MB to s3://{bucket}/{key}")
        s3.put_object(Bucket=bucket, Key=key, Body=bundle.data)
        return {"S3Bucket": bucket, "S3Key": key}

    def _bucket(self, s3) -> str:
        from botocore.exceptions import ClientError
        bucket = self.options.bucket
        if not bucket:
            account = self._client("sts").get_caller_identity()["Account"]
            bucket = f"straightline-sdk-{account}-{self.region}"
        try:
            s3.head_bucket(Bucket=bucket)
            return bucket
        except ClientError as exc:
            code, status = client_error_code(exc)
            if status != 404 and code not in ("404", "NoSuchBucket", "NotFound"):
                raise TargetUnavailable(f"the S3 bucket {bucket!r} for the Lambda bundle cannot be "
                                        f"used: {exc}", target=KIND,
                                        hint="configure(options={'lambda': {'bucket': ...}}) with a "
                                             "bucket this identity may write") from exc
        self._step(f"creating S3 bucket {bucket}")
        params = {"Bucket": bucket}
        if self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            s3.create_bucket(**params)
        except ClientError as exc:
            raise TargetUnavailable(f"the bundle is over {DIRECT_UPLOAD_LIMIT_MB} MB and must go "
                                    f"through S3, but creating bucket {bucket!r} failed: {exc}",
                                    target=KIND, hint="configure(options={'lambda': {'bucket': ...}}) "
                                                      "with an existing bucket in the same region") from exc
        return bucket

    def _drop_upload(self, code: dict) -> None:
        if "S3Key" not in code:
            return
        try:  # Lambda keeps its own copy of the code
            self._client("s3").delete_object(Bucket=code["S3Bucket"], Key=code["S3Key"])
        except Exception:
            pass

    def _environment(self) -> dict:
        from ...runtime.lambda_handler import MAX_RESULT_ENV
        # env and secrets: the function's configuration (Lambda encrypts it at rest),
        # never the bundle or its tags
        return {"Variables": {**self.spec.environment(),
                              MAX_RESULT_ENV: str(LAMBDA_LIMITS.max_result_bytes)}}

    def _create(self, code: dict) -> None:
        from .bundle import HANDLER
        role = self._execution_role()
        self._step(f"creating Lambda function {self.function_name}")
        params = dict(FunctionName=self.function_name, Runtime="python%d.%d" % sys.version_info[:2],
                      Role=role, Handler=HANDLER, Code=code, MemorySize=self.memory_mb,
                      Timeout=self.timeout_s, Architectures=[self.architecture],
                      Environment=self._environment(), PackageType="Zip",
                      Description=f"straightline-sdk deployment {self.spec.name}"[:256],
                      Layers=list(self.layers or []), Tags=self._tags(self.bundle_key or ""))
        # A role created moments ago takes a few seconds before Lambda may assume it.
        for attempt in Retrying(stop=stop_after_delay(60), wait=wait_exponential(multiplier=1, max=8),
                                retry=retry_if_exception(role_not_ready), reraise=True):
            with attempt:
                created = self._control.create_function(**params)
        self.arn = created["FunctionArn"]

    def _update_code(self, code: dict, config: dict) -> None:
        self._step(f"updating the code of {self.function_name}")
        self._wait("function_updated_v2")
        updated = self._control.update_function_code(
            FunctionName=self.function_name, Architectures=[self.architecture], **code)
        self.arn = updated["FunctionArn"]
        self._wait("function_updated_v2")
        self._update_configuration(config)

    def _update_configuration(self, config: dict) -> None:
        from .bundle import HANDLER
        wanted = {"MemorySize": self.memory_mb, "Timeout": self.timeout_s, "Handler": HANDLER,
                  "Runtime": "python%d.%d" % sys.version_info[:2],
                  "Environment": self._environment()}
        if self.options.role:
            wanted["Role"] = self._execution_role()
        changes = {k: v for k, v in wanted.items() if config.get(k) != v}
        if self.layers is not None and [layer.get("Arn") for layer in config.get("Layers") or []] != self.layers:
            changes["Layers"] = list(self.layers)
        if not changes:
            return
        self._step(f"updating the configuration of {self.function_name}: {', '.join(sorted(changes))}")
        self._control.update_function_configuration(FunctionName=self.function_name, **changes)
        self._wait("function_updated_v2")

    def _wait(self, waiter: str) -> None:
        self._control.get_waiter(waiter).wait(FunctionName=self.function_name,
                                              WaiterConfig={"Delay": 1, "MaxAttempts": 300})

    def _tags(self, key: str) -> dict:
        return {TAG_MANAGED: "1", TAG_NAME: self.spec.name[:256], TAG_KEY: key,
                TAG_OWNER: owner_tag(), TAG_KEEP: "true" if self.spec.keep else "false"}

    def _execution_role(self) -> str:
        from botocore.exceptions import ClientError
        iam = self._client("iam", retries={"mode": "standard"})
        role = self.options.role
        if role:
            if str(role).startswith("arn:"):
                return str(role)
            try:
                return iam.get_role(RoleName=role)["Role"]["Arn"]
            except ClientError as exc:
                raise TargetUnavailable(f"the configured Lambda execution role {role!r} cannot be "
                                        f"found: {exc}", target=KIND, hint=ROLE_HINT) from exc
        if not self.options.create_role:
            raise TargetUnavailable("no Lambda execution role is configured, and creating one is "
                                    "turned off (create_role=false)", target=KIND, hint=ROLE_HINT)
        try:
            return iam.get_role(RoleName=DEFAULT_ROLE_NAME)["Role"]["Arn"]
        except ClientError as exc:
            if client_error_code(exc)[0] != "NoSuchEntity":
                raise TargetUnavailable(f"no Lambda execution role is configured, and this identity "
                                        f"may not look up or create one: {exc}",
                                        target=KIND, hint=ROLE_HINT) from exc
        self._step(f"creating the minimal execution role {DEFAULT_ROLE_NAME}")
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}
        try:
            arn = iam.create_role(
                RoleName=DEFAULT_ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust),
                Description="straightline-sdk: runs deployed functions; may write their logs",
                Tags=[{"Key": TAG_MANAGED, "Value": "1"}])["Role"]["Arn"]
            iam.attach_role_policy(RoleName=DEFAULT_ROLE_NAME, PolicyArn=BASIC_EXECUTION_POLICY)
        except ClientError as exc:
            raise TargetUnavailable(f"no Lambda execution role is configured, and creating "
                                    f"{DEFAULT_ROLE_NAME!r} failed: {exc}",
                                    target=KIND, hint=ROLE_HINT) from exc
        return arn

    # -- invoke ------------------------------------------------------------------

    def invoke(self, segments, total, timeout):
        if total > LAMBDA_LIMITS.max_request_bytes:
            raise PayloadTooLarge(
                f"the request is {total} bytes serialized; AWS Lambda takes at most "
                f"{LAMBDA_LIMITS.max_request_bytes} (its 6 MB payload limit, after base64). "
                f"Send smaller arguments, or let the router place this call elsewhere "
                f"(do not pin target='lambda')", {KIND: "request over the payload limit"})
        if self._invoker is None:
            raise TargetFailure("the Lambda target is not deployed", target=KIND)
        frame = b"".join(segments) if len(segments) != 1 else bytes(segments[0])
        event = b'{"frame":"' + base64.b64encode(frame) + b'"}'
        attempts = self.options.max_attempts
        started = time.monotonic()
        try:
            for attempt in Retrying(stop=stop_after_attempt(attempts),
                                    wait=wait_exponential(multiplier=0.1, max=5.0) + wait_random(0, 0.1),
                                    retry=retry_if_exception_type(Retryable)):
                with attempt:
                    response = self._invoke_once(event)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise TargetSaturated(
                f"AWS Lambda refused the call {attempts} times over {time.monotonic() - started:.1f} s "
                f"({last}); it did not run", target=KIND, retried=True,
                hint="raise the function's reserved or the account's concurrency, or lower "
                     "options concurrency so the router sends the overflow elsewhere") from None
        return self._read_response(response)

    def _invoke_once(self, event: bytes) -> dict:
        from botocore.exceptions import (ClientError, ConnectTimeoutError, EndpointConnectionError,
                                         BotoCoreError)
        try:
            return self._invoker.invoke(FunctionName=self.function_name,
                                        InvocationType="RequestResponse", LogType="Tail",
                                        Payload=event)
        except ClientError as exc:
            code, status = client_error_code(exc)
            if code in RETRYABLE_CODES or status == 429:
                raise Retryable(code or str(status), exc.response["Error"].get("Message", "")) from exc
            if code == "ResourceNotFoundException":
                self._gone = True
                raise TargetFailure(f"the Lambda function {self.function_name!r} no longer exists",
                                    target=KIND, may_have_run=False,
                                    hint="it was deleted outside this process; it is redeployed "
                                         "when next chosen") from exc
            if code == "RequestTooLargeException":
                raise PayloadTooLarge(f"AWS Lambda refused the request as too large: {exc}",
                                      {KIND: "request over the payload limit"}) from exc
            # A 5xx may come after the function ran (e.g. moto answers 500 after running it).
            raise TargetFailure(f"AWS Lambda failed the call: {exc}", target=KIND,
                                may_have_run=status >= 500) from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise TargetFailure(f"cannot reach AWS Lambda: {exc}", target=KIND, may_have_run=False,
                                hint="check the network, the region and AWS_ENDPOINT_URL") from exc
        except BotoCoreError as exc:  # e.g. the connection broke or timed out after sending
            raise TargetFailure(f"the call to AWS Lambda broke off: {exc}", target=KIND,
                                may_have_run=True) from exc

    def _read_response(self, response: dict) -> Reply:
        raw = response["Payload"].read()
        tail = response.get("LogResult")
        if tail:
            try:
                self._tails.append(base64.b64decode(tail).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                pass
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if response.get("FunctionError"):
            raise self._function_error(body if isinstance(body, dict) else {"errorMessage": raw[:500]})
        if not isinstance(body, dict) or ("frame" not in body and "error" not in body):
            raise TargetFailure(f"AWS Lambda answered something that is not a straightline response: "
                                f"{raw[:200]!r}", target=KIND, may_have_run=True)
        cold = bool(body.get("cold"))
        with self._lock:
            self.calls += 1
            self.cold_starts += cold
            self.cold = False
        if "error" in body:
            raise self._runtime_error(body["error"] or {})
        # writable, as on the other targets; cold as Lambda reported it for this very call
        return Reply(bytearray(base64.b64decode(body["frame"])), cold=cold)

    def _function_error(self, body: dict) -> Exception:
        kind = str(body.get("errorType", ""))
        message = str(body.get("errorMessage", "")).strip()
        if kind == "Sandbox.Timedout" or "Task timed out" in message:
            return CallTimeout(f"the call did not finish within its {self.timeout_s} s time limit on "
                               f"AWS Lambda ({message}); Resources(timeout_s=...) sets it, up to "
                               f"{LAMBDA_LIMITS.max_timeout_s:.0f} s")
        if "signal: killed" in message or "Runtime.OutOfMemory" in kind or "out of memory" in message.lower():
            return TargetFailure(f"the Lambda function ran out of memory ({self.memory_mb} MB): {message}",
                                 target=KIND, may_have_run=True,
                                 hint="ask for more: Resources(memory_mb=...), up to "
                                      f"{LAMBDA_LIMITS.max_memory_mb} MB")
        if kind.startswith("Runtime.ImportModuleError") or kind.startswith("Runtime.HandlerNotFound"):
            return TargetFailure(f"the Lambda runtime could not load the SDK's handler ({kind}: "
                                 f"{message})", target=KIND, may_have_run=False,
                                 hint="redeploy; if it persists, report it with h.logs('lambda')")
        return TargetFailure(f"the Lambda function failed outside the user's code ({kind or 'error'}: "
                             f"{message})\n{self.logs(20)}".rstrip(), target=KIND, may_have_run=True)

    def _runtime_error(self, error: dict) -> Exception:
        kind = error.get("type", "")
        message = error.get("message", "")
        if kind == "LoadError":
            return TargetFailure(f"{message} (Lambda runs Python {error.get('python', '?')})",
                                 target=KIND, may_have_run=False,
                                 hint="add the missing package to requirements=[...], or use a "
                                      "target that runs in this environment (local)")
        if kind == "ResultTooLarge":
            return TargetFailure(f"the function ran, but its result ({error.get('bytes')} bytes "
                                 f"serialized) is over what Lambda can return", target=KIND,
                                 may_have_run=True,
                                 hint="return less data, or let the router place such calls elsewhere "
                                      "(a profile with a representative sample predicts it)")
        return TargetFailure(f"the Lambda handler refused the call: {kind}: {message}",
                             target=KIND, may_have_run=False)

    # -- health, teardown, logs ------------------------------------------------------

    def _quick(self):
        """A Lambda client that tries once, briefly: the health check and the
        reachability check. The control client's retries (five, with backoff) made
        every call that failed while the service was down wait ~15 s on its health
        check, and every redeploy as long (issue 17, finding 5: moto down)."""
        if self._quick_client is None:
            self._quick_client = self._client("lambda", retries={"total_max_attempts": 1},
                                              connect_timeout=2, read_timeout=10)
        return self._quick_client

    def _check_reachable(self) -> None:
        """Before a deploy's many calls: does the Lambda endpoint answer at all?
        An endpoint that cannot be reached is TargetUnavailable at once (the kind is
        marked down and its calls go elsewhere), not after each call's retries."""
        from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError
        try:
            self._quick().list_functions(MaxItems=1)
        except ClientError:
            pass   # it answered (e.g. not allowed to list): the deploy says what is wrong
        except BotoConnectionError as exc:
            raise TargetUnavailable(f"AWS Lambda does not answer: {exc}", target=KIND,
                                    hint="check the network and AWS_ENDPOINT_URL") from exc

    def health(self) -> tuple[bool, str]:
        if self._control is None:
            return False, "not deployed"
        if self._gone:
            return False, f"the Lambda function {self.function_name!r} no longer exists"
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            config = self._quick().get_function_configuration(FunctionName=self.function_name)
        except ClientError as exc:
            if client_error_code(exc)[0] == "ResourceNotFoundException":
                self._gone = True
                return False, f"the Lambda function {self.function_name!r} no longer exists"
            return False, f"AWS Lambda did not answer the health check: {exc}"
        except BotoCoreError as exc:
            return False, f"AWS Lambda did not answer the health check: {exc}"
        state, update = config.get("State"), config.get("LastUpdateStatus")
        if state != "Active" or update == "Failed":
            return False, f"the Lambda function is {state} (last update {update})"
        return True, "ok"

    def teardown(self) -> None:
        # an explicit undeploy removes the function, kept or not: keep=True only
        # means that the process exiting does not (the handle skips kept ones then)
        if self._control is None:
            return
        from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError
        try:
            self._quick().delete_function(FunctionName=self.function_name)
        except BotoConnectionError:
            # the service does not answer: the call that found the target failed (the
            # router tears it down on its way) is not held up by the control client's
            # retries; they go on in the background (`straightline gc` removes what stays)
            threading.Thread(target=self._delete_function, daemon=True,
                             name=f"straightline-teardown-{self.function_name}").start()
            return
        except ClientError as exc:
            if client_error_code(exc)[0] != "ResourceNotFoundException":
                self._delete_function(quiet=False)   # e.g. throttled: with the retries
        self._gone = True

    def _delete_function(self, quiet: bool = True) -> None:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            self._control.delete_function(FunctionName=self.function_name)
        except ClientError as exc:
            if client_error_code(exc)[0] != "ResourceNotFoundException" and not quiet:
                raise
        except BotoCoreError as exc:
            if not quiet:
                raise
            log.debug("the Lambda function %s was not deleted: %s", self.function_name, exc)
        self._gone = True

    def logs(self, tail: int = 100) -> str:
        """The log tails of the latest calls (Lambda returns the last 4 KB of each)."""
        lines = "\n".join(self._tails).splitlines()
        return "\n".join(lines[-tail:])

    def describe(self) -> dict:
        return {"function": self.function_name, "region": self.region, "arn": self.arn,
                "memory_mb": self.memory_mb, "timeout_s": self.timeout_s,
                "architecture": self.architecture, "uploaded": self.uploaded,
                "layers": list(self.layers or []), "layer_published": self.layer_published,
                "calls": self.calls, "cold_starts": self.cold_starts,
                "concurrency": self.concurrency}

    # -- the CLI: straightline ls / gc -------------------------------------------------

    @classmethod
    def inventory(cls, options) -> list[dict]:
        """Lambda functions the SDK created in the configured region, and its
        dependency layers' versions (unused: no function in the region uses one;
        never orphans, as no process owns a layer: ``gc --unused`` removes them)."""
        options = LambdaOptions.parse(options)
        if not cls.probe(options).available:
            return []
        session = cls._make_session(options)
        lam = session.client("lambda")
        found = []
        used_layers: dict[str, list[str]] = {}   # layer version ARN -> functions using it
        for page in lam.get_paginator("list_functions").paginate():
            for fn in page.get("Functions", []):
                for layer in fn.get("Layers") or []:
                    used_layers.setdefault(layer.get("Arn", ""), []).append(fn["FunctionName"])
                if not fn["FunctionName"].startswith(FUNCTION_PREFIX):
                    continue  # ours all carry the prefix: only those need their tags read
                tags = lam.list_tags(Resource=fn["FunctionArn"]).get("Tags", {})
                if tags.get(TAG_MANAGED) != "1":
                    continue
                owner = tags.get(TAG_OWNER, "")
                keep = tags.get(TAG_KEEP) == "true"
                alive = owner_alive(owner) if owner else False
                found.append({
                    "kind": KIND, "type": "function", "id": fn["FunctionArn"],
                    "name": tags.get(TAG_NAME, ""), "state": "kept" if keep else fn.get("State", ""),
                    "owner": owner, "orphan": alive is False and not keep, "keep": keep,
                    "function": fn["FunctionName"], "region": session.region_name,
                    "last_modified": fn.get("LastModified"), "memory_mb": fn.get("MemorySize"),
                })
        found += cls._layer_inventory(lam, used_layers, session.region_name)
        return found

    @classmethod
    def _layer_inventory(cls, lam, used: dict[str, list[str]], region: str) -> list[dict]:
        from . import bundle as lambda_zip
        found = []
        for page in lam.get_paginator("list_layers").paginate():
            for layer in page.get("Layers", []):
                name = layer.get("LayerName", "")
                if not name.startswith(lambda_zip.LAYER_PREFIX):
                    continue
                for version in lam.list_layer_versions(LayerName=name).get("LayerVersions", []):
                    if not version.get("Description", "").startswith("straightline-sdk dependencies"):
                        continue
                    arn = version["LayerVersionArn"]
                    users = sorted(used.get(arn, []))
                    found.append({
                        "kind": KIND, "type": "layer version", "id": arn, "name": name,
                        "state": "", "owner": "", "orphan": False, "keep": False,
                        "unused": not users, "used_by": ", ".join(users),
                        "size": (version.get("Content") or {}).get("CodeSize"),
                        "last_used": (version.get("CreatedDate") or "")[:16].replace("T", " "),
                        "layer": name, "version": version.get("Version"), "region": region,
                        "remove_order": 2})
        return found

    @classmethod
    def remove(cls, item: dict, options) -> None:
        """Delete one function ``inventory`` listed; only if the SDK's tag is still on it."""
        options = LambdaOptions.parse(options)
        from botocore.exceptions import BotoCoreError, ClientError
        from . import bundle as lambda_zip
        lam = cls._make_session(options).client("lambda")
        try:
            if item.get("type") == "layer version":
                if not str(item.get("layer", "")).startswith(lambda_zip.LAYER_PREFIX):
                    raise TargetUnavailable(f"{item['id']} is not a straightline-sdk layer; not "
                                            f"removed", target=KIND)
                lam.delete_layer_version(LayerName=item["layer"], VersionNumber=int(item["version"]))
                return
            if not item["id"].startswith("arn:"):
                item = {**item, "id": lam.get_function_configuration(
                    FunctionName=item["id"])["FunctionArn"]}
            tags = lam.list_tags(Resource=item["id"]).get("Tags", {})
            if tags.get(TAG_MANAGED) != "1":
                raise TargetUnavailable(f"{item['id']} was not created by straightline-sdk; "
                                        f"not removed", target=KIND)
            lam.delete_function(FunctionName=item["id"])
        except ClientError as exc:
            if client_error_code(exc)[0] == "ResourceNotFoundException":
                return  # gone already
            raise TargetFailure(f"removing {item['id']} failed: {exc}", target=KIND,
                                hint=hint_for(client_error_code(exc)[0])) from exc
        except BotoCoreError as exc:
            raise TargetFailure(f"removing {item['id']} failed: {exc}", target=KIND) from exc


__all__ = ["LambdaTarget", "function_name_for"]
