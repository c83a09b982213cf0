#!/usr/bin/env python3
"""Smoke check: moto's Lambda runs real invocations in the stand-in runtime image.

Starts `python -m moto.server` on a free port with MOTO_DOCKER_LAMBDA_IMAGE pointing at
straightline-test/lambda-python{major}.{minor}:latest (made by scripts/setup-docker.sh),
creates functions through boto3 and checks that
  * a handler's computed result comes back ({"x": 41} -> {"y": 42}),
  * print output stays out of the result and shows up in the log tail,
  * a raising handler gives FunctionError "Handled" and a Lambda-style error object,
  * the function's Timeout is enforced (Sandbox.Timedout),
  * whether the function's container can reach moto back (required only where it should:
    --host other than loopback, or --network-mode host).
Stops the moto server it started, then removes containers and volumes moto left behind for
this check's code (moto leaks them when it is killed mid-invoke or the image cannot start).
Exit status 0 when all checks pass, 1 when one fails, 2 when the setup is missing.

    python3 scripts/check-moto-lambda.py                  # moto on 127.0.0.1
    python3 scripts/check-moto-lambda.py --host 0.0.0.0   # containers can call moto back
"""

import argparse
import base64
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
DEFAULT_IMAGE = f"straightline-test/lambda-python{PY}:latest"
ROLE_ARN = "arn:aws:iam::123456789012:role/straightline-smoke"

HANDLER_SOURCE = """\
import os
import time
import urllib.request


def handler(event, context):
    return {"y": event["x"] + 1}


def noisy(event, context):
    print("log line from the handler")
    os.write(1, b"written to fd 1 without a newline")
    return {"y": event["x"] + 1, "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis()}


def fail(event, context):
    raise ValueError("deliberate failure")


def sleepy(event, context):
    time.sleep(30)


def callback(event, context):
    urls = {"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
            "loopback": "http://127.0.0.1:" + os.environ["MOTO_PORT"]}
    result = {}
    for name, base in urls.items():
        try:
            with urllib.request.urlopen(base + "/moto-api/", timeout=3) as response:
                result[name] = [base, response.status]
        except Exception as exc:
            result[name] = [base, repr(exc)]
    return result
"""


class CheckFailed(Exception):
    pass


def log(msg):
    print(f"[check-moto-lambda] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_exists(image):
    return (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    )


def make_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        # A fixed timestamp: the same code gives the same zip, digest and moto code volume.
        zf.writestr(zipfile.ZipInfo("handler.py", (2024, 1, 1, 0, 0, 0)), HANDLER_SOURCE)
    return buf.getvalue()


CODE_ZIP = make_zip()
# moto names the Docker volume holding a function's code after the zip's sha256.
CODE_VOLUME = hashlib.sha256(CODE_ZIP).hexdigest()


def remove_leftovers():
    """Remove what moto left for this check's code: containers mounting its code volume,
    their other (anonymous layer) volumes, and the code volume itself."""
    import docker

    client = docker.from_env()
    volumes = {CODE_VOLUME}
    removed = 0
    for container in client.containers.list(all=True, filters={"volume": CODE_VOLUME}):
        volumes.update(m["Name"] for m in container.attrs.get("Mounts", []) if m.get("Name"))
        container.remove(force=True)
        removed += 1
    gone = 0
    for name in volumes:
        try:
            client.volumes.get(name).remove()
            gone += 1
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log(f"warning: could not remove volume {name}: {exc}")
    if removed or gone:
        log(f"removed {removed} leftover container(s) and {gone} volume(s) moto left behind")


def wait_for_server(url, proc, timeout=30):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(f"moto server exited with {proc.returncode}")
        try:
            with opener.open(url + "/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise CheckFailed(f"moto server did not answer within {timeout}s")


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def invoke(client, name, event):
    t0 = time.perf_counter()
    resp = client.invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail")
    elapsed = time.perf_counter() - t0
    raw = resp["Payload"].read()
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = raw.decode("utf-8", "replace")
    logs = base64.b64decode(resp.get("LogResult", "")).decode("utf-8", "replace")
    return payload, resp.get("FunctionError"), logs, elapsed


def expect(cond, what, detail=""):
    if not cond:
        raise CheckFailed(f"{what}: {detail}")


def run_checks(endpoint, args):
    import boto3
    from botocore.config import Config

    kw = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )
    lam = boto3.client("lambda", **kw)
    iam = boto3.client("iam", **kw)

    # moto refuses CreateFunction unless the role exists in its IAM.
    iam.create_role(
        RoleName=ROLE_ARN.rsplit("/", 1)[1],
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    code = CODE_ZIP
    functions = {"handler": 3, "noisy": 10, "fail": 3, "sleepy": 1, "callback": 15}
    t0 = time.perf_counter()
    for handler, timeout in functions.items():
        lam.create_function(
            FunctionName=f"smoke-{handler}",
            Runtime=f"python{PY}",
            Role=ROLE_ARN,
            Handler=f"handler.{handler}",
            Code={"ZipFile": code},
            Timeout=timeout,
        )
    log(f"created {len(functions)} functions ({time.perf_counter() - t0:.2f}s)")

    payload, error, _, dt = invoke(lam, "smoke-handler", {"x": 41})
    expect(error is None and payload == {"y": 42}, "result", f"{error} {payload!r}")
    log(f"ok: handler({{'x': 41}}) -> {payload} (first invoke {dt:.2f}s)")
    payload, error, _, dt = invoke(lam, "smoke-handler", {"x": 1})
    expect(error is None and payload == {"y": 2}, "second result", f"{error} {payload!r}")
    log(f"ok: second invoke -> {payload} ({dt:.2f}s)")

    payload, error, logs, dt = invoke(lam, "smoke-noisy", {"x": 41})
    expect(
        error is None and isinstance(payload, dict) and payload.get("y") == 42,
        "noisy result",
        f"{error} {payload!r}",
    )
    expect(
        payload["function_name"] == "smoke-noisy"
        and payload["memory_limit_in_mb"] == "128"
        and 0 < payload["remaining_ms"] <= 10_000,
        "context",
        repr(payload),
    )
    expect("log line from the handler" in logs, "log tail", repr(logs))
    log(f"ok: handler output kept out of the result, context {payload} ({dt:.2f}s)")

    payload, error, _, dt = invoke(lam, "smoke-fail", {})
    expect(error == "Handled", "FunctionError", f"{error} {payload!r}")
    expect(
        isinstance(payload, dict)
        and payload.get("errorType") == "ValueError"
        and payload.get("errorMessage") == "deliberate failure"
        and payload.get("stackTrace"),
        "error object",
        repr(payload),
    )
    log(
        f"ok: raising handler -> FunctionError={error}, {payload['errorType']}: "
        f"{payload['errorMessage']} ({dt:.2f}s)"
    )

    payload, error, _, dt = invoke(lam, "smoke-sleepy", {})
    expect(
        error == "Handled"
        and isinstance(payload, dict)
        and payload.get("errorType") == "Sandbox.Timedout",
        "timeout",
        repr(payload),
    )
    expect(dt < 10, "timeout enforced", f"took {dt:.2f}s")
    log(f"ok: Timeout=1 enforced -> {payload['errorType']} ({dt:.2f}s)")

    payload, error, _, dt = invoke(lam, "smoke-callback", {})
    expect(error is None and isinstance(payload, dict), "callback", f"{error} {payload!r}")
    reach = {name: status == 200 for name, (_, status) in payload.items()}
    summary = ", ".join(
        f"{name} {base}: {'reachable' if status == 200 else status}"
        for name, (base, status) in payload.items()
    )
    if args.network_mode == "host":
        must = "loopback"
    elif args.host not in ("127.0.0.1", "localhost", "::1"):
        must = "AWS_ENDPOINT_URL"
    else:
        must = None
    if must:
        expect(reach[must], f"container -> moto via {must}", summary)
        log(f"ok: container reaches moto ({summary}) ({dt:.2f}s)")
    else:
        log(
            f"info: container -> moto: {summary} (moto is bound to {args.host}; "
            f"bind 0.0.0.0 for Lambda code to call moto) ({dt:.2f}s)"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--image", default=os.environ.get("MOTO_DOCKER_LAMBDA_IMAGE", DEFAULT_IMAGE)
    )
    parser.add_argument("--host", default="127.0.0.1", help="address moto_server binds")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--network-mode",
        default=os.environ.get("MOTO_DOCKER_NETWORK_MODE"),
        help="MOTO_DOCKER_NETWORK_MODE for the function containers (e.g. host)",
    )
    args = parser.parse_args()

    for image in (args.image, "busybox:latest"):
        if not image_exists(image):
            log(f"missing image {image}: run scripts/setup-docker.sh first")
            return 2
    # Only what this check sets: no AWS profile, no proxy for the local endpoint.
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(var, None)
    no_proxy = "127.0.0.1,localhost"
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = no_proxy

    port = args.port or free_port()
    env = dict(
        os.environ,
        MOTO_DOCKER_LAMBDA_IMAGE=args.image,
        # moto_server does not set MOTO_PORT from -p; the containers' AWS_ENDPOINT_URL
        # is built from it (default 5000).
        MOTO_PORT=str(port),
    )
    if args.network_mode:
        env["MOTO_DOCKER_NETWORK_MODE"] = args.network_mode
    endpoint = (
        f"http://127.0.0.1:{port}"
        if args.host in ("0.0.0.0", "::")
        else f"http://{args.host}:{port}"
    )

    # SIGTERM/SIGINT should still stop the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.NamedTemporaryFile("w+", prefix="moto-server-", suffix=".log") as server_log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", args.host, "-p", str(port)],
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_server(endpoint, proc)
            log(
                f"moto server up at {endpoint} (pid {proc.pid}, {time.perf_counter() - t0:.2f}s), "
                f"image {args.image}"
            )
            run_checks(endpoint, args)
        except Exception as exc:  # noqa: BLE001 - any failure: report with the server's log
            log(f"FAILED: {exc if isinstance(exc, CheckFailed) else repr(exc)}")
            server_log.seek(0)
            tail = server_log.read().splitlines()[-20:]
            print("\n".join("    moto: " + line for line in tail), file=sys.stderr)
            return 1
        finally:
            stop(proc)
            log(f"moto server stopped (exit {proc.returncode})")
            remove_leftovers()
    log(f"all checks passed ({time.perf_counter() - t0:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
