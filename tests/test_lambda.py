"""The AWS Lambda target over the real AWS wire protocol.

moto runs in server mode on 127.0.0.1 (started here) and runs every invocation
in a Docker container of the stand-in runtime image (scripts/setup-docker.sh),
so the function's code really runs on the far side of the Lambda API. boto3
reaches moto through a recording proxy (tests/support/moto_lambda.py) that
shows which AWS operations a deploy made and can answer Invoke with Lambda's
real throttling error, which moto never sends.

The bundle and the handler are also tested without moto: the zip is unpacked
and its handler run by a Python with no site-packages.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

import straightline_sdk as straightline
from straightline_sdk import (CallTimeout, PayloadTooLarge, PlacementError, Resources,
                              TargetFailure, TargetUnavailable)
from straightline_sdk import targets as target_registry
from straightline_sdk.packaging import package_function
from straightline_sdk.protocol import encode_request
from straightline_sdk.targets.aws_lambda import bundle as lambda_zip
from straightline_sdk.placement import (MB, Features, Plan, TargetState,
                                        Thresholds)
from straightline_sdk.targets.aws_lambda import LAMBDA_LIMITS
from straightline_sdk.runtime import wire
from straightline_sdk.targets.aws_lambda import (DEFAULT_ROLE_NAME, DEFAULT_TIMEOUT_S, TAG_KEY,
                                                 TAG_MANAGED, LambdaTarget, function_name_for)
from straightline_sdk.targets.base import DeploySpec
from tests.conftest import need
from tests.support.moto_lambda import (MotoServer, RecordingProxy, docker_images_present,
                                       moto_installed)

REGION = "us-east-1"


# -- functions that run on Lambda (shipped by value: this module is not installed) --------

def triple(x):
    return {"value": 3 * x, "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
            "task_root": os.environ.get("LAMBDA_TASK_ROOT"), "python": sys.version_info[:2]}


def divide(a, b):
    return a / b


def nap(seconds):
    time.sleep(seconds)
    return seconds


def length(data):
    return len(data)


def to_ascii_domain(name):
    import idna   # installed here, not in the Lambda runtime: it travels as a wheel
    return idna.encode(name).decode(), idna.__file__


def numpy_total(values):
    import numpy
    return float(numpy.sum(values))


def define(source: str, name: str):
    """A function from source, as a notebook cell makes one (no importable module)."""
    namespace = {"__name__": "notebook_cell"}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return namespace[name]


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto():
    need(moto_installed(), "moto[server,awslambda] is not installed (pip install -e '.[test]')")
    ok, why = docker_images_present()
    need(ok, why)
    server = MotoServer().start()
    proxy = RecordingProxy(server.port)
    yield server, proxy
    proxy.stop()
    server.stop()


def _aws_environment(monkeypatch, endpoint: str) -> None:
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def aws(moto, monkeypatch):
    """boto3 pointed at moto (through the recording proxy) with dummy credentials."""
    server, proxy = moto
    _aws_environment(monkeypatch, proxy.url)
    target_registry.clear_probes()   # probes are cached; this test's environment is new
    straightline.configure(reset=True)
    proxy.clear()
    yield proxy
    for dep in straightline.deployments():
        dep.undeploy()
    server.reset()
    target_registry.clear_probes()


def lambda_client():
    import boto3
    return boto3.client("lambda")


def invokes(proxy) -> int:
    return proxy.operations().count("Invoke")


# -- deploy and invoke ---------------------------------------------------------------------

@pytest.mark.aws
def test_deploy_then_invoke_runs_the_function_on_lambda(aws):
    h = straightline.deploy(triple, target="lambda", resources=Resources(memory_mb=256))
    result = h(14)
    assert result["value"] == 42
    # it ran in moto's container, from the zip, as the function the target created
    target = h.deployed_targets["lambda"]
    assert result["function"] == target.function_name == function_name_for("triple")
    assert result["task_root"] == "/var/task"
    assert result["python"] == sys.version_info[:2]
    config = lambda_client().get_function(FunctionName=target.function_name)
    assert config["Configuration"]["MemorySize"] == 256
    assert config["Configuration"]["Timeout"] == DEFAULT_TIMEOUT_S
    assert config["Configuration"]["Runtime"] == "python%d.%d" % sys.version_info[:2]
    assert config["Tags"][TAG_MANAGED] == "1" and config["Tags"][TAG_KEY] == target.bundle_key
    assert h.map([1, 2, 3], chunksize=2) == [triple(x) | {"function": target.function_name,
                                                        "task_root": "/var/task"} for x in (1, 2, 3)]
    # moto starts a container per invoke: the handler saw a fresh process each time
    assert target.describe()["cold_starts"] == target.describe()["calls"] == 3
    assert "START RequestId" in h.logs("lambda")


@pytest.mark.aws
def test_undeploy_deletes_the_function_and_only_keep_outlives_the_process(aws):
    h = straightline.deploy(triple, target="lambda")
    name = h.deployed_targets["lambda"].function_name
    h.undeploy()
    names = [f["FunctionName"] for f in lambda_client().list_functions()["Functions"]]
    assert name not in names
    kept = straightline.deploy(triple, target="lambda", keep=True)
    gone = straightline.deploy(triple, name="not-kept", target="lambda")
    gone_name = gone.deployed_targets["lambda"].function_name
    straightline.handle._undeploy_all_at_exit()   # what interpreter exit runs
    names = [f["FunctionName"] for f in lambda_client().list_functions()["Functions"]]
    assert name in names and gone_name not in names
    kept.undeploy()                               # explicit: removed, kept or not
    names = [f["FunctionName"] for f in lambda_client().list_functions()["Functions"]]
    assert name not in names


@pytest.mark.aws
def test_an_edit_then_redeploy_runs_the_new_code(aws):
    v1 = define("def scale(x):\n    return x * 10\n", "scale")
    h1 = straightline.deploy(v1, name="scale", target="lambda", keep=True)
    assert h1(2) == 20
    straightline.handle._unregister(h1)   # the kernel restarts; the cell is edited and run again
    aws.clear()
    v2 = define("def scale(x):\n    return x * 100\n", "scale")
    h2 = straightline.deploy(v2, name="scale", target="lambda", keep=True)
    assert h2(2) == 200
    ops = aws.operations()
    assert "UpdateFunctionCode" in ops and "CreateFunction" not in ops
    assert h2.deployed_targets["lambda"].describe()["uploaded"] is True


@pytest.mark.aws
def test_an_unchanged_redeploy_uploads_nothing(aws):
    h1 = straightline.deploy(triple, target="lambda", keep=True)
    assert h1(1)["value"] == 3
    name = h1.deployed_targets["lambda"].function_name
    before = lambda_client().get_function_configuration(FunctionName=name)
    straightline.handle._unregister(h1)   # the kernel restarts: the kept function stays
    aws.clear()
    h2 = straightline.deploy(triple, target="lambda", keep=True)
    ops = aws.operations()
    assert "GetFunction" in ops
    assert not {"CreateFunction", "UpdateFunctionCode", "UpdateFunctionConfiguration"} & set(ops)
    after = lambda_client().get_function_configuration(FunctionName=name)
    assert (after["CodeSha256"], after["LastModified"]) == (before["CodeSha256"], before["LastModified"])
    assert h2.deployed_targets["lambda"].describe()["uploaded"] is False
    assert h2(2)["value"] == 6


@pytest.mark.aws
def test_a_raising_function_reraises_here_with_its_remote_traceback(aws):
    h = straightline.deploy(divide, target="lambda")
    with pytest.raises(ZeroDivisionError) as info:
        h(1, 0)
    text = info.value.remote_traceback
    assert "Traceback on the lambda target" in text
    assert "in divide" in text and "return a / b" in text
    assert h(6, 3) == 2.0   # the user's error did not break the target


@pytest.mark.aws
def test_output_and_exceptions_come_back_from_lambda(aws, capsys):
    from tests.support import checks, user_code
    checks.assert_all(straightline.deploy(user_code.scenario, target="lambda"), "lambda", capsys)


@pytest.mark.aws
def test_a_call_over_the_time_limit_raises_call_timeout(aws):
    h = straightline.deploy(nap, target="lambda", resources=Resources(timeout_s=1))
    config = lambda_client().get_function(FunctionName=h.deployed_targets["lambda"].function_name)
    assert config["Configuration"]["Timeout"] == 1   # Lambda itself ends the call
    with pytest.raises(CallTimeout, match=r"1 s time limit on AWS Lambda"):
        h(5)
    assert h(0) == 0


def _published_layers(proxy) -> int:
    return sum(1 for method, path in proxy.requests
               if method == "POST" and "/layers/" in path and path.split("?")[0].endswith("/versions"))


def _uploaded_zip_names(proxy, operation: str) -> list[list[str]]:
    """The file names in each zip an operation uploaded (CreateFunction, UpdateFunctionCode)."""
    from tests.support.moto_lambda import lambda_operation
    names = []
    for method, path, body in list(proxy.bodies):
        if lambda_operation(method, path) == operation:
            request = json.loads(body)
            data = base64.b64decode(request.get("ZipFile") or request["Code"]["ZipFile"])
            names.append(zipfile.ZipFile(io.BytesIO(data)).namelist())
    return names


@pytest.mark.aws
def test_captured_dependencies_travel_in_a_layer_published_once_per_set(aws):
    h = straightline.deploy(to_ascii_domain, target="lambda")
    encoded, where = h("bücher.example")
    assert encoded == "xn--bcher-kva.example"
    # from the dependencies' layer (Lambda unpacks it in /opt), not the zip or the runtime image
    assert where == "/opt/python/idna/__init__.py"
    target = h.deployed_targets["lambda"]
    assert target.layer_published and len(target.layers) == 1
    assert ":layer:straightline-deps-" in target.layers[0]
    (created,) = _uploaded_zip_names(aws, "CreateFunction")
    assert "straightline_function.pkl" in created and not [n for n in created if n.startswith("idna/")]
    config = lambda_client().get_function(FunctionName=target.function_name)["Configuration"]
    assert [layer["Arn"] for layer in config["Layers"]] == target.layers

    # another function with the same dependency set: the same layer, nothing published
    aws.clear()
    other = straightline.deploy(define("def other(name):\n    import idna\n"
                                       "    return idna.decode(name)\n", "other"), target="lambda")
    assert other("xn--bcher-kva.example") == "bücher.example"
    assert other.deployed_targets["lambda"].layers == target.layers
    assert not other.deployed_targets["lambda"].layer_published and _published_layers(aws) == 0

    # an edit (a restarted kernel, so no warm swap): the new zip holds the payload and the
    # runtime; the dependencies stay in the layer, which is not published again
    h_keep = straightline.deploy(define("def edited(name):\n    import idna\n"
                                        "    return idna.encode(name).decode()\n", "edited"),
                                 name="edited", target="lambda", keep=True)
    assert h_keep("bücher.example") == "xn--bcher-kva.example"
    straightline.handle._unregister(h_keep)
    aws.clear()
    edited = straightline.deploy(define("def edited(name):\n    import idna\n"
                                        "    return idna.encode(name).decode().upper()\n", "edited"),
                                 name="edited", target="lambda", keep=True)
    assert edited("bücher.example") == "XN--BCHER-KVA.EXAMPLE"
    (updated,) = _uploaded_zip_names(aws, "UpdateFunctionCode")
    assert "straightline_function.pkl" in updated and not [n for n in updated if n.startswith("idna/")]
    assert _published_layers(aws) == 0


@pytest.mark.aws
def test_gc_unused_removes_a_layer_no_function_uses_and_keeps_a_used_one(aws, capsys):
    from straightline_sdk import cli
    h = straightline.deploy(to_ascii_domain, target="lambda")
    assert h("bücher.example")[0] == "xn--bcher-kva.example"
    used = h.deployed_targets["lambda"].layers[0]
    stale = lambda_client().publish_layer_version(   # a dependency set no function uses any more
        LayerName="straightline-deps-0123456789abcdef01234567",
        Description="straightline-sdk dependencies 0123456789abcdef" * 2,
        Content={"ZipFile": _zip_of({"python/stale.py": b"x = 1\n"})})["LayerVersionArn"]

    assert cli.main(["ls", "--kind", "lambda"]) == 0
    listing = capsys.readouterr().out
    assert stale in listing and used in listing
    assert cli.main(["gc", "--kind", "lambda", "--unused", "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert stale in planned and used not in planned
    assert cli.main(["gc", "--kind", "lambda", "--unused", "--yes"]) == 0
    capsys.readouterr()
    versions = [v["LayerVersionArn"] for layer in lambda_client().list_layers()["Layers"]
                for v in lambda_client().list_layer_versions(LayerName=layer["LayerName"])["LayerVersions"]]
    assert stale not in versions and used in versions
    assert h("bücher.example")[0] == "xn--bcher-kva.example"


def _zip_of(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_a_wheel_built_for_a_newer_glibc_than_lambdas_is_refused_with_the_reason():
    target = LambdaTarget(_spec(numpy_total, "numpy_total"))
    target._check_glibc(["/cache/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                         "/cache/idna-3.13-py3-none-any.whl"])
    newer = "/cache/numpy-9.0-cp311-cp311-manylinux_2_35_x86_64.whl"
    with pytest.raises(TargetUnavailable, match=r"runtime has glibc 2\.\d+, but numpy-9.0-.* needs "
                                                r"glibc 2\.35") as info:
        target._check_glibc([newer])
    assert "manylinux2014" in str(info.value)


# -- payload limits ---------------------------------------------------------------------------

@pytest.mark.aws
def test_a_pinned_request_over_the_payload_limit_never_reaches_lambda(aws):
    h = straightline.deploy(length, target="lambda")
    assert h(b"small") == 5
    aws.clear()
    big = b"x" * (5 * MB)    # 5 MB; over 6 MB once base64-encoded in the event
    with pytest.raises(PlacementError, match="payload limit"):
        h(big)
    segments, total = encode_request([((big,), {})])
    with pytest.raises(PayloadTooLarge, match="6 MB payload limit"):
        h.deployed_targets["lambda"].invoke(segments, total, None)
    assert invokes(aws) == 0


@pytest.mark.aws
def test_placement_routes_large_requests_away_from_lambda(aws):
    # F = 0: every small request is "frequent, small" and goes to Lambda
    straightline.configure(rate_threshold=0, size_threshold="16MB")
    h = straightline.deploy(length, sample=(b"abc",), rate=5, targets=["lambda", "local"])
    assert h(b"small") == 5
    assert h.placement.target == "lambda"
    big = b"x" * (5 * MB)
    assert h(big) == 5 * MB
    decision = h.placement
    assert decision.target == "local"
    assert any(line.startswith("lambda excluded: request") and "payload limit" in line
               for line in decision.reasons)
    assert h.stats()["lambda"]["calls"] == 1


def test_the_placement_core_excludes_lambda_for_large_requests_and_other_pythons():
    states = {"local": TargetState("local", True),
              "lambda": TargetState("lambda", True, limits=LAMBDA_LIMITS)}
    thresholds = Thresholds(rate=10, size=16 * MB)
    plan = Plan(Features(python=(3, 11)), states)
    assert plan.decide(100, 1000, thresholds).target == "lambda"
    over = plan.decide(100, 5 * MB, thresholds)   # 5 MB x 4/3 (base64) > 6 MB
    assert over.target == "local" and over.excluded[0][0] == "lambda"
    assert "payload limit" in over.excluded[0][1]
    old = Plan(Features(python=(3, 8)), states).decide(100, 1000, thresholds)
    assert old.target == "local" and old.excluded == (("lambda", "Python 3.8 not offered (offers "
                                                      "3.10, 3.11, 3.12, 3.13)"),)


# -- throttling -----------------------------------------------------------------------------

@pytest.mark.aws
def test_throttling_is_retried_with_backoff(aws):
    h = straightline.deploy(triple, target="lambda")
    aws.clear()
    aws.throttle_next = 2   # Lambda's 429 TooManyRequestsException, twice
    assert h(5)["value"] == 15
    assert aws.throttled == 2 and invokes(aws) == 3


@pytest.mark.aws
def test_throttling_that_persists_fails_the_call_without_running_it(aws):
    straightline.configure(options={"lambda": {"max_attempts": 3}})
    h = straightline.deploy(triple, target="lambda")
    aws.clear()
    aws.throttle_next = 100
    with pytest.raises(TargetFailure, match="TooManyRequestsException") as info:
        h(1)
    assert info.value.may_have_run is False
    assert invokes(aws) == 3
    aws.throttle_next = 0
    assert h(2)["value"] == 6   # the target is healthy again once Lambda accepts calls


# -- roles, S3, limits -------------------------------------------------------------------------

def _spec(fn, name: str, **options) -> DeploySpec:
    return DeploySpec(package_function(fn, name), options=options)


@pytest.mark.aws
def test_the_execution_role_comes_from_configuration_or_is_created(aws):
    import boto3
    iam = boto3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    arn = iam.create_role(RoleName="team-lambda", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    configured = LambdaTarget(_spec(triple, "with-role", role="team-lambda"))
    configured.deploy()
    assert lambda_client().get_function_configuration(
        FunctionName=configured.function_name)["Role"] == arn
    created = LambdaTarget(_spec(triple, "default-role"))
    created.deploy()
    role = lambda_client().get_function_configuration(FunctionName=created.function_name)["Role"]
    assert role.endswith(f":role/{DEFAULT_ROLE_NAME}")
    policies = iam.list_attached_role_policies(RoleName=DEFAULT_ROLE_NAME)["AttachedPolicies"]
    assert [p["PolicyName"] for p in policies] == ["AWSLambdaBasicExecutionRole"]
    for target in (configured, created):
        target.teardown()


@pytest.mark.aws
def test_no_usable_role_is_a_clear_error(aws):
    missing = LambdaTarget(_spec(triple, "missing-role", role="no-such-role"))
    with pytest.raises(TargetUnavailable, match="execution role 'no-such-role' cannot be found") as info:
        missing.deploy()
    assert "STRAIGHTLINE_LAMBDA_ROLE" in str(info.value)
    off = LambdaTarget(_spec(triple, "no-role", create_role="false"))
    with pytest.raises(TargetUnavailable, match="no Lambda execution role is configured"):
        off.deploy()
    assert "CreateFunction" not in aws.operations()


@pytest.mark.aws
def test_a_bundle_over_the_direct_upload_limit_goes_through_s3(aws):
    import boto3
    target = LambdaTarget(_spec(triple, "via-s3", direct_upload_limit_mb=0))
    target.deploy()
    bucket = "straightline-sdk-123456789012-us-east-1"   # moto's account id
    ops = aws.operations()
    assert f"PUT /{bucket}" in ops and "CreateFunction" in ops
    segments, total = encode_request([((3,), {})])
    outcomes = wire.decode(target.invoke(segments, total, None).body)
    assert outcomes[0][0] is True and outcomes[0][1]["value"] == 9
    # Lambda keeps its own copy: the upload is removed
    assert boto3.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    target.teardown()


def test_a_bundle_over_250_mb_unzipped_makes_lambda_infeasible(tmp_path):
    wheel = tmp_path / "huge-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("huge/blob.bin", "w", force_zip64=True) as f:
            chunk = bytes(8 * MB)
            for _ in range(32):          # 256 MB of zeros, ~250 KB zipped
                f.write(chunk)
    target = LambdaTarget(_spec(triple, "huge"))
    with pytest.raises(TargetUnavailable, match=r"256 MB unzipped, over Lambda's 250 MB limit"):
        target._bundle([str(wheel)], "key")


# -- the bundle and the handler, without moto ---------------------------------------------------

def _wheel(path, files: dict) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return str(path)


def test_the_bundle_is_deterministic_and_lays_out_wheels_like_pip(tmp_path):
    wheel = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {
        "pkg/__init__.py": "VALUE = 7\n",
        "pkg-1.0.dist-info/METADATA": "Name: pkg\n",
        "pkg-1.0.data/purelib/pkg_extra.py": "X = 1\n",
        "pkg-1.0.data/scripts/pkg-tool": "#!/bin/sh\n",
        "cloudpickle/__init__.py": "raise ImportError('a second cloudpickle')\n",
    })
    package = package_function(triple, "triple")
    first = lambda_zip.build_bundle(lambda_zip.plan_bundle(package, [wheel]), "k")
    second = lambda_zip.build_bundle(lambda_zip.plan_bundle(package, [wheel]), "k")
    assert first.data == second.data and first.sha256 == second.sha256
    with zipfile.ZipFile(io.BytesIO(first.data)) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert all((i.external_attr >> 16) & 0o444 == 0o444 for i in infos)
        assert "straightline_runtime/lambda_handler.py" in names
        assert "straightline_function.pkl" in names
        assert "pkg/__init__.py" in names and "pkg_extra.py" in names
        assert "pkg-1.0.dist-info/METADATA" in names
        assert not any("scripts" in n for n in names)
        assert zf.read("cloudpickle/__init__.py") != b"raise ImportError('a second cloudpickle')\n"
    assert first.unzipped_bytes == sum(i.file_size for i in infos)


def test_the_key_changes_with_the_code_and_the_architecture():
    a = package_function(triple, "f")
    b = package_function(divide, "f")
    key = lambda_zip.bundle_key
    assert key(a, "", python=(3, 11), architecture="x86_64") == \
        key(a, "", python=(3, 11), architecture="x86_64")
    assert len({key(a, "", python=(3, 11), architecture="x86_64"),
                key(b, "", python=(3, 11), architecture="x86_64"),
                key(a, "", python=(3, 11), architecture="arm64"),
                key(a, "deps", python=(3, 11), architecture="x86_64")}) == 4


HANDLER_DRIVER = """
import base64, json, sys
import straightline_runtime.lambda_handler as handler
assert "site-packages" not in (handler.__file__ or "")
event = json.loads(sys.stdin.read())
print(json.dumps([handler.handler(event), handler.handler(event)]))
"""


def test_the_handler_runs_from_the_unpacked_zip_alone(tmp_path):
    """A Python without site-packages runs the handler from the bundle's files only."""
    package = package_function(divide, "divide")
    bundle = lambda_zip.build_bundle(lambda_zip.plan_bundle(package), "k")
    zipfile.ZipFile(io.BytesIO(bundle.data)).extractall(tmp_path)
    request = wire.encode_bytes([((6, 3), {}), ((1, 0), {})])
    event = json.dumps({"frame": base64.b64encode(request).decode()})
    env = {"LAMBDA_TASK_ROOT": str(tmp_path), "AWS_LAMBDA_FUNCTION_NAME": "test",
           "PYTHONPATH": str(tmp_path), "PATH": os.environ.get("PATH", "")}
    out = subprocess.run([sys.executable, "-S", "-c", HANDLER_DRIVER], input=event, env=env,
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second = json.loads(out.stdout)
    assert (first["cold"], second["cold"]) == (True, False)
    (ok, value, _), (failed, info, _) = wire.decode(base64.b64decode(first["frame"]))
    assert ok and value == 2.0
    assert not failed and info["type"] == "ZeroDivisionError"


# -- availability ------------------------------------------------------------------------------

def test_probe_says_what_is_missing(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_DEFAULT_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    need(importlib.util.find_spec("boto3") is not None, "boto3 is not installed (pip install -e '.[aws]')")
    no_region = LambdaTarget.probe({})
    assert not no_region.available and no_region.reason == "no AWS region is configured"
    assert "AWS_REGION" in no_region.hint
    no_credentials = LambdaTarget.probe({"region": REGION})
    assert not no_credentials.available and no_credentials.reason == "no AWS credentials found"
    assert "AWS_ACCESS_KEY_ID" in no_credentials.hint
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE12")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-value")
    ready = LambdaTarget.probe({"region": REGION})
    assert ready.available and ready.limits is LAMBDA_LIMITS
    assert "not-a-real-secret-value" not in repr(ready)
    monkeypatch.setitem(sys.modules, "boto3", None)
    missing = LambdaTarget.probe({"region": REGION})
    assert not missing.available and missing.hint == "pip install 'straightline-sdk[aws]'"


# -- straightline ls / gc ------------------------------------------------------------------------

ORPHAN_SCRIPT = """
import os, sys
import straightline_sdk as straightline
def orphaned(x):
    return x
straightline.deploy(orphaned, name="orphaned", target="lambda")
print("deployed", flush=True)
os.kill(os.getpid(), 9)   # gone without undeploying, as a crashed kernel
"""


@pytest.mark.aws
def test_gc_removes_only_the_sdks_orphaned_functions(aws, capsys):
    import boto3
    lam = lambda_client()
    role = boto3.client("iam").create_role(RoleName="hand", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("h.py", "def handler(event, context):\n    return 1\n")
    for name in ("straightline-handmade", "someone-elses"):
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="h.handler",
                            Code={"ZipFile": code.getvalue()})
    live = straightline.deploy(triple, name="alive", target="lambda")
    kept = straightline.deploy(triple, name="kept", target="lambda", keep=True)
    straightline.handle._unregister(kept)   # as after its process ended: kept, owned by no one
    out = subprocess.run([sys.executable, "-c", ORPHAN_SCRIPT], capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert "deployed" in out.stdout, out.stderr
    items = {item["name"]: item for item in LambdaTarget.inventory({})}
    assert set(items) == {"alive", "kept", "orphaned"}
    assert [name for name, item in items.items() if item["orphan"]] == ["orphaned"]
    assert items["kept"]["keep"] and items["alive"]["owner"].split(":")[1] == str(os.getpid())
    from straightline_sdk import cli
    assert cli.main(["ls", "--kind", "lambda"]) == 0
    listing = capsys.readouterr().out
    assert all(function_name_for(n) in listing for n in items) and "handmade" not in listing
    assert cli.main(["gc", "--kind", "lambda"]) == 0
    assert capsys.readouterr().out.count("removed lambda function") == 1
    remaining = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert remaining == {"straightline-handmade", "someone-elses", function_name_for("alive"),
                         function_name_for("kept")}
    with pytest.raises(TargetUnavailable, match="not created by straightline-sdk"):
        LambdaTarget.remove({"id": "straightline-handmade"}, {})
    assert live(4)["value"] == 12


# -- real AWS: only with real credentials, only when selected (-m real_aws), never in CI ------------

@pytest.mark.real_aws
def test_real_aws_deploy_invoke_undeploy(monkeypatch):
    from tests.conftest import IN_CI
    if IN_CI:
        pytest.skip("real AWS is never used in CI")
    if os.environ.get("AWS_ENDPOINT_URL"):
        pytest.skip("AWS_ENDPOINT_URL is set: this test is for real AWS")
    probe = LambdaTarget.probe({})
    if not probe.available:
        pytest.skip(f"no real AWS credentials: {probe.reason}")
    h = straightline.deploy(triple, name="straightline-real-aws-test", target="lambda")
    try:
        assert h(2)["value"] == 6
    finally:
        h.undeploy()
