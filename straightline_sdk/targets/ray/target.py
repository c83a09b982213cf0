"""The Ray target: a Ray cluster, for work that outgrows one machine.

Connection (Ray connects a process to one cluster at a time):
- an address from ``configure(options={"ray": {"address": ...}})``,
  STRAIGHTLINE_RAY_ADDRESS or RAY_ADDRESS: ``ray.init(address=...)``;
- or the cluster this process is already connected to (the user's own ``ray.init()``);
- or, only when asked with ``{"start_local": True}``, a new local cluster, shut
  down when this process exits. A cluster is never started silently.

A deployment puts the cloudpickled function in Ray's object store once. Single
calls go to a warm actor (``runtime.ray_entry.FunctionHost``); map chunks go to
Ray tasks (``runtime.ray_entry.run_frame``), which Ray's scheduler spreads over
the cluster (the router sends as many chunks at once as the cluster has CPUs,
from ``ray.cluster_resources()``). Both move the same frames as every other
target. A lost node, worker or actor is a TargetFailure and the router decides
what to re-run, as on every target; the one exception is a map chunk of an
idempotent deployment, which Ray itself runs again on another node when the
node running it is lost (a map over a cluster survives a node, without leaving
the cluster). Ray never retries the user's exceptions.

Ray is optional (``pip install 'straightline-sdk[ray]'``) and imported only when
a Ray target is probed with a configured cluster or deployed.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import socket
import sys
import threading
import time

from ...errors import CallTimeout, TargetFailure, TargetUnavailable
from ...packaging import content_hash
from ...placement import MB, Limits
from ...runtime import ray_entry
from ..base import Probe, Reply, Target, live_specs
from .options import RayOptions

log = logging.getLogger("straightline")

INSTALL_HINT = "pip install 'straightline-sdk[ray]'"
HOW_TO_CONNECT = (
    "set RAY_ADDRESS (or STRAIGHTLINE_RAY_ADDRESS) to a running cluster's address, or "
    "straightline.configure(options={'ray': {'address': 'HOST:6379'}}); to start a local "
    "cluster instead: straightline.configure(options={'ray': {'start_local': True}})")
NAMESPACE = "straightline"
_NAME_PREFIX = "straightline-"
#: how often Ray reruns a map chunk whose worker or node was lost (idempotent only)
TASK_RETRIES = 3
#: how often a map looks for nodes that joined the cluster after deploy (one GCS call)
NODE_CHECK_S = 2.0

_lock = threading.Lock()
_started_here = False


def _upload_local_modules(env: dict) -> dict:
    """Replace the local directories in ``py_modules`` by ``gcs://`` URIs of their
    zipped contents, uploaded to the cluster's GCS once (by content hash).

    Ray uploads local paths itself only for a job-level runtime environment
    (``ray.init(runtime_env=...)``); on an actor's or task's ``.options()`` a local
    path is refused ("... is not a valid URI"). The SDK deploys into a process that
    is often connected already (the user's own ``ray.init()``), so it uploads the way
    ``ray.init`` does, with the same (semi-private, but stable since Ray 2.0)
    function, and passes URIs, which every node of the cluster fetches from the GCS."""
    import inspect
    import tempfile

    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    try:
        with tempfile.TemporaryDirectory(prefix="straightline-ray-") as scratch:
            extra = {}   # Ray 2.4x+ asks whether .gitignore files apply; older ones don't
            if "include_gitignore" in inspect.signature(upload_py_modules_if_needed).parameters:
                extra["include_gitignore"] = True
            return upload_py_modules_if_needed(dict(env), scratch_dir=scratch, logger=log,
                                               **extra)
    except Exception as exc:
        raise TargetUnavailable(
            f"could not upload the SDK's runtime to the Ray cluster's GCS: {_first_line(exc)}",
            target="ray", hint="check that the cluster is reachable (`ray status`); to run "
                               "without shipping it, configure options={'ray': "
                               "{'ship_dependencies': False}} on nodes that share this "
                               "Python environment") from exc


def _address(options: RayOptions) -> str | None:
    return options.address or os.environ.get("RAY_ADDRESS") or None


def _connected_ray():
    """The ray module when this process is connected to a cluster; never imports it."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray
    return None


def _shutdown_started_cluster() -> None:
    global _started_here
    ray = sys.modules.get("ray")
    if _started_here and ray is not None and ray.is_initialized():
        ray.shutdown()
    _started_here = False


def connect(options):
    """Connect this process to the configured cluster (or start a local one when
    asked); returns the ray module. Raises TargetUnavailable saying what to do."""
    global _started_here
    if importlib.util.find_spec("ray") is None:
        raise TargetUnavailable("Ray is not installed", target="ray", hint=INSTALL_HINT)
    import ray

    options = RayOptions.parse(options)
    address = _address(options)
    with _lock:
        if ray.is_initialized():
            current = ray.get_runtime_context().gcs_address
            if address and not _same_cluster(address, current):
                raise TargetUnavailable(
                    f"this process is already connected to the Ray cluster at {current}, not the "
                    f"configured {address}; Ray connects a process to one cluster at a time",
                    target="ray", hint=f"configure address {current!r}, or call ray.shutdown() first")
            return ray
        try:
            if address:
                ray.init(address=address, namespace=NAMESPACE)
            elif options.start_local:
                num_cpus = options.num_cpus
                ray.init(num_cpus=int(num_cpus) if num_cpus else None, include_dashboard=False,
                         namespace=NAMESPACE)
                _started_here = True
                atexit.register(_shutdown_started_cluster)
            else:
                raise TargetUnavailable("no Ray cluster is configured", target="ray",
                                        hint=HOW_TO_CONNECT)
        except TargetUnavailable:
            raise
        except Exception as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            raise TargetUnavailable(f"cannot connect to {where}: {exc}", target="ray",
                                    hint="check that the cluster is running (ray status) and that "
                                         "its Ray and Python versions match this process's") from exc
        return ray


def _cluster_view(ray) -> tuple[Limits, dict]:
    """Limits (what one call can get: the largest node) and capacity (totals, available)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = {"CPU": 0.0, "GPU": 0.0, "memory": 0.0}
    for node in nodes:
        res = node.get("Resources", {})
        for key in largest:
            largest[key] = max(largest[key], float(res.get(key, 0.0)))
    total = ray.cluster_resources()
    free = ray.available_resources()

    def summary(res: dict) -> dict:
        return {"cpus": float(res.get("CPU", 0.0)), "gpus": int(res.get("GPU", 0)),
                "memory_mb": int(res.get("memory", 0) // MB)}

    limits = Limits(
        max_memory_mb=int(largest["memory"] // MB) or None, cpus=largest["CPU"] or None,
        gpus=int(largest["GPU"]),
        # Ray refuses a driver whose Python minor version differs from the cluster's.
        pythons=frozenset({sys.version_info[:2]}),
        sources=(f"Ray cluster at {ray.get_runtime_context().gcs_address}: largest of "
                 f"{len(nodes)} alive node(s) from ray.nodes(); Python must match the driver's",),
    )
    capacity = {**summary(total), "available": summary(free), "nodes": len(nodes),
                "address": ray.get_runtime_context().gcs_address}
    return limits, capacity


class RayTarget(Target):
    kind = "ray"

    def __init__(self, spec, progress=None):
        super().__init__(spec, progress)
        self.options = RayOptions.parse(spec.options)
        self.concurrency = self.options.concurrency
        self._ray = None
        self._actor = None
        self._task = None
        self._payload_ref = None
        self._address = ""
        self._host: dict = {}
        self._actor_options: dict = {}
        self._shipped: list = []       # what the runtime environment ships ("pip", "py_modules")
        self._placement: dict = {}     # the resources and runtime environment of actor and tasks
        self._next_node_check = 0.0
        self._replace_lock = threading.Lock()

    @classmethod
    def probe(cls, options) -> Probe:
        options = RayOptions.parse(options)
        if importlib.util.find_spec("ray") is None:
            return Probe(False, "Ray is not installed", hint=INSTALL_HINT)
        if _connected_ray() is None and not _address(options):
            if options.start_local:
                # Not started yet (a probe never starts Ray): this machine is what it will get.
                cpus = float(options.num_cpus or os.cpu_count() or 1)
                return Probe(True, limits=Limits(
                    cpus=cpus, gpus=0, pythons=frozenset({sys.version_info[:2]}),
                    sources=("a local Ray cluster, started at first deploy: this machine's CPUs",),
                ), capacity={"cpus": cpus, "gpus": 0, "nodes": 1, "address": "local (not started)"})
            return Probe(False, "no Ray cluster is configured", hint=HOW_TO_CONNECT)
        try:
            # connected already: checks the configured address; else connects to the
            # running cluster at that address (connect starts one only without an address)
            ray = connect(options)
        except TargetUnavailable as exc:
            return Probe(False, str(exc).splitlines()[0], hint=exc.hint or "")
        limits, capacity = _cluster_view(ray)
        return Probe(True, limits=limits, capacity=capacity)

    # -- deployment -------------------------------------------------------------

    def deploy(self) -> None:
        ray = self._ray = connect(self.options)
        from ray import exceptions as rex

        self._address = ray.get_runtime_context().gcs_address
        package = self.spec.package
        res = self.spec.resources
        if self.concurrency is None:   # calls the cluster's CPUs run at once
            self.concurrency = self._cluster_concurrency(ray)
        # num_gpus only when asked: any resource named on an actor (even num_gpus=0)
        # makes Ray hold its CPU for the actor's whole life, one CPU fewer for map tasks
        placement: dict = {"num_gpus": res.gpus} if res.gpus else {}
        if res.memory_mb:
            placement["memory"] = res.memory_mb * MB
        self._ship(placement, self._runtime_env(ray))
        self._next_node_check = time.monotonic() + NODE_CHECK_S
        self._step("putting the function in the object store")
        self._payload_ref = ray.put(package.payload)
        # one thread more than the calls it takes: reading a running call's output
        # (streaming) must not wait behind the calls
        actor_options = dict(placement, max_concurrency=self.concurrency + 1, max_restarts=0)
        if res.cpus is not None:
            actor_options["num_cpus"] = res.cpus
        if self.spec.keep:  # outlives this process; the same content finds the same actor
            environment = content_hash(self.spec.environment_fingerprint())[:8] \
                if self.spec.env or self.spec.secrets else ""
            actor_options.update(name=f"{_NAME_PREFIX}{package.name}-{package.content_hash[:12]}"
                                      f"{'-' + environment if environment else ''}",
                                 namespace=NAMESPACE, lifetime="detached", get_if_exists=True)
        self._actor_options = actor_options
        self._start_actor(ray)
        # A chunk whose worker or node is lost may run again only when the deployment
        # is idempotent (docs/concepts.md); Ray then reruns it elsewhere in the
        # cluster. The user's exceptions are never retried (retry_exceptions off).
        self._placement = placement
        self._task = self._make_task(ray)
        start_timeout = self.options.start_timeout_s
        try:
            self._host = ray.get(self._actor.ping.remote(), timeout=start_timeout)
        except rex.GetTimeoutError:
            self.teardown()
            raise TargetUnavailable(
                f"the Ray actor for {package.name!r} did not start within {start_timeout:.0f} s: the "
                f"cluster may lack the resources it asks for ({self._asks()})", target=self.kind,
                hint="check free resources with `ray status`, or lower Resources(...)") from None
        except rex.RayError as exc:
            self.teardown()
            raise TargetUnavailable(
                f"the Ray actor for {package.name!r} failed to start: {_first_line(exc)}",
                target=self.kind, hint="if the function needs packages the cluster lacks, pass "
                                       "requirements=[...] to deploy()") from exc

    def _start_actor(self, ray) -> None:
        self._step("starting the actor")
        self._actor = ray.remote(ray_entry.FunctionHost).options(**self._actor_options).remote(
            self.spec.package.content_hash, self._payload_ref)

    def _cluster_concurrency(self, ray) -> int:
        """Calls the cluster's CPUs run at once, at the CPUs each call asks for."""
        return max(1, int(ray.cluster_resources().get("CPU", 1) // (self.spec.resources.cpus or 1)))

    def _make_task(self, ray):
        res = self.spec.resources
        return ray.remote(ray_entry.run_frame).options(
            num_cpus=res.cpus if res.cpus is not None else 1,
            max_retries=TASK_RETRIES if self.spec.idempotent else 0, retry_exceptions=False,
            **self._placement)

    def _ship(self, placement: dict, runtime_env: dict | None) -> None:
        """Put the runtime environment (what _runtime_env ships, and the deployment's
        env and secrets) in ``placement``."""
        self._shipped = sorted(runtime_env or ())
        if self.spec.env or self.spec.secrets:   # handed to the actor and tasks at start
            runtime_env = {**(runtime_env or {}), "env_vars": self.spec.environment()}
        if runtime_env:
            placement["runtime_env"] = runtime_env

    def follow_capacity(self) -> None:
        """Follow a cluster that grows or shrinks while deployed (an autoscaler, a
        `ray start --address` on another machine, a lost node), at most every
        NODE_CHECK_S: the map's fan-out follows the cluster's CPUs (unless the
        ``concurrency`` option fixed it). A cluster that was this machine alone at
        deploy got no runtime environment (its nodes share this Python environment);
        a node that joins later does not, so once one is seen the map's tasks, and
        an actor started from then on, get it."""
        if time.monotonic() < self._next_node_check:
            return
        with self._replace_lock:
            if time.monotonic() < self._next_node_check or self._ray is None:
                return
            try:
                ray = self._ray
                if self.options.concurrency is None:
                    self.concurrency = self._cluster_concurrency(ray)
                runtime_env = None
                if not self._shipped and self.options.ship_dependencies is None:
                    runtime_env = self._runtime_env(ray)
            except Exception as exc:   # the calls then find out for themselves
                log.warning("following the Ray cluster's nodes failed: %s", _first_line(exc))
                return
            finally:
                self._next_node_check = time.monotonic() + NODE_CHECK_S
            if runtime_env:
                log.info("a node joined the Ray cluster: %r now ships %s to its tasks",
                         self.spec.name, ", ".join(sorted(runtime_env)))
                self._ship(self._placement, runtime_env)
                self._actor_options.update(self._placement)
                self._task = self._make_task(ray)

    def _replace_actor(self, actor) -> None:
        """Stop a call that ran past its time limit. Ray does not interrupt a running
        call on a regular actor (ray.cancel only flags it), so the actor is killed and
        a new one started; other calls in flight on it fail and, when idempotent,
        are run again by the router."""
        ray = self._ray
        with self._replace_lock:
            if self._actor is not actor or ray is None:
                return   # another call's timeout already replaced it, or torn down
            try:
                ray.kill(actor, no_restart=True)
                name = self._actor_options.get("name")
                if name:   # a kept (named) actor: its name must be free before it is reused
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        try:
                            ray.get_actor(name, namespace=NAMESPACE)
                        except ValueError:
                            break
                        time.sleep(0.05)
                self._start_actor(ray)
                self._host = ray.get(self._actor.ping.remote(),
                                     timeout=self.options.start_timeout_s)
            except Exception as exc:   # the next call's health check finds it and redeploys
                log.warning("replacing the Ray actor for %r after a timeout failed: %s",
                            self.spec.name, _first_line(exc))

    def _step(self, text: str) -> None:
        if self.progress is not None:
            self.progress.step(text)

    def _asks(self) -> str:
        res = self.spec.resources
        parts = [f"{res.cpus:g} CPU" if res.cpus is not None else "1 CPU"]
        if res.gpus:
            parts.append(f"{res.gpus} GPU")
        if res.memory_mb:
            parts.append(f"{res.memory_mb} MB memory")
        return ", ".join(parts)

    def _runtime_env(self, ray) -> dict | None:
        """Dependencies for a cluster whose nodes do not share this Python
        environment; None for a cluster on this machine alone (same packages)."""
        ship = self.options.ship_dependencies
        if ship is None:
            here = ray.get_runtime_context().get_node_id()
            ship = any(n.get("Alive") and n.get("NodeID") != here for n in ray.nodes())
        if not ship:
            return None
        import straightline_sdk
        from ...packaging import dependencies

        # the runtime the actor and tasks import, from this very version of the SDK
        env: dict = {"py_modules": [os.path.dirname(straightline_sdk.__file__)]}
        if self.options.ship_packages:
            # off for nodes that share this Python environment (same machine or image):
            # Ray would otherwise build a virtualenv per node and pip-install the pins
            self._step("capturing the function's dependencies")
            deps = dependencies.capture(None, self.spec.package, self.spec.requirements)
            env["pip"] = list(deps.pins)   # cloudpickle (the runtime's dependency) included
        return _upload_local_modules(env)

    def swap(self, spec) -> bool:
        """The actor loads the edited payload; map tasks get it from the object store."""
        ray, actor = self._ray, self._actor
        if ray is None or actor is None or self.spec.keep:
            return False   # a kept actor is named after its content: it is redeployed
        package = spec.package
        ref = ray.put(package.payload)
        ray.get(actor.swap.remote(package.content_hash, ref), timeout=self.options.start_timeout_s)
        self._payload_ref, self.spec = ref, spec
        return True

    # -- calls ---------------------------------------------------------------

    def invoke(self, segments, total, timeout):
        actor = self._actor
        if actor is None:
            raise TargetFailure("the Ray target is not deployed", target=self.kind)
        try:
            return self._result(actor.run.remote(b"".join(segments)), timeout, "actor")
        except CallTimeout as exc:
            self._replace_actor(actor)
            raise CallTimeout(f"{exc}; the actor was replaced to stop the call") from None

    def invoke_chunk(self, segments, total, timeout):
        """A map chunk: a Ray task, placed by Ray's scheduler anywhere in the cluster."""
        if self._task is None:
            raise TargetFailure("the Ray target is not deployed", target=self.kind)
        self.follow_capacity()
        ref = self._task.remote(self.spec.package.content_hash, self._payload_ref, b"".join(segments))
        return self._result(ref, timeout, "task")

    def _result(self, ref, timeout, via: str):
        ray = self._ray
        from ray import exceptions as rex
        try:
            body = ray.get(ref, timeout=timeout)
        except rex.GetTimeoutError:
            try:  # a queued call is dropped, a running task interrupted (actors: see invoke)
                ray.cancel(ref)
            except Exception as exc:
                log.debug("ray.cancel after a timeout: %s", exc)
            raise CallTimeout(f"the call did not finish within its {timeout:g} s time limit on the "
                              f"ray target (Resources(timeout_s=...) sets it)") from None
        except (rex.RuntimeEnvSetupError, rex.TaskUnschedulableError,
                rex.ActorUnschedulableError) as exc:
            raise TargetFailure(f"Ray could not run the call: {_first_line(exc)}", target=self.kind,
                                may_have_run=False) from exc
        except rex.RayTaskError as exc:
            # handle_frame catches the user's exceptions, so this is the host failing
            # before the function ran (e.g. it cannot be unpickled on that node).
            raise TargetFailure(f"the Ray worker could not run {self.spec.name!r}: "
                                f"{_first_line(exc)}", target=self.kind, may_have_run=False,
                                hint="pass the packages it needs as requirements=[...]") from exc
        except rex.RayError as exc:  # actor or worker died, node lost, object lost, system error
            raise TargetFailure(
                f"the Ray {via} serving {self.spec.name!r} was lost during the call ({type(exc).__name__}: "
                f"{_reason(exc)}); the call may have started there", target=self.kind,
                may_have_run=True,
                hint="the next call starts a new actor; allow another target (targets=[...]) "
                     "for automatic failover") from exc
        # writable, like every target's response: arrays rebuilt from it are not read-only
        return Reply(bytearray(body), cold=self._first_answer())

    def health(self) -> tuple[bool, str]:
        if self._actor is None:
            return False, "not deployed"
        ray = _connected_ray()
        if ray is None:
            return False, "this process is no longer connected to the Ray cluster"
        from ray import exceptions as rex
        try:
            ray.get(self._actor.ping.remote(), timeout=5.0)
        except rex.GetTimeoutError:
            return False, "the Ray actor did not answer a ping within 5 s"
        except rex.RayError as exc:
            return False, f"the Ray actor is gone: {_reason(exc)}"
        return True, "ok"

    def logs(self, tail: int = 100) -> str:
        """The actor's recent output (map chunks run as tasks in other processes:
        their output reaches the notebook through Ray's own log streaming)."""
        ray, actor = _connected_ray(), self._actor
        if ray is None or actor is None:
            return ""
        try:
            return ray.get(actor.logs.remote(tail), timeout=5.0)
        except Exception as exc:
            return f"(the Ray actor's output could not be read: {_first_line(exc)})"

    def read_output(self, stream_id: str, offset: int) -> dict | None:
        """A running actor call's output so far; the actor has one thread more
        than ``concurrency`` for these reads (see deploy)."""
        ray, actor = _connected_ray(), self._actor
        if ray is None or actor is None:
            return None
        try:
            return ray.get(actor.output.remote(stream_id, offset), timeout=5.0)
        except Exception:
            return None

    def teardown(self) -> None:
        actor, self._actor = self._actor, None
        self._task = None
        self._payload_ref = None   # dropping the last reference frees it in the object store
        ray = _connected_ray()
        if actor is not None and ray is not None:
            ray.kill(actor)

    # -- what the CLI sees ---------------------------------------------------------

    @classmethod
    def inventory(cls, options) -> list[dict]:
        """Actors left running with keep=True (named, detached) on the connected cluster."""
        ray = _connected_ray()
        if ray is None:
            return []
        live = {f"{_NAME_PREFIX}{spec.name}-{spec.package.content_hash[:12]}" for spec in live_specs()}
        items = []
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry.get("namespace") == NAMESPACE and entry.get("name", "").startswith(_NAME_PREFIX):
                name = entry["name"]
                items.append({"kind": "ray", "id": name, "name": name,
                              "owner": name[len(_NAME_PREFIX):].rsplit("-", 1)[0],
                              "orphan": name not in live})
        return items

    @classmethod
    def remove(cls, item: dict, options) -> None:
        ray = connect(options)
        ray.kill(ray.get_actor(item["id"], namespace=NAMESPACE))

    def describe(self) -> dict:
        return {"address": self._address or None, "concurrency": self.concurrency,
                "actor_pid": self._host.get("pid") if self._actor is not None else None,
                "cluster": "started by this process" if _started_here else "connected",
                "shipped": list(self._shipped)}


def _same_cluster(configured: str, connected: str) -> bool:
    """Whether a configured address names the cluster this process is connected to
    (host names and this machine's own addresses compare equal; same port)."""
    if configured in ("auto", "local", connected) or configured.startswith("ray://"):
        return True
    host, _, port = configured.rpartition(":")
    current_host, _, current_port = connected.rpartition(":")
    if port != current_port:
        return False
    try:
        ips = {socket.gethostbyname(h) for h in (host, current_host)}
    except OSError:
        return host == current_host
    return len(ips) == 1 or all(_is_this_machine(ip) for ip in ips)


def _is_this_machine(ip: str) -> bool:
    if ip.startswith("127."):
        return True
    with socket.socket() as probe:   # only an address of this machine can be bound
        try:
            probe.bind((ip, 0))
        except OSError:
            return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _reason(exc: BaseException) -> str:
    """Ray's explanation of a death: its last line says why (killed, node died, OOM)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
