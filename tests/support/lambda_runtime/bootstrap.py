"""Stand-in AWS Lambda Python runtime that moto 5 runs each invocation in (tests only).

moto's side of the contract (moto 5.2 awslambda/models.py, LambdaFunction._invoke_lambda):
  * `docker run IMAGE HANDLER EVENT_JSON`, the function's zip in /var/task, layers in /opt,
    environment _HANDLER, AWS_LAMBDA_FUNCTION_{NAME,TIMEOUT,MEMORY_SIZE,VERSION}, AWS_REGION,
    AWS_ENDPOINT_URL (moto itself), memory limit = MemorySize MB;
  * it reads the container's stderr, then its stdout, and returns the LAST line as the
    payload; an exit code other than 0 makes it a FunctionError ("Handled").

Here the handler runs in a forked child whose output (print, logging, even fd 1) goes to
stderr; the child hands its result to this parent process, which writes exactly one line
to stdout: the JSON-encoded return value (exit 0), or an error object shaped like real
Lambda's ({"errorMessage", "errorType", "requestId", "stackTrace"}, exit 1). The parent also
enforces the function's Timeout (Sandbox.Timedout; moto does not) and reports a child killed
by the memory limit as Runtime.ExitError ("signal: killed"), as Lambda does.
Standard library only.
"""

import datetime
import importlib
import json
import os
import select
import signal
import sys
import time
import traceback
import uuid

TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
HEADER = 9  # child -> parent: 1 byte exit code, 8 bytes payload length, payload


class LambdaContext:
    """The attributes and method of the real runtime's context object that code uses."""

    def __init__(self, request_id, deadline):
        env = os.environ
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        # A str, as in the real runtime.
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        region = env.get("AWS_REGION", "us-east-1")
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}"
        )
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[{self.function_version}]{request_id}"
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaRuntimeError(Exception):
    """An error of the runtime itself (bad handler, import failure, unencodable result)."""

    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type


def load_handler(name):
    module_name, _, func_name = name.rpartition(".")
    if not module_name or not func_name:
        raise LambdaRuntimeError("Runtime.MalformedHandlerName", f"Bad handler '{name}'")
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - reported to the caller like real Lambda
        raise LambdaRuntimeError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    try:
        return getattr(module, func_name)
    except AttributeError:
        raise LambdaRuntimeError(
            "Runtime.HandlerNotFound",
            f"Handler '{func_name}' missing on module '{module_name}'",
        ) from None


def run_handler(handler_name, raw_event, request_id, deadline):
    """Call the handler; return (payload JSON, exit code). Runs in the child."""
    # Import order as in Lambda: the code, then the layers.
    layer_site = f"/opt/python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    for path in ("/opt/python", layer_site, TASK_ROOT):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        event = json.loads(raw_event)
        # moto turns an invoke without a payload into the JSON string "{}"; Lambda gives {}.
        if event == "{}":
            event = {}
        handler = load_handler(handler_name)
        result = handler(event, LambdaContext(request_id, deadline))
        try:
            return json.dumps(result), 0
        except (TypeError, ValueError) as exc:
            raise LambdaRuntimeError(
                "Runtime.MarshalError", f"Unable to marshal response: {exc}"
            ) from exc
    except BaseException as exc:  # noqa: BLE001 - every failure becomes an error object
        if isinstance(exc, LambdaRuntimeError):
            error_type, frames = exc.error_type, []
        else:
            error_type = type(exc).__name__
            frames = traceback.extract_tb(exc.__traceback__)[1:]  # drop this frame
        sys.stderr.write(f"[ERROR] {error_type}: {exc}\n")
        sys.stderr.write("".join(traceback.format_exception(exc)))
        error = {
            "errorMessage": str(exc),
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": traceback.format_list(frames),
        }
        return json.dumps(error), 1


def child(write_fd, handler_name, raw_event, request_id, deadline):
    os.dup2(2, 1)  # the handler's stdout is log output
    payload, code = run_handler(handler_name, raw_event, request_id, deadline)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - the handler may have replaced or closed it
            pass
    data = payload.encode("utf-8")
    view = memoryview(bytes([code]) + len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(write_fd, view) :]
    os._exit(code)


def collect(read_fd, deadline):
    """Read the child's framed result; None when it is incomplete or the deadline passed."""
    buf = bytearray()
    while len(buf) < HEADER or len(buf) < HEADER + int.from_bytes(buf[1:HEADER], "big"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([read_fd], [], [], remaining)[0]:
            return None, True
        data = os.read(read_fd, 1 << 20)
        if not data:
            return None, False
        buf += data
    return (buf[0], buf[HEADER:].decode("utf-8")), False


def main(argv):
    start = time.monotonic()
    request_id = str(uuid.uuid4())
    handler_name = argv[1] if len(argv) > 1 else os.environ.get("_HANDLER", "")
    raw_event = argv[2] if len(argv) > 2 else "{}"
    timeout = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT") or 3)
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    deadline = start + timeout

    sys.stderr.write(
        f"START RequestId: {request_id} Version: "
        f"{os.environ.get('AWS_LAMBDA_FUNCTION_VERSION', '$LATEST')}\n"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        child(write_fd, handler_name, raw_event, request_id, deadline)
    os.close(write_fd)

    result, timed_out = collect(read_fd, deadline)
    if result is None:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if result is not None:
        code, payload = result
    elif timed_out:
        code = 1
        message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        sys.stderr.write(f"{stamp} {message}\n")
        payload = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message})
    else:
        code = 1
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name = "killed" if sig == signal.SIGKILL else signal.Signals(sig).name
            how = f"signal: {name}"
        else:
            how = f"exit status {os.waitstatus_to_exitcode(status)}"
        message = f"RequestId: {request_id} Error: Runtime exited with error: {how}"
        sys.stderr.write(f"{message}\n")
        payload = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message})

    sys.stderr.write(f"END RequestId: {request_id}\n")
    sys.stderr.write(
        f"REPORT RequestId: {request_id}\tDuration: {(time.monotonic() - start) * 1000:.2f} ms"
        f"\tMemory Size: {memory} MB\n"
    )
    sys.stderr.flush()
    sys.stdout.write(payload + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
