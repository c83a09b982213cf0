"""The Docker target: the function in a container, on the local engine or on one
reached through DOCKER_HOST (tcp:// or ssh://), via the docker SDK.

deploy: capture the dependencies, build (or find) the content-hashed image of
that dependency set (packaging/docker_context.py; images carry no function),
then adopt a healthy running container of the same content and settings, or
create one, copy the function's payload into it, and start it: detached,
``init=True`` (Python as PID 1 ignores SIGTERM), the worker's port published
on 127.0.0.1 only (a remote engine: see ``publish_host``/``connect_host``
below), the token in its environment, ``straightline.*`` labels, limits from
``Resources``. An edited function goes to the running worker (POST /function)
and into the container's file (a restart runs it); a cold deploy of it builds
nothing when its dependency set's image exists.

A container outlives the process that started it only with ``keep=True`` or
when that process died without running its exit hooks. A later process finds it
by its labels. It needs the token to talk to it; labels are readable by anyone
who can reach the engine, so the token is not derived from anything in them:
it is kept in ``~/.cache/straightline/docker/workers/<container id>.json``
(0600, folder 0700), which also records the process now using the container.

Options: docker/options.py (``DockerOptions``: names, types, defaults).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import signal
import site
import sys
import threading
import time

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from ...errors import PackagingError, TargetFailure, TargetUnavailable
from ...local_state import owner_alive, owner_tag, write_private
from ...packaging import content_hash, docker_context
from ...packaging.dependencies import capture, download_wheels
from ...placement import MB, Limits
from ...runtime import wire
from ..base import Probe
from ..http import (WorkerClient, WorkerTarget, open_stream, pool_client, send_function,
                    worker_health)
from ..local import worker_pool_size
from . import inventory
from .engine import (_LOCAL_HOSTS, INSTALL_HINT, KIND, capacity as _capacity,
                     client as _client, docker_sdk as _docker_sdk, engine_address,
                     engine_info as _engine_info, gpu_runtime as _gpu_runtime,
                     platform_of as _platform, remote_host, sdk_version as _sdk_version,
                     short as _short)
from .options import DockerOptions
from .records import (LABEL_CONFIG, LABEL_DEPS, LABEL_HASH, LABEL_KEEP, LABEL_NAME, LABEL_OWNER,
                      LABEL_ROLE, LABEL_SDK, deployment_path as _deployment_path,
                      note_used as _note_used,
                      forget_record as _forget_record, owners as _owners, read_json as _read_json,
                      read_record as _read_record, write_record as _write_record)

log = logging.getLogger("straightline")
def network_exposure(options: DockerOptions) -> str | None:
    """Why calls to the worker would cross a network in plain HTTP, or None when
    they stay on this machine (loopback, or a local engine's bridge)."""
    remote = remote_host(options)
    bind = options.publish_host or ("0.0.0.0" if remote else "127.0.0.1")
    if remote:
        return f"the engine is on {remote}: calls travel the network to its published port"
    if bind not in _LOCAL_HOSTS and not bind.startswith("127."):
        return f"publish_host={bind} makes the worker's port reachable from the network"
    connect = options.connect_host
    if connect and connect not in _LOCAL_HOSTS and not connect.startswith("127."):
        return f"connect_host={connect}: calls travel the network"
    return None


INSECURE_NOTE = ("plain HTTP over the network (insecure=True): the key is never sent and every "
                 "message is signed, but arguments and results can be read on the way")



def _exit_reason(state: dict) -> str:
    if state.get("OOMKilled"):
        return "OOMKilled: it ran out of its memory limit"
    code = state.get("ExitCode")
    text = f"exit code {code}"
    if isinstance(code, int) and code > 128:
        try:
            text += f", killed by {signal.Signals(code - 128).name}"
        except ValueError:
            pass
    if state.get("Error"):
        text += f", {state['Error']}"
    return text


FROZEN_AFTER_S = 0.5   # a container paused this long fails the call waiting on it



class DockerTarget(WorkerTarget):
    kind = KIND

    def __init__(self, spec, progress=None):
        super().__init__(spec, progress)
        self.options = DockerOptions.parse(spec.options)
        self.concurrency = self.options.concurrency or 4
        self.processes, self.threads, self.pool_note = 1, self.concurrency, ""
        self.docker = None
        self._container = None          # the docker SDK's object, looked up when first needed
        self._container_id: str | None = None
        self._recorded_key = ""         # this deployment's record (see _adopt_recorded)
        self.client: WorkerClient | None = None
        self.image_tag = ""             # the dependencies image the container runs
        self.image_hash = ""            # the function's content hash on it (the container's label)
        self.adopted = False            # reused a running container rather than starting one
        self.built: list[str] = []      # tags this deploy built (empty: everything was cached)
        self.build_steps: list[tuple[str, bool]] = []   # (step, from the cache) of those builds
        self._last_log = ""
        self._stop_reason: tuple[str, str] | None = None   # (message, hint) once seen stopped
        self._restart_lock = threading.Lock()
        self._paused_since: float | None = None
        self._lease_stop: threading.Event | None = None
        self._swapped = False           # runs an edited payload sent after start, not its image's
        self._swap_deps = ""            # the dependency set the running image was made for
        self._payload_lock = threading.Lock()   # one copy into the container at a time

    @property
    def container(self):
        """The container (docker SDK object). A deploy that adopted it from its
        record knows only its id: the SDK is imported and asked on first use."""
        if self._container is None and self._container_id is not None:
            docker = _docker_sdk()
            try:
                self._container = _client(self.options).containers.get(self._container_id)
            except docker.errors.NotFound:
                self._stop_reason = (f"the container {self._container_id[:12]} for "
                                     f"{self.spec.name!r} was removed",
                                     "redeploy, or let the router fail over")
                self._container_id = None
            except Exception:   # the engine does not answer: nothing to look at now
                return None
        return self._container

    @container.setter
    def container(self, value) -> None:
        self._container = value
        self._container_id = value.id if value is not None else None

    # -- availability ----------------------------------------------------------

    @classmethod
    def probe(cls, options) -> Probe:
        options = DockerOptions.parse(options)
        if importlib.util.find_spec("docker") is None:
            return Probe(False, "the docker Python SDK is not installed", hint=INSTALL_HINT)
        try:
            info = _engine_info(options)
        except TargetUnavailable as exc:
            reason, _, hint = str(exc).partition("\n  What to do: ")
            return Probe(False, reason, hint=hint)
        except Exception as exc:
            return Probe(False, f"the Docker engine at {engine_address(options)} did not answer "
                                f"`docker info`: {_short(exc)}")
        capacity = _capacity(info, options)
        exposure = network_exposure(options)
        if exposure and not options.insecure:
            return Probe(False, f"{exposure}, in plain HTTP (arguments and results readable)",
                         hint="keep the port on 127.0.0.1 and tunnel (ssh -L), or accept it with "
                              "configure(options={'docker': {'insecure': True}})")
        return Probe(True, limits=Limits(
            notes=(INSECURE_NOTE,) if exposure else (),
            max_memory_mb=capacity["memory_mb"], cpus=capacity["cpus"], gpus=capacity["gpus"],
            pythons=frozenset({sys.version_info[:2]}),
            sources=(f"docker info of the engine at {engine_address(options)}: MemTotal, NCPU, "
                     f"Runtimes (GPUs: the gpus option, else 1 with an nvidia runtime)",),
        ), capacity=capacity)

    # -- deploy ----------------------------------------------------------------

    def _step(self, text: str) -> None:
        if self.progress is not None:
            self.progress.step(text)

    def deploy(self) -> None:
        self._deploy()
        if not self.spec.keep:
            self._start_lease()

    def _prune_records(self) -> None:
        """This deployment's record names a container this engine no longer has
        (removed outside the SDK, or ended by its lease): drop the record and the
        container's token. (Records are per engine: others' are left alone.)"""
        path = _deployment_path(self._recorded_key)
        entry = _read_json(path)
        if not entry or not entry.get("container"):
            return
        try:
            self.docker.containers.get(entry["container"])
            return
        except _docker_sdk().errors.NotFound:
            pass
        except Exception:
            return
        _forget_record(entry["container"])
        try:
            os.unlink(path)
        except OSError:
            pass

    def _start_lease(self) -> None:
        """Renew the container's lease while this process lives (a deployment that
        is not kept): if the process is killed, the container exits on its own
        within the lease (option lease_s, 30 s) instead of running on; renewed
        every sixth of it."""
        stop = self._lease_stop = threading.Event()

        def renew():
            while not stop.wait(self.options.lease_s / 6):
                client = self.client
                if client is not None:
                    try:
                        client.get("/health", timeout=5.0)
                    except Exception:
                        pass   # a failing container is the router's business, on the next call

        threading.Thread(target=renew, name=f"lease-{self.spec.name}", daemon=True).start()

    def _deploy(self) -> None:
        self._recorded_key = self._record_key()
        if self._adopt_recorded():
            return
        self.docker = _client(self.options)
        self._prune_records()
        info = self.docker.info()
        platform = _platform(info)
        resources = self.spec.resources
        if resources.gpus and not _gpu_runtime(info):
            raise TargetUnavailable(
                f"{self.spec.name!r} needs {resources.gpus} GPU(s) but the Docker engine at "
                f"{engine_address(self.options)} has no GPU runtime (nvidia)", target=KIND,
                hint="install the NVIDIA Container Toolkit on the engine's host, or drop Resources(gpus=)")
        cpus = resources.cpus or float(info.get("NCPU") or 2)
        # the container's pool (docs/concepts.md, "Capacity"): its CPU limit, and its
        # memory limit (else the engine's) for the profile's peak per process
        memory = resources.memory_mb or (int(info.get("MemTotal", 0)) // MB or None)
        self.processes, self.threads, self.pool_note = worker_pool_size(
            self.options, self.spec.profile, cpus, memory)
        # the older `concurrency` option is a number of calls at once: held to exactly
        self.concurrency = min(self.processes * self.threads, self.options.concurrency or 1 << 30)

        base = self.options.base_image or docker_context.default_base_image()
        base_id = self._base_image_id(base)
        try:
            deps = capture(None, self.spec.package, self.spec.requirements, platform=platform)
        except PackagingError as exc:
            raise TargetUnavailable(str(exc), target=KIND) from exc
        deps_hash = docker_context.dependencies_hash(deps, base_id, platform)
        deps_tag = docker_context.dependencies_tag(deps, base_id, platform)
        self.image_hash = docker_context.function_hash(self.spec.package, deps_hash)
        self.image_tag = deps_tag
        bind, connect = self._addresses()
        config = content_hash(self.image_hash, self.spec.name, repr(resources),
                              f"{self.processes}x{self.threads}",
                              bind, repr(self.spec.keep), self.spec.environment_fingerprint())
        if self._adopt(config, connect):
            self._remember()
            return

        labels = {LABEL_NAME: self.spec.name, LABEL_OWNER: owner_tag(), LABEL_SDK: _sdk_version()}
        # one image per dependency set: an edited function (a new process, a
        # deployment ended) finds it and builds nothing
        if not self._image_current(deps_tag, deps_hash):
            try:
                wheels = download_wheels(deps, platform, python=sys.version_info[:2],
                                         progress=self.progress)
            except PackagingError as exc:
                raise TargetUnavailable(str(exc), target=KIND) from exc
            self._build(docker_context.dependencies_context(
                deps, wheels, base_image=base, base_image_id=base_id, platform=platform,
                labels={**labels, LABEL_ROLE: "dependencies"}))
        self._start(config, deps_hash, bind, connect)
        self._remember()

    def _addresses(self) -> tuple[str, str]:
        remote = remote_host(self.options)
        bind = self.options.publish_host or ("0.0.0.0" if remote else "127.0.0.1")
        connect = self.options.connect_host or remote or "127.0.0.1"
        return bind, connect

    def _base_image_id(self, base: str) -> str:
        docker = _docker_sdk()
        try:
            return self.docker.images.get(base).id
        except docker.errors.ImageNotFound:
            pass
        self._step(f"pulling the base image {base}")
        try:
            return self.docker.images.pull(base).id
        except Exception as exc:
            raise TargetUnavailable(
                f"the base image {base} is not on the Docker engine at "
                f"{engine_address(self.options)} and cannot be pulled ({_short(exc)})", target=KIND,
                hint=f"pull or load it there (`docker pull {base}`; on these machines "
                     f"`bash scripts/setup-docker.sh` builds it), or choose another with "
                     f"configure(options={{'docker': {{'base_image': ...}}}}) or "
                     f"STRAIGHTLINE_DOCKER_BASE_IMAGE; its Python must be "
                     f"{sys.version_info[0]}.{sys.version_info[1]}") from None

    def _image_current(self, tag: str, digest: str) -> bool:
        try:
            image = self.docker.images.get(tag)
        except _docker_sdk().errors.ImageNotFound:
            return False
        return image.labels.get(LABEL_HASH) == digest

    def _build(self, context: docker_context.BuildContext) -> None:
        """Build one image, a progress line per Dockerfile step; a failed build
        raises with the failing step and its output."""
        self._step(f"building {context.tag}")
        step, output = "", []
        try:
            stream = self.docker.api.build(
                fileobj=context.tar(), custom_context=True, tag=context.tag, labels=context.labels,
                rm=True, forcerm=True, pull=False, decode=True)
            for chunk in stream:
                if "error" in chunk:
                    detail = "\n".join(output[-30:])
                    raise TargetUnavailable(
                        f"building the image {context.tag} failed at {step or 'the start'}:\n"
                        f"{detail}\n{chunk['error'].strip()}", target=KIND,
                        hint="fix what the step's output says (a missing wheel: add it with "
                             "requirements=[...]); the base image must have python3 with pip")
                for line in chunk.get("stream", "").splitlines():
                    if line.startswith("Step "):
                        step, output = line, []
                        self.build_steps.append((line, False))
                        self._step(line)
                    elif line.strip():
                        output.append(line)
                        if "Using cache" in line and self.build_steps:
                            self.build_steps[-1] = (self.build_steps[-1][0], True)
        except TargetUnavailable:
            raise
        except Exception as exc:
            raise TargetUnavailable(f"building the image {context.tag} failed at "
                                    f"{step or 'the start'}: {_short(exc)}", target=KIND) from exc
        self.built.append(context.tag)

    def _container_name(self) -> str:
        slug = docker_context.image_name(self.spec.name).split("/", 1)[1]
        return f"straightline-{slug}-{self.image_hash[:12]}-{secrets.token_hex(3)}"

    def _start(self, config: str, deps_hash: str, bind: str, connect: str) -> None:
        resources = self.spec.resources
        labels = {LABEL_ROLE: "worker", LABEL_NAME: self.spec.name, LABEL_HASH: self.image_hash,
                  LABEL_DEPS: deps_hash, LABEL_CONFIG: config, LABEL_OWNER: owner_tag(),
                  LABEL_KEEP: "true" if self.spec.keep else "false", LABEL_SDK: _sdk_version()}
        limits: dict = {}
        if resources.memory_mb:
            # the same swap limit: a container over its memory is OOM-killed, not swapped
            limits["mem_limit"] = limits["memswap_limit"] = f"{int(resources.memory_mb)}m"
        if resources.cpus:
            limits["nano_cpus"] = int(resources.cpus * 1e9)
        if resources.gpus:
            docker = _docker_sdk()
            limits["device_requests"] = [docker.types.DeviceRequest(
                count=int(resources.gpus), capabilities=[["gpu"]])]
        self._step(f"starting a container of {self.image_tag}")
        try:
            self.container = self.docker.containers.create(
                self.image_tag, init=True, name=self._container_name(),
                # env and secrets: the container's configuration, never an image layer or label
                environment={**self.spec.environment(),
                             wire.TOKEN_ENV: self.spec.token, wire.NAME_ENV: self.spec.name,
                             wire.PROCESSES_ENV: str(self.processes),
                             wire.THREADS_ENV: str(self.threads),
                             **({} if self.spec.keep else {wire.LEASE_ENV: str(self.options.lease_s)})},
                # process i of the pool listens on WORKER_PORT + i; every one is published
                ports={f"{docker_context.WORKER_PORT + i}/tcp": (bind,) for i in range(self.processes)},
                labels=labels, **limits)
        except Exception as exc:
            raise TargetUnavailable(f"the Docker engine could not start a container of "
                                    f"{self.image_tag}: {_short(exc)}", target=KIND) from exc
        _write_record(self.container.id, self.spec.token)
        try:
            # the function goes in before the start, into the container's own
            # filesystem: the worker loads it, and a restart loads it again
            try:
                self.container.put_archive(docker_context.APP_DIR,
                                           docker_context.payload_archive(self.spec.package))
                self.container.start()
            except Exception as exc:
                raise TargetUnavailable(f"the Docker engine could not start a container of "
                                        f"{self.image_tag}: {_short(exc)}", target=KIND) from exc
            self.client = WorkerClient(connect, self._published_ports()[0], self.spec.token, target=KIND)
            self._wait_ready(self.options.start_timeout_s)
            self.client.close()
            self.client = self._worker_client(connect, self.spec.token)
        except BaseException:
            self.teardown()
            raise

    def _worker_client(self, connect: str, token: str):
        """The client for the container's worker pool (one port per process). On
        Linux with a local engine the container's bridge address is tried first:
        Docker's userland port proxy costs ~0.1-0.15 ms per call, the bridge
        nothing. The published ports are the fallback (Docker Desktop's VM hides
        bridge addresses)."""
        ports = self._published_ports()
        published = pool_client(connect, ports, token, target=KIND)
        address = (self.container.attrs["NetworkSettings"].get("IPAddress") or "") \
            if self.options.direct else ""
        if not address or remote_host(self.options) or not sys.platform.startswith("linux"):
            return published
        bridge = pool_client(address, [docker_context.WORKER_PORT + i for i in range(len(ports))],
                             token, target=KIND)
        try:
            reachable = bridge.get(wire.HEALTH_PATH, timeout=0.5, authorize=False).status == 401
        except Exception:   # unreachable, or not listening yet: the published port works anyway
            reachable = False
        if reachable:
            published.close()
            return bridge
        bridge.close()
        return published

    def _published_ports(self) -> list[int]:
        """The host ports of the pool's processes, in process order."""
        self.container.reload()
        published = self.container.attrs["NetworkSettings"]["Ports"] or {}
        ports = []
        for i in range(len(published)):
            bindings = published.get(f"{docker_context.WORKER_PORT + i}/tcp") or []
            if not bindings:
                break
            ports.append(int(bindings[0]["HostPort"]))
        if not ports:
            state = self.container.attrs.get("State", {})
            raise TargetUnavailable(
                f"the container for {self.spec.name!r} has no published port "
                f"({state.get('Status')}, {_exit_reason(state)}). Its last output:\n{self.logs(20)}",
                target=KIND)
        return ports

    def _wait_ready(self, timeout_s: float) -> None:
        @retry(stop=stop_after_delay(timeout_s), wait=wait_exponential(0.02, max=0.5),
               retry=retry_if_exception_type(TargetFailure), reraise=True)
        def ready():
            failure = self._stopped(wait_s=0)
            if failure is not None:
                raise TargetUnavailable(str(failure), target=KIND)
            response = self.client.get(wire.HEALTH_PATH, timeout=5.0)
            if response.status != 200:
                raise TargetUnavailable(f"the worker refused its own token (HTTP {response.status})",
                                        target=KIND)
            return response.json()

        try:
            health = ready()
        except TargetFailure as exc:
            raise TargetUnavailable(
                f"the container for {self.spec.name!r} did not answer within {timeout_s:.0f} s: "
                f"{exc}. Its last output:\n{self.logs(20)}", target=KIND,
                hint="raise start_timeout_s, or check the engine's host (`docker ps`)") from None
        python = str(health.get("python", ""))
        if python and tuple(int(p) for p in python.split(".")[:2]) != sys.version_info[:2]:
            raise TargetUnavailable(
                f"the image's Python is {python}, this one is {sys.version.split()[0]}: cloudpickled "
                f"functions need the same major.minor", target=KIND,
                hint=f"use a base image with Python {sys.version_info[0]}.{sys.version_info[1]}, "
                     f"e.g. {docker_context.default_base_image()}")

    def _record_key(self) -> str:
        """What an unchanged redeploy has in common with the deploy that started the
        container: the function's content, everything the deployment was given, the
        engine, this Python, and the installed packages (a package installed or
        removed changes the site-packages folders' modification times)."""
        spec = self.spec
        folders = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if os.path.isdir(p)]
        return content_hash(
            spec.package.content_hash, repr(sorted(spec.package.module_names)), spec.name,
            repr(sorted(spec.requirements)), repr(spec.resources), repr(spec.keep),
            json.dumps(self.options.given(), sort_keys=True, default=str), engine_address(self.options),
            sys.version, repr([(p, os.stat(p).st_mtime_ns) for p in folders]),
            spec.environment_fingerprint())

    def _remember(self) -> None:
        _note_used(self.container.attrs.get("Image", "") if self._container is not None else "",
                   self.image_tag)
        entry = {"container": self._container_id, "host": self.client.host, "port": self.client.port,
                 "ports": getattr(self.client, "ports", [self.client.port]),
                 "image": self.image_tag, "hash": self.image_hash, "started_by": owner_tag()}
        write_private(_deployment_path(self._recorded_key), json.dumps(entry).encode())

    def _adopt_recorded(self) -> bool:
        """The shortcut for an unchanged redeploy (a re-run cell, a restarted kernel):
        the container this deployment's record names still answers, with its
        token, as this function. No engine call and no docker SDK: that costs
        milliseconds, where the full path (SDK, `docker info`, dependency
        capture, image lookups) costs ~0.3 s. Anything off means the full path."""
        entry = _read_json(_deployment_path(self._recorded_key))
        record = _read_record(entry.get("container", "")) if entry else None
        if not record or not record.get("token"):
            return False
        me = owner_tag()
        users = [o for o in (entry.get("started_by"), record.get("owner")) if o]
        if any(o != me and owner_alive(o) is not False for o in users):
            return False   # another live process uses it
        client = pool_client(entry["host"], [int(p) for p in entry.get("ports") or [entry["port"]]],
                             record["token"], target=KIND)
        try:
            response = client.get(wire.HEALTH_PATH, timeout=1.0)
            health = response.json() if response.status == 200 else {}
        except (TargetFailure, ValueError):
            health = {}
        if health.get("function") != self.spec.name:
            client.close()
            return False
        self._container_id = entry["container"]
        self.image_tag, self.image_hash = entry.get("image", ""), entry.get("hash", "")
        self.concurrency = int(health.get("concurrency") or self.concurrency)
        self.processes = int(health.get("processes") or 1)
        self.threads = int(health.get("threads") or self.concurrency)
        _write_record(self._container_id, record["token"])
        self.client, self.adopted = client, True
        _note_used("", self.image_tag)
        self._step(f"reusing the running container {self._container_id[:12]}")
        return True

    def _adopt(self, config: str, connect: str) -> bool:
        """Use a healthy running container with the same content and settings that
        no other live process uses (an earlier kernel's, kept or left behind)."""
        me = owner_tag()
        candidates = self.docker.containers.list(
            filters={"label": [f"{LABEL_CONFIG}={config}", f"{LABEL_ROLE}=worker"],
                     "status": "running"})
        for container in candidates:
            record = _read_record(container.id)
            if record is None or not record.get("token"):
                continue   # not started from this account on this machine: we cannot talk to it
            if any(o != me and owner_alive(o) is not False for o in _owners(container.labels, record)):
                continue   # another live process uses it
            self.container = container
            try:
                client = self._worker_client(connect, record["token"])
            except TargetUnavailable:
                continue
            ok, _ = worker_health(client)
            if not ok:
                client.close()
                continue
            try:   # an earlier process swapped an edited function in: ours goes in instead
                if client.get(wire.HEALTH_PATH).json().get("function_hash"):
                    send_function(client, self.spec.package.payload,
                                  what=f"the container for {self.spec.name!r}")
                    self._swapped = True
                    self._store_payload()
            except (TargetFailure, TargetUnavailable, ValueError):
                client.close()
                continue
            _write_record(container.id, record["token"])
            self.client, self.adopted = client, True
            self._step(f"reusing the running container {container.short_id}")
            return True
        self.container = None
        return False

    # -- calls -------------------------------------------------------------------

    def _stopped(self, wait_s: float = 2.0) -> TargetFailure | None:
        """Why the container is not running (a TargetFailure), or None. A broken
        connection can reach us a moment before the engine has the container's
        exit, so this waits up to ``wait_s`` for the state to settle."""
        container = self.container   # another thread's teardown may clear the attribute
        if container is None:
            return self._stop_failure()
        deadline = time.monotonic() + wait_s
        delay = 0.02
        while True:
            try:
                container.reload()
            except _docker_sdk().errors.NotFound:
                return self._stop_failure() or TargetFailure(
                    f"the container for {self.spec.name!r} was removed", target=KIND,
                    hint="redeploy, or let the router fail over")
            except Exception as exc:
                return TargetFailure(f"the Docker engine does not answer about the container for "
                                     f"{self.spec.name!r}: {_short(exc)}", target=KIND)
            state = container.attrs.get("State", {})
            if not state.get("Running") or state.get("OOMKilled"):
                state = self._settled_state(container, state)
                try:
                    output = container.logs(tail=20).decode(errors="replace")
                except Exception:
                    output = self._last_log
                self._stop_reason = (
                    f"the container {container.short_id} for {self.spec.name!r} stopped "
                    f"({_exit_reason(state)}). Its last output:\n{output}",
                    "raise Resources(memory_mb=...)" if state.get("OOMKilled")
                    else "redeploy, or let the router fail over")
                return self._stop_failure()
            if time.monotonic() >= deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _settled_state(self, container, state: dict, wait_s: float = 2.0) -> dict:
        """The engine can record a SIGKILL exit before the kernel's OOM report for
        it: with a memory limit, exit 137 waits (bounded) for OOMKilled or an
        "oom" event of the container."""
        if state.get("OOMKilled") or state.get("ExitCode") != 137 or not self.spec.resources.memory_mb:
            return state
        deadline = time.monotonic() + wait_s
        while True:
            now = time.time()
            try:   # "until" as seconds.nanoseconds: an int in the future would block until then
                ooms = list((self.docker or _client(self.options)).events(
                    since=int(now) - 3600, until=f"{now:.9f}", decode=True,
                    filters={"container": container.id, "event": "oom"}))
                if ooms:
                    return {**state, "OOMKilled": True}
                container.reload()
                state = container.attrs.get("State", state)
            except Exception:
                return state
            if state.get("OOMKilled") or time.monotonic() >= deadline:
                return state
            time.sleep(0.1)

    def _stop_failure(self) -> TargetFailure | None:
        """The failure of a container seen stopped, for every call that saw it go."""
        if self._stop_reason is None:
            return None
        message, hint = self._stop_reason
        return TargetFailure(message, target=KIND, hint=hint)

    def _frozen(self) -> TargetFailure | None:
        """Asked every half second while a call waits: the container paused (docker
        pause) for over half a second, or stopped, fails the call instead of hanging it.
        An engine that does not answer is no evidence either way."""
        container = self.container
        if container is None:
            return None
        try:
            container.reload()
        except Exception:
            return None
        state = container.attrs.get("State", {})
        if not state.get("Running"):
            return self._stopped(wait_s=0)
        if not state.get("Paused"):
            self._paused_since = None
            return None
        now = time.monotonic()
        if self._paused_since is None:
            self._paused_since = now
        if now - self._paused_since < FROZEN_AFTER_S:
            return None
        return TargetFailure(f"the container {container.short_id} for {self.spec.name!r} is "
                             f"paused and cannot answer", target=KIND,
                             hint="`docker unpause` it, or let the router fail over; it is replaced")

    def _worker_name(self) -> str:
        return f"the container for {self.spec.name!r}"

    def _gone(self) -> TargetFailure | None:
        return self._stopped()

    def _unresponsive(self) -> TargetFailure | None:
        return self._frozen()

    def _stop_running_call(self, client) -> str:
        self._restart_container(client)
        return "the container was restarted to stop the call"

    def swap(self, spec) -> bool:
        """An edited function into the running container (POST /function): no image
        build, no restart. A new dependency set needs a new image: False."""
        client = self.client
        if client is None:
            return False
        try:
            if not self._swap_deps:
                self._swap_deps = capture(None, self.spec.package, self.spec.requirements).content_hash
            if capture(None, spec.package, spec.requirements).content_hash != self._swap_deps:
                return False
        except PackagingError:
            return False
        send_function(client, spec.package.payload, what=f"the container for {spec.name!r}")
        old_key, self.spec, self._swapped = self._recorded_key, spec, True
        self._store_payload()
        if old_key:   # the record now names the edited content (a restarted kernel finds it)
            try:
                os.unlink(_deployment_path(old_key))
            except OSError:
                pass
            self._recorded_key = self._record_key()
            self._remember()
        return True

    def _store_payload(self) -> None:
        """Copy the current function into the container's file, in the background
        (the swap has answered already), so that any restart of the container
        (a time-out's, the engine's, `docker restart`) runs it, not the one it
        was started with. Until it lands, this process's own restarts send it again."""
        def store():
            with self._payload_lock:
                spec, container = self.spec, self.container
                if container is None:
                    return
                try:
                    container.put_archive(docker_context.APP_DIR,
                                          docker_context.payload_archive(spec.package))
                except Exception as exc:   # the swap stands; a restart here sends it again
                    log.debug("copying the edited function into the container failed: %s",
                              _short(exc))

        threading.Thread(target=store, name=f"payload-{self.spec.name}", daemon=True).start()

    def stream(self, segments, total, timeout):
        client = self.client
        if client is None:
            raise TargetFailure("the docker target is not deployed", target=KIND)
        return open_stream(client, segments, total, timeout,
                           what=f"the container for {self.spec.name!r}", dead=self._stopped)

    def _restart_container(self, client: WorkerClient) -> None:
        """Stop a call that ran past its time limit. A running Python function cannot
        be interrupted from outside, so the container is restarted (same image, same
        token); other calls in flight on it fail and, when idempotent, are run again
        by the router. Its published port may change: the client is made anew."""
        with self._restart_lock:
            if self.client is not client:
                return   # another call's timeout already restarted it
            container = self.container
            record = _read_record(self._container_id or "")
            if container is None or record is None:
                return
            client.close()
            connect = self._addresses()[1]
            try:
                container.restart(timeout=0)
                self.client = WorkerClient(connect, self._published_ports()[0], record["token"], target=KIND)
                self._wait_ready(self.options.start_timeout_s)
                self.client.close()
                self.client = self._worker_client(connect, record["token"])
                if self._swapped:   # a restart runs the image's payload: send the edited one again
                    send_function(self.client, self.spec.package.payload,
                                  what=f"the container for {self.spec.name!r}")
            except Exception as exc:   # the next call's health check reports the container
                log.warning("restarting the container for %r after a timeout failed: %s",
                            self.spec.name, _short(exc))
                return
            if self._recorded_key:
                self._remember()

    def health(self) -> tuple[bool, str]:
        if self._paused_since is not None:
            failure = self._frozen()
            if failure is not None:
                return False, str(failure)
        ok, detail = worker_health(self.client)
        if ok:
            return ok, detail
        failure = self._stopped(wait_s=0)
        return False, str(failure) if failure is not None else detail

    def logs(self, tail: int = 100) -> str:
        if self.container is None:
            return self._last_log
        try:
            return self.container.logs(tail=tail, stdout=True, stderr=True).decode(errors="replace")
        except Exception:
            return self._last_log

    def read_output(self, stream_id: str, offset: int) -> dict | None:
        client = self.client
        return client.read_output(stream_id, offset) if client is not None else None

    def teardown(self) -> None:
        """Remove the container; the images stay, for the next deploy."""
        if self._lease_stop is not None:
            self._lease_stop.set()
        if self.client is not None:
            self.client.close()
        if self._recorded_key:
            try:
                os.unlink(_deployment_path(self._recorded_key))
            except OSError:
                pass
        container, self.container = self.container, None
        if container is None:
            return
        try:
            self._last_log = container.logs(tail=200).decode(errors="replace")
        except Exception:
            pass
        try:
            container.remove(force=True)
        except _docker_sdk().errors.NotFound:
            pass
        except Exception as exc:   # the engine is down: the container's lease ends it (keep=False)
            log.warning("removing the container for %r failed: %s", self.spec.name, _short(exc))
        finally:
            _forget_record(container.id)

    def door_address(self) -> tuple[str, int] | None:
        """Where outside programs on this machine reach the container's JSON door
        (the address this process uses: the bridge address or the published port)."""
        return (self.client.host, self.client.port) if self.client else None

    def describe(self) -> dict:
        return {"image": self.image_tag, "content_hash": self.image_hash[:12],
                "container": self._container_id[:12] if self._container_id else None,
                "address": f"{self.client.host}:{self.client.port}" if self.client else None,
                "engine": engine_address(self.options), "reused_container": self.adopted,
                "transport": INSECURE_NOTE if network_exposure(self.options) else "this machine only",
                "built": list(self.built), "concurrency": self.concurrency,
                "processes": self.processes, "threads": self.threads,
                **({"note": self.pool_note} if self.pool_note else {})}

    # -- what the CLI sees (inventory.py) ---------------------------------------------

    @classmethod
    def inventory(cls, options) -> list[dict]:
        return inventory.inventory(options)

    @classmethod
    def remove(cls, item: dict, options) -> None:
        inventory.remove(item, options)
